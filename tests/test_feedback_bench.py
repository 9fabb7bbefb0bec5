"""The feedback loop's benchmark: its pieces, its verdicts, and one tiny run.

The pieces (the time line's holdouts, the poisoned feeds, the replay-share
choice and the targets' verdicts) are checked on their own in seconds; the
whole benchmark (train, catalogue add, jobs through a real SQLite store,
poison, retrain, scores) runs once on a tiny shop with one seed (slow).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from feedback.bench.loop import (
    RETRAIN,
    STALE_FRESH,
    BenchSettings,
    FeedbackBenchConfig,
    bot_feed,
    choose_attention_job,
    cut_time_line,
    feed_events,
    judge_targets,
    shuffled_feed,
    summarize,
)
from mmrec.data.registry import load_dataset

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.shop.num_items=120", "data.shop.num_users=60", "data.shop.num_clicks=1500",
        "train.epochs=2", "feedback_bench.replay_shares=[0.0, 0.25]",
        "feedback_bench.step_sizes=[0.00003]",
        'feedback_bench.scopes=["attention", "all"]', "feedback_bench.bot_clicks=300",
        'feedback_bench.scenarios=["trend"]', "feedback_bench.ranker=true",
        "ranker.candidates=20", "ranker.epochs=1"]


@pytest.fixture(scope="module")
def trend_shop():
    return load_dataset("shop", options={
        "num_items": 200, "num_users": 80, "num_clicks": 3000, "seed": 3,
        "trend_weights": (1.0, 3.0, 3.0, 1.0, 1 / 3, 1 / 3), "new_item_share": 0.1})


def test_time_line_holds_out_each_users_last_click_on_both_sides(trend_shop):
    log, truth = trend_shop.interactions, trend_shop.ground_truth
    line = cut_time_line(log, truth.t_shift)
    after = np.flatnonzero(log.timestamp >= truth.t_shift)
    # The feed and the post-T holdout are the clicks after T, each once.
    assert sorted(np.concatenate([line.feed, line.post_holdout]).tolist()) == after.tolist()
    assert not np.isin(line.feed, line.post_holdout).any()
    for row in line.post_holdout.tolist():  # each user's last click after T
        mine = after[log.user[after] == log.user[row]]
        assert log.timestamp[row] == log.timestamp[mine].max()
    assert len(np.unique(log.user[line.post_holdout])) == len(line.post_holdout)
    # The pre-T holdout is each user's last click before T (users with 2 or more).
    before = np.flatnonzero(log.timestamp < truth.t_shift)
    assert (log.timestamp[line.pre_holdout] < truth.t_shift).all()
    counts = np.bincount(log.user[before], minlength=log.num_users)
    assert len(line.pre_holdout) == int((counts >= 2).sum())
    for row in line.pre_holdout.tolist():
        mine = before[log.user[before] == log.user[row]]
        assert log.timestamp[row] == log.timestamp[mine].max()
    # New items are in none of the base model's clicks.
    assert not truth.new_items[log.item[line.pre]].any()


def test_poisoned_feeds(trend_shop):
    log, truth = trend_shop.interactions, trend_shop.ground_truth
    events = feed_events(trend_shop, cut_time_line(log, truth.t_shift).feed)
    shuffled = shuffled_feed(events, 0.5, seed=1)
    assert len(shuffled) == len(events)
    assert [e["user_id"] for e in shuffled] == [e["user_id"] for e in events]
    changed = {e["item_id"] for e, s in zip(events, shuffled) if e["item_id"] != s["item_id"]}
    distinct = {e["item_id"] for e in events}
    assert 0.3 * len(distinct) <= len(changed) <= 0.5 * len(distinct) + 1
    # The same ids, relabelled: a permutation, not new ids.
    assert {s["item_id"] for s in shuffled} == distinct
    bot = bot_feed(events, 500, "shop-00001", truth.t_shift)
    assert bot[:len(events)] == events and len(bot) == len(events) + 500
    assert len({(e["user_id"], e["timestamp"]) for e in bot[len(events):]}) == 500


def _run(post: dict[str, float], pre: dict[str, float], gates: dict[str, dict],
         seconds: dict[str, float]) -> dict:
    names = list(post)
    return {"scenario": "trend", "base": {"seconds": 100.0},
            "retrain": {"seconds": seconds[RETRAIN]},
            "scores": {n: {"post_T": post[n], "pre_T": pre[n]} for n in names},
            "jobs": {n: {"seconds": seconds[n], "outcome": gates[n].get("outcome", "published"),
                         "trained_parameters": 10, "gate": gates[n]}
                     for n in names if n in gates}}


def test_attention_job_is_chosen_on_the_jobs_own_holdouts_and_targets_judged():
    settings = BenchSettings.from_toml(ROOT / "configs" / "feedback-bench.toml",
                                       ["feedback_bench.replay_shares=[0.0, 1.0]",
                                        "feedback_bench.step_sizes=[0.0001]",
                                        'feedback_bench.scenarios=["trend"]'])
    a0, a1 = "attention, replay 0, step 0.0001", "attention, replay 1, step 0.0001"
    gate = lambda recent, valid: {  # noqa: E731  (as the gate records a forgetting fall)
        "live": {"recent": 0.1, "validation": 0.1},
        "candidate": {"recent": recent, "validation": valid},
        "changes": {"validation": {"fell": valid < 0.1 * (1 - 0.02)}}}
    runs = []
    for shift in (0.0, 0.001, -0.001):
        # Share 0 wins its own holdout but forgets; share 1 keeps what it knew.
        post = {STALE_FRESH: 0.10 + shift, a0: 0.18 + shift, a1: 0.17 + shift,
                RETRAIN: 0.20 + shift}
        pre = {STALE_FRESH: 0.20, a0: 0.19, a1: 0.199, RETRAIN: 0.21}
        runs.append(_run(post, pre, {a0: gate(0.30, 0.09), a1: gate(0.2, 0.1)},
                         {a0: 10.0, a1: 12.0, RETRAIN: 200.0}))
    assert choose_attention_job(runs, settings) == a1
    summary = summarize(runs, settings)["trend"]
    target = summary["target"]
    assert summary["chosen_job"] == a1 and target["job"] == a1
    assert target["separates"] and target["recovered"] == pytest.approx(0.7)
    assert target["time_share"] == pytest.approx(0.06)
    assert target["pre_T_relative_drop"]["mean"] == pytest.approx(0.005)
    assert not target["met"]  # 70% < 80%
    better = copy.deepcopy(runs)
    for run in better:
        run["scores"][a1]["post_T"] += 0.015
    assert judge_targets(better, summarize(better, settings)["trend"]["systems"], a1,
                         settings)["met"]
    # A retrain whose gain is within noise does not separate the systems.
    noisy = copy.deepcopy(runs)
    for run, gain in zip(noisy, (0.1, -0.08, 0.0)):
        run["scores"][RETRAIN]["post_T"] = run["scores"][STALE_FRESH]["post_T"] + gain
    assert not summarize(noisy, settings)["trend"]["target"]["separates"]


def test_settings_refuse_unknown_scenarios_and_keys(tmp_path):
    with pytest.raises(ValueError, match="scenarios"):
        FeedbackBenchConfig(scenarios=("weather",))
    path = tmp_path / "bench.toml"
    path.write_text("[feedback_bench]\nreplay_share = [0.5]\n")
    with pytest.raises(ValueError, match=r"bench.toml.*replay_share"):
        BenchSettings.from_toml(path)
    path.write_text("[feedbak_bench]\n")
    with pytest.raises(ValueError, match="unknown table"):
        BenchSettings.from_toml(path)


@pytest.mark.slow
def test_benchmark_runs_end_to_end_on_a_tiny_shop(tmp_path):
    from feedback.bench.loop import format_feedback_tables, plot_feedback, run_feedback_benchmark
    settings = BenchSettings.from_toml(ROOT / "configs" / "feedback-bench.toml", TINY)
    report = run_feedback_benchmark(settings, seeds=[1], workdir=tmp_path / "work")
    run, = report["runs"]
    assert run["new_items"] == 12 and run["catalogue_add_seconds"] > 0
    # every version serves two stages: the base and the retrain trained their rankers
    assert run["base"]["ranker_seconds"] > 0 and run["retrain"]["ranker_seconds"] > 0
    # The model has no id vectors, so "attention+ids" would repeat "attention".
    assert run["same_as_attention"] == ["attention+ids"]
    names = {"attention, replay 0, step 3e-05", "attention, replay 0.25, step 3e-05", "all",
             "poison: half the item ids shuffled", "poison: a bot clicks one item 300 times"}
    assert set(run["jobs"]) == names
    for name, job in run["jobs"].items():
        assert job["outcome"] in ("published", "rejected"), name
        assert job["accepted"] >= run["rows"]["feed"] and job["seconds"] > 0
        assert job["gate"]["live"]["recent"] is not None
        assert set(job["gate"]["changes"]) == {"recent", "validation"}
    assert run["jobs"]["all"]["trained_parameters"] > \
        run["jobs"]["attention, replay 0, step 3e-05"]["trained_parameters"]
    for name, score in run["scores"].items():
        assert 0 <= score["post_T"] <= 1 and 0 <= score["pre_T"] <= 1, name
        assert 0 <= score["post_T_retrieval"] <= 1, name
        if name in run["jobs"]:  # a rejected job leaves the catalogue-add version live
            assert score["version"] == (3 if run["jobs"][name]["outcome"] == "published" else 2)
    assert run["scores"][RETRAIN]["version"] == 1
    json.dumps(report)
    text = format_feedback_tables(report)
    assert "### trend" in text and "full retrain" in text and "retrieval alone" in text
    assert plot_feedback(report, tmp_path / "plot.png").stat().st_size > 10_000
