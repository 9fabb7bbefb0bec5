"""tf.data pipelines: histories without leakage, and numbers-only batches for XLA."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mmrec.config import DataConfig, ModelConfig, RunConfig
from mmrec.data import Catalogue, Dataset, Interactions, load_dataset
from mmrec.data.splits import make_split
from mmrec.features.examples import build_examples
from mmrec.features.item_features import prepare_item_features
from mmrec.features.pipeline import make_dataset
from mmrec.model.two_tower import build_two_tower


def tiny() -> Dataset:
    # user a clicks 0,1,2,3,4 at t=1..5 (row order shuffled); user b clicks 5 then 0.
    log = Interactions.build(users=["a", "a", "b", "a", "a", "b", "a"],
                             items=[2, 0, 5, 4, 1, 0, 3],
                             timestamps=[3, 1, 1, 5, 2, 2, 4])
    return Dataset("tiny", Catalogue.build([str(i) for i in range(6)], ["x"] * 6), log)


def test_histories_are_most_recent_first_and_padded():
    dataset = tiny()
    split = make_split(dataset)  # a: train 0,1,2 valid 3 test 4; b: train 5, test 0
    train = build_examples(dataset.interactions, split, "train", history_length=2)
    assert train["item"].tolist() == [0, 1, 2, 5]
    assert train["history"].tolist() == [[0, 0], [0, 0], [1, 0], [0, 0]]
    assert train["history_mask"].tolist() == [[False, False], [True, False], [True, True],
                                              [False, False]]
    test = build_examples(dataset.interactions, split, "test", history_length=3)
    assert test["item"].tolist() == [4, 0]
    # the test history includes the validation click (3), the newest first
    assert test["history"].tolist() == [[3, 2, 1], [5, 0, 0]]
    assert test["history_mask"].tolist() == [[True, True, True], [True, False, False]]
    # logQ: each item's share of the 4 training clicks
    assert np.allclose(train["candidate_sampling_probability"], [0.25] * 4)


def test_training_history_never_sees_cold_or_held_out_clicks():
    dataset = load_dataset("movielens-100k")
    from mmrec.data.splits import SplitConfig
    split = make_split(dataset, SplitConfig(cold_item_share=0.2, seed=1))
    train = build_examples(dataset.interactions, split, "train", history_length=20)
    history_items = train["history"][train["history_mask"]]
    assert not split.cold_items[history_items].any()
    assert not split.cold_items[train["item"]].any()
    held_out = set(split.valid.tolist()) | set(split.test.tolist())
    # every history entry of a training click is an earlier training click of the same user
    log = dataset.interactions
    order = log.chronological_order()
    train_set = set(split.train.tolist())
    sequences = {}
    for row in order:
        if row in train_set:
            sequences.setdefault(int(log.user[row]), []).append(int(log.item[row]))
    for k in range(0, len(split.train), 997):
        user = int(train["user"][k])
        sequence = sequences[user]
        position = sequence.index(int(train["item"][k]))
        expected = sequence[max(0, position - 20):position][::-1]
        got = train["history"][k][train["history_mask"][k]].tolist()
        assert got == expected
    assert held_out.isdisjoint(train_set)


def test_batches_hold_only_numbers_with_static_shapes(shop_folder):
    dataset = load_dataset(shop_folder(), image_size=8)
    split = make_split(dataset)
    config = DataConfig(batch_size=2, history_length=3)
    examples = build_examples(dataset.interactions, split, "train", 3)
    batches = make_dataset(examples, config, training=True)
    spec = batches.element_spec
    assert sorted(spec) == ["candidate_sampling_probability", "history", "history_mask",
                            "item", "user"]
    assert all(s.dtype != tf.string for s in spec.values())
    assert spec["history"].shape.as_list() == [2, 3]
    assert spec["item"].shape.as_list() == [2]
    # every example arrives once per epoch (the partial last batch is dropped)
    seen = np.concatenate([batch["item"].numpy() for batch in batches])
    assert len(seen) == 2 * (len(examples["item"]) // 2)
    assert set(seen) <= set(examples["item"].tolist())


@pytest.mark.slow  # the default suite compiles text-only steps in test_train's XLA run
def test_pipeline_feeds_the_jit_compiled_two_tower_step_text_only():
    config = RunConfig(data=DataConfig(batch_size=64, history_length=5, max_text_tokens=12,
                                       vocab_size=500),
                       model=ModelConfig(embedding_dim=16, token_dim=16, text_layers=1))
    dataset = load_dataset("movielens-100k")
    features = prepare_item_features(dataset.catalogue, config.data)
    split = make_split(dataset)
    batches = make_dataset(build_examples(dataset.interactions, split, "train",
                                          config.data.history_length), config.data,
                           training=True)
    model = build_two_tower(config, features, dataset.interactions.num_users)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), jit_compile=True)
    history = model.fit(batches.take(3), epochs=2, verbose=0).history
    assert model._jit_compile is True
    assert len(history["loss"]) == 2 and all(np.isfinite(history["loss"]))
