"""Select Keras 2 (tf-keras) before TensorFlow is imported.

TensorFlow Recommenders 0.7.7 works only with Keras 2. TensorFlow 2.20 picks
Keras 3 unless ``TF_USE_LEGACY_KERAS=1`` is set *before* its first import, and
the choice cannot be changed afterwards. ``import mmrec`` (and ``import
feedback``) call :func:`use_legacy_keras` first thing, so user code may import
TensorFlow after mmrec freely.
"""

from __future__ import annotations

import os
import sys


class KerasVersionError(ImportError):
    """TensorFlow was imported with Keras 3 before mmrec could select Keras 2."""


def use_legacy_keras() -> None:
    """Set ``TF_USE_LEGACY_KERAS=1``, or fail clearly if it is too late.

    Raises:
      KerasVersionError: TensorFlow is already imported and its ``tf.keras`` is
        Keras 3, which TensorFlow Recommenders cannot use.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules:
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        return
    tf = sys.modules["tensorflow"]
    keras_module = getattr(getattr(tf, "keras", None), "__name__", "")
    if not keras_module.startswith("tf_keras"):
        raise KerasVersionError(
            "TensorFlow was imported before mmrec with Keras 3 as tf.keras "
            f"(tf.keras is {keras_module or 'unknown'!r}). mmrec needs Keras 2 "
            "(tf-keras) for TensorFlow Recommenders. Import mmrec before "
            "tensorflow, or set TF_USE_LEGACY_KERAS=1 in the environment.")
