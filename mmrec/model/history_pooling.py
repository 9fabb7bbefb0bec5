"""Attention pooling of a user's click history into one vector.

Not every past click says as much about the next one: the last few matter
more, and an odd click in between should count less. A learned query attends
over the embeddings of the user's last H clicked items (each plus a recency
embedding, position 0 = most recent), padding masked out. The attention
weights are returned: they are the "because you clicked ..." of an
explanation. The layer is named ``history_attention`` in the user tower, so a
feedback job can fine-tune it alone.

Example:

    pooling = HistoryAttentionPooling(history_length=20, dim=64, heads=2)
    user_vector, weights = pooling(history_vectors, history_mask)
    # [B, 64], [B, 20] (rows sum to 1 over real clicks, 0 on padding)
"""

from __future__ import annotations

import tensorflow as tf


class HistoryAttentionPooling(tf.keras.layers.Layer):
    """Learned-query multi-head attention over history items."""

    def __init__(self, history_length: int, dim: int, heads: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.history_length, self.dim, self.heads = history_length, dim, heads
        self.recency = tf.keras.layers.Embedding(history_length, dim, name="recency_embedding")
        self.attention = tf.keras.layers.MultiHeadAttention(heads, dim // heads,
                                                            name="pooling_attention")

    def build(self, input_shape):
        self.query = self.add_weight(name="query", shape=(1, 1, self.dim),
                                     initializer="glorot_uniform")
        super().build(input_shape)

    def call(self, history_vectors, history_mask, training=False):
        keys = history_vectors + tf.cast(
            self.recency(tf.range(tf.shape(history_vectors)[1])), history_vectors.dtype)[None]
        query = tf.tile(tf.cast(self.query, keys.dtype), [tf.shape(keys)[0], 1, 1])
        pooled, scores = self.attention(query, keys, attention_mask=history_mask[:, None, :],
                                        return_attention_scores=True, training=training)
        weights = tf.reduce_mean(scores[:, :, 0, :], axis=1)  # average over heads
        weights *= tf.cast(history_mask, weights.dtype)
        return pooled[:, 0], weights

    def get_config(self):
        return {**super().get_config(), "history_length": self.history_length,
                "dim": self.dim, "heads": self.heads}


class HistoryMeanPooling(tf.keras.layers.Layer):
    """The ablation: the plain mean of the history vectors over real clicks."""

    def call(self, history_vectors, history_mask, training=False):
        weights = tf.cast(history_mask, history_vectors.dtype)
        weights /= tf.maximum(tf.reduce_sum(weights, -1, keepdims=True), 1.0)
        return tf.reduce_sum(history_vectors * weights[..., None], 1), weights
