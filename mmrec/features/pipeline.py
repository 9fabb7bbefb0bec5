"""tf.data input pipelines that feed an XLA-compiled model numbers only.

Every string was turned into an integer before this point (ids when the data
was loaded, text when item features were prepared), so each batch holds only
integer, boolean and float tensors and a ``jit_compile=True`` step can consume
it. One training example is one click:

===================================  ==========================================
key                                  value
===================================  ==========================================
``user``                             int32 user index
``item``                             int32 index of the clicked (positive) item
``history``                          int32 [H] the user's previous clicks, most
                                     recent first, 0-padded
``history_mask``                     bool [H], True on real history entries
``candidate_sampling_probability``   float32, the positive's share of training
                                     clicks (for the logQ correction of
                                     in-batch negatives)
``item_tokens``                      int32 [L] token ids of the positive's text
``item_text_mask``                   bool, the positive has text
``item_image``                       uint8 [S, S, C] pixels (if any item has one)
``item_image_mask``                  bool, the positive has a picture
``item_text_features`` /             float32 [D] precomputed vectors (if the
``item_image_features``              catalogue has them)
===================================  ==========================================

History items are given as indices: the model looks their content up in the
item-feature table. The index arrays themselves come from
:mod:`mmrec.features.examples` (plain NumPy).

Example:

    split = make_split(dataset)
    features = prepare_item_features(dataset.catalogue, config)
    train = make_dataset(build_examples(dataset.interactions, split, "train", 20),
                         features, config, training=True)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mmrec.config import DataConfig
from mmrec.features.examples import build_examples  # noqa: F401  (re-exported)
from mmrec.features.item_features import ItemFeatures

ITEM_FEATURE_KEYS = {
    "token_ids": "item_tokens", "text_mask": "item_text_mask", "images": "item_image",
    "image_mask": "item_image_mask", "text_features": "item_text_features",
    "image_features": "item_image_features"}


class ItemFeatureTable:
    """Item-feature arrays held as TensorFlow variables, gathered by index.

    Variables rather than constants, so a large catalogue is not copied into
    every graph that uses it (a graph is limited to 2 GB).
    """

    def __init__(self, features: ItemFeatures) -> None:
        self.tables = {ITEM_FEATURE_KEYS[name]: tf.Variable(array, trainable=False,
                                                            name=ITEM_FEATURE_KEYS[name])
                       for name, array in features.arrays().items()}

    def gather(self, items: tf.Tensor) -> dict[str, tf.Tensor]:
        return {key: tf.gather(table, items) for key, table in self.tables.items()}


def make_dataset(examples: dict[str, np.ndarray], features: ItemFeatures | None,
                 config: DataConfig, training: bool) -> tf.data.Dataset:
    """Batches examples and attaches the positive item's features.

    Training shuffles (seeded) and drops the last partial batch, so every
    batch has the same static shape and XLA compiles the step once.
    """
    count = len(examples["item"])
    if count == 0:
        raise ValueError("no examples to batch: the split part is empty")
    dataset = tf.data.Dataset.from_tensor_slices(examples).cache()
    if training and config.shuffle_buffer:
        dataset = dataset.shuffle(min(config.shuffle_buffer, count), seed=config.seed,
                                  reshuffle_each_iteration=True)
    dataset = dataset.batch(config.batch_size, drop_remainder=training and
                            count >= config.batch_size)
    if features is not None:
        table = ItemFeatureTable(features)
        dataset = dataset.map(lambda batch: {**batch, **table.gather(batch["item"])},
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
