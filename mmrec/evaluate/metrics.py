"""Full-ranking metrics with honest ties, for any scorer.

A scorer is anything that maps a batch of query indices to a score for every
catalogue item, ``scorer(query_indices) -> float [b, num_items]``; the Keras
model plugs in through a small function of that shape, the baselines through
:meth:`mmrec.evaluate.baselines.Baseline.scorer`. Queries are scored a batch at a
time, so a 70,000-item catalogue never needs a [Q, N] matrix.

Each query has one relevant item, its target. Its rank is read off as two
counts: ``higher``, the items scored strictly above the target, and ``ties``,
the other items scored exactly the same. Breaking ties by item index or by sort
order would hand a constant scorer a perfect score whenever the target happens
to come first; instead every metric is its *expectation* under a uniformly
random tie-break, which is exact and costs nothing (the target's 0-based
position is uniform over ``higher .. higher + ties``). A constant scorer then
gets exactly the metrics of a random ranking.

Reported per cut-off k: HR@k (the target is in the top k; with a single
relevant item this is also Recall@k, reported under both names to match papers
that use either), NDCG@k and MRR@k, averaged over queries; the same split into
warm and cold queries (cold: the target was held out of training); and two
properties of the top-k lists themselves: catalogue coverage and the mean
popularity percentile of what is recommended.

Example:

    queries = build_queries(log, split, "test", history_length=20)
    counts = np.bincount(log.item[split.train], minlength=num_items)
    report = evaluate_scorer(lambda q: scores[q], queries, num_items,
                             split.cold_items, counts)
    report["NDCG@10"], report["cold"]["queries"]
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from mmrec.evaluate.queries import EvaluationQueries

Scorer = Callable[[np.ndarray], np.ndarray]
"""``scorer(query_indices int64 [b]) -> float [b, num_items]``, higher is better."""

DEFAULT_CUTOFFS: tuple[int, ...] = (10, 20)


def expected_rank_metrics(higher: np.ndarray, ties: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """HR@k, NDCG@k and MRR@k per query, expected over random tie-breaking.

    The target's 0-based position is uniform over ``higher .. higher + ties``;
    each metric is the mean over those positions of its value at one
    position: 1 for HR if the position is below k, ``1 / log2(position + 2)``
    for NDCG (the ideal DCG of one relevant item is 1) and
    ``1 / (position + 1)`` for MRR, all 0 from position k on.

    Example:

        expected_rank_metrics(np.array([0, 3]), np.array([1, 0]), k=10)["mrr"]
        # array([0.75, 0.25]): (1 + 1/2) / 2, and 1/4

    Args:
      higher: int [Q] items scored strictly above the target.
      ties: int [Q] other items scored equal to the target.
      k: the cut-off, >= 1.

    Returns:
      {"hr", "ndcg", "mrr"}: float64 [Q] each.

    Raises:
      ValueError: k < 1, negative counts, or shapes that differ.
    """
    higher = np.asarray(higher, dtype=np.int64)
    ties = np.asarray(ties, dtype=np.int64)
    if k < 1:
        raise ValueError(f"cut-off k must be at least 1, got {k}")
    if higher.shape != ties.shape:
        raise ValueError(f"higher and ties must have the same shape; got {higher.shape} "
                         f"and {ties.shape}")
    if higher.size and (higher.min() < 0 or ties.min() < 0):
        raise ValueError("higher and ties are counts and cannot be negative")
    positions = np.arange(k, dtype=np.float64)
    # gains[m] = total gain of positions 0 .. m-1, so a span's total is a difference.
    gains = {"hr": np.ones(k), "ndcg": 1.0 / np.log2(positions + 2.0),
             "mrr": 1.0 / (positions + 1.0)}
    first = np.minimum(higher, k)
    stop = np.minimum(higher + ties + 1, k)
    count = ties + 1.0
    result = {}
    for name, gain in gains.items():
        cumulative = np.concatenate([[0.0], np.cumsum(gain)])
        result[name] = (cumulative[stop] - cumulative[first]) / count
    return result


def popularity_percentiles(train_item_counts: np.ndarray) -> np.ndarray:
    """Each item's popularity percentile, float64 [N] in [0, 100].

    An item's percentile is its rank by training-click count among all items,
    scaled so the least popular is 0 and the most popular 100; tied items
    share their average rank (so a catalogue of equal counts is all 50).
    """
    counts = np.asarray(train_item_counts)
    if len(counts) <= 1:
        return np.full(len(counts), 50.0)
    _, inverse, tally = np.unique(counts, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(tally) - tally + 1
    average_rank = first_rank + (tally - 1) / 2.0
    return 100.0 * (average_rank[inverse.reshape(-1)] - 1.0) / (len(counts) - 1)


@dataclasses.dataclass
class RankedQueries:
    """Where each query's target landed, and what was recommended.

    Attributes:
      higher: int64 [Q] non-excluded items scored strictly above the target.
      ties: int64 [Q] other non-excluded items scored equal to the target.
      top_items: int32 [Q, L] the top L items, best first, ties broken at
        random; -1 where fewer than L items could be recommended (excluded
        items and items scored -inf never are).
    """

    higher: np.ndarray
    ties: np.ndarray
    top_items: np.ndarray


def rank_queries(scorer: Scorer, queries: EvaluationQueries, num_items: int,
                 list_length: int = 0, batch_size: int = 512, seed: int = 0) -> RankedQueries:
    """Scores every query against the full catalogue, a batch at a time.

    Each query's earlier items are set to -inf, never its target. When the
    target itself scores -inf, the excluded items are not counted as its ties.

    Args:
      scorer: maps query indices to scores [b, num_items].
      queries: what to rank.
      num_items: catalogue size N.
      list_length: how many top items to keep per query (0: none).
      batch_size: queries per scorer call.
      seed: seeds the random tie-breaks of the top lists (the rank metrics
        need none: they are exact expectations).

    Raises:
      ValueError: the scorer returned the wrong shape or NaN.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    rng = np.random.default_rng(seed)
    count = len(queries)
    higher = np.zeros(count, dtype=np.int64)
    ties = np.zeros(count, dtype=np.int64)
    top_items = np.full((count, list_length), -1, dtype=np.int32)
    for start in range(0, count, batch_size):
        indices = np.arange(start, min(start + batch_size, count), dtype=np.int64)
        scores = _checked_scores(scorer(indices), len(indices), num_items)
        rows = np.arange(len(indices))
        targets = queries.target[indices]
        excluded = queries.exclusion_mask(indices, num_items)
        excluded[rows, targets] = False
        scores[excluded] = -np.inf
        target_scores = scores[rows, targets][:, np.newaxis]
        higher[indices] = (scores > target_scores).sum(axis=1)
        equal = (scores == target_scores).sum(axis=1) - 1
        ties[indices] = equal - np.where(np.isneginf(target_scores[:, 0]), excluded.sum(axis=1), 0)
        if list_length:
            top_items[indices] = _top_items(scores, list_length, rng)
    return RankedQueries(higher=higher, ties=ties, top_items=top_items)


def summarise_ranks(higher: np.ndarray, ties: np.ndarray,
                    ks: Sequence[int] = DEFAULT_CUTOFFS) -> dict[str, float | int | None]:
    """Mean HR@k, Recall@k, NDCG@k and MRR@k over queries; None when there are none."""
    summary: dict[str, float | int | None] = {"queries": int(len(higher))}
    for k in ks:
        per_query = expected_rank_metrics(higher, ties, k)
        mean = {name: float(values.mean()) if len(values) else None
                for name, values in per_query.items()}
        summary.update({f"HR@{k}": mean["hr"], f"Recall@{k}": mean["hr"],
                        f"NDCG@{k}": mean["ndcg"], f"MRR@{k}": mean["mrr"]})
    return summary


def evaluate_scorer(scorer: Scorer, queries: EvaluationQueries, num_items: int,
                    cold_items: np.ndarray, train_item_counts: np.ndarray,
                    ks: Sequence[int] = DEFAULT_CUTOFFS, batch_size: int = 512,
                    seed: int = 0) -> dict:
    """The full evaluation report of one scorer on one set of queries.

    Args:
      scorer: maps query indices int64 [b] to scores float [b, num_items].
      queries: from :func:`mmrec.evaluate.queries.build_queries`.
      num_items: catalogue size N.
      cold_items: bool [N], items held out of training (``split.cold_items``).
      train_item_counts: int [N] training clicks per item, for popularity.
      ks: cut-offs.
      batch_size: queries per scorer call.
      seed: seeds the random tie-breaks of the top-k lists.

    Returns:
      A JSON-ready dict: "queries", then per k "HR@k", "Recall@k", "NDCG@k",
      "MRR@k"; "warm" and "cold", each {"queries": n, same metrics} with the
      metrics None when n is 0; and per k "coverage@k" (share of the
      catalogue in any top-k list) and "popularity_percentile@k" (mean
      percentile of the recommended items, None if nothing was recommended).

    Raises:
      ValueError: arrays whose length is not num_items, a bad cut-off, or a
        scorer that returned the wrong shape or NaN.
    """
    cold_items = np.asarray(cold_items, dtype=bool)
    train_item_counts = np.asarray(train_item_counts)
    for name, array in (("cold_items", cold_items), ("train_item_counts", train_item_counts)):
        if array.shape != (num_items,):
            raise ValueError(f"{name} must have one entry per item, shape ({num_items},); "
                             f"got {array.shape}")
    if not ks or min(ks) < 1:
        raise ValueError(f"cut-offs must be integers >= 1, got {tuple(ks)}")
    ranked = rank_queries(scorer, queries, num_items, list_length=max(ks),
                          batch_size=batch_size, seed=seed)
    cold = cold_items[queries.target]
    report: dict = summarise_ranks(ranked.higher, ranked.ties, ks)
    report["warm"] = summarise_ranks(ranked.higher[~cold], ranked.ties[~cold], ks)
    report["cold"] = summarise_ranks(ranked.higher[cold], ranked.ties[cold], ks)
    percentiles = popularity_percentiles(train_item_counts)
    for k in ks:
        recommended = ranked.top_items[:, :k]
        recommended = recommended[recommended >= 0]
        report[f"coverage@{k}"] = len(np.unique(recommended)) / num_items if num_items else 0.0
        report[f"popularity_percentile@{k}"] = (float(percentiles[recommended].mean())
                                                if len(recommended) else None)
    return report


def _checked_scores(scores: np.ndarray, batch: int, num_items: int) -> np.ndarray:
    """A writable float copy of a scorer's output, after checking it."""
    scores = np.asarray(scores)
    if scores.shape != (batch, num_items):
        raise ValueError(f"scorer must return scores of shape [batch, num_items] = "
                         f"[{batch}, {num_items}]; got {list(scores.shape)}")
    dtype = scores.dtype if np.issubdtype(scores.dtype, np.floating) else np.float64
    scores = np.array(scores, dtype=dtype, copy=True)
    if np.isnan(scores).any():
        raise ValueError(f"scorer returned NaN for {int(np.isnan(scores).any(axis=1).sum())} "
                         f"of {batch} queries; NaN cannot be ranked")
    return scores


def _top_items(scores: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """int32 [b, length]: the best items per row, ties broken uniformly at random.

    Items above the row's length-th best score are all in; the tied items at
    that score fill the remaining places by random draw; the list is then
    ordered by score, ties again at random. Items scored -inf become -1.
    """
    batch, num_items = scores.shape
    kept = min(length, num_items)
    top = np.full((batch, length), -1, dtype=np.int32)
    if kept == 0:
        return top
    threshold = np.partition(scores, num_items - kept, axis=1)[:, num_items - kept, np.newaxis]
    priority = np.where(scores > threshold, np.float32(2.0), np.float32(-1.0))
    at_threshold = scores == threshold
    priority[at_threshold] = rng.random(int(at_threshold.sum()), dtype=np.float32)
    chosen = np.argpartition(-priority, kept - 1, axis=1)[:, :kept]
    chosen_scores = np.take_along_axis(scores, chosen, axis=1)
    order = np.lexsort((rng.random(chosen.shape), -chosen_scores), axis=1)
    chosen = np.take_along_axis(chosen, order, axis=1)
    chosen_scores = np.take_along_axis(chosen_scores, order, axis=1)
    top[:, :kept] = np.where(np.isneginf(chosen_scores), -1, chosen)
    return top
