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
===================================  ==========================================

Items travel as indices: the model gathers their content (token ids, pixels,
masks) from its own item-feature table inside the step. The index arrays come
from :mod:`mmrec.features.examples` (plain NumPy).

Example:

    split = make_split(dataset)
    train = make_dataset(build_examples(dataset.interactions, split, "train", 20),
                         config, training=True)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mmrec.config import DataConfig


def make_dataset(examples: dict[str, np.ndarray], config: DataConfig,
                 training: bool) -> tf.data.Dataset:
    """Batches examples (seeded shuffle and full batches when ``training``).

    Training drops the last partial batch, so every batch has the same static
    shape and XLA compiles the step once.
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
    return dataset.prefetch(tf.data.AUTOTUNE)
