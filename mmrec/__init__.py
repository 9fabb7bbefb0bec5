"""mmrec: a multimodal two-tower recommender on TensorFlow and Keras 2.

Importing mmrec selects Keras 2 (tf-keras) for TensorFlow, which TensorFlow
Recommenders needs; import it before TensorFlow.

Example:

    import mmrec
    dataset = mmrec.load_dataset("movielens-100k")
    print(mmrec.describe(dataset)["interactions"])
"""

from mmrec._tf_env import use_legacy_keras

use_legacy_keras()

from mmrec.data.describe import describe  # noqa: E402
from mmrec.data.registry import load_dataset  # noqa: E402

__version__ = "0.1.0"
__all__ = ["describe", "load_dataset", "__version__"]
