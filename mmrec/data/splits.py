"""Train / validation / test splits of a click log, in time order.

Which interactions a model may learn from decides whether its numbers mean
anything, so splits follow the field's published protocols:

* ``leave_one_out``: per user, the last interaction is test and the
  second-to-last is validation; order is by timestamp with a *stable* sort, so
  ties keep file order. A user with two interactions gives one to train and one
  to test; a user with one gives it to train.
* ``time``: one global cut in time; the earliest 80% of interactions train,
  the next 10% validate, the last 10% test (fractions configurable).
* ``explicit``: labels supplied with the data (a ``splits.csv`` file or
  MMRec's ``x_label``), to compare with other frameworks on the same split.

Any of them can also hold out a share of items entirely (``cold_item_share``):
their interactions are removed from training, so they are cold-start items
whose validation and test interactions measure recommendation from content.

Example:

    split = make_split(dataset, SplitConfig(cold_item_share=0.1))
    split.sizes()   # {'train': ..., 'valid': 943, 'test': 943, 'cold_items': ...}
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from mmrec.data.dataset import Dataset
from mmrec.data.interactions import Interactions
from mmrec.data.problems import DataError, warn_without_validation
from mmrec.data.records import text_value
from mmrec.data.tables import read_table, require_columns
from mmrec.data.timestamps import column_seconds

PARTS = ("train", "valid", "test", "ranker")
SCHEMES = ("auto", "leave_one_out", "time", "explicit")


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """How to split a click log.

    Attributes:
      scheme: "auto" (the data set's explicit split if it has one, else
        leave-one-out), "leave_one_out", "time" or "explicit".
      split_file: a CSV ``user_id,item_id,timestamp,split`` to use as the
        explicit split (overrides one shipped with the data).
      time_fractions: train/valid/test shares of the global time split.
      cold_item_share: share of interacted items held out of training.
      seed: chooses the cold items.
      ranker_clicks: each user's last this many training clicks are kept out
        of the retriever's training, for the ranking stage: the ranker then
        learns from the retriever's lists for clicks the retriever never saw,
        as at serving, instead of lists for clicks it was trained on (whose
        targets it scores with the confidence of having seen them). A user
        keeps at least one training click; the held clicks stay in later
        clicks' histories. 0: none (the ranker learns from the training
        clicks' own lists).
    """

    scheme: str = "auto"
    split_file: str | None = None
    time_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    cold_item_share: float = 0.0
    seed: int = 42
    ranker_clicks: int = 0

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"split scheme must be one of {SCHEMES}, got {self.scheme!r}")
        if len(self.time_fractions) != 3 or min(self.time_fractions) < 0 or not np.isclose(
                sum(self.time_fractions), 1.0):
            raise ValueError(f"time_fractions must be 3 non-negative shares summing to 1, "
                             f"got {self.time_fractions}")
        if not 0.0 <= self.cold_item_share < 1.0:
            raise ValueError(f"cold_item_share must be in [0, 1), got {self.cold_item_share}")
        if self.ranker_clicks < 0:
            raise ValueError(f"ranker_clicks must be >= 0, got {self.ranker_clicks}")


@dataclasses.dataclass
class Split:
    """Row indices into ``dataset.interactions`` for each part.

    Attributes:
      train, valid, test: int64 row indices, in chronological order per user.
      cold_items: bool [num_items], items held out of training entirely.
      scheme: the scheme that produced it.
      ranker: rows kept out of the retriever's training for the ranking
        stage (``SplitConfig.ranker_clicks``); empty by default.
    """

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    cold_items: np.ndarray
    scheme: str
    ranker: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))

    def sizes(self) -> dict[str, int]:
        sizes = {"train": len(self.train), "valid": len(self.valid), "test": len(self.test),
                 "cold_items": int(self.cold_items.sum())}
        if len(self.ranker):
            sizes["ranker"] = len(self.ranker)
        return sizes

    def part(self, name: str) -> np.ndarray:
        if name not in PARTS:
            raise ValueError(f"split part must be one of {PARTS}, got {name!r}")
        return getattr(self, name)

    def save(self, path: str | Path) -> None:
        """Writes the rows, cold items and scheme to one ``.npz`` file."""
        np.savez(path, train=self.train, valid=self.valid, test=self.test,
                 cold_items=self.cold_items, scheme=np.asarray(self.scheme),
                 ranker=self.ranker)

    @classmethod
    def load(cls, path: str | Path) -> "Split":
        with np.load(path, allow_pickle=False) as stored:
            ranker = stored["ranker"] if "ranker" in stored.files else np.zeros(0, np.int64)
            return cls(train=stored["train"], valid=stored["valid"], test=stored["test"],
                       cold_items=stored["cold_items"], scheme=str(stored["scheme"]),
                       ranker=ranker)


def leave_one_out_labels(interactions: Interactions) -> np.ndarray:
    """"train"/"valid"/"test" per row by the leave-one-out rule."""
    order = interactions.chronological_order()
    users = interactions.user[order]
    labels = np.full(len(order), "train", dtype=object)
    is_last = np.append(users[1:] != users[:-1], True)
    counts = np.bincount(users, minlength=interactions.num_users)
    labels[is_last & (counts[users] >= 2)] = "test"
    second_last = np.append(is_last[1:], False) & ~is_last
    labels[second_last & (counts[users] >= 3)] = "valid"
    result = np.empty(len(order), dtype=object)
    result[order] = labels
    return result


def time_labels(interactions: Interactions, fractions=(0.8, 0.1, 0.1)) -> np.ndarray:
    """"train"/"valid"/"test" per row by one global cut in time."""
    order = np.argsort(interactions.timestamp, kind="stable")
    bounds = np.round(np.cumsum(fractions) * len(order)).astype(int)
    labels = np.empty(len(order), dtype=object)
    labels[order[:bounds[0]]] = "train"
    labels[order[bounds[0]:bounds[1]]] = "valid"
    labels[order[bounds[1]:]] = "test"
    return labels


def read_split_file(path: str | Path, dataset: Dataset) -> np.ndarray:
    """Labels each interaction from a ``user_id,item_id,timestamp,split`` CSV.

    The file is read as the data set's own files were (``dataset.read_options``:
    encoding, timestamp unit), and its timestamps go through the same unit rule,
    so a split file in milliseconds matches interactions in milliseconds. Rows
    that match no interaction are counted skips; interactions that no row
    labels get the label "" and are left out of every part (also counted). A
    split without "valid" rows is logged as a warning.
    """
    path = str(path)
    encoding = dataset.read_options.get("encoding", "utf-8")
    timestamp_unit = dataset.read_options.get("timestamp_unit", "auto")
    log = dataset.interactions
    item_ids = dataset.catalogue.item_ids
    keys = {(u, i, t): row for row, (u, i, t) in enumerate(zip(
        log.user_ids[log.user].tolist(), item_ids[log.item].tolist(), log.timestamp.tolist()))}
    labels = np.full(len(log), "", dtype=object)
    columns, rows = read_table(path, "csv", encoding=encoding)
    require_columns(columns, ["user_id", "item_id", "timestamp", "split"], path)
    rows = list(rows)
    for row_number, row in rows:
        label = text_value(row["split"])
        if label not in PARTS:
            raise DataError(f"split must be one of {PARTS}, found {label!r}",
                            file=path, row=row_number, field="split")
    seconds = column_seconds(((number, row["timestamp"]) for number, row in rows),
                             timestamp_unit, file=path, field="timestamp",
                             report=dataset.report)
    for (row_number, row), when in zip(rows, seconds.tolist()):
        user_id, item_id = text_value(row["user_id"]), text_value(row["item_id"])
        match = keys.get((user_id, item_id, when))
        if match is None:
            dataset.report.skip(path, "split row matches no interaction", row=row_number,
                                value=f"{user_id}/{item_id}")
            continue
        labels[match] = text_value(row["split"])
    unlabelled = int((labels == "").sum())
    if unlabelled:
        dataset.report.skip(path, "interaction not in the split file (left out of all parts)",
                            count=unlabelled)
    warn_without_validation(labels[labels != ""].tolist(), file=path)
    return labels


def choose_cold_items(interactions: Interactions, num_items: int, share: float,
                      seed: int) -> np.ndarray:
    """A seeded random ``share`` of the interacted items, as a bool mask."""
    cold = np.zeros(num_items, dtype=bool)
    interacted = np.unique(interactions.item)
    count = int(round(share * len(interacted)))
    if count:
        cold[np.random.default_rng(seed).choice(interacted, size=count, replace=False)] = True
    return cold


def make_split(dataset: Dataset, config: SplitConfig = SplitConfig()) -> Split:
    """Splits ``dataset.interactions`` as ``config`` says."""
    log = dataset.interactions
    scheme = config.scheme
    if config.split_file:
        labels, scheme = read_split_file(config.split_file, dataset), "explicit"
    elif scheme == "explicit" or (scheme == "auto" and dataset.explicit_split is not None):
        if dataset.explicit_split is None:
            raise DataError(f"data set {dataset.name!r} has no explicit split; give a "
                            "split_file or choose leave_one_out or time")
        labels, scheme = np.asarray(dataset.explicit_split, dtype=object), "explicit"
    elif scheme == "time":
        labels = time_labels(log, config.time_fractions)
    else:
        labels, scheme = leave_one_out_labels(log), "leave_one_out"
    cold = choose_cold_items(log, len(dataset.catalogue), config.cold_item_share, config.seed)
    order = log.chronological_order()
    ordered_labels = labels[order]
    train = order[(ordered_labels == "train") & ~cold[log.item[order]]]
    held = last_clicks_per_user(log.user[train], config.ranker_clicks)
    return Split(train=train[~held], valid=order[ordered_labels == "valid"],
                 test=order[ordered_labels == "test"], cold_items=cold, scheme=scheme,
                 ranker=train[held])


def last_clicks_per_user(users: np.ndarray, count: int) -> np.ndarray:
    """bool over chronological rows of ``users``: each user's last ``count``
    rows, for users with more than ``count`` (each keeps at least one)."""
    held = np.zeros(len(users), bool)
    if count < 1 or not len(users):
        return held
    grouped = np.lexsort((np.arange(len(users)), users))   # by user, in time order
    starts = np.flatnonzero(np.r_[True, np.diff(users[grouped]) != 0])
    sizes = np.diff(np.r_[starts, len(users)])
    size = np.repeat(sizes, sizes)
    from_end = size - 1 - (np.arange(len(users)) - np.repeat(starts, sizes))
    held[grouped[(from_end < count) & (size > count)]] = True
    return held
