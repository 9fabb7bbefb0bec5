"""The click log: who interacted with what, and when.

Users and items are stored as integer indices into ``user_ids`` and the
catalogue, so every later step (splits, tf.data pipelines, the compiled model)
works on numbers. Rows keep the order they had in the source file; the
chronological order is :meth:`Interactions.chronological_order`, a *stable*
sort by timestamp, so ties keep file order (the rule RecBole's splits use).

Example:

    log = Interactions.build(users=["u1", "u1"], items=[3, 0], timestamps=[10, 5])
    log.chronological_order()   # array([1, 0])
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Interactions:
    """A click log of ``len(self)`` rows.

    Attributes:
      user_ids: external user ids, [U]; ``user[i]`` indexes it.
      user: int32 [R] user index of each row.
      item: int32 [R] item index (into the catalogue) of each row.
      timestamp: float64 [R] seconds (any monotone clock works).
      event: optional event type per row ("click", "purchase", ...), or None.
    """

    user_ids: np.ndarray
    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    event: np.ndarray | None = None

    @classmethod
    def build(cls, users, items, timestamps, events=None) -> "Interactions":
        """Indexes external user ids in order of first appearance."""
        user_ids, user = np.unique(np.asarray([str(u) for u in users], dtype=object),
                                   return_inverse=True)
        # np.unique sorts; re-rank by first appearance so indices follow the file.
        first = np.full(len(user_ids), len(user), dtype=np.int64)
        np.minimum.at(first, user, np.arange(len(user)))
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        return cls(
            user_ids=user_ids[order],
            user=rank[user].astype(np.int32),
            item=np.asarray(items, dtype=np.int32),
            timestamp=np.asarray(timestamps, dtype=np.float64),
            event=None if events is None else np.asarray(events, dtype=object))

    def __len__(self) -> int:
        return len(self.user)

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    def chronological_order(self) -> np.ndarray:
        """Row order by (user, timestamp), ties in file order."""
        by_time = np.argsort(self.timestamp, kind="stable")
        return by_time[np.argsort(self.user[by_time], kind="stable")]

    def subset(self, rows: np.ndarray) -> "Interactions":
        """The rows given (indices or a boolean mask), same user index space."""
        return Interactions(
            user_ids=self.user_ids, user=self.user[rows], item=self.item[rows],
            timestamp=self.timestamp[rows],
            event=None if self.event is None else self.event[rows])

    def user_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.user_ids.tolist())}
