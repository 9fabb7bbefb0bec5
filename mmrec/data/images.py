"""Decoding item pictures with Pillow into fixed-size uint8 arrays.

Images are decoded once, when a catalogue is loaded, so training reads arrays
and never touches files. A missing or unreadable picture is reported by the
caller as a counted skip; the item stays, with its image mask off.

Example:

    pixels = decode_image("photos/123.jpg", size=64, channels=3)   # [64, 64, 3]
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageProblem(Exception):
    """A picture that is missing or cannot be decoded; the message says which."""


def decode_image(source: str | bytes | os.PathLike, size: int, channels: int) -> np.ndarray:
    """Decodes a file path or encoded bytes to uint8 [size, size, channels].

    The picture is converted to grayscale (1 channel) or RGB (3 channels) and
    resized to a square with bilinear filtering.

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
            picture = picture.convert("L" if channels == 1 else "RGB")
            picture = picture.resize((size, size), Image.BILINEAR)
            pixels = np.asarray(picture, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise ImageProblem(f"corrupt image ({error.__class__.__name__}: {error})") from error
    return pixels.reshape(size, size, channels)
