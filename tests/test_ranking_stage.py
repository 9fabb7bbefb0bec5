"""The two stages together on a small shop: candidate lists from a trained
retriever, the full ranking that keeps every item outside the re-ranked top N
in retrieval order, and a ranker trained (XLA-compiled) on the training
clicks' lists and scored on validation."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mmrec.config import RankerConfig
from mmrec.evaluate.metrics import evaluate_scorer
from mmrec.evaluate.model_scores import evaluate_model, user_vectors
from mmrec.evaluate.reranking import evaluate_reranked, query_lists, reranked_scores
from mmrec.cli import main
from mmrec.train.ranker_fitting import fit_ranker, training_lists
from mmrec.export.exporter import export_run
from mmrec.export.layout import VersionFiles
from mmrec.train.ranker_training import has_ranker, load_ranker, ranker_lift, train_ranker
from mmrec.train.run_folder import IncompleteRunError
from mmrec.train.trainer import load_trained
from run_fixtures import CONFIG, SHOP

COUNT = 20


def mmrec_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmrec.cli", *args], capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def retriever(shop_run):
    """The shared small shop run (tests/run_fixtures.py), loaded."""
    model, data, _, _ = load_trained(shop_run[0])
    return model, data


def test_a_training_list_is_the_top_n_without_the_history_before_its_click(retriever):
    model, data = retriever
    table = model.refresh_item_table()
    lists = training_lists(model, data, COUNT, table)
    examples = data.train_examples
    assert lists.candidates.shape == (len(examples["item"]), COUNT)
    hits = lists.labels.max(1) > 0
    assert 0 < hits.sum() < len(lists)     # no click is inserted into a list that missed it
    np.testing.assert_array_equal(lists.labels[hits].sum(1), 1.0)  # the click, exactly once
    np.testing.assert_array_equal(lists.candidates[lists.labels == 1], examples["item"][hits])
    for row in range(0, len(lists), 97):
        seen = set(examples["history"][row][examples["history_mask"][row]]) - {
            examples["item"][row]}
        assert not seen & set(lists.candidates[row])
        assert len(set(lists.candidates[row])) == COUNT           # no item twice
    assert lists.recall() == pytest.approx(hits.mean())


def test_held_out_lists_are_the_retrievers_top_n(retriever):
    model, data = retriever
    table = model.refresh_item_table()
    lists = query_lists(user_vectors(model, data.valid), table, data.valid, COUNT)
    scores = user_vectors(model, data.valid) @ table.T
    scores[data.valid.exclusion_mask(np.arange(len(data.valid)), len(table))] = -np.inf
    expected = np.sort(scores, 1)[:, ::-1][:, :COUNT]
    np.testing.assert_allclose(lists.retrieval_scores, expected, rtol=1e-5, atol=1e-6)
    hits = (lists.candidates == data.valid.target[:, None]).any(1)
    assert lists.recall() == pytest.approx(hits.mean())
    assert 0.0 < lists.recall() < 1.0   # a small model misses some targets


def test_the_reranked_items_come_first_in_the_rankers_order_the_rest_as_retrieved():
    retrieval = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, -0.2]])
    candidates = np.array([[0, 1, 2]])
    scores = reranked_scores(retrieval, candidates, np.array([[-5.0, 3.0, 1.0]]))
    assert list(np.argsort(-scores[0])) == [1, 2, 0, 3, 4, 5]


def test_a_ranker_that_agrees_with_retrieval_gives_the_retrieval_metrics(retriever):
    model, data = retriever
    table = model.refresh_item_table()
    users = user_vectors(model, data.valid)
    lists = query_lists(users, table, data.valid, COUNT)
    two_stage = evaluate_scorer(
        lambda idx: reranked_scores(users[idx] @ table.T, lists.candidates[idx],
                                    lists.retrieval_scores[idx]),
        data.valid, num_items=len(table), cold_items=data.split.cold_items,
        train_item_counts=data.train_item_counts)
    retrieval_only = evaluate_model(model, data.valid, data)
    for metric in ("NDCG@10", "HR@10", "MRR@10", "Recall@20"):
        assert two_stage[metric] == pytest.approx(retrieval_only[metric], abs=1e-12)


@pytest.mark.slow
def test_a_ranker_trains_on_the_lists_and_is_chosen_on_validation(retriever):
    model, data = retriever
    config = RankerConfig(candidates=COUNT, epochs=2, hidden_units=(16,), batch_size=64)
    ranking, report = fit_ranker(model, data, config, jit_compile=True, seed=1, verbose=False)
    assert len(report["epochs"]) == 2 and report["best_epoch"] in (1, 2)
    assert report["valid"]["NDCG@10"] == max(report["epochs"])
    assert 0.0 < report["train_candidate_recall"] < 1.0
    assert 0.0 < report["valid_candidate_recall"] < 1.0
    again = evaluate_reranked(model, ranking, data.valid, data, COUNT)
    assert again["NDCG@10"] == pytest.approx(report["valid"]["NDCG@10"], abs=1e-9)
    # Re-ranking moves items within the retrieved lists only.
    assert again["Recall@20"] == pytest.approx(
        evaluate_model(model, data.valid, data)["Recall@20"], abs=1e-12)


# --- a ranker kept in its run folder ------------------------------------------------------

SMALL_RANKER = RankerConfig(candidates=COUNT, epochs=1, hidden_units=(16,), batch_size=64)


@pytest.fixture(scope="module")
def ranked_run(shop_run, tmp_path_factory):
    """A copy of the shared shop run with a one-epoch ranker trained into it."""
    run = tmp_path_factory.mktemp("ranked") / "run"
    shutil.copytree(shop_run[0], run)
    return run, train_ranker(run, SMALL_RANKER, jit="off", seed=1, verbose=False)


def test_a_ranker_is_written_into_its_run_and_loads_back_to_the_same_numbers(ranked_run,
                                                                            shop_run):
    run, result = ranked_run
    assert has_ranker(run) and not has_ranker(shop_run[0])
    assert sorted(p.name for p in (run / "ranker").iterdir()) == ["ranker.json", "weights"]
    # nothing staged or replaced is left behind
    assert sorted(p.name for p in run.glob("*ranker*")) == ["ranker"]
    stored = json.loads((run / "ranker" / "ranker.json").read_text())
    assert stored["config"]["candidates"] == COUNT and stored["report"]["best_epoch"] == 1
    assert stored["retrieval"]["test"]["NDCG@10"] == pytest.approx(
        shop_run[1]["test"]["NDCG@10"])
    model, data, _, _ = load_trained(run)
    ranking, document = load_ranker(run, model)
    assert document == stored
    for part, queries in (("valid", data.valid), ("test", data.test)):
        again = evaluate_reranked(model, ranking, queries, data, COUNT)
        assert again["NDCG@10"] == pytest.approx(result[part]["NDCG@10"], abs=1e-9), part
        # Re-ranking moves items within the retrieved top 20 only.
        assert again["Recall@20"] == pytest.approx(
            shop_run[1][part]["Recall@20"], abs=1e-9), part


@pytest.mark.slow
def test_export_leaves_out_a_ranker_that_lowered_validation_unless_told(ranked_run, tmp_path,
                                                                       caplog):
    run, result = ranked_run
    losing = tmp_path / "run"
    shutil.copytree(run, losing)
    path = losing / "ranker" / "ranker.json"
    document = json.loads(path.read_text())
    document["valid"]["NDCG@10"] = 0.9 * document["retrieval"]["valid"]["NDCG@10"]
    path.write_text(json.dumps(document))               # a ranker that lost on validation
    assert ranker_lift(document) == pytest.approx(0.9)
    with caplog.at_level(logging.WARNING, logger="mmrec.export"):
        left_out = export_run(losing, tmp_path / "models", k=5)
    assert VersionFiles(left_out).manifest()["ranker"] is None
    assert "the version serves retrieval alone" in caplog.text
    forced = export_run(losing, tmp_path / "models", k=5, rerank=True)
    assert VersionFiles(forced).manifest()["ranker"]["candidates"] == COUNT
    # the run's ranker as trained: exported by default exactly when it did not lose
    default = export_run(run, tmp_path / "default", k=5)
    assert (VersionFiles(default).manifest()["ranker"] is None) == (ranker_lift(result) < 1)


def test_a_run_without_a_ranker_says_which_command_trains_one(shop_run):
    with pytest.raises(IncompleteRunError, match="mmrec train-ranker --run"):
        load_ranker(shop_run[0])


def test_train_ranker_command_writes_the_ranker_and_evaluate_reports_both_stages(
        shop_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(shop_run[0], run)
    done = mmrec_cli("train-ranker", "--run", str(run), "--set", f"ranker.candidates={COUNT}",
                     "--set", "ranker.epochs=1", "--set", "ranker.hidden_units=[16]",
                     "--set", "ranker.attention=\"mean\"", "--jit", "off", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["config"]["attention"] == "mean" and result["config"]["hidden_units"] == [16]
    evaluated = mmrec_cli("evaluate", "--run", str(run), "--json")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.loads(evaluated.stdout)
    assert report["ranker"]["test"]["NDCG@10"] == pytest.approx(result["test"]["NDCG@10"],
                                                                abs=1e-9)
    assert report["test"]["NDCG@10"] == pytest.approx(shop_run[1]["test"]["NDCG@10"], rel=1e-5)


@pytest.mark.parametrize("option, message", [
    ("train.epochs=3", "train-ranker reads only the [ranker] table"),
    ("ranker.candidates=1", "ranker.candidates must be >= 2"),
    ("ranker.attention=\"sum\"", "ranker.attention must be one of"),
])
def test_train_ranker_refuses_settings_it_cannot_use_before_any_work(shop_run, capsys,
                                                                      option, message):
    assert main(["train-ranker", "--run", str(shop_run[0]), "--set", option]) == 2
    assert message in capsys.readouterr().err
    assert not has_ranker(shop_run[0])


def test_with_ranker_clicks_the_lists_come_from_clicks_the_retriever_did_not_train_on(
        retriever):
    import dataclasses

    from mmrec.data.splits import SplitConfig
    from mmrec.train.preparation import prepare_data
    model, data = retriever
    held = prepare_data(data.dataset, dataclasses.replace(
        CONFIG.data, split=SplitConfig(ranker_clicks=2)), features=data.features)
    assert held.ranker_examples is not None and data.ranker_examples is None
    clicks = held.split.ranker
    assert len(clicks) == 2 * SHOP["num_users"]
    assert not set(clicks) & set(held.split.train)
    lists = training_lists(model, held, COUNT, model.refresh_item_table())
    np.testing.assert_array_equal(lists.history, held.ranker_examples["history"])
    hits = lists.labels.max(1) > 0
    np.testing.assert_array_equal(lists.candidates[lists.labels == 1],
                                  held.dataset.interactions.item[clicks][hits])
