"""Importer for the MMRec / Amazon multimodal layout.

The multimodal-recommendation research toolkit MMRec distributes Amazon
catalogues (Baby, Sports, Clothing, ...) as a folder holding ``NAME.inter``
(tab-separated, plain header ``userID itemID rating timestamp x_label``, where
``x_label`` 0/1/2 marks train/valid/test) and precomputed item vectors
``image_feat.npy`` and ``text_feat.npy`` whose row ``i`` belongs to item id
``i``. mmrec reads that folder as it is: the item ids are the row numbers, the
features are first-class inputs, and ``x_label`` becomes the explicit split,
so results can be compared with papers on the identical split.

Example:

    dataset = read_mmrec_layout("data/baby")
    dataset.catalogue.image_features.shape   # (7050, 4096)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mmrec.data.atomic import find_atomic_file
from mmrec.data.catalogue import Catalogue
from mmrec.data.dataset import Dataset
from mmrec.data.problems import DataError, LoadReport, warn_without_validation
from mmrec.data.records import InteractionFields, build_interactions, read_options
from mmrec.data.tables import read_table
from mmrec.data.tabular import load_feature_matrix

FEATURE_FILES = ("image_feat.npy", "text_feat.npy")
SPLIT_LABELS = {"0": "train", "1": "valid", "2": "test"}


def is_mmrec_layout(folder: Path) -> bool:
    return any((folder / name).is_file() for name in FEATURE_FILES) and bool(
        list(folder.glob("*.inter")))


def read_mmrec_layout(folder: str | os.PathLike, *, encoding: str = "utf-8",
                      timestamp_unit: str = "auto") -> Dataset:
    """Reads ``NAME.inter`` + ``image_feat.npy`` / ``text_feat.npy``.

    Args:
      folder: the layout's folder.
      encoding: of ``NAME.inter``.
      timestamp_unit: one of "auto", "s", "ms", "us", "ns" for epoch numbers.
    """
    options = read_options(encoding, timestamp_unit)
    folder = Path(folder)
    inter_path = find_atomic_file(folder, ".inter")
    if inter_path is None:
        raise DataError("no .inter file", file=str(folder))
    sizes = {name: np.load(folder / name, mmap_mode="r").shape[0]
             for name in FEATURE_FILES if (folder / name).is_file()}
    if len(set(sizes.values())) > 1:
        raise DataError(f"feature files disagree on the number of items: {sizes}",
                        file=str(folder))
    num_items = next(iter(sizes.values()))
    rows = np.arange(num_items)
    catalogue = Catalogue.build(
        [str(i) for i in range(num_items)], [""] * num_items,
        text_features=load_feature_matrix(folder / "text_feat.npy", rows, num_items),
        image_features=load_feature_matrix(folder / "image_feat.npy", rows, num_items),
        metadata={"title": [f"item {i}" for i in range(num_items)]})
    report = LoadReport()
    columns, table_rows = read_table(inter_path, format="tsv", encoding=encoding)
    table_rows = list(table_rows)
    interactions, kept_rows = build_interactions(
        columns, table_rows, file=str(inter_path), item_index=catalogue.index(), report=report,
        fields=InteractionFields(user_id="userID", item_id="itemID"), encoding=encoding,
        timestamp_unit=timestamp_unit, catalogue_file=str(folder / next(iter(sizes))))
    split = None
    if "x_label" in columns:
        labels = {number: row["x_label"].strip() for number, row in table_rows}
        split = []
        for number in kept_rows.tolist():
            label = SPLIT_LABELS.get(labels[number])
            if label is None:
                raise DataError(f"x_label must be 0, 1 or 2, found {labels[number]!r}",
                                file=str(inter_path), row=number, field="x_label")
            split.append(label)
        split = np.asarray(split, dtype=object)
        warn_without_validation(split, file=str(inter_path))
    return Dataset(name=folder.name, catalogue=catalogue, interactions=interactions,
                   report=report, explicit_split=split,
                   source=f"MMRec layout in {folder} (precomputed features)",
                   read_options=options)
