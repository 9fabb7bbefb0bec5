"""Decoding item pictures into fixed-size uint8 arrays, the same way everywhere.

Images are decoded once, when a catalogue is loaded, so training reads arrays
and never touches files. A missing or unreadable picture is reported by the
caller as a counted skip; the item stays, with its image mask off.

A picture must become the same pixels when a catalogue is loaded for training
and when a new item is embedded from its raw bytes inside the SavedModel
(``embed_items``), or a new item is placed by a picture the model never saw.
Pillow and TensorFlow resize differently (Pillow in 8-bit passes,
``tf.image.resize`` without antialiasing), so neither resizes here: Pillow only
decodes to RGB, and the resize is written out as one formula that
:func:`resize_pixels` computes in NumPy and the serving graph computes with
the same weights in TensorFlow (``mmrec.export.serving_module.decode_picture``);
a test holds the two to the same pixels. The formula is Pillow's antialiased
bilinear (a triangle filter whose radius grows with the downscale factor),
in float64, rounded once at the end; grayscale is ITU-R 601 luma of the
resized RGB.

Example:

    pixels = decode_image("photos/123.jpg", size=64, channels=3)   # [64, 64, 3]
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, UnidentifiedImageError


GRAY_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R 601 luma weights of R, G and B (what Pillow's "L" conversion uses)."""


class ImageProblem(Exception):
    """A picture that is missing or cannot be decoded; the message says which."""


def resize_weights(in_size: int, out_size: int) -> np.ndarray:
    """float64 [out_size, in_size]: each output pixel's weights over the input pixels.

    A triangle (bilinear) filter centred on the output pixel, with a radius of
    one input pixel when enlarging and of ``in_size / out_size`` input pixels
    when shrinking (so every input pixel counts: antialiasing); weights outside
    the picture are dropped and each row is normalised to sum to 1.
    """
    scale = in_size / out_size
    support = max(scale, 1.0)
    centers = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    positions = np.arange(in_size, dtype=np.float64) + 0.5
    weights = np.maximum(0.0, 1.0 - np.abs(positions[None, :] - centers[:, None]) / support)
    return weights / weights.sum(axis=1, keepdims=True)


def resize_pixels(rgb: np.ndarray, size: int, channels: int) -> np.ndarray:
    """uint8 RGB [H, W, 3] to uint8 [size, size, channels] (see the module docstring)."""
    rows = resize_weights(rgb.shape[0], size)
    columns = resize_weights(rgb.shape[1], size)
    resized = np.tensordot(rows, rgb.astype(np.float64), axes=(1, 0))       # [size, W, 3]
    resized = np.tensordot(resized, columns, axes=(1, 1)).transpose(0, 2, 1)  # [size, size, 3]
    if channels == 1:
        resized = resized @ np.asarray(GRAY_WEIGHTS)[:, None]
    return np.clip(np.rint(resized), 0, 255).astype(np.uint8)


def decode_image(source: str | bytes | os.PathLike, size: int, channels: int) -> np.ndarray:
    """Decodes a file path or encoded bytes to uint8 [size, size, channels].

    The picture is decoded to RGB, resized to a square by :func:`resize_pixels`
    and, for one channel, turned to gray.

    Raises:
      ImageProblem: the file does not exist or the bytes are not an image.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    try:
        handle = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
    except FileNotFoundError as error:
        raise ImageProblem(f"missing image file {source}") from error
    try:
        with handle, Image.open(handle) as picture:
            rgb = np.asarray(picture.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise ImageProblem(f"corrupt image ({error.__class__.__name__}: {error})") from error
    return resize_pixels(rgb, size, channels)
