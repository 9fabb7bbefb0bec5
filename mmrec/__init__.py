"""mmrec: a multimodal two-tower recommender on TensorFlow and Keras 2.

Importing mmrec selects Keras 2 (tf-keras) for TensorFlow, which TensorFlow
Recommenders needs; import it before TensorFlow.

Example:

    import mmrec
    dataset = mmrec.load_dataset("movielens-100k")
    print(mmrec.describe(dataset)["interactions"])
    mmrec.recommend("196", k=10)      # from $MMREC_MODEL_DIR or ./saved_models/mmrec
"""

from mmrec._tf_env import use_legacy_keras

use_legacy_keras()

from mmrec.data.describe import describe  # noqa: E402
from mmrec.data.registry import load_dataset  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Recommender", "describe", "load_dataset", "recommend", "__version__"]

_LAZY = {"Recommender": "mmrec.serve.recommender", "recommend": "mmrec.serve.recommender"}


def __getattr__(name: str):
    # Loaded on first use: these pull in TensorFlow, which `import mmrec` need not.
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmrec' has no attribute {name!r}")
