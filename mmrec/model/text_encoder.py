"""Text encoder: token ids to contextual token states.

Token and position embeddings followed by a small Transformer encoder. The
output keeps one state per token, so the cross-modal attention can let
individual words look at image patches. Padding (id 0) is masked throughout.

Example:

    encoder = TextEncoder(vocab_size=4000, max_tokens=32, dim=64, layers=1, heads=2)
    states, mask = encoder(token_ids)     # [B, 32, 64], bool [B, 32]
"""

from __future__ import annotations

import tensorflow as tf


class TransformerBlock(tf.keras.layers.Layer):
    """Pre-norm self-attention and feed-forward block with a padding mask."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dim, self.heads, self.dropout_rate = dim, heads, dropout
        self.attention = tf.keras.layers.MultiHeadAttention(heads, dim // heads, dropout=dropout,
                                                            name="self_attention")
        self.norm1 = tf.keras.layers.LayerNormalization(name="norm1")
        self.norm2 = tf.keras.layers.LayerNormalization(name="norm2")
        self.feed_forward = tf.keras.Sequential([
            tf.keras.layers.Dense(2 * dim, activation="gelu", name="expand"),
            tf.keras.layers.Dropout(dropout, name="dropout"),
            tf.keras.layers.Dense(dim, name="contract")], name="feed_forward")

    def call(self, states, mask, training=False):
        pair_mask = tf.logical_and(mask[:, :, None], mask[:, None, :])
        normed = self.norm1(states)
        states = states + self.attention(normed, normed, attention_mask=pair_mask,
                                         training=training)
        return states + self.feed_forward(self.norm2(states), training=training)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "heads": self.heads,
                "dropout": self.dropout_rate}


class TextEncoder(tf.keras.layers.Layer):
    """Token ids [B, L] to states [B, L, dim] and the token mask [B, L]."""

    def __init__(self, vocab_size: int, max_tokens: int, dim: int, layers: int, heads: int,
                 dropout: float = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.config = dict(vocab_size=vocab_size, max_tokens=max_tokens, dim=dim,
                           layers=layers, heads=heads, dropout=dropout)
        self.tokens = tf.keras.layers.Embedding(vocab_size, dim, name="token_embedding")
        self.positions = tf.keras.layers.Embedding(max_tokens, dim, name="position_embedding")
        self.blocks = [TransformerBlock(dim, heads, dropout, name=f"block_{i}")
                       for i in range(layers)]
        self.norm = tf.keras.layers.LayerNormalization(name="norm")

    def call(self, token_ids, training=False):
        mask = token_ids > 0
        positions = tf.range(tf.shape(token_ids)[1])
        states = self.tokens(token_ids) + self.positions(positions)[None]
        for block in self.blocks:
            states = block(states, mask, training=training)
        return self.norm(states), mask

    def get_config(self):
        return {**super().get_config(), **self.config}
