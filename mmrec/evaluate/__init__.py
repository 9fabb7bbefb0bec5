"""Evaluation: full-ranking metrics under the field's leave-one-out protocol.

Plain NumPy, no TensorFlow: a model plugs in as a scorer, a function from
query indices to scores over the whole catalogue.

Example:

    from mmrec.evaluate import EASE, build_queries, evaluate_scorer
    valid = build_queries(dataset.interactions, split, "valid", history_length=20)
    test = build_queries(dataset.interactions, split, "test", history_length=20)
    ease = EASE().fit(dataset.interactions, split, num_items)
    ease.tune(valid)
    evaluate_scorer(ease.scorer(test), test, num_items, split.cold_items, counts)
"""

from mmrec.evaluate.baselines import EASE, Baseline, ContentTfidf, MostPopular
from mmrec.evaluate.metrics import (
    Scorer,
    evaluate_scorer,
    expected_rank_metrics,
    popularity_percentiles,
    rank_queries,
)
from mmrec.evaluate.queries import EvaluationQueries, build_queries

__all__ = ["Baseline", "ContentTfidf", "EASE", "EvaluationQueries", "MostPopular", "Scorer",
           "build_queries", "evaluate_scorer", "expected_rank_metrics",
           "popularity_percentiles", "rank_queries"]
