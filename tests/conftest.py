"""Shared fixtures: a private feature cache, and small data folders to corrupt."""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

os.environ.setdefault("MMREC_CACHE", tempfile.mkdtemp(prefix="mmrec-test-cache-"))
os.environ["MMREC_PROGRESS"] = "0"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

import mmrec  # noqa: E402,F401  (Keras 2 before TensorFlow)

ITEMS = [
    {"item_id": "i1", "title": "Red wool coat", "description": "warm winter coat",
     "image_path": "img/i1.png"},
    {"item_id": "i2", "title": "Blue denim jeans", "description": "slim fit",
     "image_path": "img/i2.png"},
    {"item_id": "i3", "title": "Green linen shirt", "description": "light summer shirt",
     "image_path": "img/i3.png"},
]
INTERACTIONS = [
    {"user_id": "u1", "item_id": "i1", "timestamp": "100"},
    {"user_id": "u1", "item_id": "i2", "timestamp": "200"},
    {"user_id": "u2", "item_id": "i2", "timestamp": "150"},
    {"user_id": "u1", "item_id": "i3", "timestamp": "300"},
    {"user_id": "u2", "item_id": "i3", "timestamp": "250"},
]


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_images(folder: Path, ids=("i1", "i2", "i3")) -> None:
    (folder / "img").mkdir(exist_ok=True)
    for k, item_id in enumerate(ids):
        pixels = np.full((20, 12, 3), 40 * (k + 1), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "img" / f"{item_id}.png")


@pytest.fixture
def shop_folder(tmp_path: Path):
    """A well-formed items/interactions CSV folder with three pictures.

    Returns a function that writes the folder with optional replacement rows.
    """

    def make(items=None, interactions=None) -> Path:
        folder = tmp_path / "catalogue"
        folder.mkdir(exist_ok=True)
        write_images(folder)
        write_csv(folder / "items.csv", items or ITEMS)
        write_csv(folder / "interactions.csv", interactions or INTERACTIONS)
        return folder

    return make


# The feedback store's fixtures (one PostgreSQL server per session, store URLs).
from feedback_fixtures import postgres_server, store_url  # noqa: E402,F401
from run_fixtures import shop_run  # noqa: E402,F401
