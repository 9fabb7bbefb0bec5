"""The shop's reference scorers: the oracle and the true-attributes scorer.

A real click log cannot say how good a model could be; the simulated shop
can, because it knows every shopper's true utilities. These two scorers turn
that knowledge into reference numbers: the oracle ranks by the true utility
(the ceiling), and the true-attributes scorer is handed each item's true
attributes but must estimate tastes from clicks, as any model must (what a
perfect item tower could reach). The shop hands them to evaluation through
``Dataset.reference_scorers``, so evaluation never imports the shop.

Each has the baselines' two steps, ``fit(interactions, split, num_items)``
and ``score(queries, query_indices)``; ``functools.partial(scorer.score,
queries)`` is what :func:`mmrec.evaluate.metrics.evaluate_scorer` takes.

Example:

    dataset = generate_shop()
    oracle = dataset.reference_scorers["oracle"]
    report = evaluate_scorer(functools.partial(oracle.fit(log, split, n).score, test),
                             test, n, split.cold_items, counts)
"""

from __future__ import annotations

import numpy as np

from mmrec.data.interactions import Interactions
from mmrec.data.splits import Split


class ShopOracle:
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
        scores = oracle.score(test, np.arange(4))   # [4, num_items]

    Args:
      ground_truth: ``dataset.ground_truth`` of a generated shop
        (a :class:`mmrec.data.shop.ShopGroundTruth`).
    """

    def __init__(self, ground_truth) -> None:
        if ground_truth is None or not hasattr(ground_truth, "utility"):
            raise ValueError("ShopOracle needs the ground truth of a generated shop; this "
                             "data set has none")
        self.ground_truth = ground_truth

    def fit(self, interactions: Interactions, split: Split, num_items: int) -> "ShopOracle":
        """Learns nothing: the oracle knows the truth. Returns self."""
        return self

    def score(self, queries, query_indices: np.ndarray) -> np.ndarray:
        truth = self.ground_truth
        if len(query_indices) == 0:
            return np.zeros((0, len(truth.popularity)))
        return np.stack([
            truth.utility(int(queries.user[q]), float(queries.timestamp[q]),
                          int(truth.session_focus[queries.rows[q]]))
            for q in np.asarray(query_indices)])


class ShopAttributeScorer:
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
      session_gap_s: clicks closer than this are taken as one session; None
        uses the generator's own minimum gap between sessions
        (``ground_truth.min_session_gap_s``, an hour).
    """

    def __init__(self, ground_truth, smoothing: float = 2.0, focus_weight: float = 0.5,
                 popularity_weight: float = 0.75,
                 session_gap_s: float | None = None) -> None:
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
        self.popularity_weight = popularity_weight
        self.session_gap_s = (ground_truth.min_session_gap_s if session_gap_s is None
                              else session_gap_s)
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

    def score(self, queries, query_indices: np.ndarray) -> np.ndarray:
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
