"""Candidate-aware attention: which of a user's past clicks speak for this item?

Retrieval pools a user's history into one vector before it sees any
candidate, so a user who clicked coats and lamps gets one blend of both, and
a lamp is scored against the coats too. A ranking stage sees a short list of
candidates and can afford one history read per candidate: each candidate
attends over the history (the Deep Interest Network's idea, KDD 2018), so a
lamp reads the lamps and a coat the coats. The weights are the per-item
explanation, "recommended because you clicked X", specific to each item.

Queries come from the candidate, keys from each history item plus a recency
embedding (position 0 = most recent); each head averages its slice of the
unprojected history vectors, so the per-candidate user vector stays in the
item space, as in :class:`mmrec.model.history_pooling.HistoryAttentionPooling`.
The layer is named ``candidate_attention`` in the ranker, so a feedback job can
fine-tune it with the other attention layers.

Example:

    attention = CandidateHistoryAttention(history_length=20, dim=64, heads=2)
    per_candidate, weights = attention(history_vectors, history_mask, candidates)
    # history [B, 20, 64], mask [B, 20], candidates [B, N, 64]
    # -> per_candidate [B, N, 64]; weights [B, N, 20] (rows sum to 1 over real clicks)

What it does not do: it has no notion of time beyond positions, and a user
with no history gets a zero vector and zero weights (the ranker then scores
from the candidate's own features).
"""

from __future__ import annotations

import tensorflow as tf


class CandidateHistoryAttention(tf.keras.layers.Layer):
    """Multi-head attention from each candidate over the user's history.

    Args:
      history_length: H, history slots (the size of the recency table).
      dim: D, width of item vectors (history and candidates alike).
      heads: attention heads; ``dim`` must be divisible by it.
    """

    def __init__(self, history_length: int, dim: int, heads: int, **kwargs) -> None:
        super().__init__(**kwargs)
        if history_length < 1 or dim < 1 or heads < 1:
            raise ValueError(f"CandidateHistoryAttention: history_length, dim and heads must "
                             f"be >= 1, got {history_length}, {dim}, {heads}")
        if dim % heads:
            raise ValueError(f"CandidateHistoryAttention: dim {dim} must be divisible by "
                             f"heads {heads}")
        self.history_length, self.dim, self.heads = history_length, dim, heads
        self.recency = tf.keras.layers.Embedding(history_length, dim, name="recency_embedding")
        self.keys = tf.keras.layers.Dense(dim, name="key_projection")
        self.queries = tf.keras.layers.Dense(dim, name="query_projection")

    def call(self, history_vectors, history_mask, candidates, training=False):
        """history_vectors [B, H, D], history_mask [B, H] bool, candidates [B, N, D]
        -> (per-candidate user vectors [B, N, D], weights [B, N, H])."""
        history_mask = tf.convert_to_tensor(history_mask, tf.bool)
        candidates = tf.convert_to_tensor(candidates, history_vectors.dtype)
        self._check_shapes(history_vectors.shape, history_mask.shape, candidates.shape)
        batch, length = tf.shape(history_vectors)[0], tf.shape(history_vectors)[1]
        count = tf.shape(candidates)[1]
        head_dim = self.dim // self.heads
        recency = tf.cast(self.recency(tf.range(length)), history_vectors.dtype)[None]
        keys = tf.reshape(self.keys(history_vectors + recency),
                          [batch, length, self.heads, head_dim])
        queries = tf.reshape(self.queries(candidates), [batch, count, self.heads, head_dim])
        logits = tf.einsum("bnhd,bthd->bnht", queries, keys)
        # float32 under a mixed policy too: -1e9 is -inf in float16 (see history_pooling).
        logits = tf.cast(logits, tf.float32) / tf.sqrt(float(head_dim))
        mask = history_mask[:, None, None, :]
        logits = tf.where(mask, logits, -1e9)
        weights = tf.nn.softmax(logits, -1) * tf.cast(mask, tf.float32)  # [B, N, heads, H]
        values = tf.reshape(history_vectors, [batch, length, self.heads, head_dim])
        pooled = tf.einsum("bnht,bthd->bnhd", tf.cast(weights, values.dtype), values)
        return tf.reshape(pooled, [batch, count, self.dim]), tf.reduce_mean(weights, 2)

    def _check_shapes(self, history, mask, candidates) -> None:
        """Static shapes, checked when the call is traced: a wrong width fails
        here with the shapes named, not inside a reshape."""
        if history.rank != 3 or history[-1] != self.dim:
            raise ValueError(f"history_vectors must be [B, H, {self.dim}], got {tuple(history)}")
        if history[1] is not None and history[1] > self.history_length:
            raise ValueError(f"history_vectors has {history[1]} slots, more than the "
                             f"history_length {self.history_length} the layer was built for")
        if mask.rank != 2 or (None not in (mask[1], history[1]) and mask[1] != history[1]):
            raise ValueError(f"history_mask must be [B, {history[1]}], got {tuple(mask)}")
        if candidates.rank != 3 or candidates[-1] != self.dim:
            raise ValueError(f"candidates must be [B, N, {self.dim}], got {tuple(candidates)}")

    def get_config(self):
        return {**super().get_config(), "history_length": self.history_length,
                "dim": self.dim, "heads": self.heads}
