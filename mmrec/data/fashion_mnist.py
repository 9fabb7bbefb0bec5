"""Fashion-MNIST: 70,000 small product photos with their category labels.

The simulated shop (:mod:`mmrec.data.shop`) needs real pictures, so that an
image encoder has something genuine to read, yet it must run offline and
without a licence question. Fashion-MNIST (Zalando, MIT licence) fits: 28x28
grayscale photos of ten kinds of clothing, small enough to load in a second.

The four gzipped IDX files are looked for, in this order:

1. the directory named by the ``MMREC_FASHION_MNIST_DIR`` environment variable;
2. ``/usr/share/datasets/fashion-mnist/`` (``apt-get install dataset-fashion-mnist``);
3. the Keras cache ``~/.keras/datasets/fashion-mnist/``.

Only if none has them, and ``MMREC_ALLOW_DOWNLOAD=1`` is set, are they fetched
through ``tf.keras.datasets.fashion_mnist.load_data()``; otherwise loading
stops with a :class:`~mmrec.data.problems.DataError` that says how to get them.
Nothing is downloaded behind the user's back.

Pixel values are as published: the background is 0 and the product bright,
because the photos were negated, so a *high* value is a *dark* part of the
original product.

Example:

    from mmrec.data.fashion_mnist import CLASS_NAMES, load_fashion_mnist
    images, labels = load_fashion_mnist()   # uint8 [70000, 28, 28], int64 [70000]
    CLASS_NAMES[labels[0]]                  # 'Ankle boot'
"""

from __future__ import annotations

import functools
import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from mmrec.data.problems import DataError

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
"""The official names of the ten classes; label ``k`` is ``CLASS_NAMES[k]``."""

CATEGORY_WORDS: tuple[str, ...] = (
    "t-shirt", "trousers", "pullover", "dress", "coat",
    "sandals", "shirt", "sneakers", "bag", "ankle boots")
"""The word a product text uses for each class, aligned with CLASS_NAMES."""

IMAGE_SIZE = 28
NUM_IMAGES = 70_000

ENV_DIRECTORY = "MMREC_FASHION_MNIST_DIR"
ENV_ALLOW_DOWNLOAD = "MMREC_ALLOW_DOWNLOAD"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
KERAS_CACHE_DIR = Path("~/.keras/datasets/fashion-mnist")

# (images file, labels file, expected count), train before test.
_PARTS: tuple[tuple[str, str, int], ...] = (
    ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60_000),
    ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10_000),
)
FILE_NAMES: tuple[str, ...] = tuple(name for part in _PARTS for name in part[:2])

_IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension

HOW_TO_GET_IT = (
    "Fashion-MNIST was not found. Get it in one of these ways: "
    "`apt-get install dataset-fashion-mnist` (installs it in "
    f"{DEBIAN_DIR}/); or set {ENV_DIRECTORY}=/path/to/dir with the files "
    f"{', '.join(FILE_NAMES)}; or set {ENV_ALLOW_DOWNLOAD}=1 to let mmrec "
    "download it once through tf.keras.datasets.fashion_mnist.")


def candidate_directories() -> list[Path]:
    """The directories searched, in order (the environment variable first)."""
    directories = []
    from_env = os.environ.get(ENV_DIRECTORY)
    if from_env:
        directories.append(Path(from_env).expanduser())
    directories += [DEBIAN_DIR, KERAS_CACHE_DIR.expanduser()]
    return directories


def find_fashion_mnist_dir() -> Path | None:
    """The first candidate directory holding all four files, or None.

    Raises:
      DataError: a directory holds some of the files but not all, which is
        a broken install rather than an absent one.
    """
    for directory in candidate_directories():
        present = [name for name in FILE_NAMES if (directory / name).is_file()]
        if len(present) == len(FILE_NAMES):
            return directory
        if present:
            missing = sorted(set(FILE_NAMES) - set(present))
            raise DataError(
                f"Fashion-MNIST is incomplete: {', '.join(missing)} missing "
                f"beside {', '.join(present)}", file=str(directory))
    return None


def read_fashion_mnist(directory: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Parses the four IDX files in ``directory`` (no search, no cache).

    Returns:
      images uint8 [70000, 28, 28] (train then test) and labels int64 [70000].

    Raises:
      DataError: naming the file that is missing, not gzip, or not a valid
        IDX file of the expected size.
    """
    directory = Path(directory)
    images, labels = [], []
    for images_name, labels_name, count in _PARTS:
        images.append(_read_idx(directory / images_name, _IDX_IMAGES_MAGIC,
                                (count, IMAGE_SIZE, IMAGE_SIZE)))
        part_labels = _read_idx(directory / labels_name, _IDX_LABELS_MAGIC, (count,))
        if part_labels.max(initial=0) >= len(CLASS_NAMES):
            raise DataError(f"label {int(part_labels.max())} is not a class in 0..9",
                            file=str(directory / labels_name))
        labels.append(part_labels.astype(np.int64))
    return _frozen(np.concatenate(images)), _frozen(np.concatenate(labels))


def load_fashion_mnist() -> tuple[np.ndarray, np.ndarray]:
    """All 70,000 images and labels, from the first place that has them.

    The parsed arrays are cached in-process per directory and are read-only,
    since every caller shares them; copy before writing.

    Returns:
      images uint8 [70000, 28, 28] (the 60,000 training images first, then
      the 10,000 test images) and labels int64 [70000] in 0..9.

    Raises:
      DataError: the files are nowhere and downloading is not allowed (the
        message says how to get them), or a file is corrupt (it is named).
    """
    directory = find_fashion_mnist_dir()
    if directory is not None:
        return _read_cached(str(directory))
    if os.environ.get(ENV_ALLOW_DOWNLOAD) == "1":
        return _download_cached()
    searched = ", ".join(str(d) for d in candidate_directories())
    raise DataError(f"{HOW_TO_GET_IT} (searched: {searched})")


def fashion_mnist_source() -> str:
    """Where :func:`load_fashion_mnist` reads from, for describe output."""
    directory = find_fashion_mnist_dir()
    if directory is not None:
        return str(directory)
    if os.environ.get(ENV_ALLOW_DOWNLOAD) == "1":
        return "tf.keras.datasets.fashion_mnist download"
    return "not found"


def photos_outside(catalogue_images: np.ndarray,
                   image_mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The Fashion-MNIST photos not in a catalogue (uint8 [M, 28, 28, 1]) and their
    class labels (int64 [M]): what image pretraining may learn from without
    seeing a catalogue picture (compared pixel by pixel).

    Args:
      catalogue_images: the catalogue's pictures, uint8 [N, 28, 28, 1].
      image_mask: which items have a real picture (the others are not compared).
    """
    import logging
    own = catalogue_images if image_mask is None else catalogue_images[np.asarray(image_mask)]
    images, labels = load_fashion_mnist()
    in_catalogue = {picture.tobytes() for picture in own}
    keep = np.array([picture.tobytes() not in in_catalogue for picture in images])
    logging.getLogger("mmrec.data").info(
        "Fashion-MNIST outside the catalogue: %d photos, %d left out as pictures of the "
        "catalogue", len(images), int((~keep).sum()))
    return images[keep][..., np.newaxis], labels[keep]


@functools.lru_cache(maxsize=4)
def _read_cached(directory: str) -> tuple[np.ndarray, np.ndarray]:
    return read_fashion_mnist(directory)


@functools.lru_cache(maxsize=1)
def _download_cached() -> tuple[np.ndarray, np.ndarray]:
    import tensorflow as tf

    import mmrec  # noqa: F401  selects Keras 2 before TensorFlow loads

    (train_images, train_labels), (test_images, test_labels) = (
        tf.keras.datasets.fashion_mnist.load_data())
    images = np.concatenate([train_images, test_images]).astype(np.uint8)
    labels = np.concatenate([train_labels, test_labels]).astype(np.int64)
    if images.shape != (NUM_IMAGES, IMAGE_SIZE, IMAGE_SIZE) or labels.shape != (NUM_IMAGES,):
        raise DataError(f"downloaded Fashion-MNIST has images {images.shape} and "
                        f"labels {labels.shape}; expected ({NUM_IMAGES}, 28, 28) "
                        f"and ({NUM_IMAGES},)")
    return _frozen(images), _frozen(labels)


def _read_idx(path: Path, magic: int, shape: tuple[int, ...]) -> np.ndarray:
    """One gzipped IDX file of unsigned bytes, checked against ``shape``."""
    try:
        with gzip.open(path, "rb") as stream:
            data = stream.read()
    except FileNotFoundError:
        raise DataError("file not found", file=str(path)) from None
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"not a readable gzip file ({error})", file=str(path)) from None
    header_size = 4 + 4 * len(shape)
    if len(data) < header_size:
        raise DataError(f"IDX file too short for its header: {len(data)} bytes",
                        file=str(path))
    found_magic = int.from_bytes(data[:4], "big")
    if found_magic != magic:
        raise DataError(f"IDX magic number is {found_magic:#010x}; expected {magic:#010x}",
                        file=str(path))
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(len(shape)))
    if dims != shape:
        raise DataError(f"IDX dimensions are {dims}; expected {shape}", file=str(path))
    expected = header_size + int(np.prod(shape))
    if len(data) != expected:
        raise DataError(f"IDX file has {len(data)} bytes; expected {expected} "
                        f"for dimensions {shape}", file=str(path))
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array
