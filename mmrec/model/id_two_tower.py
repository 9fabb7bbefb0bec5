"""The TensorFlow Recommenders tutorial two-tower: ids only.

The baseline most TensorFlow users start from (the TFRS "basic retrieval"
tutorial): a user-id embedding and an item-id embedding of 32 dimensions,
scored by dot product, trained with in-batch softmax by Adagrad at learning
rate 0.1 for 3 epochs in batches of 8,192. It knows nothing of content or of
the order of clicks, and cannot place an item it never saw in training. mmrec
trains it in the same harness, on the same split, to show what content and
history add.

Example:

    model = IdTwoTower(num_users=943, num_items=1682)
    model.compile(optimizer=tf.keras.optimizers.Adagrad(0.1))
    model.fit(batches, epochs=3)
    scores = model.user_embedding(users) @ model.item_embedding.embeddings.T
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs

from mmrec.model.retrieval_task import Float32Retrieval


class IdTwoTower(tfrs.Model):
    """User-id and item-id embeddings with TFRS's retrieval loss."""

    def __init__(self, num_users: int, num_items: int, dim: int = 32, **kwargs) -> None:
        super().__init__(**kwargs)
        self.user_embedding = tf.keras.layers.Embedding(num_users + 1, dim, name="user_id")
        self.item_embedding = tf.keras.layers.Embedding(num_items, dim, name="item_id")
        self.task = Float32Retrieval()

    def compute_loss(self, batch, training=False) -> tf.Tensor:
        return self.task(self.user_embedding(batch["user"]), self.item_embedding(batch["item"]),
                         compute_metrics=False)

    def item_vectors(self) -> tf.Tensor:
        return self.item_embedding.embeddings

    def user_vectors(self, users) -> tf.Tensor:
        return self.user_embedding(users)
