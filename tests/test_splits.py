"""Chronological splits follow the published rules exactly."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from mmrec.data import Catalogue, DataError, Dataset, Interactions
from mmrec.data.movielens import load_movielens_100k
from mmrec.data.splits import SplitConfig, leave_one_out_labels, make_split, time_labels


def tiny_dataset() -> Dataset:
    # user a: times 5, 3, 5, 1 (a tie at 5, file order decides); user b: 2 rows; c: 1 row.
    log = Interactions.build(users=["a", "a", "b", "a", "b", "a", "c"],
                             items=[0, 1, 2, 3, 4, 5, 1],
                             timestamps=[5, 3, 7, 5, 9, 1, 4])
    catalogue = Catalogue.build([str(i) for i in range(6)], [f"item {i}" for i in range(6)])
    return Dataset("tiny", catalogue, log)


def test_leave_one_out_with_ties_in_file_order():
    labels = leave_one_out_labels(tiny_dataset().interactions)
    # user a in time order: row5 (1), row1 (3), row0 (5), row3 (5, after row0 in the file)
    assert labels.tolist() == ["valid", "train", "train", "test", "test", "train", "train"]


def test_split_parts_are_chronological_per_user():
    dataset = tiny_dataset()
    split = make_split(dataset)
    assert split.scheme == "leave_one_out"
    assert split.train.tolist() == [5, 1, 2, 6]
    assert split.valid.tolist() == [0] and split.test.tolist() == [3, 4]


def test_movielens_leave_one_out_sizes():
    split = make_split(load_movielens_100k())
    assert split.sizes() == {"train": 98_114, "valid": 943, "test": 943, "cold_items": 0}


def test_time_split_is_one_global_cut():
    log = load_movielens_100k().interactions
    labels = time_labels(log, (0.8, 0.1, 0.1))
    counts = {p: int((labels == p).sum()) for p in ("train", "valid", "test")}
    assert counts == {"train": 80_000, "valid": 10_000, "test": 10_000}
    assert log.timestamp[labels == "train"].max() <= log.timestamp[labels == "valid"].min()
    assert log.timestamp[labels == "valid"].max() <= log.timestamp[labels == "test"].min()


def test_cold_items_never_reach_training():
    dataset = load_movielens_100k()
    split = make_split(dataset, SplitConfig(cold_item_share=0.1, seed=3))
    cold = split.cold_items
    assert cold.sum() == round(0.1 * 1682)
    assert not cold[dataset.interactions.item[split.train]].any()
    assert cold[dataset.interactions.item[split.test]].any()  # evaluable on cold items
    again = make_split(dataset, SplitConfig(cold_item_share=0.1, seed=3))
    np.testing.assert_array_equal(again.cold_items, cold)


def test_explicit_split_file_reproduces_a_split(tmp_path):
    dataset = tiny_dataset()
    log = dataset.interactions
    labels = ["train", "train", "test", "valid", "test", "train", "train"]
    path = tmp_path / "splits.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "item_id", "timestamp", "split"])
        for row, label in enumerate(labels):
            writer.writerow([log.user_ids[log.user[row]], log.item[row], log.timestamp[row], label])
        writer.writerow(["zz", "0", "1", "train"])  # matches no interaction
    split = make_split(dataset, SplitConfig(split_file=str(path)))
    assert split.scheme == "explicit"
    assert sorted(split.valid.tolist()) == [3] and sorted(split.test.tolist()) == [2, 4]
    assert dataset.report.count("split row matches no interaction") == 1


def test_explicit_split_file_with_bad_label(tmp_path):
    path = tmp_path / "splits.csv"
    path.write_text("user_id,item_id,timestamp,split\na,0,5,holdout\n")
    with pytest.raises(DataError) as error:
        make_split(tiny_dataset(), SplitConfig(split_file=str(path)))
    assert (error.value.row, error.value.field) == (1, "split")


def test_split_config_refuses_impossible_values():
    with pytest.raises(ValueError, match="cold_item_share"):
        SplitConfig(cold_item_share=1.5)
    with pytest.raises(ValueError, match="time_fractions"):
        SplitConfig(time_fractions=(0.5, 0.1, 0.1))
    with pytest.raises(ValueError, match="scheme"):
        SplitConfig(scheme="random")
    with pytest.raises(ValueError, match="ranker_clicks must be >= 0"):
        SplitConfig(ranker_clicks=-1)


def test_ranker_clicks_are_each_users_last_training_clicks_and_leave_one_to_train():
    dataset = tiny_dataset()
    # train in time order: a: row5 (t1), row1 (t3); b: row2; c: row6
    split = make_split(dataset, SplitConfig(ranker_clicks=1))
    assert split.ranker.tolist() == [1]            # a's last training click
    assert split.train.tolist() == [5, 2, 6]       # b and c keep their only one
    assert split.valid.tolist() == [0] and split.test.tolist() == [3, 4]
    assert split.sizes()["ranker"] == 1
    assert "ranker" not in make_split(dataset).sizes()


def test_movielens_ranker_clicks_come_out_of_training_and_round_trip(tmp_path):
    from mmrec.data.fingerprint import split_hash
    dataset = load_movielens_100k()
    plain = make_split(dataset)
    held = make_split(dataset, SplitConfig(ranker_clicks=3))
    assert len(held.ranker) == 3 * 943 and len(held.train) == 98_114 - 3 * 943
    assert sorted(np.r_[held.train, held.ranker].tolist()) == sorted(plain.train.tolist())
    log = dataset.interactions
    for user in (0, 100, 942):  # the held clicks are the user's latest training clicks
        mine = plain.train[log.user[plain.train] == user]
        assert set(held.ranker[log.user[held.ranker] == user]) == set(mine[-3:])
    held.save(tmp_path / "split.npz")
    again = type(held).load(tmp_path / "split.npz")
    np.testing.assert_array_equal(again.ranker, held.ranker)
    assert split_hash(again) == split_hash(held) != split_hash(plain)
    # a split without ranker clicks keeps the hash recorded before the part existed
    from mmrec.data.fingerprint import _digest
    assert split_hash(plain) == _digest(plain.train.astype(np.int64),
                                        plain.valid.astype(np.int64),
                                        plain.test.astype(np.int64), plain.cold_items,
                                        np.asarray([plain.scheme], dtype=object))
