"""The gate a fine-tuned candidate must pass before anyone is served by it.

Production pipelines bless a model only when value thresholds and change
thresholds against the live model both pass (TFX's Evaluator). Here the
candidate and the live version are scored by the same code on the same
queries: the recent holdout (each active user's latest click, with the fresh
history serving will use) and the version's original validation split (what
it knew before; a drop there is forgetting). The candidate passes if, on the
recent holdout, it is not worse than live by more than a tolerance; if on the
original validation split it drops by at most a tolerance; and if it clears
the optional absolute floors. Without a recent holdout (no user clicked twice
in the window) that check is skipped and says so.

Example:

    live = gate_scores(published.model, window.holdout, validation, counts)
    candidate = gate_scores(candidate_model, window.holdout, validation, counts)
    decision = judge(live, candidate, config)
    decision.passed, decision.reasons
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mmrec.evaluate.model_scores import score_queries, user_vectors
from mmrec.evaluate.queries import EvaluationQueries
from mmrec.evaluate.reranking import reranked_metrics

from feedback.finetune.config import FinetuneConfig

METRIC = "NDCG@10"


@dataclasses.dataclass
class GateDecision:
    """The verdict, why, and the numbers it rests on."""

    passed: bool
    reasons: list[str]
    live: dict[str, float | None]
    candidate: dict[str, float | None]

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def gate_scores(model, recent: EvaluationQueries, validation: EvaluationQueries,
                click_counts: np.ndarray, ranker=None) -> dict[str, float | None]:
    """NDCG@10 of ``model`` on the recent holdout and on the original validation
    split (None where there are no queries).

    With ``ranker`` (a :class:`mmrec.model.ranker.RankingModel` over the
    model's item table), the two stages are scored as the version serves
    them: retrieval's top N (the ranker's ``candidates``) re-ranked, the rest
    in retrieval order (:func:`mmrec.evaluate.reranking.reranked_metrics`).
    The model's item table is then set to the ranker's item vectors (the
    version's own), so that the user tower reads its histories as the version
    serves them; callers pass a model whose table already holds them.
    """
    scores = {}
    for name, queries in (("recent", recent), ("validation", validation)):
        if len(queries) == 0:
            scores[name] = None
            continue
        if ranker is None:
            metrics = score_queries(model, queries, train_item_counts=click_counts)
        else:
            model.item_table.assign(ranker.item_vectors)
            count = min(ranker.config.candidates, int(ranker.item_vectors.shape[0]))
            metrics = reranked_metrics(user_vectors(model, queries), ranker, queries, count,
                                       train_item_counts=click_counts)
        scores[name] = float(metrics[METRIC] or 0.0)
    return scores


def judge(live: dict[str, float | None] | None, candidate: dict[str, float | None],
          config: FinetuneConfig) -> GateDecision:
    """Applies the change thresholds (against ``live``; None for a first version)
    and the absolute floors."""
    reasons = []
    if live is not None:
        for name, tolerance, what in (
                ("recent", config.recent_tolerance, "the recent holdout"),
                ("validation", config.forgetting_tolerance,
                 "the original validation split (forgetting)")):
            if live.get(name) is None or candidate.get(name) is None:
                continue
            floor = live[name] * (1 - tolerance)
            if candidate[name] < floor:
                reasons.append(f"{METRIC} on {what} fell from {live[name]:.4f} to "
                               f"{candidate[name]:.4f}, below the {tolerance:.0%} tolerance "
                               f"({floor:.4f})")
    for name, floor in (("recent", config.min_recent_ndcg),
                        ("validation", config.min_validation_ndcg)):
        if floor is not None and candidate.get(name) is not None and candidate[name] < floor:
            reasons.append(f"{METRIC} on {name} is {candidate[name]:.4f}, below the floor "
                           f"{floor:.4f}")
    return GateDecision(passed=not reasons, reasons=reasons, live=live or {},
                        candidate=candidate)
