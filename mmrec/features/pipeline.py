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
item-feature table, so each distinct item is encoded once per step.

A training example's history holds only earlier *training* clicks; a
validation or test example's history holds every earlier click of the user.
Order is by timestamp, ties in file order.

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
from mmrec.data.interactions import Interactions
from mmrec.data.splits import Split
from mmrec.features.item_features import ItemFeatures

ITEM_FEATURE_KEYS = {
    "token_ids": "item_tokens", "text_mask": "item_text_mask", "images": "item_image",
    "image_mask": "item_image_mask", "text_features": "item_text_features",
    "image_features": "item_image_features"}


def histories(interactions: Interactions, targets: np.ndarray, context: np.ndarray,
              history_length: int) -> tuple[np.ndarray, np.ndarray]:
    """For each target row, the last ``history_length`` context rows' items.

    Only context rows of the same user that come strictly before the target
    in chronological order count. Returns (items int32 [T, H], mask bool [T, H]),
    most recent first.
    """
    order = interactions.chronological_order()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    user_first_rank = np.searchsorted(interactions.user[order], np.arange(interactions.num_users))
    context_ranks = np.sort(rank[context])
    context_items = interactions.item[order[context_ranks]]
    count_before = np.searchsorted(context_ranks, rank[targets], side="left")
    user_start = np.searchsorted(context_ranks, user_first_rank[interactions.user[targets]],
                                 side="left")
    positions = count_before[:, None] - 1 - np.arange(history_length)[None, :]
    mask = positions >= user_start[:, None]
    items = np.where(mask, context_items[np.clip(positions, 0, None)] if len(context_items)
                     else 0, 0)
    return items.astype(np.int32), mask


def sampling_probabilities(interactions: Interactions, split: Split, num_items: int) -> np.ndarray:
    """Each item's share of training clicks, float32 [N] (0 for unseen items)."""
    counts = np.bincount(interactions.item[split.train], minlength=num_items)
    return (counts / max(counts.sum(), 1)).astype(np.float32)


def build_examples(interactions: Interactions, split: Split, part: str, history_length: int,
                   num_items: int | None = None) -> dict[str, np.ndarray]:
    """The index arrays of one split part's examples."""
    if history_length < 1:
        raise ValueError(f"history_length must be at least 1, got {history_length}")
    targets = split.part(part)
    context = split.train if part == "train" else np.arange(len(interactions))
    history, mask = histories(interactions, targets, context, history_length)
    num_items = num_items or int(interactions.item.max()) + 1
    probability = sampling_probabilities(interactions, split, num_items)
    return {
        "user": interactions.user[targets].astype(np.int32),
        "item": interactions.item[targets].astype(np.int32),
        "history": history,
        "history_mask": mask,
        "candidate_sampling_probability": probability[interactions.item[targets]],
    }


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
