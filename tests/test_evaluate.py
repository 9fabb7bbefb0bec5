"""Evaluation: leave-one-out queries, tie-aware full-ranking metrics, baselines."""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest

from mmrec.data import Catalogue, Dataset, Interactions
from mmrec.data.movielens import load_movielens_100k
from mmrec.data.shop import ShopConfig, generate_shop
from mmrec.data.shop_scorers import ShopAttributeScorer, ShopOracle
from mmrec.data.splits import Split, SplitConfig, make_split
from mmrec.evaluate import (
    EASE,
    ContentTfidf,
    MostPopular,
    build_queries,
    evaluate_scorer,
    expected_rank_metrics,
    popularity_percentiles,
    rank_queries,
)

NUM_TINY_ITEMS = 7


def tiny() -> tuple[Dataset, Split]:
    # user a clicks 0,1,2,3,4 at t=1..5 (rows shuffled); user b clicks 5, 0, then 5 again.
    log = Interactions.build(users=["a", "b", "a", "a", "b", "a", "a", "b"],
                             items=[2, 5, 0, 4, 0, 1, 3, 5],
                             timestamps=[3, 1, 1, 5, 2, 2, 4, 3])
    catalogue = Catalogue.build([str(i) for i in range(NUM_TINY_ITEMS)],
                                ["x"] * NUM_TINY_ITEMS)
    dataset = Dataset("tiny", catalogue, log)
    return dataset, make_split(dataset)


def one_hot_targets(queries):
    def scorer(indices: np.ndarray) -> np.ndarray:
        scores = np.zeros((len(indices), NUM_TINY_ITEMS))
        scores[np.arange(len(indices)), queries.target[indices]] = 1.0
        return scores
    return scorer


@pytest.fixture(scope="module")
def movielens():
    dataset = load_movielens_100k()
    split = make_split(dataset)
    log = dataset.interactions
    num_items = len(dataset.catalogue)
    return {"dataset": dataset, "split": split, "num_items": num_items,
            "valid": build_queries(log, split, "valid", history_length=20),
            "test": build_queries(log, split, "test", history_length=20),
            "counts": np.bincount(log.item[split.train], minlength=num_items)}


# --- expected_rank_metrics, by hand ---------------------------------------------------

def test_rank_metrics_perfect_position_three_and_beyond_k():
    metrics = expected_rank_metrics(np.array([0, 3, 10, 9]), np.zeros(4, dtype=int), k=10)
    np.testing.assert_allclose(metrics["hr"], [1, 1, 0, 1])
    np.testing.assert_allclose(metrics["ndcg"], [1, 1 / np.log2(5), 0, 1 / np.log2(11)])
    np.testing.assert_allclose(metrics["mrr"], [1, 1 / 4, 0, 1 / 10])


def test_rank_metrics_average_over_tied_positions():
    at_one = expected_rank_metrics(np.array([0]), np.array([1]), k=1)
    assert at_one["hr"][0] == pytest.approx(0.5)
    at_ten = expected_rank_metrics(np.array([0]), np.array([1]), k=10)
    assert at_ten["ndcg"][0] == pytest.approx((1 + 1 / np.log2(3)) / 2)
    assert at_ten["mrr"][0] == pytest.approx(0.75)
    # positions 8, 9, 10, 11: half of them inside the top 10
    straddling = expected_rank_metrics(np.array([8]), np.array([3]), k=10)
    assert straddling["hr"][0] == pytest.approx(0.5)
    assert straddling["ndcg"][0] == pytest.approx((1 / np.log2(10) + 1 / np.log2(11)) / 4)


def test_rank_metrics_match_the_definition_on_random_counts():
    rng = np.random.default_rng(0)
    higher, ties = rng.integers(0, 30, size=200), rng.integers(0, 30, size=200)
    metrics = expected_rank_metrics(higher, ties, k=20)
    for q in range(200):
        positions = np.arange(higher[q], higher[q] + ties[q] + 1)
        inside = positions < 20
        assert metrics["hr"][q] == pytest.approx(inside.mean())
        assert metrics["ndcg"][q] == pytest.approx((inside / np.log2(positions + 2)).mean())
        assert metrics["mrr"][q] == pytest.approx((inside / (positions + 1)).mean())


def test_rank_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="k must be at least 1"):
        expected_rank_metrics(np.array([0]), np.array([0]), k=0)
    with pytest.raises(ValueError, match="same shape"):
        expected_rank_metrics(np.array([0, 1]), np.array([0]), k=5)


def test_popularity_percentiles_use_average_rank_for_ties():
    np.testing.assert_allclose(popularity_percentiles(np.array([5, 1, 1, 0])), [100, 50, 50, 0])
    np.testing.assert_allclose(popularity_percentiles(np.array([3, 3, 3])), [50, 50, 50])


# --- queries ---------------------------------------------------------------------------

def test_build_queries_on_a_tiny_log():
    dataset, split = tiny()
    valid = build_queries(dataset.interactions, split, "valid", history_length=3)
    test = build_queries(dataset.interactions, split, "test", history_length=3)
    user_a = dataset.interactions.user_index()["a"]
    assert valid.user.tolist() == [user_a, 1 - user_a] == test.user.tolist()
    assert valid.target.tolist() == [3, 0] and test.target.tolist() == [4, 5]
    # the test history of user a starts with the validation click
    assert valid.history[0].tolist() == [2, 1, 0]
    assert test.history[0].tolist() == [3, 2, 1]
    assert test.history[1].tolist() == [0, 5, 0] and test.history_mask[1].tolist() == [
        True, True, False]
    assert [valid.exclude_items_of(q).tolist() for q in range(2)] == [[0, 1, 2], [5]]
    # user b clicked 5 before: the target stays in the ranking
    assert [test.exclude_items_of(q).tolist() for q in range(2)] == [[0, 1, 2, 3], [0]]
    assert test.exclude_indptr.dtype == np.int64 and test.exclude_items.dtype == np.int32
    np.testing.assert_array_equal(dataset.interactions.item[test.rows], test.target)
    np.testing.assert_array_equal(test.timestamp, [5.0, 3.0])
    with pytest.raises(ValueError, match="valid"):
        build_queries(dataset.interactions, split, "train", history_length=3)


def test_movielens_exclusions_are_every_earlier_item(movielens):
    test, split = movielens["test"], movielens["split"]
    log = movielens["dataset"].interactions
    per_user = np.bincount(log.user, minlength=log.num_users)
    # leave-one-out test is each user's last click, and ml-100k has no repeats
    np.testing.assert_array_equal(np.diff(test.exclude_indptr), per_user[test.user] - 1)
    valid_of_user = dict(zip(log.user[split.valid].tolist(), log.item[split.valid].tolist()))
    for q in range(0, len(test), 97):
        assert valid_of_user[int(test.user[q])] in test.exclude_items_of(q)
        assert test.target[q] not in test.exclude_items_of(q)
    started = time.perf_counter()
    build_queries(log, split, "test", history_length=20)
    assert time.perf_counter() - started < 2.0


# --- evaluate_scorer -------------------------------------------------------------------

def test_perfect_scorer_gets_one_even_when_seen_items_score_higher():
    dataset, split = tiny()
    queries = build_queries(dataset.interactions, split, "test", history_length=3)
    counts = np.bincount(dataset.interactions.item[split.train], minlength=NUM_TINY_ITEMS)
    perfect = one_hot_targets(queries)

    def seen_first(indices: np.ndarray) -> np.ndarray:
        return 10.0 * queries.seen_mask(indices, NUM_TINY_ITEMS) + perfect(indices)

    for scorer in (perfect, seen_first):
        report = evaluate_scorer(scorer, queries, NUM_TINY_ITEMS, split.cold_items, counts,
                                 ks=(1, 10))
        for name in ("HR@1", "NDCG@1", "MRR@1", "HR@10", "NDCG@10", "MRR@10", "Recall@10"):
            assert report[name] == 1.0, (name, report)


def test_constant_scorer_gets_the_random_ranking_expectation(movielens):
    test, num_items = movielens["test"], movielens["num_items"]
    report = evaluate_scorer(lambda q: np.zeros((len(q), num_items)), test, num_items,
                             movielens["split"].cold_items, movielens["counts"])
    candidates = num_items - np.diff(test.exclude_indptr)
    assert report["HR@10"] == pytest.approx(np.mean(10 / candidates), rel=1e-9)
    assert report["Recall@20"] == pytest.approx(np.mean(20 / candidates), rel=1e-9)
    # all -inf is a constant too: the excluded items must not count as ties
    minus_inf = evaluate_scorer(lambda q: np.full((len(q), num_items), -np.inf), test,
                                num_items, movielens["split"].cold_items, movielens["counts"])
    assert minus_inf["NDCG@10"] == pytest.approx(report["NDCG@10"], rel=1e-9)


def test_random_scorer_is_close_to_chance(movielens):
    test, num_items = movielens["test"], movielens["num_items"]
    candidates = num_items - np.diff(test.exclude_indptr)
    measured = []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        measured.append(evaluate_scorer(lambda q: rng.random((len(q), num_items)), test,
                                        num_items, movielens["split"].cold_items,
                                        movielens["counts"])["HR@10"])
    # 5 x 943 queries at p ~ 0.0064: standard error ~ 0.0012
    assert abs(np.mean(measured) - np.mean(10 / candidates)) < 0.004


def test_excluded_items_never_reach_the_top_lists(movielens):
    test, num_items = movielens["test"], movielens["num_items"]

    def seen_first(indices: np.ndarray) -> np.ndarray:
        return test.seen_mask(indices, num_items) + 1e-3 * np.arange(num_items)

    ranked = rank_queries(seen_first, test, num_items, list_length=20)
    for q in range(len(test)):
        assert not np.isin(ranked.top_items[q], test.exclude_items_of(q)).any()
    assert (ranked.top_items >= 0).all()
    # the list is ordered best first: item ids descend, since the tie-breaker rises with id
    assert (np.diff(ranked.top_items, axis=1) < 0).all()


def test_the_target_is_never_excluded():
    dataset, split = tiny()
    queries = build_queries(dataset.interactions, split, "test", history_length=3)
    # seen items score 1: for user b item 0 is excluded and 5, the target, is seen before
    ranked = rank_queries(lambda q: queries.seen_mask(q, NUM_TINY_ITEMS).astype(float),
                          queries, NUM_TINY_ITEMS)
    assert ranked.higher[1] == 0 and ranked.ties[1] == 0


def test_warm_and_cold_queries_are_counted_apart():
    dataset, split = tiny()
    queries = build_queries(dataset.interactions, split, "test", history_length=3)
    counts = np.bincount(dataset.interactions.item[split.train], minlength=NUM_TINY_ITEMS)
    cold = np.zeros(NUM_TINY_ITEMS, dtype=bool)
    cold[4] = True  # user a's test target
    report = evaluate_scorer(one_hot_targets(queries), queries, NUM_TINY_ITEMS, cold, counts)
    assert report["warm"]["queries"] == 1 and report["cold"]["queries"] == 1
    assert report["cold"]["HR@10"] == 1.0
    no_cold = evaluate_scorer(one_hot_targets(queries), queries, NUM_TINY_ITEMS,
                              np.zeros(NUM_TINY_ITEMS, dtype=bool), counts)
    assert no_cold["cold"]["queries"] == 0 and no_cold["cold"]["NDCG@10"] is None
    assert no_cold["warm"]["queries"] == 2


def test_movielens_cold_items_split_the_queries():
    dataset = load_movielens_100k()
    split = make_split(dataset, SplitConfig(cold_item_share=0.1))
    num_items = len(dataset.catalogue)
    test = build_queries(dataset.interactions, split, "test", history_length=5)
    popular = MostPopular().fit(dataset.interactions, split, num_items)
    report = evaluate_scorer(popular.scorer(test), test, num_items, split.cold_items,
                             popular.counts)
    cold_queries = int(split.cold_items[test.target].sum())
    assert 0 < cold_queries < len(test)
    assert report["cold"]["queries"] == cold_queries
    assert report["warm"]["queries"] == len(test) - cold_queries
    assert report["cold"]["HR@20"] < report["warm"]["HR@20"]  # cold items have no clicks


def test_coverage_and_popularity_percentile_by_hand():
    dataset, split = tiny()
    valid = build_queries(dataset.interactions, split, "valid", history_length=3)
    test = build_queries(dataset.interactions, split, "test", history_length=3)
    counts = np.bincount(dataset.interactions.item[split.train], minlength=NUM_TINY_ITEMS)
    assert counts.tolist() == [1, 1, 1, 0, 0, 1, 0]
    fixed_order = np.arange(NUM_TINY_ITEMS, 0, -1, dtype=float)  # item 0 best
    report = evaluate_scorer(lambda q: np.tile(fixed_order, (len(q), 1)), valid,
                             NUM_TINY_ITEMS, split.cold_items, counts, ks=(1,))
    # valid: a has 0,1,2 excluded -> 3; b has 5 excluded -> 0
    assert report["coverage@1"] == pytest.approx(2 / 7)
    # count 1 -> average rank 5.5 of 7 -> 75; count 0 -> rank 2 -> 100/6
    assert report["popularity_percentile@1"] == pytest.approx((75 + 100 / 6) / 2)
    report = evaluate_scorer(lambda q: np.tile(fixed_order, (len(q), 1)), test,
                             NUM_TINY_ITEMS, split.cold_items, counts, ks=(2,))
    # test: a -> 4, 5; b (0 excluded) -> 1, 2
    assert report["coverage@2"] == pytest.approx(4 / 7)
    assert report["popularity_percentile@2"] == pytest.approx((100 / 6 + 75 * 3) / 4)


def test_scorer_output_is_checked():
    dataset, split = tiny()
    queries = build_queries(dataset.interactions, split, "test", history_length=3)
    counts = np.zeros(NUM_TINY_ITEMS)
    with pytest.raises(ValueError, match=r"\[2, 7\]; got \[2, 6\]"):
        evaluate_scorer(lambda q: np.zeros((len(q), 6)), queries, NUM_TINY_ITEMS,
                        split.cold_items, counts)
    with pytest.raises(ValueError, match="NaN"):
        evaluate_scorer(lambda q: np.full((len(q), NUM_TINY_ITEMS), np.nan), queries,
                        NUM_TINY_ITEMS, split.cold_items, counts)


# --- baselines -------------------------------------------------------------------------

def test_most_popular_on_movielens(movielens):
    popular = MostPopular().fit(movielens["dataset"].interactions, movielens["split"],
                                movielens["num_items"])
    test = movielens["test"]
    report = evaluate_scorer(popular.scorer(test), test, movielens["num_items"],
                             movielens["split"].cold_items, movielens["counts"])
    print(f"\nMostPopular ml-100k test: HR@10={report['HR@10']:.4f} "
          f"NDCG@10={report['NDCG@10']:.4f} coverage@10={report['coverage@10']:.4f} "
          f"popularity_percentile@10={report['popularity_percentile@10']:.1f}")
    assert report["NDCG@10"] == pytest.approx(0.0449, abs=0.003)
    assert report["popularity_percentile@10"] > 95


@pytest.mark.parametrize("users, items", [(6, 9), (12, 5)])
def test_ease_matches_the_closed_form(users, items):
    rng = np.random.default_rng(users)
    pairs = np.argwhere(rng.random((users, items)) < 0.5)
    log = Interactions.build(users=pairs[:, 0], items=pairs[:, 1],
                             timestamps=np.arange(len(pairs)))
    split = Split(train=np.arange(len(pairs)), valid=np.zeros(0, dtype=np.int64),
                  test=np.zeros(0, dtype=np.int64), cold_items=np.zeros(items, dtype=bool),
                  scheme="explicit")
    clicks = np.zeros((log.num_users, items))
    clicks[log.user, log.item] = 1
    precision = np.linalg.inv(clicks.T @ clicks + 3.0 * np.eye(items))
    expected = precision / -np.diag(precision)
    np.fill_diagonal(expected, 0)
    ease = EASE(l2=3.0).fit(log, split, items)
    np.testing.assert_allclose(ease.weights, expected, atol=1e-10)
    # scores go through the factored form: check them against x B
    test_split = Split(train=split.train, valid=split.valid, test=np.array([len(pairs) - 1]),
                       cold_items=split.cold_items, scheme="explicit")
    queries = build_queries(log, test_split, "test", history_length=2)
    seen = queries.seen_mask(np.array([0]), items).astype(float)
    np.testing.assert_allclose(ease.score(queries, np.array([0])), seen @ expected, atol=1e-10)


def test_ease_on_movielens(movielens):
    log, split, num_items = (movielens["dataset"].interactions, movielens["split"],
                             movielens["num_items"])
    started = time.perf_counter()
    ease = EASE().fit(log, split, num_items)
    tuning = ease.tune(movielens["valid"])
    test = movielens["test"]
    report = evaluate_scorer(ease.scorer(test), test, num_items, split.cold_items,
                             movielens["counts"])
    print(f"\nEASE ml-100k test (l2={ease.l2:g}): HR@10={report['HR@10']:.4f} "
          f"NDCG@10={report['NDCG@10']:.4f} in {time.perf_counter() - started:.1f}s; "
          f"validation NDCG@10 by l2: {tuning}")
    assert ease.l2 in tuning and tuning[ease.l2] == max(tuning.values())
    assert report["NDCG@10"] > 0.06


def test_content_tfidf_matches_words_and_weights_recent_history():
    texts = ["red wool coat", "red linen coat", "blue denim jeans", "blue wool jeans", ""]
    tfidf = ContentTfidf(texts)
    # words in fewer than two items are dropped; the item without text is a zero row
    assert set(tfidf.words) == {"red", "wool", "coat", "blue", "jeans"}
    assert not tfidf.vectors[4].any()
    np.testing.assert_allclose(np.linalg.norm(tfidf.vectors[:4], axis=1), 1.0, rtol=1e-6)
    log = Interactions.build(users=["u"] * 3, items=[0, 2, 1], timestamps=[1, 2, 3])
    split = Split(train=np.array([0, 1]), valid=np.zeros(0, dtype=np.int64),
                  test=np.array([2]), cold_items=np.zeros(5, dtype=bool), scheme="explicit")
    queries = build_queries(log, split, "test", history_length=2)  # history: 2 (newest), 0
    even = tfidf.score(queries, np.array([0]))[0]
    # the coat and the jeans each share words with one history item
    assert even[1] > 0 and even[3] > 0 and even[4] == 0
    tfidf.decay = 0.5  # the jeans clicked last now count twice as much as the coat
    recent = tfidf.score(queries, np.array([0]))[0]
    assert recent[3] / recent[1] > even[3] / even[1]
    with pytest.raises(ValueError, match="decay"):
        ContentTfidf(texts, decay=0.0)


def test_content_tfidf_places_cold_movielens_items(movielens):
    dataset = movielens["dataset"]
    log, num_items = dataset.interactions, movielens["num_items"]
    split = make_split(dataset, SplitConfig(cold_item_share=0.1))
    valid = build_queries(log, split, "valid", history_length=20)
    test = build_queries(log, split, "test", history_length=20)
    tfidf = ContentTfidf(dataset.catalogue.texts)
    tuning = tfidf.tune(valid)
    assert tfidf.decay in tuning and tuning[tfidf.decay] == max(tuning.values())
    counts = np.bincount(log.item[split.train], minlength=num_items)
    report = evaluate_scorer(tfidf.scorer(test), test, num_items, split.cold_items, counts)
    popular = MostPopular().fit(log, split, num_items)
    floor = evaluate_scorer(popular.scorer(test), test, num_items, split.cold_items, counts)
    # content alone finds held-out items that click counts never rank
    assert report["cold"]["Recall@20"] > 0.02 > floor["cold"]["Recall@20"]


def test_shop_oracle_beats_most_popular_widely():
    dataset = generate_shop(ShopConfig(num_items=500, num_users=200, num_clicks=5000))
    split = make_split(dataset)
    num_items = len(dataset.catalogue)
    test = build_queries(dataset.interactions, split, "test", history_length=10)
    results = {}
    popular = MostPopular().fit(dataset.interactions, split, num_items)
    # The shop hands its reference scorers to evaluation; evaluation never imports the shop.
    references = dataset.reference_scorers
    assert set(references) == {"oracle", "true attributes"}
    for name, scorer in (("popular", popular), ("oracle", references["oracle"]),
                         ("attributes", references["true attributes"])):
        scorer.fit(dataset.interactions, split, num_items)
        results[name] = evaluate_scorer(functools.partial(scorer.score, test), test, num_items,
                                        split.cold_items, popular.counts)["NDCG@10"]
    print(f"\nsmall shop test NDCG@10: {results}")
    assert results["oracle"] > 3 * results["popular"]
    assert results["oracle"] > results["popular"] + 0.1
    # Knowing the items but not the users lands between the two.
    assert results["popular"] < results["attributes"] < results["oracle"]
    with pytest.raises(ValueError, match="ground truth"):
        ShopOracle(None)


def test_attribute_scorer_reads_tastes_and_session_from_history():
    dataset = generate_shop(ShopConfig(num_items=300, num_users=50, num_clicks=1500))
    truth, num_items = dataset.ground_truth, len(dataset.catalogue)
    brand = truth.item_attributes["brand"]
    category = truth.item_attributes["category"]
    # One user clicks six items of brand 0, all of category c, an hour apart or a minute apart.
    c = int(np.bincount(category[brand == 0]).argmax())
    picks = np.flatnonzero((brand == 0) & (category == c))[:6]
    assert len(picks) == 6
    scores = {}
    for gap in (60, 7200):
        log = Interactions.build(users=["u"] * 6 + ["v"], items=list(picks) + [picks[0]],
                                 timestamps=[gap * t for t in range(6)] + [0])
        split = Split(train=np.arange(4), valid=np.array([4]), test=np.array([5]),
                      cold_items=np.zeros(num_items, bool), scheme="explicit")
        queries = build_queries(log, split, "test", history_length=3)
        scorer = ShopAttributeScorer(truth, popularity_weight=0.0).fit(log, split, num_items)
        scores[gap] = scorer.score(queries, np.array([0]))[0]
    same_category = category == c
    others = ~same_category
    # Brand 0 beats every other brand among items alike in everything else the user showed.
    mask = same_category & (brand != 0)
    assert scores[60][same_category & (brand == 0)].mean() > scores[60][mask].mean()
    # Within a session the previous click's category gets the focus bonus; across one it does not.
    lift_in_session = scores[60][same_category].mean() - scores[60][others].mean()
    lift_across = scores[7200][same_category].mean() - scores[7200][others].mean()
    np.testing.assert_allclose(lift_in_session - lift_across, 0.5, atol=1e-9)
    with pytest.raises(ValueError, match="ground truth"):
        ShopAttributeScorer(None)
