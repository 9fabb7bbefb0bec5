"""Two stages under one protocol: retrieve the top N, re-rank them, rank the rest as before.

The ranking stage sees only the retriever's top N of each query. So that
its numbers stay comparable with every retrieval-only row measured so far,
the full ranking is kept: the re-ranked N come first, in the ranker's order,
and every other item follows in the retriever's order. A ranker can thus
only move items within the retrieved N; what retrieval missed stays where
retrieval put it.

Example:

    lists = query_lists(users, table, queries, count=100)   # user and item vectors, as NumPy
    lists.recall()   # share of queries whose target is in its list
    scores = reranked_scores(users[idx] @ table.T, lists.candidates[idx], ranker_scores)
    scorer = two_stage_scorer(users, ranking_model, lists)   # the same, ranker scores included
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from mmrec.evaluate.metrics import evaluate_scorer
from mmrec.evaluate.model_scores import user_vectors
from mmrec.evaluate.queries import EvaluationQueries

# Above any dot product of unit vectors (at most 1), so the re-ranked N come first.
_RERANKED_OFFSET = 1e3


@dataclasses.dataclass
class CandidateLists:
    """The retriever's top N of each query, as the ranker reads them.

    Attributes:
      history: int32 [Q, H] the user's recent items, most recent first.
      history_mask: bool [Q, H], True on real history entries.
      candidates: int32 [Q, N] retrieved items, best first.
      retrieval_scores: float32 [Q, N] the retriever's dot products.
      labels: float32 [Q, N] 1.0 where the candidate is the query's target
        (all zeros when the list missed it); zeros without targets.
    """

    history: np.ndarray
    history_mask: np.ndarray
    candidates: np.ndarray
    retrieval_scores: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.candidates)

    def recall(self) -> float:
        """Share of lists that hold their target (the ceiling of re-ranking)."""
        return float(np.mean(self.labels.max(1) > 0)) if len(self) else 0.0

    def as_examples(self) -> dict[str, np.ndarray]:
        return dataclasses.asdict(self)


def retrieve_lists(users: np.ndarray, table: np.ndarray, history: np.ndarray,
                   history_mask: np.ndarray, exclusion: Callable[[np.ndarray], np.ndarray],
                   count: int, targets: np.ndarray | None = None,
                   batch_size: int = 1024) -> CandidateLists:
    """The top ``count`` items of each user vector by dot product.

    Args:
      users: float [Q, D] user vectors.
      table: float [I, D] item vectors.
      history, history_mask: [Q, H] what the ranker reads of each user.
      exclusion: query indices int64 [b] -> bool [b, I], items kept out of
        the list (those the user saw before, as the evaluation protocol does).
      count: N; at most the catalogue size.
      targets: int [Q] the clicked items, for labels.
    """
    num_items = len(table)
    if not 1 <= count <= num_items:
        raise ValueError(f"candidate lists: count must be in [1, {num_items}] (the catalogue), "
                         f"got {count}")
    queries = len(users)
    candidates = np.zeros((queries, count), np.int32)
    scores = np.zeros((queries, count), np.float32)
    for start in range(0, queries, batch_size):
        idx = np.arange(start, min(start + batch_size, queries))
        raw = users[idx] @ table.T
        block = np.where(exclusion(idx), -np.inf, raw)
        top = np.argpartition(-block, count - 1, axis=1)[:, :count]
        order = np.argsort(-np.take_along_axis(block, top, 1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, 1)
        candidates[idx] = top
        scores[idx] = np.take_along_axis(raw, top, 1)
    labels = (np.zeros((queries, count), np.float32) if targets is None
              else (candidates == np.asarray(targets)[:, None]).astype(np.float32))
    return CandidateLists(history=np.asarray(history, np.int32),
                          history_mask=np.asarray(history_mask, bool),
                          candidates=candidates, retrieval_scores=scores, labels=labels)


def reranked_scores(retrieval: np.ndarray, candidates: np.ndarray,
                    ranker_scores: np.ndarray) -> np.ndarray:
    """Full-catalogue scores [b, I]: the candidates [b, N] in the ranker's order
    above every other item, which keeps its retrieval score."""
    scores = np.array(retrieval, dtype=np.float64)
    rows = np.arange(len(scores))[:, None]
    ranker = np.asarray(ranker_scores, np.float64)
    # Shifted so the lowest re-ranked item still beats every retrieved-only one.
    scores[rows, candidates] = (_RERANKED_OFFSET + ranker - ranker.min(1, keepdims=True))
    return scores


def two_stage_scorer(users: np.ndarray, ranking_model, lists: CandidateLists,
                     batch_size: int = 512) -> Callable[[np.ndarray], np.ndarray]:
    """A scorer of the two stages as a version serves them: each query's
    retrieved ``lists`` in the ranker's order above every other item, which
    keeps its retrieval score against ``ranking_model.item_vectors``.

    Args:
      users: float [Q, D] the queries' user vectors (those ``lists`` came from).
      ranking_model: a :class:`mmrec.model.ranker.RankingModel`; its item
        vectors are the table retrieval scores against.
      lists: the queries' candidate lists (:func:`retrieve_lists`).

    Returns:
      query indices int64 [b] -> float64 [b, I] full-catalogue scores.
    """
    table = ranking_model.item_vectors.numpy()
    ranked = np.zeros(lists.candidates.shape, np.float32)
    for start in range(0, len(lists), batch_size):
        part = slice(start, start + batch_size)
        ranked[part] = ranking_model.score_lists(
            lists.history[part], lists.history_mask[part], lists.candidates[part],
            lists.retrieval_scores[part])[0].numpy()
    return lambda idx: reranked_scores(users[idx] @ table.T, lists.candidates[idx], ranked[idx])


def query_lists(users: np.ndarray, table: np.ndarray, queries: EvaluationQueries,
                count: int) -> CandidateLists:
    """Candidate lists of held-out queries, from their user vectors [Q, D] and
    the item table [I, D], the items seen before each target kept out and the
    targets labelled."""
    return retrieve_lists(users, table, queries.history, queries.history_mask,
                          lambda idx: queries.exclusion_mask(idx, len(table)), count,
                          targets=queries.target)


def evaluate_reranked(retriever, ranking_model, queries: EvaluationQueries, data,
                      count: int, batch_size: int = 512,
                      ks: tuple[int, ...] = (10, 20)) -> dict:
    """Full-ranking metrics of retrieval followed by re-ranking of the top ``count``.

    Items are scored against the ranker's item vectors (``ranking_model.
    item_vectors``, the retriever's table when the ranker was fitted), so the
    catalogue is not encoded again; the retriever's item table must hold the
    same vectors, as :func:`mmrec.train.ranker_fitting.fit_ranker` leaves it.

    Args:
      retriever: a trained :class:`mmrec.model.two_tower.TwoTowerModel`.
      ranking_model: a :class:`mmrec.model.ranker.RankingModel` over the
        retriever's item table.
      queries: validation or test queries.
      data: the run's prepared data (catalogue size, cold items, click counts).
      count: N, the retrieved items the ranker re-orders.
    """
    users = user_vectors(retriever, queries)
    return reranked_metrics(users, ranking_model, queries, count,
                            cold_items=data.split.cold_items,
                            train_item_counts=data.train_item_counts, ks=ks,
                            batch_size=batch_size)


def reranked_metrics(users: np.ndarray, ranking_model, queries: EvaluationQueries, count: int,
                     *, cold_items: np.ndarray | None = None,
                     train_item_counts: np.ndarray | None = None,
                     ks: tuple[int, ...] = (10, 20), batch_size: int = 512) -> dict:
    """Full-ranking metrics of the two stages from the queries' user vectors
    [Q, D], scored against ``ranking_model.item_vectors`` (which must be the
    retriever's table); what the caller does not know is given: no cold
    items, equal click counts. Adds ``candidate_recall``."""
    table = ranking_model.item_vectors.numpy()
    num_items = len(table)
    lists = query_lists(users, table, queries, count)
    report = evaluate_scorer(
        two_stage_scorer(users, ranking_model, lists, batch_size), queries, num_items=num_items,
        cold_items=np.zeros(num_items, bool) if cold_items is None else cold_items,
        train_item_counts=np.ones(num_items) if train_item_counts is None else train_item_counts,
        ks=tuple(sorted(set(ks))))
    report["candidate_recall"] = lists.recall()
    return report
