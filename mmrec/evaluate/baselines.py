"""Baselines: the floor and a strong classic.

A model's number means little alone. Set beside most-popular it says whether
personalisation helps at all; beside EASE, a closed-form item-to-item model
that is hard to beat on small data, whether the network earns its complexity.
A data set may bring reference scorers of its own (the simulated shop's
oracle, which knows the true utilities: ``Dataset.reference_scorers``); they
follow the same two steps, so evaluation sets a model beside them without
knowing the data set.

Every baseline has the same two steps, ``fit`` on the training rows and
``score`` for a batch of queries, and :meth:`Baseline.scorer` turns one into
the callable that :func:`mmrec.evaluate.metrics.evaluate_scorer` takes.

Example:

    popular = MostPopular().fit(dataset.interactions, split, num_items)
    report = evaluate_scorer(popular.scorer(test), test, num_items,
                             split.cold_items, popular.counts)
"""

from __future__ import annotations

import abc
import functools
import re
from typing import Sequence

import numpy as np

from mmrec.data.interactions import Interactions
from mmrec.data.splits import Split
from mmrec.evaluate.metrics import Scorer, expected_rank_metrics, rank_queries
from mmrec.evaluate.queries import EvaluationQueries

EASE_L2_GRID: tuple[float, ...] = (10.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)


def validation_ndcg(scorer: Scorer, queries: EvaluationQueries, num_items: int,
                    batch_size: int = 512) -> float:
    """Mean NDCG@10 of ``scorer`` on ``queries``: what a baseline's ``tune`` maximises."""
    ranked = rank_queries(scorer, queries, num_items, batch_size=batch_size)
    return float(expected_rank_metrics(ranked.higher, ranked.ties, 10)["ndcg"].mean())


class Baseline(abc.ABC):
    """A scorer that learns from the training rows of a split.

    Subclasses override :meth:`score`, and :meth:`fit` if they learn anything.

    Example:

        baseline = MostPopular().fit(log, split, num_items)
        scores = baseline.score(queries, np.arange(8))   # [8, num_items]
        scorer = baseline.scorer(queries)                 # for evaluate_scorer
    """

    def fit(self, interactions: Interactions, split: Split, num_items: int) -> "Baseline":
        """Learns from ``split.train``; returns self. The default learns nothing."""
        return self

    @abc.abstractmethod
    def score(self, queries: EvaluationQueries, query_indices: np.ndarray) -> np.ndarray:
        """Scores float [len(query_indices), num_items] of the given queries."""

    def scorer(self, queries: EvaluationQueries) -> Scorer:
        """This baseline as a ``scorer(query_indices)`` over ``queries``."""
        return functools.partial(self.score, queries)


class MostPopular(Baseline):
    """Scores every item by its number of training clicks, the same for everyone.

    The floor of any comparison: a model that cannot beat it has learned
    nothing about users. Cold items have no training clicks and score 0.

    Example:

        popular = MostPopular().fit(log, split, num_items)
        popular.counts.argmax()   # the most clicked item

    Attributes:
      counts: float64 [N] training clicks per item (after ``fit``).
    """

    def __init__(self) -> None:
        self.counts: np.ndarray | None = None

    def fit(self, interactions: Interactions, split: Split, num_items: int) -> "MostPopular":
        self.counts = np.bincount(interactions.item[split.train],
                                  minlength=num_items).astype(np.float64)
        return self

    def score(self, queries: EvaluationQueries, query_indices: np.ndarray) -> np.ndarray:
        """The counts, broadcast read-only to [b, N] (no copy)."""
        if self.counts is None:
            raise RuntimeError("MostPopular.score called before fit")
        return np.broadcast_to(self.counts, (len(query_indices), len(self.counts)))


class EASE(Baseline):
    """Embarrassingly Shallow Autoencoder (Steck, WWW 2019), in closed form.

    EASE learns one item-to-item weight matrix B that reconstructs each
    user's binary click vector from the *other* items: it minimises
    ``||X - XB||^2 + l2 ||B||^2`` with ``diag(B) = 0``, solved exactly by
    ``P = (X^T X + l2 I)^-1``, ``B = -P / diag(P)`` (column-wise), ``diag(B) = 0``.
    With no training loop and one hyper-parameter it is a strong, cheap
    reference on small catalogues. A query's scores are ``x B``, where ``x``
    marks every item the user clicked before the target (training or not:
    a test query uses its validation click).

    How it is computed: one eigendecomposition of the smaller Gram matrix
    gives ``X^T X = W W^T`` with ``W^T W = diag(e)`` ([N, r], r = min(users,
    items)), and then ``l2 P = I - W diag(1 / (e + l2)) W^T`` for any ``l2``.
    Scores are computed through W as ``x - x (l2 P) / diag(l2 P)``, which
    equals ``x B`` without ever forming the [N, N] matrix, so trying another
    ``l2`` costs one pass over the queries instead of an [N, N] inversion.

    Limits: the training matrix X is held dense ([users, items] float64) and
    the Gram matrix is [r, r], so this is for catalogues and user bases of
    thousands, not millions. Cold items have no training clicks, so they
    score 0 and help no other item score.

    Example:

        ease = EASE().fit(log, split, num_items)
        results = ease.tune(valid_queries)        # {l2: validation NDCG@10}
        ease.l2, ease.score(test_queries, np.arange(4)).shape   # chosen l2, (4, N)

    Attributes:
      l2: the regularisation in force.
      tuning: {l2: validation NDCG@10} of the last :meth:`tune`.
    """

    max_rank = 20_000
    """Largest r = min(users, items) accepted: the [r, r] Gram is eigendecomposed."""

    def __init__(self, l2: float = 500.0) -> None:
        if l2 <= 0:
            raise ValueError(f"l2 must be > 0, got {l2}")
        self.l2 = float(l2)
        self.tuning: dict[float, float] = {}
        self._factor: np.ndarray | None = None       # W [N, r]
        self._eigenvalues: np.ndarray | None = None  # e [r]
        self._shrink: np.ndarray | None = None       # 1 / (e + l2) [r]
        self._diagonal: np.ndarray | None = None     # diag(l2 P) [N]

    def fit(self, interactions: Interactions, split: Split, num_items: int) -> "EASE":
        rank = min(interactions.num_users, num_items)
        if rank > self.max_rank:
            raise ValueError(f"EASE eigendecomposes a [r, r] Gram matrix, r = min(users, items)"
                             f" = min({interactions.num_users}, {num_items}) = {rank}; the "
                             f"limit is EASE.max_rank = {self.max_rank}")
        clicks = np.zeros((interactions.num_users, num_items), dtype=np.float64)
        clicks[interactions.user[split.train], interactions.item[split.train]] = 1.0
        if interactions.num_users < num_items:
            # X X^T = V diag(e) V^T gives X^T X = W W^T with W = X^T V, W^T W = diag(e).
            eigenvalues, vectors = np.linalg.eigh(clicks @ clicks.T)
            self._factor = clicks.T @ vectors
        else:
            eigenvalues, vectors = np.linalg.eigh(clicks.T @ clicks)
            self._factor = vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))
        self._eigenvalues = np.clip(eigenvalues, 0.0, None)
        self.set_l2(self.l2)
        return self

    @property
    def num_items(self) -> int:
        self._check_fitted()
        return len(self._factor)

    def set_l2(self, l2: float) -> None:
        """Puts regularisation ``l2`` in force (after ``fit``)."""
        self._check_fitted()
        if l2 <= 0:
            raise ValueError(f"l2 must be > 0, got {l2}")
        self.l2 = float(l2)
        self._shrink = 1.0 / (self._eigenvalues + l2)
        self._diagonal = 1.0 - (self._factor ** 2) @ self._shrink

    @property
    def weights(self) -> np.ndarray:
        """The item-to-item matrix B, float64 [N, N], built on request (for inspection)."""
        self._check_fitted()
        scaled_precision = -(self._factor * self._shrink) @ self._factor.T
        scaled_precision[np.diag_indices_from(scaled_precision)] += 1.0
        weights = scaled_precision / -self._diagonal
        np.fill_diagonal(weights, 0.0)
        return weights

    def tune(self, queries: EvaluationQueries, grid: Sequence[float] = EASE_L2_GRID,
             batch_size: int = 512) -> dict[float, float]:
        """Chooses ``l2`` from ``grid`` by NDCG@10 on ``queries`` (validation).

        Keeps the best value in force and returns {l2: NDCG@10} for the grid.
        """
        self._check_fitted()
        if not grid:
            raise ValueError("the l2 grid is empty")
        # x W does not depend on l2: compute it once for all values.
        seen_factor = np.concatenate(
            [self._seen(queries, np.arange(start, min(start + batch_size, len(queries))))
             @ self._factor for start in range(0, len(queries), batch_size)]
            or [np.zeros((0, self._factor.shape[1]))])

        def scorer(query_indices: np.ndarray) -> np.ndarray:
            return self._scores(self._seen(queries, query_indices), seen_factor[query_indices])

        results: dict[float, float] = {}
        for l2 in grid:
            self.set_l2(l2)
            results[float(l2)] = validation_ndcg(scorer, queries, self.num_items, batch_size)
        self.set_l2(max(results, key=results.get))
        self.tuning = results
        return results

    def score(self, queries: EvaluationQueries, query_indices: np.ndarray) -> np.ndarray:
        self._check_fitted()
        seen = self._seen(queries, query_indices)
        return self._scores(seen, seen @ self._factor)

    def _seen(self, queries: EvaluationQueries, query_indices: np.ndarray) -> np.ndarray:
        return queries.seen_mask(query_indices, self.num_items).astype(np.float64)

    def _scores(self, seen: np.ndarray, seen_factor: np.ndarray) -> np.ndarray:
        """``x B``, as ``x - x (l2 P) / diag(l2 P)``; the ``+ x`` is B's zero diagonal."""
        seen_precision = seen - (seen_factor * self._shrink) @ self._factor.T
        return seen - seen_precision / self._diagonal

    def _check_fitted(self) -> None:
        if self._factor is None:
            raise RuntimeError("EASE must be fitted first: call fit(interactions, split, "
                               "num_items)")


TFIDF_DECAY_GRID: tuple[float, ...] = (1.0, 0.9, 0.7, 0.5)


class ContentTfidf(Baseline):
    """Content only: TF-IDF word vectors of the items' text, matched to the history.

    The reference for cold items. It never looks at who clicked what, only at
    what the items say, so a new item is as well placed as an old one; a model
    whose item tower reads the same text should place cold items at least as
    well. Each item is the L2-normalised TF-IDF vector of its text (lower-cased
    words, sublinear term frequency ``1 + log tf``, smoothed IDF over the whole
    catalogue, the ``max_words`` words found in most items, in at least two);
    a user is the sum of the history's item vectors, the ``j``-th most recent
    weighted ``decay ** j``; an item's score is its dot product with the user.

    Items are held as a dense float32 [N, max_words] matrix: thousands of
    items, not millions.

    Example:

        tfidf = ContentTfidf(catalogue.texts).fit(log, split, num_items)
        tfidf.tune(valid_queries)                  # {decay: validation NDCG@10}
        tfidf.score(test_queries, np.arange(4))    # [4, N]

    Attributes:
      vectors: float32 [N, V] item vectors (zero rows for items without text).
      words: the V words, by column.
      decay: the recency weight in force.
      tuning: {decay: validation NDCG@10} of the last :meth:`tune`.
    """

    def __init__(self, texts: Sequence[str], max_words: int = 5000, decay: float = 1.0) -> None:
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        documents = [re.findall(r"\w+", text.lower()) for text in texts]
        document_frequency: dict[str, int] = {}
        for words in documents:
            for word in set(words):
                document_frequency[word] = document_frequency.get(word, 0) + 1
        kept = sorted((w for w, n in document_frequency.items() if n >= 2),
                      key=lambda w: (-document_frequency[w], w))[:max_words]
        self.words: list[str] = kept
        column = {word: j for j, word in enumerate(kept)}
        idf = np.array([np.log((1 + len(texts)) / (1 + document_frequency[w])) + 1.0
                        for w in kept], dtype=np.float32)
        counts = np.zeros((len(texts), len(kept)), dtype=np.float32)
        for i, words in enumerate(documents):
            for word in words:
                if word in column:
                    counts[i, column[word]] += 1.0
        vectors = np.where(counts > 0, 1.0 + np.log(np.maximum(counts, 1.0)), 0.0) * idf
        vectors = vectors.astype(np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
        self.decay = float(decay)
        self.tuning: dict[float, float] = {}

    def score(self, queries: EvaluationQueries, query_indices: np.ndarray) -> np.ndarray:
        history = queries.history[query_indices]
        weights = queries.history_mask[query_indices] * self.decay ** np.arange(
            history.shape[1], dtype=np.float32)
        users = np.einsum("qh,qhd->qd", weights.astype(np.float32), self.vectors[history])
        return users @ self.vectors.T

    def tune(self, queries: EvaluationQueries, grid: Sequence[float] = TFIDF_DECAY_GRID,
             batch_size: int = 512) -> dict[float, float]:
        """Chooses ``decay`` from ``grid`` by NDCG@10 on ``queries`` (validation)."""
        if not grid:
            raise ValueError("the decay grid is empty")
        results: dict[float, float] = {}
        for decay in grid:
            self.decay = float(decay)
            results[float(decay)] = validation_ndcg(self.scorer(queries), queries,
                                                    len(self.vectors), batch_size)
        self.decay = max(results, key=results.get)
        self.tuning = results
        return results
