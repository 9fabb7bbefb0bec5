"""The fine-tuning gate's verdict: a fall past a tolerance rejects a candidate
only when the paired per-query comparison says it is beyond noise."""

from __future__ import annotations

import numpy as np
import pytest

from feedback.finetune.config import FinetuneConfig
from feedback.finetune.gate import HoldoutScores, judge, paired_change
from mmrec.evaluate.intervals import t_quantile

CONFIG = FinetuneConfig()  # 2% tolerances, 95% confidence


def ndcg_like(count: int, seed: int) -> np.ndarray:
    """Per-query NDCG@10 as a holdout shows it: mostly misses, some hits high up."""
    rng = np.random.default_rng(seed)
    hits = rng.random(count) < 0.15
    return np.where(hits, 1.0 / np.log2(rng.integers(0, 10, count) + 2.0), 0.0)


def test_a_fall_every_query_shares_is_rejected_as_beyond_noise():
    live = ndcg_like(400, seed=0)
    decision = judge(HoldoutScores(recent=live, validation=live),
                     HoldoutScores(recent=live * 0.9, validation=live), CONFIG)
    assert not decision.passed and len(decision.reasons) == 1
    assert "recent holdout fell" in decision.reasons[0] and "beyond noise" in decision.reasons[0]
    change = decision.changes["recent"]
    assert change["queries"] == 400 and change["relative"] == pytest.approx(-0.1)
    assert change["upper"] < 0 and change["fell"] and not decision.changes["validation"]["fell"]
    assert decision.changes["validation"]["change"] == 0.0 and not decision.notes


def test_a_fall_within_noise_passes_and_is_noted_and_a_bare_threshold_would_reject_it():
    live = ndcg_like(400, seed=1)
    candidate = live.copy()
    hits = np.flatnonzero(live > 0)
    candidate[hits[:3]] = 0.0  # three of ~60 hits lost: a few percent, within noise
    candidate[np.flatnonzero(live == 0)[:1]] = 0.5  # and one miss becomes a hit
    means = HoldoutScores(recent=live, validation=live)
    decision = judge(means, HoldoutScores(recent=candidate, validation=live), CONFIG)
    assert candidate.mean() < live.mean() * (1 - CONFIG.recent_tolerance)  # past 2%
    assert decision.passed and not decision.reasons
    assert len(decision.notes) == 1 and "within noise" in decision.notes[0]
    assert decision.changes["recent"]["upper"] > 0
    bare = FinetuneConfig(gate_confidence=0.5)  # the means alone
    assert not judge(means, HoldoutScores(recent=candidate, validation=live), bare).passed


def test_forgetting_is_judged_on_the_validation_split_with_its_own_tolerance():
    live = ndcg_like(300, seed=2)
    forgetful = HoldoutScores(recent=live, validation=live * 0.5)
    decision = judge(HoldoutScores(recent=live, validation=live), forgetful, CONFIG)
    assert not decision.passed and "forgetting" in decision.reasons[0]
    lenient = FinetuneConfig(forgetting_tolerance=0.6)
    assert judge(HoldoutScores(recent=live, validation=live), forgetful, lenient).passed


def test_one_query_cannot_measure_noise_so_its_fall_passes_with_a_note():
    decision = judge(HoldoutScores(recent=np.array([1.0]), validation=None),
                     HoldoutScores(recent=np.array([0.5]), validation=None), CONFIG)
    assert decision.passed and "1 query cannot tell a fall from noise" in decision.notes[0]
    assert decision.changes["recent"]["upper"] is None
    assert "validation" not in decision.changes  # no queries there: nothing to judge
    assert decision.notes[1] == ("the original validation split (forgetting) has no queries, "
                                 "so it was not judged")


def test_floors_apply_to_the_candidates_means_and_a_first_version_meets_only_them():
    candidate = HoldoutScores(recent=np.array([0.2, 0.4]), validation=np.array([0.1, 0.1]))
    assert judge(None, candidate, CONFIG).passed
    floored = FinetuneConfig(min_validation_ndcg=0.15)
    decision = judge(None, candidate, floored)
    assert not decision.passed and decision.reasons == [
        "NDCG@10 on validation is 0.1000, below the floor 0.1500"]
    assert decision.live == {} and decision.candidate == {"recent": pytest.approx(0.3),
                                                          "validation": pytest.approx(0.1)}
    assert decision.as_dict()["changes"] == {}


def test_unpaired_scores_and_a_confidence_outside_its_range_are_refused():
    with pytest.raises(ValueError, match="pairs queries: live scored 3, the candidate 2"):
        paired_change(np.zeros(3), np.zeros(2), 0.95)
    for value in (0.4, 1.0):
        with pytest.raises(ValueError, match="gate_confidence must be in"):
            FinetuneConfig(gate_confidence=value)


def test_few_queries_are_judged_with_students_t_and_alike_moves_cannot_measure_noise():
    # one-sided 95% quantiles from the t table
    for df, table in ((1, 6.314), (2, 2.920), (3, 2.353), (5, 2.015), (10, 1.812), (30, 1.697)):
        assert t_quantile(0.95, df) == pytest.approx(table, abs=0.01), df
    live = HoldoutScores(recent=np.array([1.0, 1.0]), validation=None)
    # two falls of 1 and 0.5: a normal bound would call it real (-0.34), t at 1 df does not
    two = judge(live, HoldoutScores(recent=np.array([0.0, 0.5]), validation=None), CONFIG)
    assert two.passed and two.changes["recent"]["upper"] == pytest.approx(
        -0.75 + 6.314 * 0.25, abs=0.01) and "within noise" in two.notes[0]
    # every query fell by the same amount: no spread to measure noise with
    alike = judge(live, HoldoutScores(recent=np.array([0.5, 0.5]), validation=None), CONFIG)
    assert alike.passed and alike.changes["recent"]["upper"] is None
    assert "2 queries that all moved alike cannot tell" in alike.notes[0]


def test_an_empty_holdout_is_no_holdout():
    scores = HoldoutScores(recent=np.zeros(0), validation=np.array([0.5]))
    assert scores.recent is None and scores.means() == {"recent": None, "validation": 0.5}
