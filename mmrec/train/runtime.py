"""Where and how the train step runs: XLA, precision, seeds, devices, strategy.

``jit="auto"`` compiles the train step with XLA when a GPU is present and
uses TensorFlow's own kernels on CPU, where XLA measured about half as fast
on this model (docs/BENCHMARKS.md); ``on`` and ``off`` force it.

Example:

    jit = resolve_jit("auto")           # False on a CPU-only machine
    with precision_policy("mixed_bfloat16"):
        ...                             # build and train; float32 again after
    seed_everything(42)
    with distribution_strategy("mirrored").scope():
        ...                             # variables mirrored on every local GPU
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

import tensorflow as tf

from mmrec.model.retrieval_task import global_dtype_policy

logger = logging.getLogger("mmrec.train")


def has_gpu() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


def resolve_jit(mode: str) -> bool:
    """"on" -> True, "off" -> False, "auto" -> whether a GPU is present."""
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"jit must be auto, on or off, got {mode!r}")
    return has_gpu() if mode == "auto" else mode == "on"


def describe_jit(mode: str) -> str:
    compiled = resolve_jit(mode)
    reason = f"--jit {mode}" if mode != "auto" else (
        "auto: a GPU is present" if compiled else "auto: no GPU, TensorFlow kernels are faster")
    return f"train step {'compiled with XLA (jit_compile=True)' if compiled else 'not compiled with XLA'} ({reason})"


@contextlib.contextmanager
def precision_policy(policy: str) -> Iterator[None]:
    """Runs the block under Keras' mixed-precision ``policy``; the previous
    policy comes back afterwards, also when the block raises (a refused config
    must not leave a process in mixed precision)."""
    if policy != "float32" and not has_gpu():
        logger.warning("precision %s on CPU is emulated and slow; it is meant for GPUs", policy)
    with global_dtype_policy(policy):
        yield


STRATEGIES = ("default", "mirrored")


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """"default": the strategy already in scope (none: one device);
    "mirrored": ``tf.distribute.MirroredStrategy`` over every local GPU (the
    CPU when there is none). Each replica takes an equal share of a batch, so
    the in-batch softmax sees ``batch_size / replicas`` candidates per replica.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    return tf.distribute.MirroredStrategy()


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seeds Python, NumPy and TensorFlow; turns op determinism on or off.

    Op determinism is process-wide, so it is set both ways: a compiled (XLA)
    run after a deterministic one must not inherit it (XLA has no
    deterministic MaxPool gradient).
    """
    from tensorflow.python.framework import config as tf_config
    tf.keras.utils.set_random_seed(seed)
    if deterministic:
        tf_config.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()
