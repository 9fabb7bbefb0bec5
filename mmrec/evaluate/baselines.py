"""Reference scorers: the floor, a strong classic, and (on the shop) the ceiling.

A model's number means little alone. Set beside most-popular it says whether
personalisation helps at all; beside EASE, a closed-form item-to-item model
that is hard to beat on small data, whether the network earns its complexity;
and on the simulated shop, beside an oracle that knows the true utilities, how
much of the learnable signal it collects.

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
from typing import Sequence

import numpy as np

from mmrec.data.interactions import Interactions
from mmrec.data.shop import MIN_SESSION_GAP_S
from mmrec.data.splits import Split
from mmrec.evaluate.metrics import Scorer, expected_rank_metrics, rank_queries
from mmrec.evaluate.queries import EvaluationQueries

EASE_L2_GRID: tuple[float, ...] = (10.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)


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
            ranked = rank_queries(scorer, queries, self.num_items, batch_size=batch_size)
            results[float(l2)] = float(
                expected_rank_metrics(ranked.higher, ranked.ties, 10)["ndcg"].mean())
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


class ShopOracle(Baseline):
    """Scores with the shop simulator's true utilities: the ceiling.

    The simulated shoppers click with probability ``softmax(utility /
    temperature)``, so ranking by the true utility (the taste in force at the
    query's time, plus the session's focus bonus) is the best any model can
    do in expectation. Its NDCG@10 is the ceiling a trained model is read
    against. Only the shop has a ground truth; real data sets cannot have an
    oracle.

    Example:

        dataset = generate_shop()
        oracle = ShopOracle(dataset.ground_truth)
        report = evaluate_scorer(oracle.scorer(test), test, num_items,
                                 split.cold_items, counts)

    Args:
      ground_truth: ``dataset.ground_truth`` of a generated shop
        (a :class:`mmrec.data.shop.ShopGroundTruth`).
    """

    def __init__(self, ground_truth) -> None:
        if ground_truth is None or not hasattr(ground_truth, "utility"):
            raise ValueError("ShopOracle needs the ground truth of a generated shop; this "
                             "data set has none")
        self.ground_truth = ground_truth

    def score(self, queries: EvaluationQueries, query_indices: np.ndarray) -> np.ndarray:
        truth = self.ground_truth
        if len(query_indices) == 0:
            return np.zeros((0, len(truth.popularity)))
        return np.stack([
            truth.utility(int(queries.user[q]), float(queries.timestamp[q]),
                          int(truth.session_focus[queries.rows[q]]))
            for q in np.asarray(query_indices)])


class ShopAttributeScorer(Baseline):
    """The shop's true item attributes, with tastes estimated from each user's clicks.

    The oracle knows every shopper's tastes and session focus; no model can.
    This scorer sits between the two: it is handed what a *perfect item
    tower* could at best extract from text and pictures (each item's true
    category, shade, pattern, fit, brand and material) and must, like any
    model, infer each user's tastes from their earlier clicks. It shows what
    share of the oracle is reachable from history at all, so a trained
    model's number can be read against that ceiling instead of the oracle's.

    For a user with ``n`` earlier clicks, ``n_v`` of them showing value ``v``
    of an attribute group whose catalogue share is ``p_v``, the estimated
    taste is the smoothed log-ratio ``log((n_v + smoothing) / (n * p_v +
    smoothing))``: how much more often the user picks ``v`` than chance. An
    item scores the sum of its values' estimates, plus ``focus_weight`` when
    it shares the category of the user's previous click and that click came
    less than ``session_gap_s`` before (the same session, whose focus
    category it most likely had), plus ``popularity_weight * log(1 +
    training clicks)``. The defaults were chosen on the default shop's
    validation clicks from a small grid (smoothing 0.5..4, focus weight
    0.25..2, popularity weight 0..1), across which validation NDCG@10 moved
    between 0.089 and 0.106.

    Example:

        dataset = generate_shop()
        scorer = ShopAttributeScorer(dataset.ground_truth).fit(
            dataset.interactions, split, len(dataset.catalogue))
        scores = scorer.score(test, np.arange(4))   # [4, num_items]

    Args:
      ground_truth: ``dataset.ground_truth`` of a generated shop; only its
        item attributes are used.
      smoothing: pseudo-count of the log-ratio estimate.
      focus_weight: bonus for the previous click's category within a session.
      popularity_weight: weight of the log training-click count.
      session_gap_s: clicks closer than this are taken as one session (the
        generator puts at least an hour between sessions).
    """

    def __init__(self, ground_truth, smoothing: float = 2.0, focus_weight: float = 0.5,
                 popularity_weight: float = 0.75,
                 session_gap_s: float = MIN_SESSION_GAP_S) -> None:
        if ground_truth is None or not hasattr(ground_truth, "item_attributes"):
            raise ValueError("ShopAttributeScorer needs the ground truth of a generated shop; "
                             "this data set has none")
        if smoothing <= 0:
            raise ValueError(f"smoothing must be > 0; got {smoothing}")
        # Per attribute group: item codes [N] and each value's catalogue share.
        self.groups = [(codes, np.bincount(codes) / len(codes))
                       for codes in ground_truth.item_attributes.values()]
        self.category = ground_truth.item_attributes["category"]
        self.smoothing, self.focus_weight = smoothing, focus_weight
        self.popularity_weight, self.session_gap_s = popularity_weight, session_gap_s
        self.log_counts: np.ndarray | None = None
        self.interactions: Interactions | None = None
        self.chronological: np.ndarray | None = None   # rows in time order
        self.position: np.ndarray | None = None        # each row's place in it

    def fit(self, interactions: Interactions, split: Split,
            num_items: int) -> "ShopAttributeScorer":
        if num_items != len(self.category):
            raise ValueError(f"the ground truth has {len(self.category)} items, the catalogue "
                             f"{num_items}")
        self.log_counts = np.log1p(np.bincount(interactions.item[split.train],
                                               minlength=num_items))
        self.interactions = interactions
        self.chronological = interactions.chronological_order()
        self.position = np.empty(len(self.chronological), dtype=np.int64)
        self.position[self.chronological] = np.arange(len(self.chronological))
        return self

    def score(self, queries: EvaluationQueries, query_indices: np.ndarray) -> np.ndarray:
        if self.log_counts is None:
            raise RuntimeError("ShopAttributeScorer.score called before fit")
        query_indices = np.asarray(query_indices, dtype=np.int64)
        previous = self._previous_rows(queries.rows[query_indices])
        scores = np.repeat(self.popularity_weight * self.log_counts[None, :],
                           len(query_indices), axis=0)
        for row, query in enumerate(query_indices):
            earlier = queries.exclude_items_of(int(query))
            for codes, shares in self.groups:
                picked = np.bincount(codes[earlier], minlength=len(shares))
                estimate = np.log((picked + self.smoothing)
                                  / (len(earlier) * shares + self.smoothing))
                scores[row] += estimate[codes]
            if previous[row] >= 0:
                last_category = self.category[self.interactions.item[previous[row]]]
                scores[row] += self.focus_weight * (self.category == last_category)
        return scores

    def _previous_rows(self, rows: np.ndarray) -> np.ndarray:
        """The same user's click just before each row if within the session gap, else -1."""
        log, position = self.interactions, self.position
        before = self.chronological[np.maximum(position[rows] - 1, 0)]
        same_session = ((position[rows] > 0) & (log.user[before] == log.user[rows])
                        & (log.timestamp[rows] - log.timestamp[before] < self.session_gap_s))
        return np.where(same_session, before, -1)
