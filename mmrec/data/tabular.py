"""Bring your own catalogue: items and interactions as CSV, JSONL or Parquet.

The documented schema (see docs/DATA.md) is a folder with two tables:

* ``items.{csv,jsonl,parquet}``: ``item_id`` (required), any text columns
  (all non-image columns are joined into the item text unless the caller names
  them), optional ``image_path`` (relative to the folder) or ``image`` (encoded
  bytes, Parquet), optional ``title``;
* ``interactions.{csv,jsonl,parquet}``: ``user_id``, ``item_id``,
  ``timestamp`` (an epoch number, its unit detected or given, or ISO-8601),
  optional ``event_type``;

and, optionally, ``text_feat.npy`` / ``image_feat.npy`` (precomputed vectors,
one row per row of the items table, in the same order) and ``splits.csv``
(``user_id,item_id,timestamp,split`` with split one of train/valid/test, to
reuse another framework's exact split). Text files are read with ``encoding``
(UTF-8 by default), the split file too.

Example:

    dataset = read_tabular("my_shop/", image_size=64)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mmrec.data.catalogue import Catalogue
from mmrec.data.dataset import Dataset
from mmrec.data.problems import DataError, LoadReport
from mmrec.data.records import ItemFields, build_catalogue, build_interactions, read_options
from mmrec.data.tables import TABLE_SUFFIXES, read_table


def find_table(folder: Path, stem: str) -> Path | None:
    """``folder/stem.<csv|tsv|jsonl|parquet>``; an error if several exist."""
    found = [folder / f"{stem}{s}" for s in TABLE_SUFFIXES if (folder / f"{stem}{s}").is_file()]
    if len(found) > 1:
        raise DataError(f"several {stem} tables ({', '.join(p.name for p in found)}); keep one",
                        file=str(folder))
    return found[0] if found else None


def load_feature_matrix(path: Path, rows: np.ndarray, expected_rows: int) -> np.ndarray | None:
    """Loads an .npy matrix aligned with the items table and keeps ``rows``."""
    if not path.is_file():
        return None
    try:
        matrix = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise DataError(f"not a readable .npy array: {error}", file=str(path)) from error
    if matrix.ndim != 2 or len(matrix) != expected_rows:
        raise DataError(f"expected a [{expected_rows}, D] matrix (one row per item row), "
                        f"found shape {matrix.shape}", file=str(path))
    if not np.isfinite(matrix).all():
        bad = int(np.argwhere(~np.isfinite(matrix))[0][0])
        raise DataError("matrix has NaN or infinite values", file=str(path), row=bad + 1)
    return matrix[rows].astype(np.float32)


def read_tabular(folder: str | os.PathLike, *, fields: ItemFields = ItemFields(),
                 image_size: int = 64, image_channels: int = 3, encoding: str = "utf-8",
                 timestamp_unit: str = "auto") -> Dataset:
    """Reads the items/interactions schema from a folder into a :class:`Dataset`.

    Args:
      folder: holds ``items.*`` and ``interactions.*`` (see the module doc).
      fields: which item columns mean what.
      image_size, image_channels: the decoded pictures' side and channels.
      encoding: of the CSV/TSV/JSONL files and of text in Parquet binary columns.
      timestamp_unit: one of "auto", "s", "ms", "us", "ns" for epoch numbers.
    """
    options = read_options(encoding, timestamp_unit)
    folder = Path(folder)
    items_path = find_table(folder, "items")
    inter_path = find_table(folder, "interactions")
    if items_path is None or inter_path is None:
        missing = "items" if items_path is None else "interactions"
        raise DataError(f"no {missing} table: expected {missing}.csv, .jsonl or .parquet",
                        file=str(folder))
    report = LoadReport()
    catalogue, kept, count = _read_item_table(items_path, report, fields=fields,
                                              image_size=image_size,
                                              image_channels=image_channels, encoding=encoding)
    catalogue.text_features = load_feature_matrix(folder / "text_feat.npy", kept, count)
    catalogue.image_features = load_feature_matrix(folder / "image_feat.npy", kept, count)
    columns, inter_rows = read_table(inter_path, encoding=encoding)
    interactions, _ = build_interactions(columns, inter_rows, file=str(inter_path),
                                         item_index=catalogue.index(), report=report,
                                         encoding=encoding, timestamp_unit=timestamp_unit,
                                         catalogue_file=str(items_path))
    dataset = Dataset(name=folder.name, catalogue=catalogue, interactions=interactions,
                      report=report, source=f"item and interaction tables in {folder}",
                      read_options=options)
    split_file = folder / "splits.csv"
    if split_file.is_file():
        from mmrec.data.splits import read_split_file
        dataset.explicit_split = read_split_file(split_file, dataset)
    return dataset


def _read_item_table(path: Path, report: LoadReport, *, fields: ItemFields, image_size: int,
                     image_channels: int, encoding: str) -> tuple[Catalogue, np.ndarray, int]:
    """The items table as a catalogue, the kept rows' positions and the row count;
    pictures are found relative to the table's folder."""
    columns, rows = read_table(path, encoding=encoding)
    rows = list(rows)
    catalogue, kept = build_catalogue(columns, rows, file=str(path), report=report,
                                      fields=fields, image_root=path.parent,
                                      image_size=image_size, image_channels=image_channels,
                                      encoding=encoding)
    return catalogue, kept, len(rows)


def read_items(path: str | os.PathLike, *, fields: ItemFields = ItemFields(),
               image_size: int = 64, image_channels: int = 3,
               encoding: str = "utf-8") -> tuple[Catalogue, LoadReport]:
    """Reads one items table (CSV, TSV, JSONL or Parquet) of the schema above:
    new products to add to a published catalogue, with their text and pictures.

    Example:

        catalogue, report = read_items("new_items.csv", image_size=28, image_channels=1)
    """
    report = LoadReport()
    catalogue, _, _ = _read_item_table(Path(path), report, fields=fields,
                                       image_size=image_size, image_channels=image_channels,
                                       encoding=encoding)
    return catalogue, report
