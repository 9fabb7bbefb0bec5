"""One entry point for every data source: a name or a folder.

* ``movielens-100k``: real clicks and text, no images (from the recbole wheel);
* ``shop``: real product photos with simulated shoppers and known utilities;
* a folder: RecBole atomic files, the MMRec layout, or the items/interactions
  schema of docs/DATA.md, recognised by the files it holds.

A built-in data set may take options of its own (the shop's size and
shoppers): they live here, with the data set, as one dataclass per data set,
and reach it from a TOML table named after it (``[data.shop]``), so generic
code (training, evaluation, the CLI) passes them along without knowing them.

Example:

    dataset = load_dataset("shop", options={"num_items": 500, "num_users": 200,
                                            "num_clicks": 5_000})
    dataset = load_dataset("path/to/my_catalogue", image_size=64)
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

from mmrec.data.dataset import Dataset
from mmrec.data.problems import DataError
from mmrec.typed_fields import checked_values

BUILTIN = ("movielens-100k", "shop")
WITH_OPTIONS = ("shop",)
"""The built-in data sets that take options (a ``[data.NAME]`` TOML table)."""


def options_class(name: str) -> type | None:
    """The options dataclass of built-in data set ``name``; None if it takes none."""
    if name == "shop":
        from mmrec.data.shop import ShopConfig
        return ShopConfig
    return None


def dataset_options(name: str, table: Mapping[str, Any] | Any | None) -> Any:
    """Built-in data set ``name``'s options from a table (or an options object).

    Raises:
      ValueError: ``name`` takes no options, or the table has an unknown key
        or a value of the wrong type (naming ``data.NAME.key``).
    """
    cls = options_class(name)
    if cls is None:
        raise ValueError(f"data set {name!r} takes no options; options tables exist for "
                         f"{', '.join(WITH_OPTIONS)}")
    if table is None:
        return cls()
    if isinstance(table, cls):
        return table
    try:
        return cls(**checked_values(cls, table, f"data.{name}"))
    except ValueError as error:
        message = str(error)
        if not message.startswith(("data.", "unknown data.")):
            message = f"data.{name}: {message}"
        raise ValueError(message) from None


def options_table(options: Any) -> dict:
    """An options object as the TOML/JSON table it round-trips through."""
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(options).items()}


def load_dataset(name_or_path: str | os.PathLike, *, image_size: int = 64,
                 image_channels: int = 3, options: Mapping[str, Any] | Any | None = None,
                 encoding: str = "utf-8", timestamp_unit: str = "auto") -> Dataset:
    """Loads a built-in data set by name, or a data folder by path.

    Args:
      name_or_path: "movielens-100k", "shop", or a folder.
      image_size: side of the square images decoded from a folder's pictures.
      image_channels: 1 (grayscale) or 3 (RGB) for a folder's pictures.
      options: the built-in data set's options (a table such as ``{"num_items":
        500}`` or the options object, e.g. a ShopConfig); None for defaults.
      encoding: text encoding of a folder's files.
      timestamp_unit: "auto" (detected from the magnitude), "s", "ms", "us"
        or "ns", for a folder's epoch timestamps.

    Raises:
      DataError: unknown name, unrecognised folder, or bad data inside it.
      ValueError: options for a data set that takes none, or bad options.
    """
    name = str(name_or_path)
    if options is not None and options_class(name) is None:
        raise ValueError(f"data set {name!r} takes no options; options tables exist for "
                         f"{', '.join(WITH_OPTIONS)}")
    if name == "movielens-100k":
        from mmrec.data.movielens import load_movielens_100k
        dataset = load_movielens_100k()
    elif name == "shop":
        from mmrec.data.shop import generate_shop
        dataset = generate_shop(dataset_options(name, options))
    else:
        dataset = read_folder(Path(name), image_size=image_size, image_channels=image_channels,
                              encoding=encoding, timestamp_unit=timestamp_unit)
    dataset.report.log()
    return dataset


def read_folder(folder: Path, *, image_size: int, image_channels: int,
                encoding: str = "utf-8", timestamp_unit: str = "auto") -> Dataset:
    """Recognises a folder's layout by its files and reads it."""
    if not folder.is_dir():
        raise DataError(f"{str(folder)!r} is neither a built-in data set ({', '.join(BUILTIN)}) "
                        "nor a folder")
    from mmrec.data.mmrec_layout import is_mmrec_layout, read_mmrec_layout
    from mmrec.data.tabular import find_table, read_tabular
    if is_mmrec_layout(folder):
        return read_mmrec_layout(folder, encoding=encoding, timestamp_unit=timestamp_unit)
    if list(folder.glob("*.inter")):
        from mmrec.data.atomic import read_atomic
        return read_atomic(folder, encoding=encoding, timestamp_unit=timestamp_unit)
    if find_table(folder, "items") or find_table(folder, "interactions"):
        return read_tabular(folder, image_size=image_size, image_channels=image_channels,
                            encoding=encoding, timestamp_unit=timestamp_unit)
    raise DataError("not a data folder: expected RecBole atomic files (NAME.inter), the MMRec "
                    "layout (NAME.inter + image_feat.npy/text_feat.npy) or items.* + "
                    "interactions.* tables (see docs/DATA.md)", file=str(folder))
