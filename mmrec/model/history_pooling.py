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
    """Learned-query multi-head attention over history items.

    Keys are projections of (item vector + recency embedding); each head's
    weights average its slice of the *unprojected* item vectors, so the user
    vector stays in the item space. The query starts at zero: at
    initialisation every real click weighs the same (mean pooling), and
    training learns which clicks to trust. (A standard multi-head attention
    layer with value and output projections trained markedly slower here:
    validation NDCG@10 0.007 vs 0.027 after the same 200 steps on shop.)
    """

    def __init__(self, history_length: int, dim: int, heads: int, **kwargs) -> None:
        super().__init__(**kwargs)
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.history_length, self.dim, self.heads = history_length, dim, heads
        self.recency = tf.keras.layers.Embedding(history_length, dim, name="recency_embedding")
        self.keys = tf.keras.layers.Dense(dim, name="key_projection")

    def build(self, input_shape):
        self.query = self.add_weight(name="query", shape=(self.heads, self.dim // self.heads),
                                     initializer="zeros")
        super().build(input_shape)

    def call(self, history_vectors, history_mask, training=False):
        batch, length = tf.shape(history_vectors)[0], tf.shape(history_vectors)[1]
        head_dim = self.dim // self.heads
        recency = tf.cast(self.recency(tf.range(length)), history_vectors.dtype)[None]
        keys = tf.reshape(self.keys(history_vectors + recency),
                          [batch, length, self.heads, head_dim])
        logits = tf.einsum("bthd,hd->bht", keys, tf.cast(self.query, keys.dtype))
        # The softmax runs in float32 under a mixed policy too: -1e9 would be
        # -inf in float16, and a user without history (every slot masked)
        # would get 0/0 = NaN weights.
        logits = tf.cast(logits, tf.float32) / tf.sqrt(float(head_dim))
        mask = history_mask[:, None, :]
        logits = tf.where(mask, logits, -1e9)
        weights = tf.nn.softmax(logits, -1) * tf.cast(mask, tf.float32)  # [B, heads, T]
        values = tf.reshape(history_vectors, [batch, length, self.heads, head_dim])
        pooled = tf.einsum("bht,bthd->bhd", tf.cast(weights, values.dtype), values)
        return tf.reshape(pooled, [batch, self.dim]), tf.reduce_mean(weights, 1)

    def get_config(self):
        return {**super().get_config(), "history_length": self.history_length,
                "dim": self.dim, "heads": self.heads}


class HistoryMeanPooling(tf.keras.layers.Layer):
    """The ablation: the plain mean of the history vectors over real clicks."""

    def call(self, history_vectors, history_mask, training=False):
        weights = tf.cast(history_mask, history_vectors.dtype)
        weights /= tf.maximum(tf.reduce_sum(weights, -1, keepdims=True), 1.0)
        return tf.reduce_sum(history_vectors * weights[..., None], 1), weights
