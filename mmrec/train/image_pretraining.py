"""Pretraining the image encoder on pictures before it learns from clicks.

Clicks teach a CNN slowly: the only signal reaching its filters is which
items a user picked among a batch, and at the start every picture looks
alike to it. Pictures alone can teach it to see first. The source is what
the data set offers as pictures *outside* its catalogue
(``Dataset.outside_pictures``); for the shop, the Fashion-MNIST photos it did
not pick (compared pixel by pixel; 65,000 of them for the default shop), with
their class labels. The encoder learns to
classify them (from the mean of its patch tokens) and to reconstruct their
pixels (from all patch tokens, so the tokens keep brightness and texture,
which classes ignore). Both heads are thrown away afterwards; the encoder's
weights, batch-norm statistics included, are what training starts from.

Measured on the shop (test NDCG@10 of the full model, docs/BENCHMARKS.md):
the 5-epoch benchmark went from 0.0430 to 0.0492 on seed 1 and from 0.0442
to 0.0448 on seed 2, and the full model's lead over the concatenation
ablation from 1.07x-1.27x to 1.18x-1.24x per seed. In 3-epoch probes,
reconstructing the catalogue's own 5,000 pictures instead (no labels) gave
0.0333 against 0.0359 without pretraining, so that variant is not offered.

Example:

    images, labels = dataset.outside_pictures()
    report = pretrain_image_encoder(model.item_tower.image_encoder, images, labels,
                                    epochs=3, seed=42)
    report["reconstruction_loss"][-1]
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import tensorflow as tf

from mmrec.config import TrainConfig
from mmrec.model.image_encoder import ImageEncoder

logger = logging.getLogger("mmrec.train")
NO_OUTSIDE_PICTURES = (
    "train.image_pretraining = \"outside-catalogue\" needs pictures outside the catalogue, "
    "and this data set offers none (the shop does: the Fashion-MNIST photos it did not "
    "pick); set train.image_pretraining = \"none\"")


def pretrain_image_encoder(encoder: ImageEncoder, images: np.ndarray,
                           labels: np.ndarray | None = None, *, epochs: int = 3,
                           batch_size: int = 256, learning_rate: float = 0.003,
                           seed: int = 42, jit_compile: bool = False,
                           verbose: int | str = "auto") -> dict[str, list[float]]:
    """Trains ``encoder`` in place to reconstruct ``images`` (and predict ``labels``).

    Args:
      encoder: the item tower's image encoder (built or not).
      images: uint8 [M, H, W, C] pictures of the encoder's input shape.
      labels: int class labels [M], or None for reconstruction alone.
      epochs, batch_size, learning_rate: the pretraining run (Adam).
      seed: seeds the shuffling.
      jit_compile: compile the step with XLA.
      verbose: Keras' fit verbosity (a progress bar by default).

    Returns:
      Per-epoch "reconstruction_loss", and with labels "class_loss" and
      "class_accuracy".
    """
    if len(images) == 0:
        raise ValueError("image pretraining got no pictures")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"image pretraining: {len(labels)} labels for {len(images)} pictures")
    pixels = tf.keras.Input(images.shape[1:], dtype=tf.uint8, name="pixels")
    patches = encoder(pixels)
    outputs = {"reconstruction": tf.keras.layers.Dense(
        int(np.prod(images.shape[1:])), dtype="float32", name="reconstruction")(
            tf.keras.layers.Flatten()(patches))}
    losses = {"reconstruction": "mse"}
    metrics = {}
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64)
        outputs["class"] = tf.keras.layers.Dense(int(labels.max()) + 1, dtype="float32",
                                                 name="class")(
            tf.keras.layers.GlobalAveragePooling1D()(patches))
        losses["class"] = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metrics["class"] = ["accuracy"]
    pretraining = tf.keras.Model(pixels, outputs, name="image_pretraining")
    pretraining.compile(optimizer=tf.keras.optimizers.Adam(learning_rate), loss=losses,
                        metrics=metrics, jit_compile=jit_compile)

    def with_targets(batch_pixels, *batch_labels):
        # Built per batch: a float copy of every picture would be 4x the uint8 set.
        flat = tf.reshape(batch_pixels, [tf.shape(batch_pixels)[0], -1])
        targets = {"reconstruction": tf.cast(flat, tf.float32) / 255.0}
        if batch_labels:
            targets["class"] = batch_labels[0]
        return batch_pixels, targets

    order = np.random.default_rng(seed).permutation(len(images))
    columns = (images[order],) if labels is None else (images[order], labels[order])
    batches = tf.data.Dataset.from_tensor_slices(columns)
    batches = batches.shuffle(min(len(images), 10_000), seed=seed).batch(batch_size)
    batches = batches.map(with_targets)
    history = pretraining.fit(batches, epochs=epochs, verbose=verbose).history
    single = len(outputs) == 1  # Keras names a lone output's loss "loss"
    report = {"reconstruction_loss": [float(v) for v in history[
        "loss" if single else "reconstruction_loss"]]}
    if labels is not None:
        report["class_loss"] = [float(v) for v in history["class_loss"]]
        report["class_accuracy"] = [float(v) for v in history["class_accuracy"]]
    return report


def pretrain_model_images(model, features, config: TrainConfig,
                          outside_pictures: Callable[[], tuple] | None, *,
                          jit_compile: bool = False, verbose: int | str = "auto") -> dict:
    """Pretrains a two-tower model's image encoder per ``config.image_pretraining``.

    Args:
      model: the two-tower model (its image encoder is trained in place).
      features: its item features (the pictures' shape is checked against them).
      config: ``image_pretraining`` and ``image_pretraining_epochs``.
      outside_pictures: the data set's ``outside_pictures`` (pictures not in
        the catalogue, with labels or None).

    Returns what a run folder records: the source, the number of pictures and
    the per-epoch losses, or ``{"skipped": why}`` when the model reads no
    pictures (text-only ablation, a catalogue without them).

    Raises:
      ValueError: the data set offers no pictures outside its catalogue, or
        they are not the shape of the catalogue's.
    """
    source = config.image_pretraining
    encoder = getattr(model.item_tower, "image_encoder", None)
    if encoder is None:
        why = ("the model has no image encoder (no pictures in the catalogue, or "
               "model.modalities leaves them out)")
        logger.info("image pretraining %r skipped: %s", source, why)
        return {"source": source, "skipped": why}
    if outside_pictures is None:
        raise ValueError(NO_OUTSIDE_PICTURES)
    images, labels = outside_pictures()
    if features.images is not None and tuple(images.shape[1:]) != tuple(features.images.shape[1:]):
        raise ValueError(f"image pretraining: the pictures outside the catalogue are "
                         f"{tuple(images.shape[1:])}, the catalogue's "
                         f"{tuple(features.images.shape[1:])}; set train.image_pretraining = "
                         "\"none\"")
    model.refresh_item_table()  # builds the towers, so the encoder's variables keep their names
    logger.info("image pretraining (%s): %d pictures, %d epochs", source, len(images),
                config.image_pretraining_epochs)
    report = pretrain_image_encoder(encoder, images, labels,
                                    epochs=config.image_pretraining_epochs, seed=config.seed,
                                    jit_compile=jit_compile, verbose=verbose)
    return {"source": source, "pictures": int(len(images)), **report}
