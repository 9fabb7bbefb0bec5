"""Image encoder: pixels (or a precomputed vector) to patch tokens.

A small CNN whose stages each halve the picture; its last feature map is
average-pooled to a fixed ``grid`` x ``grid`` and each cell becomes one patch
token, so the cross-modal attention can relate words to regions. Catalogues
that ship precomputed image vectors instead of pixels use
:class:`FeatureTokens`, which projects a vector into a few tokens of the same
width.

Example:

    encoder = ImageEncoder(channels=(32, 64), grid=4, dim=64)
    patches = encoder(images)        # uint8 [B, 28, 28, 1] -> [B, 16, 64]

A 28-pixel picture becomes a 7 x 7 map after two stages, pooled in 2 x 2
cells (the edge cells are partial) to a 4 x 4 grid.

Two choices, measured together on the shop (1 seed, 3 epochs, no item-id
vector; docs/BENCHMARKS.md): batch normalisation in every stage, and no layer
normalisation of the patch tokens. Without batch normalisation every picture
starts as nearly the same vector (all-positive ReLU features share one
direction), and the image side learnt far slower than the text side. A layer
norm per patch divides out the patch's overall activation, which is largely
the picture's brightness, and brightness is what tells a dark coat from a
light one. Together with pre-norm cross-modal attention the full shop model
went from test NDCG@10 0.0234 (4 epochs) to 0.0308 (3 epochs).
Batch statistics are used in training; the moving averages (updated by
training steps) when encoding the item table, evaluating and serving.
"""

from __future__ import annotations

import tensorflow as tf


def check_picture_size(side: int, channels: tuple[int, ...]) -> None:
    """Refuses pictures that the CNN's halving stages would shrink to nothing."""
    stages = len(channels)
    if side < 2 ** stages:
        raise ValueError(f"pictures of {side}x{side} pixels are too small for "
                         f"model.image_channels {list(channels)}: each of the {stages} CNN "
                         f"stages halves the picture; use at most "
                         f"{max(side.bit_length() - 1, 0)} stages or a larger data.image_size")


class ImageEncoder(tf.keras.layers.Layer):
    """uint8 pixels [B, H, W, C] to patch tokens [B, grid * grid, dim].

    In training, batch normalisation learns its statistics from the pictures
    marked ``valid`` (all by default): a history's padded slots hold item 0's
    picture, which must not count once per empty slot.

    Example:

        encoder = ImageEncoder(channels=(16, 32), grid=2, dim=64)
        tokens = encoder(pixels, training=True, valid=history_mask)  # [B, 4, 64]
    """

    def __init__(self, channels: tuple[int, ...], grid: int, dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.channels, self.grid, self.dim = tuple(channels), grid, dim
        self.stages = []
        for i, width in enumerate(self.channels):
            self.stages += [
                tf.keras.layers.Conv2D(width, 3, padding="same", use_bias=False,
                                       name=f"conv_{i}"),
                # Not fused: the fused kernel cannot leave masked pictures out.
                tf.keras.layers.BatchNormalization(fused=False, name=f"batch_norm_{i}"),
                tf.keras.layers.ReLU(name=f"relu_{i}"),
                tf.keras.layers.MaxPool2D(2, name=f"pool_{i}")]
        self.project = tf.keras.layers.Dense(dim, name="patch_projection")

    def build(self, input_shape):
        check_picture_size(int(min(input_shape[1:3])), self.channels)
        size = int(input_shape[1]) >> len(self.channels)
        # Pool the last map to (at most) grid x grid cells, covering all of it.
        self.pool = -(-size // self.grid)
        self.side = -(-size // self.pool)
        self.patch_positions = tf.keras.layers.Embedding(self.side * self.side, self.dim,
                                                         name="patch_position")
        super().build(input_shape)

    @property
    def num_patches(self) -> int:
        return self.side * self.side

    def call(self, images, training=False, valid=None):
        maps = tf.cast(images, self.compute_dtype) / 255.0
        mask = None
        if valid is not None:
            # A batch with no valid picture falls back to all of them (no 0/0).
            mask = tf.logical_or(valid, tf.logical_not(tf.reduce_any(valid)))[:, None, None]
        for stage in self.stages:
            if isinstance(stage, tf.keras.layers.BatchNormalization):
                maps = stage(maps, training=training, mask=mask)
            else:
                maps = stage(maps, training=training)
        maps = tf.nn.avg_pool2d(maps, self.pool, self.pool, "SAME")
        patches = tf.reshape(maps, [-1, self.num_patches, maps.shape[-1]])
        positions = self.patch_positions(tf.range(self.num_patches))[None]
        return self.project(patches) + tf.cast(positions, patches.dtype)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "grid": self.grid,
                "dim": self.dim}


class FeatureTokens(tf.keras.layers.Layer):
    """A precomputed vector [B, F] to ``count`` tokens [B, count, dim]."""

    def __init__(self, count: int, dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.count, self.dim = count, dim
        self.project = tf.keras.layers.Dense(count * dim, name="projection")
        self.norm = tf.keras.layers.LayerNormalization(name="norm")

    def call(self, vectors, training=False):
        tokens = tf.reshape(self.project(vectors), [-1, self.count, self.dim])
        return self.norm(tokens)

    def get_config(self):
        return {**super().get_config(), "count": self.count, "dim": self.dim}
