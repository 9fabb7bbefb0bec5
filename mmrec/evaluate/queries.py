"""Evaluation queries: one per validation or test click, in the field's protocol.

Numbers from different papers can only be set side by side when they rank the
same thing. The protocol used across the field (SASRec, BERT4Rec, RecBole) is
chronological leave-one-out with *full* ranking: each held-out click is one
query, its item is the single relevant item, every catalogue item is a
candidate, and the items the user touched before the target are taken out of
the ranking, because recommending something the user has just bought or
watched is not what is being measured.

A query carries everything a scorer may look at and nothing later than the
target: the user, the recent history (most recent first, as the model's input
pipeline builds it) and the full set of earlier items. For a test query under
leave-one-out that includes the validation click, which the model never trained
on but which the user did make before the test click.

Example:

    split = make_split(dataset)
    test = build_queries(dataset.interactions, split, "test", history_length=20)
    len(test), test.exclude_items_of(0)   # 943, what query 0's user saw before its target
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mmrec.data.interactions import Interactions
from mmrec.data.splits import Split
from mmrec.features.examples import histories

QUERY_PARTS = ("valid", "test")


@dataclasses.dataclass
class EvaluationQueries:
    """The held-out clicks of one split part, ready to rank.

    ``exclude`` is a compressed sparse row pair: the earlier items of query
    ``q`` are ``exclude_items[exclude_indptr[q]:exclude_indptr[q + 1]]``,
    sorted by item index and without repeats. The target is never among them,
    even when the user clicked the same item before: a re-consumed item is
    still the right answer.

    Example:

        queries = build_queries(log, split, "valid", history_length=20)
        queries.exclusion_mask(np.arange(4), num_items)   # bool [4, num_items]

    Attributes:
      user: int32 [Q] user index of each query.
      target: int32 [Q] the item clicked, the one relevant item.
      history: int32 [Q, H] the user's earlier clicks, most recent first, 0-padded.
      history_mask: bool [Q, H], True on real history entries.
      exclude_indptr: int64 [Q + 1] row pointers into ``exclude_items``.
      exclude_items: int32 items seen before each target, target left out.
      rows: int64 [Q] the interaction row of each query.
      timestamp: float64 [Q] time of each query's click.
    """

    user: np.ndarray
    target: np.ndarray
    history: np.ndarray
    history_mask: np.ndarray
    exclude_indptr: np.ndarray
    exclude_items: np.ndarray
    rows: np.ndarray
    timestamp: np.ndarray

    def __len__(self) -> int:
        return len(self.target)

    @property
    def exclude(self) -> tuple[np.ndarray, np.ndarray]:
        """The (indptr, items) pair of excluded items."""
        return self.exclude_indptr, self.exclude_items

    def exclude_items_of(self, query: int) -> np.ndarray:
        """The items excluded from query ``query``'s ranking."""
        return self.exclude_items[self.exclude_indptr[query]:self.exclude_indptr[query + 1]]

    def exclusion_mask(self, query_indices: np.ndarray, num_items: int) -> np.ndarray:
        """bool [b, num_items]: True where an item is taken out of the ranking."""
        rows, items = self._exclude_pairs(np.asarray(query_indices, dtype=np.int64))
        mask = np.zeros((len(query_indices), num_items), dtype=bool)
        mask[rows, items] = True
        return mask

    def seen_mask(self, query_indices: np.ndarray, num_items: int) -> np.ndarray:
        """bool [b, num_items]: every item the user clicked before the target.

        The excluded items plus the history, so an earlier click of the
        target item itself (kept out of ``exclude``) still counts as seen when
        it is within the history window. This is the input of item-to-item
        models such as EASE.
        """
        query_indices = np.asarray(query_indices, dtype=np.int64)
        mask = self.exclusion_mask(query_indices, num_items)
        history_rows, history_columns = np.nonzero(self.history_mask[query_indices])
        mask[history_rows, self.history[query_indices][history_rows, history_columns]] = True
        return mask

    def _exclude_pairs(self, query_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in ``query_indices``, item) of every excluded item."""
        starts = self.exclude_indptr[query_indices]
        lengths = self.exclude_indptr[query_indices + 1] - starts
        positions = np.repeat(np.arange(len(query_indices)), lengths)
        offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return positions, self.exclude_items[np.repeat(starts, lengths) + offsets]


def build_queries(interactions: Interactions, split: Split, part: str,
                  history_length: int) -> EvaluationQueries:
    """One query per row of ``split.valid`` or ``split.test``.

    History and exclusions use *every* earlier row of the user in
    chronological order (timestamp, ties in file order), whether it was
    trained on or not: all of it happened before the target.

    Args:
      interactions: the whole click log.
      split: which rows are validation and test.
      part: "valid" or "test".
      history_length: H, the number of recent clicks kept in ``history``
        (the exclusion list is never truncated).

    Returns:
      The queries, in the order of ``split.part(part)``.

    Raises:
      ValueError: an unknown part or a history_length below 1.
    """
    if part not in QUERY_PARTS:
        raise ValueError(f"queries come from one of {QUERY_PARTS}, got {part!r}")
    if history_length < 1:
        raise ValueError(f"history_length must be at least 1, got {history_length}")
    targets = np.asarray(split.part(part), dtype=np.int64)
    history, history_mask = histories(interactions, targets, np.arange(len(interactions)),
                                      history_length)
    indptr, items = _earlier_items(interactions, targets)
    return EvaluationQueries(
        user=interactions.user[targets].astype(np.int32),
        target=interactions.item[targets].astype(np.int32),
        history=history, history_mask=history_mask,
        exclude_indptr=indptr, exclude_items=items,
        rows=targets, timestamp=interactions.timestamp[targets].astype(np.float64))


def _earlier_items(interactions: Interactions,
                   targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr, items) of each target's earlier distinct items, target left out.

    In chronological order a user's rows are contiguous, so the rows before a
    target are the span from the user's first row up to the target's position.
    """
    order = interactions.chronological_order()
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    user_start = np.searchsorted(interactions.user[order], np.arange(interactions.num_users))
    span_start = user_start[interactions.user[targets]]
    lengths = position[targets] - span_start
    query = np.repeat(np.arange(len(targets), dtype=np.int64), lengths)
    offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    items = interactions.item[order[np.repeat(span_start, lengths) + offsets]].astype(np.int64)
    keep = items != interactions.item[targets][query]
    # One sort both removes repeats and orders each query's items.
    width = int(interactions.item.max()) + 1 if len(interactions) else 1
    keys = np.unique(query[keep] * width + items[keep])
    query, items = keys // width, keys % width
    indptr = np.zeros(len(targets) + 1, dtype=np.int64)
    np.cumsum(np.bincount(query, minlength=len(targets)), out=indptr[1:])
    return indptr, items.astype(np.int32)
