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
    with distribution_strategy("multi-worker").scope():
        ...                             # every worker of TF_CONFIG's cluster
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
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


STRATEGIES = ("default", "mirrored", "multi-worker")
COLLECTIVE_TIMEOUT_S = 600
"""How long a cross-worker collective may wait before the run fails (a dead
worker must fail the run, not hang it)."""


def distribution_strategy(name: str, *,
                          collective_timeout_s: float = COLLECTIVE_TIMEOUT_S
                          ) -> tf.distribute.Strategy:
    """"default": the strategy already in scope (none: one device);
    "mirrored": ``tf.distribute.MirroredStrategy`` over every local GPU (the
    CPU when there is none); "multi-worker":
    ``tf.distribute.MultiWorkerMirroredStrategy`` over the cluster that the
    ``TF_CONFIG`` environment variable describes, its collectives failing
    after ``collective_timeout_s``. Each replica takes an equal share of a
    batch, so the in-batch softmax sees ``batch_size / replicas`` candidates
    per replica.

    Raises:
      ValueError: an unknown name, or "multi-worker" without a usable TF_CONFIG.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    cluster_config()  # a clear error before TensorFlow reads it
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.AUTO,
        timeout_seconds=collective_timeout_s)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def cluster_config() -> dict:
    """The ``TF_CONFIG`` of this worker, checked: a ``cluster`` with ``worker``
    (and optionally ``chief``) addresses and this process's ``task``.

    Raises:
      ValueError: TF_CONFIG is missing, not JSON, or lacks a part (named).
    """
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise ValueError("--strategy multi-worker needs the TF_CONFIG environment variable: "
                         '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
                         '"task": {"type": "worker", "index": 0}} (README: Several machines)')
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not JSON: {error}") from None
    cluster, task = config.get("cluster") or {}, config.get("task") or {}
    if not cluster.get("worker") and not cluster.get("chief"):
        raise ValueError(f"TF_CONFIG names no workers in its cluster: {text}")
    role, index = task.get("type"), task.get("index")
    if role not in cluster or not isinstance(index, int) or not 0 <= index < len(cluster[role]):
        raise ValueError(f"TF_CONFIG's task {task} is not one of its cluster's "
                         f"{ {k: len(v) for k, v in cluster.items()} }")
    return config


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process writes the run: always, but in a multi-worker
    cluster, where only the chief does (the task "chief", or worker 0 when
    the cluster names no chief)."""
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if not is_multi_worker(strategy) or resolver is None:
        return True
    role, index = resolver.task_type, resolver.task_id
    if role == "chief":
        return True
    return role == "worker" and index == 0 and "chief" not in resolver.cluster_spec().as_dict()


def is_multi_worker(strategy: tf.distribute.Strategy | None = None) -> bool:
    return isinstance(strategy or tf.distribute.get_strategy(),
                      tf.distribute.MultiWorkerMirroredStrategy)


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
