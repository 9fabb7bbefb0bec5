"""The tables a version serves besides its weights: ids, histories, seen items.

A request names a user by id; the version must know that user's last clicks
(to compute the user vector), every item the user has seen (to leave out),
and a popularity order for users it has never met. These tables are built
from a click log when a version is published, stored inside the SavedModel
(so TF Serving answers alone) and, as NumPy arrays, in the version's side car
(so a later job can rebuild, extend or refresh them without the run folder).
Plain NumPy.

Example:

    tables = ServingTables.from_interactions(dataset.catalogue, dataset.interactions,
                                             history_length=20)
    tables.histories.shape      # (num_users, 20), most recent first
    tables.save(path); ServingTables.load(path)
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from mmrec.data.catalogue import Catalogue
from mmrec.data.interactions import Interactions


def last_items(log: Interactions, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's last ``length`` items, most recent first: ([U, H], mask)."""
    order = log.chronological_order()
    users = log.user[order]
    ends = np.searchsorted(users, np.arange(log.num_users), side="right")
    from_end = ends[users] - 1 - np.arange(len(order))
    keep = from_end < length
    items = np.zeros((log.num_users, length), dtype=np.int32)
    mask = np.zeros((log.num_users, length), dtype=bool)
    items[users[keep], from_end[keep]] = log.item[order][keep]
    mask[users[keep], from_end[keep]] = True
    return items, mask


def seen_items(log: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr [U+1], items) of the distinct items each user interacted with."""
    pairs = np.unique(np.stack([log.user.astype(np.int64), log.item.astype(np.int64)], 1), axis=0)
    indptr = np.searchsorted(pairs[:, 0], np.arange(log.num_users + 1))
    return indptr.astype(np.int64), pairs[:, 1].astype(np.int32)


def merge_history(recent: list[int], frozen: list[int], length: int) -> list[int]:
    """``recent`` items (newest first) ahead of ``frozen`` ones, each item once
    (its newest occurrence), cut to ``length``: the same merge as the
    SavedModel's ``recommend_with_history``.

    Example:

        merge_history([7, 3], [3, 5, 9], 4)    # [7, 3, 5, 9]
    """
    merged: list[int] = []
    for item in list(recent) + list(frozen):
        if item not in merged:
            merged.append(item)
            if len(merged) == length:
                break
    return merged


def popularity_scores(log: Interactions, num_items: int) -> np.ndarray:
    """log(1 + clicks) per item: the order unknown users get."""
    counts = np.bincount(log.item, minlength=num_items).astype(np.float32)
    return np.log1p(counts)


@dataclasses.dataclass
class ServingTables:
    """Per-item and per-user arrays of one version.

    Attributes:
      item_ids: external item ids [N] (str).
      metadata: display fields per item (title, ...), lists of [N].
      trained_items: bool [N], True for items whose id vector was trained
        (False for items held out of training or added after it).
      retired: bool [N], True for items never to be recommended again (they
        may stay in histories, where they still describe a user's taste).
      user_ids: external user ids [U] (str).
      histories: int32 [U, H] each user's last H items, most recent first.
      history_mask: bool [U, H].
      seen_indptr, seen_items: CSR of every item each user interacted with.
      popularity: float32 [N] the score of each item for unknown users.
      data_until: the timestamp of the newest interaction these tables hold.
    """

    item_ids: np.ndarray
    metadata: dict[str, list]
    trained_items: np.ndarray
    user_ids: np.ndarray
    histories: np.ndarray
    history_mask: np.ndarray
    seen_indptr: np.ndarray
    seen_items: np.ndarray
    popularity: np.ndarray
    data_until: float | None
    retired: np.ndarray | None = None

    ARRAYS = ("item_ids", "trained_items", "retired", "user_ids", "histories", "history_mask",
              "seen_indptr", "seen_items", "popularity")

    def __post_init__(self) -> None:
        if self.retired is None:
            self.retired = np.zeros(len(self.item_ids), dtype=bool)

    @classmethod
    def from_interactions(cls, catalogue: Catalogue, log: Interactions, history_length: int,
                          trained_items: np.ndarray | None = None) -> "ServingTables":
        """The tables of ``log`` over ``catalogue``, histories of ``history_length``."""
        histories, mask = last_items(log, history_length)
        indptr, items = seen_items(log)
        return cls(
            item_ids=np.asarray(catalogue.item_ids, dtype=str),
            metadata={key: [str(v) for v in values] for key, values in catalogue.metadata.items()},
            trained_items=(np.ones(len(catalogue), dtype=bool) if trained_items is None
                           else np.asarray(trained_items, dtype=bool)),
            user_ids=np.asarray(log.user_ids, dtype=str), histories=histories,
            history_mask=mask, seen_indptr=indptr, seen_items=items,
            popularity=popularity_scores(log, len(catalogue)),
            data_until=float(log.timestamp.max()) if len(log) else None)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    def item_index(self) -> dict[str, int]:
        """Maps external item id to its row in these tables."""
        return {item_id: i for i, item_id in enumerate(self.item_ids.tolist())}

    @property
    def history_length(self) -> int:
        return int(self.histories.shape[1])

    def frozen_history(self, row: int) -> list[int]:
        """User ``row``'s frozen history, newest first, without padding."""
        return self.histories[row][self.history_mask[row]].tolist()

    def with_events(self, users: list[str], items: np.ndarray, timestamps: np.ndarray,
                    erased_users: tuple[str, ...] = ()) -> "ServingTables":
        """These tables brought up to date with clicks that came after them.

        Each user's clicks (item indices, any order; sorted here by time) are
        merged ahead of their frozen history as serving merges them; seen items
        and popularity count them; users new to the tables are appended (their
        rows use the model's "unknown user" id vector). ``erased_users`` lose
        their id, history and seen items (their row stays, so the other users'
        rows, which index the model's user-id vectors, do not move).
        """
        order = np.argsort(np.asarray(timestamps, dtype=np.float64), kind="stable")
        users = [str(users[i]) for i in order]
        items = np.asarray(items, dtype=np.int64)[order]
        index = {user: row for row, user in enumerate(self.user_ids.tolist())}
        user_ids = self.user_ids.tolist()
        for user in users:
            if user not in index:
                index[user] = len(user_ids)
                user_ids.append(user)
        rows = len(user_ids)
        length = self.history_length
        histories = np.zeros((rows, length), np.int32)
        mask = np.zeros((rows, length), bool)
        histories[:len(self.histories)] = self.histories
        mask[:len(self.history_mask)] = self.history_mask
        seen = [set(self.seen_items[self.seen_indptr[r]:self.seen_indptr[r + 1]].tolist())
                if r < len(self.seen_indptr) - 1 else set() for r in range(rows)]
        clicked: dict[int, list[int]] = {}
        for user, item in zip(users, items.tolist()):
            clicked.setdefault(index[user], []).append(item)
            seen[index[user]].add(item)
        for row, recent in clicked.items():
            frozen = histories[row][mask[row]].tolist()
            merged = merge_history(recent[::-1], frozen, length)
            histories[row], mask[row] = 0, False
            histories[row, :len(merged)], mask[row, :len(merged)] = merged, True
        for user in erased_users:
            row = index.get(str(user))
            if row is not None:
                user_ids[row] = f"\x00erased-{row}"  # no request can name it
                histories[row], mask[row], seen[row] = 0, False, set()
        counts = np.expm1(self.popularity.astype(np.float64)) + np.bincount(
            items, minlength=self.num_items)
        indptr = np.zeros(rows + 1, np.int64)
        np.cumsum([len(s) for s in seen], out=indptr[1:])
        seen_items = np.asarray([i for s in seen for i in sorted(s)], dtype=np.int32)
        until = max([self.data_until or -np.inf, *np.asarray(timestamps, float).tolist()])
        return dataclasses.replace(
            self, user_ids=np.asarray(user_ids, dtype=str), histories=histories,
            history_mask=mask, seen_indptr=indptr, seen_items=seen_items,
            popularity=np.log1p(np.rint(counts)).astype(np.float32),
            data_until=None if until == -np.inf else float(until))

    def save(self, path: str | os.PathLike) -> None:
        """Writes the arrays to one ``.npz`` file (metadata travels in items.json)."""
        np.savez(path, **{name: getattr(self, name) for name in self.ARRAYS},
                 data_until=np.asarray(np.nan if self.data_until is None else self.data_until))

    @classmethod
    def load(cls, path: str | os.PathLike, metadata: dict[str, list]) -> "ServingTables":
        with np.load(Path(path), allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in cls.ARRAYS if name in stored}
            until = float(stored["data_until"])
        return cls(metadata=metadata, data_until=None if np.isnan(until) else until, **arrays)
