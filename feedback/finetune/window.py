"""A window of new clicks, turned into what a fine-tuning job trains and judges on.

The store hands the job events in commit order; the published version holds
each user's history frozen at its ``data_until``. A click in the window is a
training example exactly as serving will later see the user: its history is
the user's earlier window clicks (newest first) merged ahead of the frozen
history (:func:`mmrec.export.serving_tables.merge_history`, the SavedModel's
merge). Each user's latest click is held out of this run's training: those
clicks are the recent holdout the candidate and the live version are both
scored on, and the next run trains on them (the version records them). A user
with a single click in the window has nothing to hold out against: that click
is trained on at once.

Example:

    window = build_window(published.tables, events, config)
    window.examples["item"].shape, len(window.holdout), window.skipped
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from typing import Container, Iterable, Sequence

import numpy as np

from mmrec.evaluate.queries import EvaluationQueries
from mmrec.export.serving_tables import ServingTables, merge_history

from feedback.finetune.config import FinetuneConfig
from feedback.store.config import normal_kind


@dataclasses.dataclass(frozen=True)
class Click:
    """One positive event of the window, as the job uses it (and records it)."""

    user_id: str
    item_id: str
    event: str
    timestamp: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Window:
    """What a window of clicks gives a fine-tuning job.

    Attributes:
      clicks: every positive click the window trains on: the new ones in
        time order, then the carried ones (the job brings the version's
        tables up to date with those newer than the tables' ``data_until``).
      examples: training arrays (user, item, history, history_mask, weight),
        the held-out clicks left out.
      holdout: one query per active user: their latest click.
      held_out: those clicks, for the next run to train on.
      skipped: events left out, counted by reason.
    """

    clicks: list[Click]
    examples: dict[str, np.ndarray]
    holdout: EvaluationQueries
    held_out: list[Click]
    skipped: dict[str, int]


def positive_clicks(events: Iterable, config: FinetuneConfig, item_index: dict[str, int],
                    skipped: dict[str, int]) -> list[Click]:
    """The events that are positives (by kind) of items the version knows, in time order."""
    clicks = []
    for event in events:
        kind = normal_kind(str(event.event))
        if kind not in config.event_weights:
            skipped[f"not a positive ({kind})"] = skipped.get(f"not a positive ({kind})", 0) + 1
            continue
        if str(event.item_id) not in item_index:
            skipped["item not in the version"] = skipped.get("item not in the version", 0) + 1
            continue
        clicks.append(Click(str(event.user_id), str(event.item_id), kind,
                            float(event.timestamp)))
    return sorted(clicks, key=lambda click: click.timestamp)


def build_window(tables: ServingTables, events: Sequence, config: FinetuneConfig,
                 carried: Sequence[Click] = ()) -> Window:
    """Training examples and the recent holdout of ``events`` for a version.

    Args:
      tables: the version's serving tables (ids, frozen histories, seen items).
      events: store events (``user_id``, ``item_id``, ``event``, ``timestamp``).
      config: which kinds are positives and their weights.
      carried: clicks the previous run held out (trained on now, first).
    """
    item_index = tables.item_index()
    user_index = {user: row for row, user in enumerate(tables.user_ids.tolist())}
    skipped: dict[str, int] = {}
    clicks = positive_clicks(events, config, item_index, skipped)
    by_user: dict[str, list[Click]] = {}
    for click in clicks:
        by_user.setdefault(click.user_id, []).append(click)
    unknown_row = len(tables.user_ids)
    length = tables.history_length
    rows: dict[str, list] = {"user": [], "item": [], "history": [], "history_mask": [],
                             "weight": []}
    queries: dict[str, list] = {"user": [], "target": [], "history": [], "history_mask": [],
                                "exclude": [], "timestamp": []}
    held_out = []

    def history_of(user: str, earlier: dict[int, None],
                   later: Container[int]) -> tuple[np.ndarray, np.ndarray]:
        """The history before a click: the items of the user's earlier window
        clicks (``earlier``, ordered by their latest click) newest first, ahead
        of the frozen history, from which the click's item and the user's later
        items are taken out (a refresh, or the run that held it out, may have
        merged them)."""
        row = user_index.get(user)
        frozen = tables.frozen_history(row) if row is not None else []
        frozen = [item for item in frozen if item not in later]
        # Only the newest `length` distinct items can reach the merged history,
        # so a user with n clicks costs O(n * length), not O(n^2).
        merged = merge_history(list(itertools.islice(reversed(earlier), length)), frozen,
                               length)
        items = np.zeros(length, np.int32)
        mask = np.zeros(length, bool)
        items[:len(merged)], mask[:len(merged)] = merged, True
        return items, mask

    def clicked(clicks: Iterable[Click]) -> dict[int, None]:
        """Items of ``clicks`` in the order of each one's latest click."""
        order: dict[int, None] = {}
        for click in clicks:
            item = item_index[click.item_id]
            order.pop(item, None)
            order[item] = None
        return order

    for user, user_clicks in by_user.items():
        row = user_index.get(user, unknown_row)
        earlier: dict[int, None] = {}
        later = collections.Counter(item_index[c.item_id] for c in user_clicks)
        for position, click in enumerate(user_clicks):
            item = item_index[click.item_id]
            history, mask = history_of(user, earlier, later)
            later[item] -= 1
            if not later[item]:
                del later[item]
            earlier.pop(item, None)
            earlier[item] = None
            if position == len(user_clicks) - 1 and position > 0:  # the latest: held out
                seen = set()
                if user in user_index:
                    r = user_index[user]
                    seen.update(tables.seen_items[tables.seen_indptr[r]:
                                                  tables.seen_indptr[r + 1]].tolist())
                seen.update(earlier)  # every window item so far, this one discarded next
                seen.discard(item)
                queries["user"].append(row)
                queries["target"].append(item)
                queries["history"].append(history)
                queries["history_mask"].append(mask)
                queries["exclude"].append(sorted(seen))
                queries["timestamp"].append(click.timestamp)
                held_out.append(click)
                continue
            rows["user"].append(row)
            rows["item"].append(item_index[click.item_id])
            rows["history"].append(history)
            rows["history_mask"].append(mask)
            rows["weight"].append(config.event_weights[click.event])
    for click in carried:
        if click.item_id not in item_index:
            skipped["item not in the version"] = skipped.get("item not in the version", 0) + 1
            continue
        mine = by_user.get(click.user_id, [])
        earlier = clicked(c for c in mine if c.timestamp < click.timestamp)
        later = {item_index[click.item_id]} | {item_index[c.item_id] for c in mine
                                               if c.timestamp >= click.timestamp}
        history, mask = history_of(click.user_id, earlier, later)
        rows["user"].append(user_index.get(click.user_id, unknown_row))
        rows["item"].append(item_index[click.item_id])
        rows["history"].append(history)
        rows["history_mask"].append(mask)
        rows["weight"].append(config.event_weights.get(click.event, 1.0))
    examples = {
        "user": np.asarray(rows["user"], np.int32),
        "item": np.asarray(rows["item"], np.int32),
        "history": np.asarray(rows["history"], np.int32).reshape(-1, length),
        "history_mask": np.asarray(rows["history_mask"], bool).reshape(-1, length),
        "weight": np.asarray(rows["weight"], np.float32)}
    indptr = np.zeros(len(queries["target"]) + 1, np.int64)
    np.cumsum([len(e) for e in queries["exclude"]], out=indptr[1:])
    holdout = EvaluationQueries(
        user=np.asarray(queries["user"], np.int32),
        target=np.asarray(queries["target"], np.int32),
        history=np.asarray(queries["history"], np.int32).reshape(-1, length),
        history_mask=np.asarray(queries["history_mask"], bool).reshape(-1, length),
        exclude_indptr=indptr,
        exclude_items=np.asarray([i for e in queries["exclude"] for i in e], np.int32),
        rows=np.arange(len(queries["target"]), dtype=np.int64),
        timestamp=np.asarray(queries["timestamp"], np.float64))
    return Window(clicks=clicks + [c for c in carried if c.item_id in item_index],
                  examples=examples, holdout=holdout, held_out=held_out, skipped=skipped)


def with_replay(examples: dict[str, np.ndarray], replay: dict[str, np.ndarray], share: float,
                num_items: int, seed: int) -> dict[str, np.ndarray]:
    """``examples`` plus ``round(share * len(examples))`` replayed ones drawn from
    ``replay``, and every example's sampling probability for the logQ
    correction (its item's share of this run's clicks)."""
    count = int(round(share * len(examples["item"])))
    count = min(count, len(replay["item"]))
    picked = np.random.default_rng(seed).choice(len(replay["item"]), size=count,
                                                replace=False) if count else np.zeros(0, int)
    keys = ("user", "item", "history", "history_mask")
    merged = {key: np.concatenate([examples[key], replay[key][picked]]) for key in keys}
    merged["weight"] = np.concatenate([examples["weight"], np.ones(count, np.float32)])
    counts = np.bincount(merged["item"], minlength=num_items)
    merged["candidate_sampling_probability"] = (
        counts[merged["item"]] / max(counts.sum(), 1)).astype(np.float32)
    return merged
