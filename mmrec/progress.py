"""Progress bars for work that takes more than a few seconds.

Wraps tqdm so every long loop in mmrec shows the same kind of bar on a
terminal and stays quiet in logs (tqdm hides itself when output is not a
terminal and ``MMREC_PROGRESS=0`` turns it off).

Example:

    for row in progress(rows, desc="decoding images"):
        ...
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, total: int | None = None,
             min_items: int = 500) -> Iterable[T]:
    """``items`` with a bar when there are at least ``min_items`` of them."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    enabled = os.environ.get("MMREC_PROGRESS", "1") != "0" and (total or 0) >= min_items
    return tqdm(items, desc=desc, total=total, disable=not enabled or None,
                file=sys.stderr, leave=False, mininterval=0.5)
