"""Content hashes that bind a run or a published version to the data it saw.

A run folder stores row indices into a click log (its split) and weights
learned from that log. If the log, the catalogue or the split changes under
it, resuming, evaluating or exporting the run would silently mix two data
sets: the indices would point at other clicks, the id embeddings at other
items. So a run (and every version published from it) records a fingerprint of
its data, and whatever reads it again compares the fingerprint of the data it
loaded, part by part, and refuses with the names of the parts that changed.

Example:

    recorded = data_fingerprint(dataset, split)
    ...
    check_fingerprint(recorded, data_fingerprint(dataset_again, split), "run runs/ml")
"""

from __future__ import annotations

import hashlib

import numpy as np

from mmrec.data.dataset import Dataset
from mmrec.data.interactions import Interactions
from mmrec.data.problems import DataError
from mmrec.data.splits import Split

PARTS = ("items", "interactions", "split")
PART_MEANINGS = {
    "items": "the catalogue (item ids, texts, pictures or feature vectors)",
    "interactions": "the click log (users, items, timestamps, events)",
    "split": "the train/validation/test split",
}


class DataChangedError(DataError):
    """The data a run or version was trained on is not the data loaded now."""


def _digest(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        array = np.asarray(array)
        if array.dtype == object:
            digest.update("\x1f".join(str(v) for v in array.tolist()).encode())
        else:
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(b"\x1e")
    return digest.hexdigest()


def interactions_hash(log: Interactions) -> str:
    """A digest of every row of the click log, in file order."""
    events = log.event if log.event is not None else np.zeros(0)
    return _digest(log.user_ids, log.user.astype(np.int64), log.item.astype(np.int64),
                   log.timestamp.astype(np.float64), events)


def split_hash(split: Split) -> str:
    """A digest of the split's rows, cold items and scheme."""
    # The ranker's rows only when there are any, so splits without them keep
    # the hashes that runs and versions recorded before the part existed.
    ranker = [split.ranker.astype(np.int64)] if len(split.ranker) else []
    return _digest(split.train.astype(np.int64), split.valid.astype(np.int64),
                   split.test.astype(np.int64), split.cold_items.astype(bool),
                   np.asarray([split.scheme], dtype=object), *ranker)


def data_fingerprint(dataset: Dataset, split: Split) -> dict[str, str]:
    """The content hash of each part a run depends on: items, interactions, split."""
    return {"items": dataset.catalogue.content_hash(),
            "interactions": interactions_hash(dataset.interactions),
            "split": split_hash(split)}


def changed_parts(recorded: dict[str, str], current: dict[str, str]) -> list[str]:
    """The parts whose hashes differ (a part missing from either side counts)."""
    return [part for part in PARTS if recorded.get(part) != current.get(part)]


def check_fingerprint(recorded: dict[str, str], current: dict[str, str], what: str) -> None:
    """Refuses data whose fingerprint differs from the one ``what`` recorded.

    Raises:
      DataChangedError: naming each part that changed and what it covers.
    """
    changed = changed_parts(recorded, current)
    if changed:
        details = "; ".join(f"{part} ({PART_MEANINGS[part]}): recorded "
                            f"{str(recorded.get(part))[:12]}, now {str(current.get(part))[:12]}"
                            for part in changed)
        raise DataChangedError(
            f"{what} was trained on other data than is loaded now: {details}. Its indices "
            "and weights would point at other clicks and items; train a new run on the "
            "current data (or restore the data it was trained on)")
