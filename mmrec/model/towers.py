"""The item tower and the user tower.

Item tower, content first: text tokens (Transformer) and image patches (CNN),
plus precomputed vectors where the catalogue has them, fused by cross-modal
attention and a modality gate; an optional item-id vector (zero-initialised,
dropped for a share of training items) adds memorisation for warm items while
content alone still places a cold item; the output is L2-normalised. With
``item_bias`` the last dimension is instead a learned per-item bias, and the
user tower's last dimension a constant 1: score = cosine + bias.

User tower: attention pooling over the embeddings of the user's last H clicked
items, optionally refined by a small network over history summaries, an
optional user-id vector, L2-normalised.

Example:

    spec = CatalogueSpec.from_features(features)
    items = ItemTower(ModelConfig(), spec)
    vectors, gate = items(items.gather_inputs(tables, item_indices))
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from mmrec.config import ModelConfig
from mmrec.model.cross_modal import ConcatFusion, CrossModalFusion, masked_mean
from mmrec.model.history_pooling import HistoryAttentionPooling, HistoryMeanPooling
from mmrec.model.image_encoder import FeatureTokens, ImageEncoder
from mmrec.model.text_encoder import TextEncoder

FEATURE_TOKENS = 4  # tokens a precomputed vector is projected into


@dataclasses.dataclass(frozen=True)
class CatalogueSpec:
    """What the item features hold, so the towers know which encoders to build.

    Attributes:
      num_items: catalogue size.
      vocab_size, max_tokens: the token id space and row length.
      image_shape: (H, W, C) of the pictures, or None without pictures.
      text_feature_dim, image_feature_dim: precomputed vector sizes, or None.
    """

    num_items: int
    vocab_size: int
    max_tokens: int
    image_shape: tuple[int, int, int] | None
    text_feature_dim: int | None
    image_feature_dim: int | None

    @classmethod
    def from_features(cls, features) -> "CatalogueSpec":
        return cls(
            num_items=len(features), vocab_size=len(features.vocabulary),
            max_tokens=int(features.token_ids.shape[1]),
            image_shape=None if features.images is None else tuple(features.images.shape[1:]),
            text_feature_dim=None if features.text_features is None
            else int(features.text_features.shape[1]),
            image_feature_dim=None if features.image_features is None
            else int(features.image_features.shape[1]))

    def uses_text(self, config: ModelConfig) -> bool:
        return config.modalities in ("both", "text")

    def uses_image(self, config: ModelConfig) -> bool:
        return config.modalities in ("both", "image") and (
            self.image_shape is not None or self.image_feature_dim is not None)


class ItemTower(tf.keras.layers.Layer):
    """Item content (and id) to an L2-normalised embedding and a modality gate.

    Inputs are a dict of per-item tensors as gathered from the item-feature
    table: ``item`` (indices), ``token_ids``, ``text_mask``, and where present
    ``images``, ``image_mask``, ``text_features``, ``image_features``; an
    optional ``valid`` [B] bool marks the real items of a batch that holds
    padding (only they feed batch-norm statistics in training).

    Returns the embedding [B, D] and the gate [B, 2]; with ``with_content``
    also the content-only embedding [B, D] (no id vector, L2-normalised): what
    the item would be if it were new.
    """

    def __init__(self, config: ModelConfig, spec: CatalogueSpec, **kwargs) -> None:
        super().__init__(**kwargs)
        self.config, self.spec = config, spec
        dim = config.token_dim
        self.use_text = spec.uses_text(config)
        self.use_image = spec.uses_image(config)
        self.text_encoder = self.text_feature_tokens = None
        self.image_encoder = self.image_feature_tokens = None
        if self.use_text:
            self.text_encoder = TextEncoder(spec.vocab_size, spec.max_tokens, dim,
                                            config.text_layers, config.attention_heads,
                                            config.dropout, name="text_encoder")
            if spec.text_feature_dim:
                self.text_feature_tokens = FeatureTokens(FEATURE_TOKENS, dim,
                                                         name="text_feature_tokens")
        if self.use_image:
            if spec.image_shape is not None:
                self.image_encoder = ImageEncoder(config.image_channels, config.image_grid, dim,
                                                  name="image_encoder")
            if spec.image_feature_dim:
                self.image_feature_tokens = FeatureTokens(FEATURE_TOKENS, dim,
                                                          name="image_feature_tokens")
        self.fusion = None
        if self.use_text and self.use_image:
            self.fusion = (CrossModalFusion(dim, config.attention_heads, config.dropout,
                                            name="cross_modal_fusion")
                           if config.fusion == "cross_attention"
                           else ConcatFusion(dim, name="concat_fusion"))
        # With item_bias, the last dimension is the bias: content (and id) fill the rest.
        width = config.embedding_dim - int(config.item_bias)
        self.content_projection = tf.keras.layers.Dense(width, name="content_projection")
        self.id_embedding = (tf.keras.layers.Embedding(
            spec.num_items, width, embeddings_initializer="zeros",
            name="item_id_embedding") if config.item_id_embedding else None)
        self.bias_table = self.bias_trained = None
        if config.item_bias:
            # Created here, not on the first call, so that training can mark the
            # trained items before the towers ever ran.
            self.bias_table = self.add_weight(name="item_bias/table", shape=(spec.num_items, 1),
                                              initializer="zeros", trainable=True)
            # 1 for items with training clicks (TwoTowerModel.mark_trained_items);
            # the others score at these items' mean bias.
            self.bias_trained = self.add_weight(name="item_bias/trained",
                                                shape=(spec.num_items,), initializer="zeros",
                                                trainable=False)

    def _text(self, inputs, training):
        states, token_mask = self.text_encoder(inputs["token_ids"], training=training)
        has_text = inputs["text_mask"]
        if self.text_feature_tokens is not None:
            extra = self.text_feature_tokens(inputs["text_features"], training=training)
            states = tf.concat([states, tf.cast(extra, states.dtype)], 1)
            token_mask = tf.concat([token_mask, tf.ones(tf.shape(extra)[:2], tf.bool)], 1)
            has_text = tf.ones_like(has_text)
        return states, token_mask, has_text

    def _image(self, inputs, training):
        parts, has_image = [], None
        if self.image_encoder is not None:
            parts.append(self.image_encoder(inputs["images"], training=training,
                                            valid=inputs.get("valid")))
            has_image = inputs["image_mask"]
        if self.image_feature_tokens is not None:
            parts.append(self.image_feature_tokens(inputs["image_features"], training=training))
            has_image = tf.ones(tf.shape(parts[-1])[:1], tf.bool)
        return tf.concat(parts, 1) if len(parts) > 1 else parts[0], has_image

    def call(self, inputs, training=False, with_content=False):
        batch = tf.shape(inputs["item"])[0]
        gate = None
        if self.use_text and self.use_image:
            text, token_mask, has_text = self._text(inputs, training)
            image, has_image = self._image(inputs, training)
            content, gate = self.fusion(text, token_mask, has_text, image, has_image,
                                        training=training)
        elif self.use_text:
            text, token_mask, has_text = self._text(inputs, training)
            content = masked_mean(text, token_mask) * tf.cast(has_text, text.dtype)[:, None]
            gate = tf.stack([tf.cast(has_text, tf.float32), tf.zeros([batch])], -1)
        elif self.use_image:
            image, has_image = self._image(inputs, training)
            content = tf.reduce_mean(image, 1) * tf.cast(has_image, image.dtype)[:, None]
            gate = tf.stack([tf.zeros([batch]), tf.cast(has_image, tf.float32)], -1)
        else:
            content = tf.zeros([batch, self.config.token_dim], self.compute_dtype)
            gate = tf.zeros([batch, 2])
        vector = self.content_projection(content)
        content = vector
        if self.id_embedding is not None:
            ids = self.id_embedding(inputs["item"])
            if "item_known" in inputs:  # items new to the model have no id vector
                ids *= tf.cast(inputs["item_known"], ids.dtype)[:, None]
            if training and self.config.item_id_dropout > 0:
                keep = tf.random.uniform([batch, 1]) >= self.config.item_id_dropout
                ids *= tf.cast(keep, ids.dtype)
            vector += tf.cast(ids, vector.dtype)
        vector = tf.math.l2_normalize(tf.cast(vector, tf.float32), -1)
        if with_content:
            content = tf.math.l2_normalize(tf.cast(content, tf.float32), -1)
        if self.bias_table is not None:
            vector = tf.concat([vector, self._bias(inputs["item"])], -1)
            if with_content:  # what the item would be if it were new: the mean bias
                content = tf.concat([content, self._bias(None, batch)], -1)
        outputs = (vector, tf.cast(gate, tf.float32))
        if with_content:
            outputs += (content,)
        return outputs

    def _bias(self, items, batch=None):
        """[B, 1] biases of ``items``: an item without training clicks gets the
        trained items' mean (with ``items`` None, ``batch`` rows of that mean)."""
        table = tf.cast(self.bias_table[:, 0], tf.float32)
        trained = self.bias_trained
        mean = tf.reduce_sum(table * trained) / tf.maximum(tf.reduce_sum(trained), 1.0)
        if items is None:
            return tf.fill([batch, 1], mean)
        known = tf.gather(trained, items)
        return (known * tf.gather(table, items) + (1.0 - known) * mean)[:, None]


class UserTower(tf.keras.layers.Layer):
    """History item vectors [B, H, D] (+ user index) to an L2-normalised vector.

    Returns the user vector and the history attention weights [B, H].
    """

    def __init__(self, config: ModelConfig, history_length: int, num_users: int,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.config = config
        dim = config.embedding_dim
        self.pooling = (HistoryAttentionPooling(history_length, dim, config.attention_heads,
                                                name="history_attention")
                        if config.history_pooling == "attention"
                        else HistoryMeanPooling(name="history_mean"))
        # Zero-initialised: the user vector starts as the pooled history itself.
        self.projection = tf.keras.layers.Dense(dim, kernel_initializer="zeros",
                                                name="user_projection")
        # Off with (): no layers, so older checkpoints read unchanged.
        self.summary = [tf.keras.layers.Dense(units, activation="relu",
                                              name=f"history_summary_{layer}")
                        for layer, units in enumerate(config.history_summary_units)]
        if self.summary:
            self.summary.append(tf.keras.layers.Dense(dim, kernel_initializer="zeros",
                                                      name="history_summary_output"))
        self.id_embedding = (tf.keras.layers.Embedding(
            num_users + 1, dim, embeddings_initializer="zeros", name="user_id_embedding")
            if config.user_id_embedding else None)

    def build(self, input_shape):
        # Small random start: a zero vector would give history-less users no
        # direction (and an L2 norm of 0) until training moved it.
        self.no_history = self.add_weight(
            name="no_history", shape=(self.config.embedding_dim,),
            initializer=tf.keras.initializers.RandomNormal(stddev=0.05))
        super().build(input_shape)

    def call(self, history_vectors, history_mask, users=None, training=False):
        pooled, weights = self.pooling(history_vectors, history_mask, training=training)
        has_history = tf.cast(tf.reduce_any(history_mask, -1), pooled.dtype)[:, None]
        pooled = pooled * has_history + (1.0 - has_history) * self.no_history
        vector = pooled + self.projection(pooled)
        if self.summary:
            real = tf.cast(history_mask, pooled.dtype)[..., None]
            mean = (tf.reduce_sum(history_vectors * real, 1)
                    / tf.maximum(tf.reduce_sum(real, 1), 1.0))
            latest = history_vectors[:, 0] * real[:, 0]  # position 0 = most recent
            summary = tf.concat([pooled, mean, latest], -1)
            for layer in self.summary:
                summary = layer(summary)
            vector += summary
        if self.id_embedding is not None and users is not None:
            # Index num_users is the shared "unknown user" row.
            known = tf.minimum(users, self.id_embedding.input_dim - 1)
            vector += self.id_embedding(known)
        vector = tf.cast(vector, tf.float32)
        if self.config.item_bias:  # the last dimension reads the item's bias
            vector = tf.concat([tf.math.l2_normalize(vector[:, :-1], -1),
                                tf.ones_like(vector[:, -1:])], -1)
            return vector, weights
        return tf.math.l2_normalize(vector, -1), weights
