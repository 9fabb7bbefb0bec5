"""The TFRS retrieval task, kept in float32 under a mixed-precision policy.

``tfrs.tasks.Retrieval`` is a Keras layer, and so are the helper layers it
creates inside ``call`` (``RemoveAccidentalHits``, ``SamplingProbablityCorrection``).
Under ``mixed_bfloat16`` or ``mixed_float16`` Keras casts only their first
argument to the low precision, and the step fails adding float32 logits to
bfloat16 labels. A softmax over logits divided by a small temperature wants
float32 anyway. ``Retrieval`` takes no ``dtype`` argument, so this subclass
builds and calls it while the global policy is float32; the towers stay mixed.

Example:

    task = Float32Retrieval(temperature=0.05, remove_accidental_hits=True)
    loss = task(users, items)   # float32 inputs and loss under any policy
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import tensorflow as tf
import tensorflow_recommenders as tfrs


@contextlib.contextmanager
def global_dtype_policy(name: str) -> Iterator[None]:
    """Runs the block with Keras' global dtype policy set to ``name``; the
    previous policy comes back afterwards, also when the block raises."""
    previous = tf.keras.mixed_precision.global_policy().name
    tf.keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        tf.keras.mixed_precision.set_global_policy(previous)


class Float32Retrieval(tfrs.tasks.Retrieval):
    """``tfrs.tasks.Retrieval`` whose loss is computed in float32 under any policy."""

    def __init__(self, **kwargs) -> None:
        with global_dtype_policy("float32"):
            super().__init__(**kwargs)

    def call(self, query_embeddings: tf.Tensor, candidate_embeddings: tf.Tensor,
             sample_weight: tf.Tensor | None = None,
             candidate_sampling_probability: tf.Tensor | None = None,
             candidate_ids: tf.Tensor | None = None, compute_metrics: bool = True,
             compute_batch_metrics: bool = True,
             score_mask: tf.Tensor | None = None) -> tf.Tensor:
        with global_dtype_policy("float32"):
            return super().call(
                tf.cast(query_embeddings, tf.float32), tf.cast(candidate_embeddings, tf.float32),
                sample_weight=sample_weight,
                candidate_sampling_probability=candidate_sampling_probability,
                candidate_ids=candidate_ids, compute_metrics=compute_metrics,
                compute_batch_metrics=compute_batch_metrics, score_mask=score_mask)
