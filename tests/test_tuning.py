"""mmrec tune: trials on validation, a resumable log, and a config that trains."""

from __future__ import annotations

import json

import pytest

from mmrec.config import RunConfig
from mmrec.train.tuning import (candidates, read_space, tune, with_values,
                                write_tuned_config)

SHOP = {"num_items": 200, "num_users": 60, "num_clicks": 1500}
BASE = {"data": {"batch_size": 64, "history_length": 4, "max_text_tokens": 8,
                 "vocab_size": 200, "shop": SHOP},
        "model": {"embedding_dim": 16, "token_dim": 16, "text_layers": 0,
                  "attention_heads": 2, "modalities": "text"},
        "train": {"jit": "off"}}


def test_candidates_are_distinct_and_a_longer_search_extends_a_shorter_one():
    space = {"train.learning_rate": [0.001, 0.003, 0.01], "data.history_length": [10, 20]}
    six = candidates(space, 6, seed=3)
    assert len({json.dumps(c, sort_keys=True) for c in six}) == 6  # the whole grid, once
    assert candidates(space, 2, seed=3) == six[:2]
    assert candidates(space, 99, seed=3) == six


def test_space_files_need_lists_of_choices():
    assert read_space({"train": {"learning_rate": [0.001, 0.002]}}) == {
        "train.learning_rate": [0.001, 0.002]}
    with pytest.raises(ValueError, match="train.learning_rate must be a non-empty list"):
        read_space({"train": {"learning_rate": 0.001}})


def test_an_impossible_setting_is_refused_before_any_training(tmp_path):
    with pytest.raises(ValueError, match="hard_negative_share"):
        tune("shop", BASE, {"train.hard_negative_share": [0.5, 2.0]}, trials=2, epochs=1,
             log=tmp_path / "log.jsonl", verbose=False)
    assert not (tmp_path / "log.jsonl").exists()


def test_tune_picks_the_best_validation_trial_resumes_and_writes_a_config(tmp_path):
    log = tmp_path / "tune.jsonl"
    space = {"train.learning_rate": [1e-9, 0.01]}
    first = tune("shop", BASE, space, trials=1, epochs=1, log=log, verbose=False)
    assert len(first.trials) == 1 and len(log.read_text().splitlines()) == 1
    result = tune("shop", BASE, space, trials=2, epochs=1, log=log, verbose=False)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 2, "the trial already in the log was not trained again"
    by_rate = {t["values"]["train.learning_rate"]: t["valid_NDCG@10"] for t in lines}
    assert by_rate[1e-9] != by_rate[0.01]
    best_rate = max(by_rate, key=by_rate.get)
    assert result.best["values"] == {"train.learning_rate": best_rate}
    assert result.best["valid_NDCG@10"] == max(by_rate.values())
    assert all("test" not in json.dumps(t) for t in lines)  # test is never read

    path = write_tuned_config(result, tmp_path / "tuned.toml", command="mmrec tune ...")
    text = path.read_text()
    assert "test was not read" in text and "mmrec tune ..." in text
    config = RunConfig.from_toml(path)
    assert config.train.learning_rate == best_rate
    assert config.train.epochs == RunConfig().train.epochs  # the short trials' length is not kept
    assert config.data.dataset_options["shop"].items() >= SHOP.items()
    assert config.model.modalities == "text" and config.data.history_length == 4
    assert RunConfig.from_dict(with_values(BASE, {"train.learning_rate": best_rate})).model == \
        config.model


@pytest.mark.slow  # one more training run for the command's plumbing
def test_tune_command_writes_a_config_that_mmrec_train_reads(tmp_path):
    from mmrec.cli import main
    from mmrec.train.tuning import _toml_tables

    (tmp_path / "base.toml").write_text("\n".join(_toml_tables(BASE)))
    (tmp_path / "space.toml").write_text("[model]\ntemperature = [0.05, 0.1]\n")
    out = tmp_path / "configs" / "tiny.toml"
    args = ["tune", "--dataset", "shop", "--config", str(tmp_path / "base.toml"),
            "--space", str(tmp_path / "space.toml"), "--epochs", "1", "--out", str(out)]
    assert main(args + ["--trials", "0"]) == 2 and not out.exists()
    assert main(args + ["--trials", "1"]) == 0
    trials = (tmp_path / "configs" / "tiny.trials.jsonl").read_text().splitlines()
    assert len(trials) == 1
    chosen = json.loads(trials[0])["values"]["model.temperature"]
    assert RunConfig.from_toml(out).model.temperature == chosen
