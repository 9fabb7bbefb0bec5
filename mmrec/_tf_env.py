"""Select Keras 2 (tf-keras) before TensorFlow is imported.

TensorFlow Recommenders 0.7.7 works only with Keras 2. TensorFlow 2.20 picks
Keras 3 unless ``TF_USE_LEGACY_KERAS=1`` is set *before* its first import, and
the choice cannot be changed afterwards. ``import mmrec`` (and ``import
feedback``) call :func:`use_legacy_keras` first thing, so user code may import
TensorFlow after mmrec freely.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from typing import Iterator


class KerasVersionError(ImportError):
    """TensorFlow was imported with Keras 3 before mmrec could select Keras 2."""


def use_legacy_keras() -> None:
    """Set ``TF_USE_LEGACY_KERAS=1``, or fail clearly if it is too late.

    Raises:
      KerasVersionError: TensorFlow is already imported and its ``tf.keras`` is
        Keras 3, which TensorFlow Recommenders cannot use.
    """
    # 3: TensorFlow's C++ logs stay quiet, its "failed call to cuInit" on every
    # machine without a GPU included (it reads as a failure and is none).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
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


def show_tensorflow_logs() -> None:
    """Lets TensorFlow's (and ScaNN's) C++ logs through, if TensorFlow is not yet
    loaded (the level is read once, at its import)."""
    if "tensorflow" not in sys.modules:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"


def device_summary() -> str:
    """One plain line on where TensorFlow will compute (imports TensorFlow).

    Example: ``"device: CPU only (2 cores; no GPU found)"``.
    """
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return f"device: CPU only ({os.cpu_count()} cores; no GPU found)"
    names = []
    for gpu in gpus:
        try:
            names.append(tf.config.experimental.get_device_details(gpu).get("device_name",
                                                                               gpu.name))
        except (ValueError, RuntimeError):
            names.append(gpu.name)
    return f"device: {len(gpus)} GPU{'s' if len(gpus) > 1 else ''} ({', '.join(names)})"


# TensorFlow's function runtime logs this through absl before absl is set up,
# ignoring TF_CPP_MIN_LOG_LEVEL: once per signature, at its first call, when
# grappler cannot cost an attention Softmax. It is harmless (tensorflow/tensorflow#50575).
NATIVE_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)"
                          r"|W0000 .*Error in PredictCost\(\))")


@contextlib.contextmanager
def quiet_native_noise() -> Iterator[None]:
    """Holds back the known harmless lines TensorFlow's C++ code writes to the
    process's stderr in the block, and passes every other line through after it.

    Does nothing when the C++ logs are wanted (``--verbose``, or
    ``TF_CPP_MIN_LOG_LEVEL=0``). Output of other threads during the block is
    delayed, not lost.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") == "0":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(True)
                    if not NATIVE_NOISE.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
