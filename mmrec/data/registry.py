"""One entry point for every data source: a name or a folder.

* ``movielens-100k``: real clicks and text, no images (from the recbole wheel);
* ``shop``: real product photos with simulated shoppers and known utilities;
* a folder: RecBole atomic files, the MMRec layout, or the items/interactions
  schema of docs/DATA.md, recognised by the files it holds.

Example:

    dataset = load_dataset("shop")
    dataset = load_dataset("path/to/my_catalogue", image_size=64)
"""

from __future__ import annotations

import os
from pathlib import Path

from mmrec.data.dataset import Dataset
from mmrec.data.problems import DataError

BUILTIN = ("movielens-100k", "shop")


def load_dataset(name_or_path: str | os.PathLike, *, image_size: int = 64,
                 image_channels: int = 3, shop_config=None, encoding: str = "utf-8",
                 timestamp_unit: str = "auto") -> Dataset:
    """Loads a built-in data set by name, or a data folder by path.

    Args:
      name_or_path: "movielens-100k", "shop", or a folder.
      image_size: side of the square images decoded from a folder's pictures.
      image_channels: 1 (grayscale) or 3 (RGB) for a folder's pictures.
      shop_config: a :class:`mmrec.data.shop.ShopConfig` for "shop".
      encoding: text encoding of a folder's files.
      timestamp_unit: "auto" (detected from the magnitude), "s", "ms", "us"
        or "ns", for a folder's epoch timestamps.

    Raises:
      DataError: unknown name, unrecognised folder, or bad data inside it.
    """
    name = str(name_or_path)
    if name == "movielens-100k":
        from mmrec.data.movielens import load_movielens_100k
        dataset = load_movielens_100k()
    elif name == "shop":
        from mmrec.data.shop import ShopConfig, generate_shop
        dataset = generate_shop(shop_config or ShopConfig())
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
