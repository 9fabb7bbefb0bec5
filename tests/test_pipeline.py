"""tf.data pipelines: histories without leakage, and numbers-only batches for XLA."""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from mmrec.config import DataConfig
from mmrec.data import Catalogue, Dataset, Interactions, load_dataset
from mmrec.data.splits import make_split
from mmrec.features.examples import build_examples
from mmrec.features.item_features import prepare_item_features
from mmrec.features.pipeline import make_dataset


def tiny() -> Dataset:
    # user a clicks 0,1,2,3,4 at t=1..5 (row order shuffled); user b clicks 5 then 0.
    log = Interactions.build(users=["a", "a", "b", "a", "a", "b", "a"],
                             items=[2, 0, 5, 4, 1, 0, 3],
                             timestamps=[3, 1, 1, 5, 2, 2, 4])
    return Dataset("tiny", Catalogue.build([str(i) for i in range(6)], ["x"] * 6), log)


def test_histories_are_most_recent_first_and_padded():
    dataset = tiny()
    split = make_split(dataset)  # a: train 0,1,2 valid 3 test 4; b: train 5, test 0
    train = build_examples(dataset.interactions, split, "train", history_length=2)
    assert train["item"].tolist() == [0, 1, 2, 5]
    assert train["history"].tolist() == [[0, 0], [0, 0], [1, 0], [0, 0]]
    assert train["history_mask"].tolist() == [[False, False], [True, False], [True, True],
                                              [False, False]]
    test = build_examples(dataset.interactions, split, "test", history_length=3)
    assert test["item"].tolist() == [4, 0]
    # the test history includes the validation click (3), the newest first
    assert test["history"].tolist() == [[3, 2, 1], [5, 0, 0]]
    assert test["history_mask"].tolist() == [[True, True, True], [True, False, False]]
    # logQ: each item's share of the 4 training clicks
    assert np.allclose(train["candidate_sampling_probability"], [0.25] * 4)


def test_training_history_never_sees_cold_or_held_out_clicks():
    dataset = load_dataset("movielens-100k")
    from mmrec.data.splits import SplitConfig
    split = make_split(dataset, SplitConfig(cold_item_share=0.2, seed=1))
    train = build_examples(dataset.interactions, split, "train", history_length=20)
    history_items = train["history"][train["history_mask"]]
    assert not split.cold_items[history_items].any()
    assert not split.cold_items[train["item"]].any()
    held_out = set(split.valid.tolist()) | set(split.test.tolist())
    # every history entry of a training click is an earlier training click of the same user
    log = dataset.interactions
    order = log.chronological_order()
    train_set = set(split.train.tolist())
    sequences = {}
    for row in order:
        if row in train_set:
            sequences.setdefault(int(log.user[row]), []).append(int(log.item[row]))
    for k in range(0, len(split.train), 997):
        user = int(train["user"][k])
        sequence = sequences[user]
        position = sequence.index(int(train["item"][k]))
        expected = sequence[max(0, position - 20):position][::-1]
        got = train["history"][k][train["history_mask"][k]].tolist()
        assert got == expected
    assert held_out.isdisjoint(train_set)


def test_batches_hold_only_numbers_with_static_shapes(shop_folder):
    dataset = load_dataset(shop_folder(), image_size=8)
    config = DataConfig(batch_size=2, history_length=3, max_text_tokens=5, vocab_size=50)
    features = prepare_item_features(dataset.catalogue, config)
    split = make_split(dataset)
    batches = make_dataset(build_examples(dataset.interactions, split, "train", 3), features,
                           config, training=True)
    spec = batches.element_spec
    assert all(s.dtype != tf.string for s in spec.values())
    assert spec["history"].shape.as_list() == [2, 3]
    assert spec["item_image"].shape.as_list() == [2, 8, 8, 3]
    assert spec["item_tokens"].shape.as_list() == [2, 5]
    batch = next(iter(batches))
    np.testing.assert_array_equal(batch["item_tokens"].numpy(),
                                  features.token_ids[batch["item"].numpy()])


class TinyTwoTower(tfrs.Model):
    """Just enough model to push pipeline batches through a compiled step."""

    def __init__(self, features, num_users: int) -> None:
        super().__init__()
        self.features = {k: tf.constant(v) for k, v in features.arrays().items()}
        self.tokens = tf.keras.layers.Embedding(len(features.vocabulary), 8)
        self.user_embedding = tf.keras.layers.Embedding(num_users, 8)
        self.conv = tf.keras.layers.Conv2D(8, 3) if features.images is not None else None
        self.task = tfrs.tasks.Retrieval(remove_accidental_hits=True)

    def item_vectors(self, tokens, text_mask, image=None, image_mask=None):
        token_mask = tf.cast(tokens > 0, tf.float32)[..., None]
        text = tf.reduce_sum(self.tokens(tokens) * token_mask, 1) / tf.maximum(
            tf.reduce_sum(token_mask, 1), 1.0)
        vector = text * tf.cast(text_mask, tf.float32)[:, None]
        if self.conv is not None:
            pixels = tf.cast(image, tf.float32) / 255.0
            vector += tf.reduce_mean(self.conv(pixels), [1, 2]) * tf.cast(
                image_mask, tf.float32)[:, None]
        return vector

    def compute_loss(self, batch, training=False):
        history = tf.gather(self.features["token_ids"], batch["history"])
        mask = tf.cast(batch["history_mask"], tf.float32)
        shape = tf.shape(batch["history"])
        history_vectors = self.item_vectors(
            tf.reshape(history, [-1, history.shape[-1]]),
            tf.reshape(tf.gather(self.features["text_mask"], batch["history"]), [-1]),
            *([tf.reshape(tf.gather(self.features["images"], batch["history"]),
                          [-1] + list(self.features["images"].shape[1:])),
               tf.reshape(tf.gather(self.features["image_mask"], batch["history"]), [-1])]
              if self.conv is not None else []))
        history_vectors = tf.reshape(history_vectors, [shape[0], shape[1], -1])
        users = self.user_embedding(batch["user"]) + tf.reduce_sum(
            history_vectors * mask[..., None], 1)
        items = self.item_vectors(batch["item_tokens"], batch["item_text_mask"],
                                  batch.get("item_image"), batch.get("item_image_mask"))
        return self.task(users, items, candidate_ids=batch["item"],
                         candidate_sampling_probability=batch["candidate_sampling_probability"])


def fit_compiled(dataset, config: DataConfig) -> tuple[tfrs.Model, dict]:
    features = prepare_item_features(dataset.catalogue, config)
    split = make_split(dataset)
    batches = make_dataset(build_examples(dataset.interactions, split, "train",
                                          config.history_length), features, config,
                           training=True)
    model = TinyTwoTower(features, dataset.interactions.num_users)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), jit_compile=True)
    history = model.fit(batches.take(3), epochs=2, verbose=0)
    return model, history.history


def test_pipeline_feeds_a_jit_compiled_step_text_only():
    config = DataConfig(batch_size=64, history_length=5, max_text_tokens=12, vocab_size=500)
    model, history = fit_compiled(load_dataset("movielens-100k"), config)
    assert model._jit_compile is True
    losses = history["loss"]
    assert len(losses) == 2 and all(np.isfinite(losses))


def test_pipeline_feeds_a_jit_compiled_step_with_images(shop_folder):
    config = DataConfig(batch_size=2, history_length=2, max_text_tokens=5, vocab_size=50,
                        image_size=8)
    dataset = load_dataset(shop_folder(), image_size=config.image_size)
    model, history = fit_compiled(dataset, dataclasses.replace(config))
    assert all(np.isfinite(history["loss"]))
