"""MovieLens-100K, read from the copy that ships inside the ``recbole`` wheel.

943 users, 1,682 movies and 100,000 ratings with timestamps; every rating is
taken as an implicit interaction. The item text is title, release year and
genres. There are no pictures: MovieLens is the real case of a catalogue with a
missing modality, and its image mask is all False.

The data's licence forbids redistribution, so mmrec never ships it: install the
wheel without its (heavy) dependencies, ``pip install --no-deps recbole==1.2.1``.

Example:

    dataset = load_movielens_100k()
    len(dataset.interactions)   # 100000
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from mmrec.data.atomic import read_atomic
from mmrec.data.dataset import Dataset
from mmrec.data.problems import DataError

INSTALL_HINT = "pip install --no-deps recbole==1.2.1"


def movielens_100k_folder() -> Path:
    """The ml-100k atomic-file folder inside the installed recbole package."""
    try:
        root = importlib.resources.files("recbole")
    except ModuleNotFoundError as error:
        raise DataError(f"movielens-100k needs the recbole wheel, which carries the data: "
                        f"{INSTALL_HINT}") from error
    folder = Path(str(root / "dataset_example" / "ml-100k"))
    if not (folder / "ml-100k.inter").is_file():
        raise DataError(f"the installed recbole has no dataset_example/ml-100k; reinstall "
                        f"with {INSTALL_HINT}", file=str(folder))
    return folder


def load_movielens_100k() -> Dataset:
    """Reads MovieLens-100K through the RecBole atomic-file reader."""
    dataset = read_atomic(movielens_100k_folder(), name="movielens-100k")
    dataset.source = f"MovieLens-100K from the recbole 1.2.1 wheel ({dataset.source})"
    return dataset
