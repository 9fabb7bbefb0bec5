"""Configuration: every key typed, checked before work, and reachable from TOML and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mmrec.cli import parse_assignment
from mmrec.config import DataConfig, RunConfig

TIMEOUT_S = 240


def mmrec_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmrec.cli", *args], capture_output=True,
                          text=True, timeout=TIMEOUT_S, check=False)


@pytest.mark.parametrize("toml, message", [
    ("[data]\nbatch_size = 12.5", r"data.batch_size must be an integer, got 12.5 \(float\)"),
    ('[data]\nbatch_size = "big"', r"data.batch_size must be an integer, got 'big' \(str\)"),
    ("[data]\nhistory_length = true", r"data.history_length must be an integer, got True"),
    ('[model]\nimage_channels = [8, "x"]', r"model.image_channels must be a list of integers"),
    ("[train]\njit = 1", r"train.jit must be a string, got 1 \(int\)"),
    ('[train]\nlearning_rate = "fast"', r"train.learning_rate must be a number, got 'fast'"),
    ("[data.split]\ncold_item_share = \"x\"", r"data.split.cold_item_share must be a number"),
    ('[data.shop]\nnum_items = "many"', r"data.shop.num_items must be an integer, got 'many'"),
    ("[data.shop]\nnum_item = 5", r"unknown data.shop config key\(s\) \['num_item'\]"),
    ("[data.shop]\nnum_items = 3", r"data.shop: num_items must be in 10..70000"),
    ('[data]\ntimestamp_unit = "days"', r"data.timestamp_unit must be one of"),
    ('[data]\nencoding = "klingon"', r"data.encoding 'klingon' is not a text encoding"),
    ("[ranker]\ncandidates = 1", r"ranker.candidates must be >= 2"),
    ('[ranker]\nhidden_units = ["wide"]', r"ranker.hidden_units must be a list of integers"),
    ("[ranker]\ncandidate = 100", r"unknown ranker config key\(s\) \['candidate'\]"),
    ("[rankers]\ncandidates = 100", r"unknown config table\(s\) \['rankers'\]; known: data, "
                                     r"model, train, ranker"),
])
def test_a_value_of_the_wrong_type_is_refused_naming_key_type_and_value(tmp_path, toml,
                                                                         message):
    path = tmp_path / "bad.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ValueError, match=message) as error:
        RunConfig.from_toml(path)
    assert str(error.value).startswith(f"{path}: ")


def test_integers_are_numbers_and_lists_become_tuples():
    config = RunConfig.from_dict({"train": {"learning_rate": 1},
                                  "model": {"image_channels": [4, 8]},
                                  "data": {"split": {"time_fractions": [0.7, 0.2, 0.1]}}})
    assert config.train.learning_rate == 1 and config.model.image_channels == (4, 8)
    assert config.data.split.time_fractions == (0.7, 0.2, 0.1)


def test_shop_options_live_in_a_data_shop_table_and_round_trip(tmp_path):
    path = tmp_path / "shop.toml"
    path.write_text("[data.shop]\nnum_items = 300\nnum_users = 50\nnum_clicks = 1000\n"
                    "taste_spread = [1, 0, 0, 0, 0, 0]\n")
    config = RunConfig.from_toml(path)
    options = config.data.dataset_options["shop"]
    assert options["num_items"] == 300 and options["taste_spread"] == [1, 0, 0, 0, 0, 0]
    # the run folder stores it as the same table, and reads back the same config
    document = config.to_dict()
    assert document["data"]["shop"]["num_users"] == 50 and "dataset_options" not in document["data"]
    assert RunConfig.from_dict(json.loads(json.dumps(document))) == config
    # written as a table or as the options object, a config is the same config
    from mmrec.data.shop import ShopConfig
    same = DataConfig(dataset_options={"shop": ShopConfig(num_items=300, num_users=50,
                                                          num_clicks=1000,
                                                          taste_spread=(1, 0, 0, 0, 0, 0))})
    assert same == config.data
    # the options reach the generator
    from mmrec.data.registry import load_dataset
    dataset = load_dataset("shop", **config.data.loader_options("shop"))
    assert len(dataset.catalogue) == 300 and dataset.interactions.num_users == 50
    # and only the shop's: MovieLens is read as ever
    assert config.data.loader_options("movielens-100k")["options"] is None


def test_a_data_set_without_options_refuses_them():
    from mmrec.data.registry import load_dataset
    with pytest.raises(ValueError, match="'movielens-100k' takes no options"):
        load_dataset("movielens-100k", options={"num_items": 3})


@pytest.mark.parametrize("assignment, path, value", [
    ("data.shop.num_items=500", ["data", "shop", "num_items"], 500),
    ("train.jit=on", ["train", "jit"], "on"),
    ('train.jit="off"', ["train", "jit"], "off"),
    ("train.learning_rate=1e-3", ["train", "learning_rate"], 0.001),
    ("model.image_channels=[8, 16]", ["model", "image_channels"], [8, 16]),
])
def test_set_assignments_read_toml_values(assignment, path, value):
    assert parse_assignment(assignment) == (path, value)


def test_a_malformed_set_assignment_is_refused():
    with pytest.raises(ValueError, match="expected TABLE.KEY=VALUE"):
        parse_assignment("epochs=3")


def test_shop_options_reach_the_shop_from_the_command_line(tmp_path):
    path = tmp_path / "shop.toml"
    path.write_text("[data.shop]\nnum_items = 300\nnum_users = 50\nnum_clicks = 1000\n")
    from_file = mmrec_cli("data", "describe", "--dataset", "shop", "--config", str(path),
                          "--json")
    assert from_file.returncode == 0, from_file.stderr[-2000:]
    summary = json.loads(from_file.stdout)
    assert (summary["items"], summary["users"]) == (300, 50)
    # --set overrides the file, key by key
    overridden = mmrec_cli("data", "describe", "--dataset", "shop", "--config", str(path),
                           "--set", "data.shop.num_items=400", "--json")
    assert overridden.returncode == 0, overridden.stderr[-2000:]
    assert (json.loads(overridden.stdout)["items"], json.loads(overridden.stdout)["users"]) == (
        400, 50)
    refused = mmrec_cli("data", "describe", "--dataset", "shop",
                        "--set", "data.shop.num_items=big")
    assert refused.returncode == 2
    assert "data.shop.num_items must be an integer, got 'big' (str)" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_train_seed_seeds_the_shuffling_too():
    from mmrec.cli import build_parser, read_run_config

    args = build_parser().parse_args(["train", "--dataset", "shop", "--out", "x", "--seed", "7"])
    config = read_run_config(args)
    assert config.train.seed == 7 and config.data.seed == 7
    unseeded = read_run_config(build_parser().parse_args(["train", "--dataset", "shop",
                                                          "--out", "x"]))
    assert unseeded.data.seed == DataConfig().seed


def test_the_ranker_table_round_trips_through_the_run_config(tmp_path):
    path = tmp_path / "two-stage.toml"
    path.write_text("[ranker]\ncandidates = 200\nhidden_units = [32, 16]\nattention = \"mean\"\n")
    config = RunConfig.from_toml(path)
    assert config.ranker.candidates == 200 and config.ranker.hidden_units == (32, 16)
    assert RunConfig.from_dict(config.to_dict()) == config
    assert RunConfig().ranker.candidates == 100  # the default


def test_every_built_in_data_set_has_a_config_that_reads():
    from pathlib import Path
    from mmrec.data.registry import BUILTIN
    configs = Path(__file__).resolve().parents[1] / "configs"
    for name in BUILTIN:
        path = configs / f"{name}.toml"
        assert path.is_file(), f"configs/{name}.toml is missing"
        RunConfig.from_toml(path)  # refuses unknown keys and wrong types
        assert "validation" in path.read_text()  # says how its settings were chosen
    assert RunConfig.from_toml(configs / "movielens-100k.toml").data.history_length == 50
