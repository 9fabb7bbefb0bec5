"""Serving both stages: a version exported with its run's ranker retrieves the
top N, re-ranks them in the graph and explains each item by its own history
weights; the Python API answers alike, and retrieval alone stays one switch away."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from mmrec.config import RankerConfig
from mmrec.export.exporter import export_run
from mmrec.export.layout import VersionFiles
from mmrec.serve import Recommender
from mmrec.train.ranker_training import load_ranker, train_ranker
from mmrec.train.trainer import load_trained

K, CANDIDATES = 5, 20


@pytest.fixture(scope="module")
def ranked_run(shop_run, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("two-stage") / "run"
    shutil.copytree(shop_run[0], run)
    train_ranker(run, RankerConfig(candidates=CANDIDATES, epochs=1, hidden_units=(16,),
                                   batch_size=64), jit="off", seed=2, verbose=False)
    return run


@pytest.fixture(scope="module")
def model_dir(ranked_run, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("two-stage-models") / "mmrec"
    export_run(ranked_run, directory, k=K, rerank=True)  # a one-epoch ranker may lose
    return directory


def expected_two_stage(run: Path, user_ids: list[str]) -> tuple[list[list[str]], list[str]]:
    """Each known user's re-ranked top K, computed from the run with the Keras
    models (retrieval over the catalogue minus what the user saw, the ranker
    over the top N), and retrieval's own top K."""
    from mmrec.export.serving_tables import last_items, seen_items
    model, data, config, _ = load_trained(run)
    ranking, _ = load_ranker(run, model)
    log = data.dataset.interactions
    history, mask = last_items(log, config.data.history_length)
    table = ranking.item_vectors.numpy()
    indptr, items = seen_items(log)
    reranked, retrieved = [], []
    for user_id in user_ids:
        row = log.user_index()[user_id]
        user = model.user_vectors(history[row:row + 1], mask[row:row + 1],
                                  np.array([row], np.int32))[0].numpy()[0]
        scores = table @ user
        scores[items[indptr[row]:indptr[row + 1]]] = -np.inf
        top = np.argsort(-scores, kind="stable")[:CANDIDATES]
        ranked = ranking.score_lists(history[row:row + 1], mask[row:row + 1], top[None],
                                     scores[top][None])[0].numpy()[0]
        order = np.lexsort((np.arange(CANDIDATES), -ranked))[:K]
        ids = data.dataset.catalogue.item_ids
        reranked.append(ids[top[order]].tolist())
        retrieved.append(ids[top[:K]].tolist())
    return reranked, retrieved


def test_the_version_carries_the_ranker_and_answers_every_signature_in_a_fresh_process(
        model_dir):
    from mmrec.export.load_test import load_test
    version = VersionFiles(model_dir / "1")
    assert (version.ranker_dir / "ranker.json").exists()
    assert version.manifest()["ranker"] == {"candidates": CANDIDATES, "attention": "candidate"}
    report = load_test(model_dir / "1")
    assert {"retrieve", "retrieve_with_history", "rank_candidates",
            "serving_default"} <= report["signatures"].keys()


def test_serving_default_reranks_the_top_n_as_the_trained_models_do(model_dir, ranked_run):
    loaded = tf.saved_model.load(str(model_dir / "1"))
    users = [str(u) for u in loaded.user_ids.numpy().astype(str)[:12]]
    reranked, retrieved = expected_two_stage(ranked_run, users)
    out = loaded.signatures["serving_default"](user_id=tf.constant(users))
    assert out["item_ids"].numpy().astype(str).tolist() == reranked
    assert out["item_history_weights"].shape[:2] == (len(users), K)
    weights = out["item_history_weights"].numpy()
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)  # every user has clicks
    assert not np.allclose(weights[:, :1], weights)  # a read of the history per item
    alone = loaded.signatures["retrieve"](user_id=tf.constant(users))
    assert alone["item_ids"].numpy().astype(str).tolist() == retrieved
    assert reranked != retrieved  # the ranker changed some order


def test_the_python_api_reranks_and_explains_each_item_like_the_savedmodel(model_dir):
    recommender = Recommender.load(model_dir)
    loaded = tf.saved_model.load(str(model_dir / "1"))
    users = [str(u) for u in loaded.user_ids.numpy().astype(str)[:8]]
    graph = loaded.signatures["serving_default"](user_id=tf.constant(users))
    history = graph["history_item_ids"].numpy().astype(str)
    for row, user in enumerate(users):
        results = recommender.recommend(user, k=K)
        assert [r.item_id for r in results] == graph["item_ids"].numpy()[row].astype(
            str).tolist()
        np.testing.assert_allclose([r.score for r in results], graph["scores"].numpy()[row],
                                   rtol=1e-4, atol=1e-5)
        for rank, rec in enumerate(results):
            assert rec.explanation.reranked
            weights = graph["item_history_weights"].numpy()[row, rank]
            strongest = history[row][int(np.argmax(weights))]
            assert rec.explanation.because[0][0] == strongest
            assert rec.explanation.because[0][2] == pytest.approx(weights.max(), abs=1e-5)
        alone = recommender.recommend(user, k=K, rerank=False)
        retrieved = loaded.signatures["retrieve"](user_id=tf.constant([user]))
        assert [r.item_id for r in alone] == retrieved["item_ids"].numpy()[0].astype(
            str).tolist()
        assert not any(r.explanation.reranked for r in alone)


def test_recent_clicks_reach_the_ranker_in_the_graph_and_in_python(model_dir):
    recommender = Recommender.load(model_dir)
    loaded = tf.saved_model.load(str(model_dir / "1"))
    user = str(loaded.user_ids.numpy()[0].decode())
    clicks = loaded.item_ids.numpy().astype(str)[-2:].tolist()
    graph = loaded.signatures["recommend_with_history"](user_id=tf.constant([user]),
                                                         history=tf.constant([clicks]))
    assert graph["history_item_ids"].numpy()[0].astype(str)[:2].tolist() == clicks
    results = recommender.recommend(user, k=K, history=clicks)
    assert [r.item_id for r in results] == graph["item_ids"].numpy()[0].astype(str).tolist()
    assert not set(clicks) & {r.item_id for r in results}
    new_user = recommender.recommend("someone-new", k=K)  # popularity, not re-ranked
    assert new_user[0].explanation.fallback == "popularity"
    assert not new_user[0].explanation.reranked


def test_no_rerank_exports_retrieval_alone(ranked_run, tmp_path):
    export_run(ranked_run, tmp_path / "mmrec", k=K, rerank=False)
    loaded = tf.saved_model.load(str(tmp_path / "mmrec" / "1"))
    assert "rank_candidates" not in loaded.signatures
    assert not (tmp_path / "mmrec" / "1" / "mmrec" / "ranker").exists()
    result = Recommender.load(tmp_path / "mmrec").recommend(
        str(loaded.user_ids.numpy()[0].decode()), k=K)
    assert not result[0].explanation.reranked


def test_catalogue_add_grows_the_rankers_items_and_the_new_version_reranks(model_dir,
                                                                           tmp_path):
    from mmrec.export.catalogue_changes import add_items
    from mmrec.export.publish import load_published
    from PIL import Image
    directory = tmp_path / "mmrec"
    shutil.copytree(model_dir, directory)
    (tmp_path / "img").mkdir()
    Image.fromarray(np.full((28, 28), 90, np.uint8)).save(tmp_path / "img" / "n1.png")
    (tmp_path / "new.csv").write_text("item_id,title,image_path\n"
                                      "n1,a new grey jacket,img/n1.png\n")
    change = add_items(directory, tmp_path / "new.csv")
    grown = load_published(change.version)
    old = load_published(directory / "1")
    assert grown.ranker is not None
    features = grown.ranker.item_features.numpy()
    np.testing.assert_array_equal(features[:-1], old.ranker.item_features.numpy())
    assert features[-1, 0] == pytest.approx(old.ranker.new_item_features[0])  # never clicked
    np.testing.assert_allclose(features[-1, 1:], grown.gates[-1], rtol=1e-6)
    loaded = tf.saved_model.load(str(change.version))
    out = loaded.signatures["rank_candidates"](
        user_id=tf.constant([str(loaded.user_ids.numpy()[0].decode())]),
        history=tf.constant([[""]]), candidate_ids=tf.constant([["n1"]]))
    assert np.isfinite(out["scores"].numpy()).all()


def test_cli_recommend_explains_each_reranked_item_and_can_skip_the_ranker(model_dir):
    user = str(tf.saved_model.load(str(model_dir / "1")).user_ids.numpy()[0].decode())
    command = [sys.executable, "-m", "mmrec.cli", "recommend", "--user", user, "-k", str(K),
               "--model-dir", str(model_dir)]
    shown = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert ", re-ranked" in shown.stdout
    assert shown.stdout.count("because you clicked:") == K  # one line per item
    plain = subprocess.run(command + ["--no-rerank", "--json"], capture_output=True, text=True,
                           timeout=300, check=False)
    assert plain.returncode == 0, plain.stderr[-3000:]
    results = json.loads(plain.stdout)["recommendations"]
    assert not any(r["explanation"]["reranked"] for r in results)


def test_the_latency_benchmark_times_both_stages_beside_retrieval_alone(model_dir):
    from mmrec.bench.latency import format_latency_table, run_latency_benchmark
    report = run_latency_benchmark(str(model_dir), calls=30, k=K)
    assert report["reranks"]
    for key in ("recommend", "recommend_retrieval_only", "serving_default_batch_1",
                "serving_default_batch_1_retrieval_only"):
        assert 0 < report[key]["p50_ms"] <= report[key]["p99_ms"], key
    table = format_latency_table(report)
    assert "| `Recommender.recommend` (retrieval + ranker) p50 / p99 |" in table
    assert "| `retrieve` batch 1 p50 / p99 |" in table


def window_clicks(model_dir: Path, count: int = 200, seed: int = 3) -> list[dict]:
    """Clicks of the version's own users on its items, after its data."""
    from mmrec.export.publish import load_published
    version = load_published(model_dir)
    items, users = version.tables.item_ids.tolist(), version.tables.user_ids.tolist()
    rng = np.random.default_rng(seed)
    start = version.tables.data_until + 60
    return [{"user_id": users[rng.integers(len(users))],
             "item_id": items[rng.integers(len(items))], "event": "click",
             "timestamp": start + n} for n in range(count)]


def test_the_ranker_read_over_moved_item_vectors_keeps_its_weights_and_click_counts(model_dir):
    from mmrec.export.publish import load_published
    live = load_published(model_dir / "1")
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=live.item_embeddings.shape).astype(np.float32)
    gates = rng.uniform(size=live.gates.shape).astype(np.float32)
    moved = live.ranker.over(vectors, gates)
    np.testing.assert_array_equal(moved.item_vectors.numpy(), vectors)
    features = moved.item_features.numpy()
    np.testing.assert_array_equal(features[:, -2:], gates)
    np.testing.assert_array_equal(features[:, 0], live.ranker.item_features.numpy()[:, 0])
    for a, b in zip(moved.ranker.get_weights(), live.ranker.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert {v.name for v in moved.attention_variables()} == {
        v.name for v in live.ranker.ranker.trainable_variables
        if "candidate_attention" in v.name}
    with pytest.raises(ValueError, match="the ranker reads"):
        live.ranker.over(vectors[:-1], gates[:-1])


def test_the_finetuning_job_tunes_the_rankers_attention_and_gates_both_stages(model_dir,
                                                                             tmp_path):
    from feedback.finetune.config import FinetuneConfig
    from feedback.finetune.gate import gate_scores
    from mmrec.evaluate.model_scores import user_vectors
    from mmrec.evaluate.reranking import reranked_metrics
    from feedback.finetune.job import run_finetune
    from feedback.store import FeedbackStore
    from mmrec.evaluate.queries import build_queries
    from mmrec.export.publish import load_published
    directory = tmp_path / "mmrec"
    shutil.copytree(model_dir, directory)
    store = FeedbackStore(f"sqlite:///{tmp_path / 'feedback.db'}")
    store.ingest(window_clicks(directory))
    config = FinetuneConfig(recent_tolerance=1.0, forgetting_tolerance=1.0)
    result = run_finetune(store, directory, config)
    assert result.outcome == "published", result.report
    live, tuned = load_published(directory / "1"), load_published(directory / "2")
    report = result.report["ranker"]
    attention = {v.name for v in live.ranker.attention_variables()}
    assert attention and {v["name"] for v in report["trained_variables"]} == attention
    assert report["lists"] > 0 and len(report["loss"]) == config.epochs
    moved = {a.name for a, b in zip(live.ranker.ranker.weights, tuned.ranker.ranker.weights)
             if not np.array_equal(a.numpy(), b.numpy())}
    assert moved and moved <= attention  # the crosses and the MLP stayed as they were
    # the ranker reads the vectors the new version serves
    np.testing.assert_allclose(tuned.ranker.item_vectors.numpy(), tuned.item_embeddings,
                               atol=1e-6)
    np.testing.assert_allclose(tuned.ranker.item_features.numpy()[:, -2:], tuned.gates,
                               atol=1e-6)
    # the gate's numbers are the two stages each version serves, reproduced here
    dataset, split = tuned.load_data()
    validation = build_queries(dataset.interactions, split, "valid",
                               tuned.tables.history_length)
    for name, version, ranker in (("candidate", tuned, tuned.ranker),
                                  ("live", live, live.ranker.over(live.item_embeddings,
                                                                  live.gates))):
        scores = gate_scores(version.model, validation, validation, ranker)
        assert result.report["gate"][name]["validation"] == pytest.approx(
            scores.means()["validation"], abs=1e-6), name
        # per query, by the evaluation code's protocol for the two stages
        assert scores.means()["validation"] == pytest.approx(reranked_metrics(
            user_vectors(version.model, validation), ranker, validation,
            ranker.config.candidates)["NDCG@10"], abs=1e-9), name


def test_the_loop_benchmark_scores_a_two_stage_version_as_the_evaluation_code_does(model_dir):
    """``mmrec bench feedback`` scores versions in the full catalogue's item
    order: both stages as served, or retrieval alone, equal to the evaluation
    code's numbers whatever that order is."""
    from feedback.bench.loop import system_ndcg
    from mmrec.evaluate.model_scores import score_queries, user_vectors
    from mmrec.evaluate.queries import build_queries
    from mmrec.evaluate.reranking import reranked_metrics
    from mmrec.export.publish import load_published
    version = load_published(model_dir / "1")
    dataset, split = version.load_data()
    queries = build_queries(dataset.interactions, split, "valid", version.tables.history_length)
    ranker = version.ranker.over(version.item_embeddings, version.gates)
    version.model.item_table.assign(ranker.item_vectors)
    # On the tiny shop the held-out clicks are rarely in anyone's top 10, and a
    # comparison of zeros proves nothing: each query's target becomes one of its
    # retrieved candidates (the k-th for query k), so both stages place targets.
    scores = user_vectors(version.model, queries) @ ranker.item_vectors.numpy().T
    scores[queries.exclusion_mask(np.arange(len(queries)), scores.shape[1])] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :CANDIDATES]
    rows = np.arange(len(queries))
    queries = dataclasses.replace(
        queries, target=top[rows, rows % CANDIDATES].astype(np.int32))
    two_stages = reranked_metrics(user_vectors(version.model, queries), ranker, queries,
                                  CANDIDATES)["NDCG@10"]
    retrieval = score_queries(version.model, queries)["NDCG@10"]
    assert two_stages > 0.01 and retrieval > 0.01
    assert two_stages != pytest.approx(retrieval, abs=1e-6)  # the check can tell them apart
    item_ids, user_ids = dataset.catalogue.item_ids, dataset.interactions.user_ids
    everything = np.ones(len(item_ids), bool)
    # the full catalogue in another order: the same queries, renumbered
    order = np.random.default_rng(0).permutation(len(item_ids))
    renumber = np.argsort(order)  # version item j sits at renumber[j] of the full order
    shuffled = dataclasses.replace(queries, target=renumber[queries.target].astype(np.int32),
                                   history=renumber[queries.history].astype(np.int32),
                                   exclude_items=renumber[queries.exclude_items].astype(np.int32))
    for full_ids, full_queries in ((item_ids, queries), (item_ids[order], shuffled)):
        assert system_ndcg(version, full_queries, full_ids, user_ids, everything) == \
            pytest.approx(two_stages, abs=1e-9)
        assert system_ndcg(version, full_queries, full_ids, user_ids, everything,
                           rerank=False) == pytest.approx(retrieval, abs=1e-9)
    # a catalogue with items the version lacks, and version items that are not
    # candidates (as the pre-T holdout's new items): those are never retrieved,
    # as if every user had seen them
    full_ids = np.concatenate([item_ids, ["not in the version", "nor this"]])
    candidates = np.ones(len(full_ids), bool)
    dropped = np.setdiff1d(np.unique(top[:, :10]), queries.target)  # ranked high
    assert len(dropped) >= 3
    candidates[dropped] = False
    excluded = [sorted(set(queries.exclude_items[queries.exclude_indptr[q]:
                                                 queries.exclude_indptr[q + 1]].tolist())
                       | set(dropped.tolist())) for q in range(len(queries))]
    indptr = np.zeros(len(queries) + 1, np.int64)
    np.cumsum([len(e) for e in excluded], out=indptr[1:])
    narrowed = dataclasses.replace(queries, exclude_indptr=indptr, exclude_items=np.asarray(
        [i for e in excluded for i in e], np.int32))
    expected = reranked_metrics(user_vectors(version.model, narrowed), ranker, narrowed,
                                CANDIDATES)["NDCG@10"]
    assert expected != pytest.approx(two_stages, abs=1e-6)  # the narrowing matters
    assert system_ndcg(version, queries, full_ids, user_ids, candidates) == \
        pytest.approx(expected, abs=1e-9)
    assert system_ndcg(version, queries, full_ids, user_ids, candidates, rerank=False) == \
        pytest.approx(score_queries(version.model, narrowed)["NDCG@10"], abs=1e-9)
