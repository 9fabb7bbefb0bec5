"""RecBole atomic files: the research community's standard data layout.

A folder ``NAME/`` holding ``NAME.inter`` (required: ``user_id``, ``item_id``,
``timestamp``) and optionally ``NAME.item``, tab-separated with typed headers
such as ``item_id:token`` or ``class:token_seq``. The item text is every
``token`` and ``token_seq`` column of ``NAME.item`` but the id, joined in file
order (for MovieLens: title, release year and genres). Items that appear in
``NAME.inter`` but not in ``NAME.item`` are reported as skipped interactions;
without a ``.item`` file the catalogue is the set of interacted ids, with no
content. Files are read with ``encoding`` (UTF-8 by default); ``timestamp``
is an epoch number whose unit is detected or given (``timestamp_unit``).

Example:

    dataset = read_atomic("path/to/ml-100k")
"""

from __future__ import annotations

import os
from pathlib import Path

from mmrec.data.catalogue import Catalogue
from mmrec.data.dataset import Dataset
from mmrec.data.problems import DataError, LoadReport
from mmrec.data.records import ItemFields, build_catalogue, build_interactions, read_options
from mmrec.data.tables import atomic_column_types, read_table


def find_atomic_file(folder: Path, suffix: str) -> Path | None:
    """``folder/NAME.suffix``, preferring NAME = the folder's name."""
    preferred = folder / f"{folder.name}{suffix}"
    if preferred.is_file():
        return preferred
    candidates = sorted(folder.glob(f"*{suffix}"))
    if len(candidates) > 1:
        raise DataError(f"several {suffix} files ({', '.join(c.name for c in candidates)}); "
                        f"name one {folder.name}{suffix}", file=str(folder))
    return candidates[0] if candidates else None


def read_atomic(folder: str | os.PathLike, name: str | None = None, *,
                encoding: str = "utf-8", timestamp_unit: str = "auto") -> Dataset:
    """Reads a RecBole atomic-file folder into a :class:`Dataset`.

    Args:
      folder: holds ``NAME.inter`` and optionally ``NAME.item``.
      name: the data set's name; the folder's name by default.
      encoding: of the atomic files.
      timestamp_unit: one of "auto", "s", "ms", "us", "ns" for epoch numbers.
    """
    options = read_options(encoding, timestamp_unit)
    folder = Path(folder)
    inter_path = find_atomic_file(folder, ".inter")
    if inter_path is None:
        raise DataError("no .inter file: a RecBole folder needs NAME.inter", file=str(folder))
    report = LoadReport()
    item_path = find_atomic_file(folder, ".item")
    if item_path is not None:
        types = atomic_column_types(item_path, encoding=encoding)
        text = tuple(c for c, t in types.items()
                     if t in ("token", "token_seq") and c != "item_id")
        columns, rows = read_table(item_path, encoding=encoding)
        catalogue, _ = build_catalogue(columns, rows, file=str(item_path), report=report,
                                       fields=ItemFields(text=text), encoding=encoding)
    else:
        columns, rows = read_table(inter_path, encoding=encoding)
        if "item_id" not in columns:
            raise DataError("missing required column 'item_id'", file=str(inter_path),
                            field="item_id")
        ids = list(dict.fromkeys(row["item_id"].strip() for _, row in rows))
        catalogue = Catalogue.build(ids, [""] * len(ids), metadata={"title": ids})
    columns, rows = read_table(inter_path, encoding=encoding)
    interactions, _ = build_interactions(
        columns, rows, file=str(inter_path), item_index=catalogue.index(), report=report,
        encoding=encoding, timestamp_unit=timestamp_unit,
        catalogue_file=str(item_path) if item_path is not None else None)
    return Dataset(name=name or folder.name, catalogue=catalogue, interactions=interactions,
                   report=report, source=f"RecBole atomic files in {folder}",
                   read_options=options)
