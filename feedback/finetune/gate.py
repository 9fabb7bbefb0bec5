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

A drop counts only if it is beyond noise. NDCG@10 on a few hundred held-out
clicks moves by several percent between two equally good models, so a bare
2% threshold rejects clean candidates about as often as poisoned ones
(``mmrec bench feedback``, docs/BENCHMARKS.md). Both versions answer the same
queries, so the gate compares them query by query: a check fails when the
candidate's mean falls by more than its tolerance *and* the one-sided upper
bound of the paired per-query change (``gate_confidence``, 95% by default,
Student's t) is below zero. A fall past the tolerance that is
within noise passes and is written down in the decision's ``notes``; so does
one on a single query (or queries that all moved by the same amount), where
noise cannot be measured.

Example:

    live = gate_scores(published.model, window.holdout, validation)
    candidate = gate_scores(candidate_model, window.holdout, validation)
    decision = judge(live, candidate, config)
    decision.passed, decision.reasons, decision.notes
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mmrec.evaluate.intervals import t_quantile
from mmrec.evaluate.metrics import expected_rank_metrics, rank_queries
from mmrec.evaluate.model_scores import user_vectors
from mmrec.evaluate.queries import EvaluationQueries
from mmrec.evaluate.reranking import retrieve_lists, two_stage_scorer

from feedback.finetune.config import FinetuneConfig

METRIC = "NDCG@10"
HOLDOUTS = ("recent", "validation")


@dataclasses.dataclass
class HoldoutScores:
    """One version's NDCG@10 per query on the gate's two holdouts.

    ``recent`` and ``validation`` are float [Q] (None: the holdout has no
    queries), in the holdouts' query order, so that two versions' arrays pair
    up query by query.

    Example:

        scores = gate_scores(model, window.holdout, validation)
        scores.means()  # {"recent": 0.051, "validation": 0.048}
    """

    recent: np.ndarray | None
    validation: np.ndarray | None

    def __post_init__(self) -> None:
        for name in HOLDOUTS:  # no queries is None, never an empty array
            values = getattr(self, name)
            if values is not None and len(values) == 0:
                setattr(self, name, None)

    def means(self) -> dict[str, float | None]:
        """Mean NDCG@10 on each holdout (None where it has no queries)."""
        return {name: (None if getattr(self, name) is None
                       else float(np.mean(getattr(self, name)))) for name in HOLDOUTS}


@dataclasses.dataclass
class GateDecision:
    """The verdict, why, and the numbers it rests on.

    ``live`` and ``candidate`` hold each version's mean NDCG@10 per holdout;
    ``changes`` the paired comparison per holdout (queries, mean change,
    relative change, the one-sided upper bound of the change, or None with
    fewer than two queries); ``notes`` the falls past a tolerance that the
    gate let pass as noise.
    """

    passed: bool
    reasons: list[str]
    live: dict[str, float | None]
    candidate: dict[str, float | None]
    changes: dict[str, dict] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def gate_scores(model, recent: EvaluationQueries, validation: EvaluationQueries,
                ranker=None) -> HoldoutScores:
    """NDCG@10 of ``model`` per query of the recent holdout and of the
    original validation split.

    With ``ranker`` (a :class:`mmrec.model.ranker.RankingModel` over the
    model's item table), the two stages are scored as the version serves
    them: retrieval's top N (the ranker's ``candidates``) re-ranked, the rest
    in retrieval order (the protocol of
    :func:`mmrec.evaluate.reranking.reranked_metrics`, whose mean this
    reproduces). The model's item table is then set to the ranker's item
    vectors (the version's own), so that the user tower reads its histories
    as the version serves them; callers pass a model whose table already
    holds them.
    """
    return HoldoutScores(**{name: (None if len(queries) == 0 else
                                   query_ndcg(model, queries, ranker))
                            for name, queries in (("recent", recent),
                                                  ("validation", validation))})


def query_ndcg(model, queries: EvaluationQueries, ranker=None,
               batch_size: int = 512) -> np.ndarray:
    """NDCG@10 of each query, full ranking, retrieval alone or with ``ranker``."""
    if ranker is None:
        table = np.asarray(model.refresh_item_table())
        users = user_vectors(model, queries)
        scorer = lambda idx: users[idx] @ table.T  # noqa: E731
    else:
        model.item_table.assign(ranker.item_vectors)
        table = ranker.item_vectors.numpy()
        users = user_vectors(model, queries)
        lists = retrieve_lists(users, table, queries.history, queries.history_mask,
                               lambda idx: queries.exclusion_mask(idx, len(table)),
                               min(ranker.config.candidates, len(table)))
        scorer = two_stage_scorer(users, ranker, lists, batch_size=batch_size)
    ranked = rank_queries(scorer, queries, len(table), batch_size=batch_size)
    return expected_rank_metrics(ranked.higher, ranked.ties, 10)["ndcg"]


def paired_change(live: np.ndarray, candidate: np.ndarray, confidence: float) -> dict:
    """The candidate's mean change against live over the same queries, relative
    to live's mean, and the one-sided ``confidence`` upper bound of the mean
    change (Student's t over the per-query changes). The bound is None where
    noise cannot be measured: fewer than two queries, or every query changed
    by the same amount."""
    if live.shape != candidate.shape:
        raise ValueError(f"the gate pairs queries: live scored {live.shape[0]}, the "
                         f"candidate {candidate.shape[0]}")
    difference = np.asarray(candidate, np.float64) - np.asarray(live, np.float64)
    n = len(difference)
    change = float(difference.mean())
    live_mean = float(np.mean(live))
    upper = None
    spread = float(difference.std(ddof=1)) / np.sqrt(n) if n >= 2 else 0.0
    if spread > 0:
        upper = change + t_quantile(confidence, n - 1) * spread
    return {"queries": n, "change": change,
            "relative": change / live_mean if live_mean > 0 else None, "upper": upper}


def judge(live: HoldoutScores | None, candidate: HoldoutScores,
          config: FinetuneConfig) -> GateDecision:
    """Applies the change thresholds (against ``live``; None for a first
    version), each only for a fall beyond noise, and the absolute floors."""
    reasons, notes, changes = [], [], {}
    live_means = live.means() if live is not None else {}
    candidate_means = candidate.means()
    for name, tolerance, what in (
            ("recent", config.recent_tolerance, "the recent holdout"),
            ("validation", config.forgetting_tolerance,
             "the original validation split (forgetting)")):
        before, after = (getattr(live, name, None) if live is not None else None,
                         getattr(candidate, name))
        if before is None or after is None:
            if live is not None:
                notes.append(f"{what} has no queries, so it was not judged")
            continue
        change = dict(paired_change(before, after, config.gate_confidence), fell=False)
        changes[name] = change
        floor = live_means[name] * (1 - tolerance)
        if candidate_means[name] >= floor:
            continue
        fall = (f"{METRIC} on {what} fell from {live_means[name]:.4f} to "
                f"{candidate_means[name]:.4f}, below the {tolerance:.0%} tolerance ({floor:.4f})")
        if change["upper"] is None:
            notes.append(f"{fall}, but {change['queries']} "
                         f"{'query' if change['queries'] == 1 else 'queries that all moved alike'}"
                         f" cannot tell a fall from noise")
        elif change["upper"] < 0:  # the check fails
            change["fell"] = True
            reasons.append(f"{fall}, beyond noise: the paired change over "
                           f"{change['queries']} queries is {change['change']:+.4f}, its "
                           f"{config.gate_confidence:.0%} upper bound {change['upper']:+.4f}")
        else:
            notes.append(f"{fall}, but within noise: the paired change over "
                         f"{change['queries']} queries is {change['change']:+.4f}, its "
                         f"{config.gate_confidence:.0%} upper bound {change['upper']:+.4f} "
                         f"is not below zero")
    for name, floor in (("recent", config.min_recent_ndcg),
                        ("validation", config.min_validation_ndcg)):
        if (floor is not None and candidate_means.get(name) is not None
                and candidate_means[name] < floor):
            reasons.append(f"{METRIC} on {name} is {candidate_means[name]:.4f}, below the floor "
                           f"{floor:.4f}")
    return GateDecision(passed=not reasons, reasons=reasons, live=live_means,
                        candidate=candidate_means, changes=changes, notes=notes)
