"""The two stages together on a small shop: candidate lists from a trained
retriever, the full ranking that keeps every item outside the re-ranked top N
in retrieval order, and a ranker trained (XLA-compiled) on the training
clicks' lists and scored on validation."""

from __future__ import annotations

import numpy as np
import pytest

from mmrec.config import RankerConfig
from mmrec.evaluate.metrics import evaluate_scorer
from mmrec.evaluate.model_scores import evaluate_model, user_vectors
from mmrec.evaluate.reranking import evaluate_reranked, query_lists, reranked_scores
from mmrec.train.ranker_fitting import fit_ranker, training_lists
from mmrec.train.trainer import load_trained

COUNT = 20


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
