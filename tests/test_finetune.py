"""The fine-tuning job: what it trains, the gate, exactly-once publishing, the lock.

One tiny shop model is trained and published once per module; each test works
on a copy of its model folder and a SQLite feedback store of its own.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mmrec.config import TrainConfig
from mmrec.export.exporter import export_run
from mmrec.export.layout import VersionFiles, versions
from mmrec.export.publish import load_published
from mmrec.train.trainer import train
from run_fixtures import CONFIG as SMALL_SHOP

from feedback.finetune.config import FinetuneConfig
from feedback.finetune.job import (EXIT_NOTHING_NEW, EXIT_PUBLISHED, EXIT_REJECTED, JobBusyError,
                                   default_consumer, job_lock, read_history, run_finetune)
from feedback.store import FeedbackStore

# The shared small shop, trained for one epoch with the default step-size schedule.
CONFIG = dataclasses.replace(SMALL_SHOP, train=TrainConfig(epochs=1, jit="off"))
TIMEOUT_S = 300
# The flow tests are about bookkeeping, not the gate: on 60 validation users a
# 2% tolerance is within noise, so they open it; the gate has tests of its own.
OPEN_GATE = FinetuneConfig(recent_tolerance=1.0, forgetting_tolerance=1.0)


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("finetune")
    train("shop", CONFIG, base / "run", verbose=0)
    export_run(base / "run", base / "models" / "shop", k=10)
    return base / "models" / "shop"


def copy_models(published: Path, tmp_path: Path) -> Path:
    directory = tmp_path / "shop"
    shutil.copytree(published, directory)
    return directory


def clicks(model_dir: Path, count: int = 300, seed: int = 0) -> list[dict]:
    """Events of the version's own users on its items, after its data."""
    version = load_published(model_dir)
    items, users = version.tables.item_ids.tolist(), version.tables.user_ids.tolist()
    rng = np.random.default_rng(seed)
    start = version.tables.data_until + 60
    kinds = ["click", "click", "purchase", "impression"]
    return [{"user_id": users[rng.integers(len(users))], "item_id": items[rng.integers(len(items))],
             "event": kinds[k % 4], "timestamp": start + k} for k in range(count)]


def store_with(tmp_path: Path, events: list[dict]) -> FeedbackStore:
    store = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}")
    report = store.ingest(events)
    assert report.accepted == len(events)
    return store


def test_runs_train_only_the_attention_weights_then_the_held_out_clicks_then_nothing(
        published, tmp_path):
    directory = copy_models(published, tmp_path)
    store = store_with(tmp_path, clicks(directory))
    result = run_finetune(store, directory, OPEN_GATE)
    assert (result.outcome, result.exit_code, result.version) == ("published", EXIT_PUBLISHED, 2)
    assert versions(directory) == [1, 2]
    live, candidate = load_published(directory / "1"), load_published(directory / "2")
    attention = {v.name for v in live.model.attention_variables()}
    assert {v["name"] for v in result.report["trained_variables"]} == attention
    moved = {a.name for a, b in zip(live.model.weights, candidate.model.weights)
             if not np.array_equal(a.numpy(), b.numpy())}
    assert moved and moved <= attention  # nothing else moved, batch-norm statistics included
    # the version records how far it trained, and the store moved its watermark there
    record = candidate.manifest["feedback"]
    assert record["consumer"] == default_consumer(directory)
    mark = store.consumers()[record["consumer"]]
    assert [mark.txid, mark.seq] == record["watermark"]
    assert candidate.manifest["lineage"]["change"] == "fine-tune"
    assert candidate.tables.data_until > live.tables.data_until
    # impressions are not positives; users with one click are trained on, not held out
    assert result.report["skipped"] == {"not a positive (impression)": 75}
    assert result.report["examples"]["new"] + result.report["examples"]["held_out"] == 225
    assert len(record["held_out"]) == result.report["examples"]["held_out"] > 0
    history = read_history(directory)
    assert [h["outcome"] for h in history] == ["published"] and history[0]["gate"]["passed"]

    # the next run trains the clicks the last one held out, then there is nothing new
    again = run_finetune(store, directory, OPEN_GATE)
    assert again.outcome == "published" and again.report["events"] == 0
    assert again.report["carried"] == len(record["held_out"])
    # version 2 counted the held-out clicks already: popularity does not count them twice
    assert again.report["merged_clicks"] == 0
    np.testing.assert_array_equal(load_published(directory / "3").tables.popularity,
                                  candidate.tables.popularity)
    last = run_finetune(store, directory, OPEN_GATE)
    assert (last.outcome, last.exit_code) == ("nothing new", EXIT_NOTHING_NEW)
    assert versions(directory) == [1, 2, 3]


def test_a_version_trained_from_one_store_does_not_move_another_stores_watermark(
        published, tmp_path):
    from mmrec.export.layout import VersionFiles
    directory = copy_models(published, tmp_path)
    # version 2 says it trained through a far position of some other store
    source = VersionFiles(directory / "1")
    manifest = json.loads(source.manifest_file.read_text())
    manifest["feedback"] = {"consumer": default_consumer(directory), "store": "another-store",
                            "watermark": [0, 10 ** 9], "held_out": []}
    source.manifest_file.write_text(json.dumps(manifest))
    store = store_with(tmp_path, clicks(directory, count=40))
    batch = store.events_since(default_consumer(directory))
    from feedback.finetune.job import reconcile
    reconcile(store, default_consumer(directory), load_published(directory))
    assert len(store.events_since(default_consumer(directory)).events) == len(batch.events) == 40


def test_a_rejected_candidate_leaves_the_live_version_and_the_watermark(published, tmp_path):
    directory = copy_models(published, tmp_path)
    store = store_with(tmp_path, clicks(directory))
    strict = FinetuneConfig(recent_tolerance=1.0, forgetting_tolerance=1.0,
                            min_validation_ndcg=1.0)  # a floor no model reaches
    result = run_finetune(store, directory, strict)
    assert (result.outcome, result.exit_code) == ("rejected", EXIT_REJECTED)
    assert versions(directory) == [1]
    from feedback.store import Watermark
    assert store.consumers().get(default_consumer(directory), Watermark()) == Watermark()
    reasons = read_history(directory)[-1]["gate"]["reasons"]
    assert len(reasons) == 1 and "below the floor 1.0000" in reasons[0]
    # the next run retries the same window: the store still holds it past the watermark
    assert len(store.events_since(default_consumer(directory)).events) == 300


def test_the_gate_scores_each_query_as_the_evaluation_code_scores_the_split(published):
    from feedback.finetune.gate import gate_scores
    from mmrec.evaluate.model_scores import score_queries
    from mmrec.evaluate.queries import build_queries
    version = load_published(published)
    dataset, split = version.load_data()
    validation = build_queries(dataset.interactions, split, "valid",
                               version.tables.history_length)
    nobody = dataclasses.replace(  # a window where no user clicked twice
        validation, **{field: getattr(validation, field)[:0] for field in (
            "user", "target", "history", "history_mask", "exclude_items", "rows",
            "timestamp")}, exclude_indptr=validation.exclude_indptr[:1])
    scores = gate_scores(version.model, nobody, validation)
    assert scores.recent is None and scores.validation.shape == (len(validation),)
    assert scores.means()["validation"] == pytest.approx(
        score_queries(version.model, validation)["NDCG@10"], abs=1e-9)


def test_nothing_new_is_exit_code_4_and_publishes_nothing(published, tmp_path):
    directory = copy_models(published, tmp_path)
    store = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}")
    result = run_finetune(store, directory)
    assert (result.outcome, result.exit_code, result.version) == ("nothing new", 4, None)
    assert versions(directory) == [1] and "full_window" not in result.report


def test_a_full_window_that_trains_nothing_says_how_to_get_past_it(published, tmp_path):
    directory = copy_models(published, tmp_path)
    events = [dict(e, event="impression") for e in clicks(directory, count=30)]
    store = store_with(tmp_path, events)
    small = dataclasses.replace(OPEN_GATE, max_events=10)
    first = run_finetune(store, directory, small)
    assert first.outcome == "nothing new" and first.report["events"] == 10
    advice = first.report["full_window"]
    assert "every run reads these same events" in advice and "--to " in advice
    assert run_finetune(store, directory, small).report["full_window"] == advice  # stuck
    from feedback.store import Watermark
    import re
    assert f"--consumer {default_consumer(directory)} --to " in advice
    txid, seq = re.search(r"--to (\d+):(\d+)`", advice).groups()
    store.commit(default_consumer(directory), Watermark(int(txid), int(seq)))  # as skip does
    moved = run_finetune(store, directory, small)
    assert moved.report["events"] == 10 and moved.report["full_window"] != advice


def test_one_job_at_a_time_and_a_killed_holder_leaves_no_stuck_lock(published, tmp_path):
    directory = copy_models(published, tmp_path)
    store = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}")
    with job_lock(directory):
        with pytest.raises(JobBusyError, match=r"another fine-tuning job \(pid \d+"):
            run_finetune(store, directory)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from feedback.finetune.job import job_lock\n"
        "with job_lock(Path(sys.argv[1])):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n"), str(directory)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(JobBusyError):
        run_finetune(store, directory)
    holder.kill()
    holder.wait()
    assert run_finetune(store, directory).outcome == "nothing new"


KILLED_JOB = """
import sys
import mmrec
from feedback.finetune.job import run_finetune
from feedback.store import FeedbackStore
from feedback.finetune.config import FinetuneConfig
result = run_finetune(FeedbackStore(sys.argv[1]), sys.argv[2],
                      FinetuneConfig(recent_tolerance=1.0, forgetting_tolerance=1.0))
print("OUTCOME", result.outcome)
"""


def killed_run(directory: Path, store_url: str, point: str) -> None:
    environment = {**os.environ, "MMREC_FINETUNE_KILL_AT": point}
    done = subprocess.run([sys.executable, "-c", KILLED_JOB, store_url, str(directory)],
                          capture_output=True, text=True, timeout=TIMEOUT_S, env=environment)
    assert done.returncode == -9, (point, done.returncode, done.stderr[-2000:])


@pytest.mark.slow
@pytest.mark.parametrize("point", ["training", "export", "after-publish"])
def test_a_job_killed_at_each_point_leaves_nothing_partial_and_trains_each_event_once(
        published, tmp_path, point):
    directory = copy_models(published, tmp_path)
    store = store_with(tmp_path, clicks(directory))
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    killed_run(directory, url, point)
    published_before = versions(directory)
    # nothing half-made is visible: only complete versions have numbers
    assert all((directory / str(v) / "saved_model.pb").is_file() for v in published_before)
    assert published_before == ([1, 2] if point == "after-publish" else [1])
    result = run_finetune(store, directory, OPEN_GATE)
    if point == "after-publish":
        # the killed job published; this run finds the version's watermark and trains
        # nothing of the window again: only the clicks the version held out remain
        assert result.report["events"] == 0
        assert result.report["carried"] == len(
            load_published(directory / "2").manifest["feedback"]["held_out"])
    else:
        assert result.outcome == "published" and result.report["events"] == 300
    mark = store.consumers()[default_consumer(directory)]
    assert [mark.txid, mark.seq] == load_published(directory / "2").manifest[
        "feedback"]["watermark"]
    # and the killed job's lock did not outlive it
    assert run_finetune(store, directory, OPEN_GATE).exit_code in (EXIT_NOTHING_NEW,
                                                                   EXIT_PUBLISHED)


def mmrec_cli(*args: str, env: dict | None = None, cwd: Path | None = None
              ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmrec.cli", *args], capture_output=True,
                          text=True, timeout=TIMEOUT_S, env=env, cwd=cwd, check=False)


@pytest.mark.slow
def test_the_loop_from_the_command_line(published, tmp_path):
    """ingest -> finetune -> history (with a plot) -> rollback -> skip, as the README shows."""
    directory = copy_models(published, tmp_path)
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    events = tmp_path / "clicks.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in clicks(directory)))
    assert mmrec_cli("feedback", "ingest", str(events), "--store", url).returncode == 0
    (tmp_path / "loop.toml").write_text("[finetune]\nrecent_tolerance = 1.0\n"
                                        "forgetting_tolerance = 1.0\n")
    # relative paths, as the README's cron line gives them (the load test runs elsewhere)
    finetune = mmrec_cli("feedback", "finetune", "--model-dir", directory.name, "--store",
                         "sqlite:///feedback.db", "--config", "loop.toml", cwd=tmp_path)
    assert finetune.returncode == 0, finetune.stderr[-3000:]
    assert "published: live version 1, 300 new events, published version 2" in finetune.stdout
    assert finetune.stderr.startswith("mmrec: device: ")
    again = mmrec_cli("feedback", "finetune", "--model-dir", str(directory), "--store", url,
                      "--config", str(tmp_path / "loop.toml"), "--train", "attention+ids",
                      "--json")
    assert again.returncode == 0, again.stderr[-3000:]  # the held-out clicks
    report = json.loads(again.stdout)  # the run's report, for a scheduler to read
    assert (report["outcome"], report["version"], report["merged_clicks"]) == ("published", 3, 0)
    # it trains the clicks the last run held out: no user has a new click to hold out
    assert set(report["gate"]["changes"]) == {"validation"}
    assert report["gate"]["notes"] == ["the recent holdout has no queries, so it was not judged"]
    nothing = mmrec_cli("feedback", "finetune", "--model-dir", str(directory), "--store", url)
    assert nothing.returncode == 4 and nothing.stdout.startswith("nothing new")
    history = mmrec_cli("feedback", "history", "--model-dir", str(directory), "--plot",
                        str(tmp_path / "runs.png"))
    assert history.returncode == 0 and history.stdout.count("| published |") == 2
    assert (tmp_path / "runs.png").stat().st_size > 1000
    rollback = mmrec_cli("feedback", "rollback", "--model-dir", str(directory), "--keep", "2")
    assert rollback.returncode == 0, rollback.stderr[-2000:]
    assert versions(directory) == [3, 4]
    assert VersionFiles(directory / "4").manifest()["lineage"]["change"] == "rollback"
    skip = mmrec_cli("feedback", "skip", "--model-dir", str(directory), "--store", url,
                     "--to", "0:0")
    assert skip.returncode == 0 and "now reads after 0:0" in skip.stdout
    skip = mmrec_cli("feedback", "skip", "--model-dir", str(directory), "--store", url,
                     "--to", "0:0", "--json")
    assert json.loads(skip.stdout)["watermark"] == [0, 0]
    bad = mmrec_cli("feedback", "finetune", "--model-dir", str(directory), "--store", url,
                    "--train", "everything")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_refresh_makes_serving_default_follow_a_click_and_forget_an_erased_user(published,
                                                                               tmp_path):
    import tensorflow as tf

    from feedback.refresh import refresh_version
    directory = copy_models(published, tmp_path)
    live = load_published(directory)
    user = str(live.tables.user_ids[0])
    seen = set(live.tables.seen_items[live.tables.seen_indptr[0]:live.tables.seen_indptr[1]])
    before = tf.saved_model.load(str(directory / "1")).signatures["serving_default"](
        user_id=tf.constant([user]))["item_ids"].numpy()[0]
    clicked = next(i for i in before.astype(str).tolist()
                   if live.tables.item_ids.tolist().index(i) not in seen)
    store = store_with(tmp_path, [{"user_id": user, "item_id": clicked,
                                   "timestamp": live.tables.data_until + 60}])
    target, report = refresh_version(store, directory)
    assert target.name == "2" and report == {"clicks": 1, "erased_users": 0,
                                              "skipped_unknown_items": 0}
    signatures = tf.saved_model.load(str(target)).signatures
    after = signatures["serving_default"](user_id=tf.constant([user]))["item_ids"].numpy()[0]
    assert clicked not in after.astype(str).tolist()           # now a seen item
    history = signatures["user_embedding"](user_id=tf.constant([user]))["history_item_ids"]
    assert history.numpy()[0][0].decode() == clicked            # at the head of the history
    assert load_published(directory).manifest["lineage"]["change"] == "refresh"
    # a job after the refresh trains on the click but does not count it again
    result = run_finetune(store, directory, OPEN_GATE)
    assert result.outcome == "published" and result.report["merged_clicks"] == 0
    np.testing.assert_array_equal(load_published(directory / "3").tables.popularity,
                                  load_published(directory / "2").tables.popularity)

    store.forget_user(user)
    target, report = refresh_version(store, directory)
    assert report["erased_users"] == 1
    signatures = tf.saved_model.load(str(target)).signatures
    assert not signatures["user_embedding"](user_id=tf.constant([user]))["known_user"].numpy()[0]
    assert user not in load_published(directory).tables.user_ids.tolist()


def test_the_live_history_benchmark_times_recommend_with_and_without_the_store(published,
                                                                              tmp_path):
    from feedback.bench.live_history import format_live_history_table, run_live_history_benchmark
    report = run_live_history_benchmark(str(published), [f"sqlite:///{tmp_path / 'f.db'}"],
                                        calls=40, clicks_per_user=2)
    assert set(report["results"]) == {"no store", "sqlite"}
    assert report["results"]["sqlite"]["events_in_store"] == 2 * report["users"]
    assert all(row["p99_ms"] >= row["p50_ms"] > 0 for row in report["results"].values())
    assert "| sqlite |" in format_live_history_table(report)


def test_a_click_in_the_real_store_changes_the_next_recommendation(published, tmp_path):
    from mmrec.serve import Recommender
    live = load_published(published)
    user = str(live.tables.user_ids[3])
    store = FeedbackStore(f"sqlite:///{tmp_path / 'f.db'}")
    recommender = Recommender.load(published, history_source=store)
    before = [r.item_id for r in recommender.recommend(user, k=10)]
    assert before == [r.item_id for r in Recommender.load(published).recommend(user, k=10)]
    clicked = before[0]
    store.ingest([{"user_id": user, "item_id": clicked,
                   "timestamp": live.tables.data_until + 60}])
    after = recommender.recommend(user, k=10)
    assert clicked not in [r.item_id for r in after] and [r.item_id for r in after] != before


@pytest.mark.slow
def test_a_version_published_while_the_job_trains_stops_it_without_publishing(
        published, tmp_path, monkeypatch):
    from feedback.finetune import job
    from mmrec.export.catalogue_changes import retire_items
    directory = copy_models(published, tmp_path)
    store = store_with(tmp_path, clicks(directory))
    real_fit = job.fit_examples

    def fit_while_someone_publishes(*args, **kwargs):
        retire_items(directory, [str(load_published(directory).tables.item_ids[0])])
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(job, "fit_examples", fit_while_someone_publishes)
    result = run_finetune(store, directory, OPEN_GATE)
    assert result.outcome == "rejected" and "was published while this job trained" in \
        result.report["stopped"]
    assert versions(directory) == [1, 2]  # the catalogue change, nothing of the job's
    from feedback.store import Watermark
    assert store.consumers().get(default_consumer(directory), Watermark()) == Watermark()


def test_window_histories_match_the_merge_rule_for_long_repetitive_users(published):
    """Each example's history is the user's earlier window items (newest first,
    each once) ahead of the frozen history without the click's own and later
    items; checked against that rule written out directly, for a user who
    clicks a few items hundreds of times, a user new to the version and
    carried clicks."""
    from types import SimpleNamespace

    from feedback.finetune.window import Click, build_window
    from mmrec.export.serving_tables import merge_history
    tables = load_published(published).tables
    items, users = tables.item_ids.tolist(), tables.user_ids.tolist()
    rng = np.random.default_rng(5)
    start = tables.data_until + 60
    # user 0 clicks again, hundreds of times, a few items of their frozen history
    again = [items[i] for i in tables.frozen_history(0)[:3]] + [items[0]]
    assert len(again) == 4
    events = [SimpleNamespace(user_id=users[0], item_id=again[rng.integers(4)], event="click",
                              timestamp=start + k) for k in range(400)]
    events += [SimpleNamespace(user_id=user, item_id=items[rng.integers(len(items))],
                               event="purchase", timestamp=start + 400 + k)
               for k, user in enumerate([users[1], "someone new", users[1], "someone new"] * 3)]
    carried = [Click(users[1], items[7], "click", start - 5), Click(users[2], items[3], "click",
                                                                    start - 4)]
    window = build_window(tables, events, FinetuneConfig(), carried)
    index = {item: i for i, item in enumerate(items)}
    row_of = {user: row for row, user in enumerate(users)}
    length = tables.history_length

    def rule(user, earlier, later):
        frozen = tables.frozen_history(row_of[user]) if user in row_of else []
        gone = {index[c.item_id] for c in later}
        return merge_history([index[c.item_id] for c in reversed(earlier)],
                             [i for i in frozen if i not in gone], length)

    expected, queries = [], []
    by_user: dict[str, list] = {}
    for click in sorted(window.clicks[:len(events)], key=lambda c: c.timestamp):
        by_user.setdefault(click.user_id, []).append(click)
    for user, clicks_of in by_user.items():
        for position, click in enumerate(clicks_of):
            history = rule(user, clicks_of[:position], clicks_of[position:])
            if position == len(clicks_of) - 1 and position > 0:
                queries.append(history)
            else:
                expected.append(history)
    for click in carried:
        mine = by_user.get(click.user_id, [])
        expected.append(rule(click.user_id, [c for c in mine if c.timestamp < click.timestamp],
                             [click] + [c for c in mine if c.timestamp >= click.timestamp]))
    got = [h[m].tolist() for h, m in zip(window.examples["history"],
                                         window.examples["history_mask"])]
    assert got == expected and len(got) == 400 - 1 + 12 - 2 + 2
    assert [h[m].tolist() for h, m in zip(window.holdout.history,
                                          window.holdout.history_mask)] == queries
