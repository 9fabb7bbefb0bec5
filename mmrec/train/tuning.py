"""``mmrec tune``: choose hyperparameters on validation, never on test.

A random search over a small space of the settings that matter (step size,
hard negatives, history length, softmax temperature, id-vector dropout):
each trial trains a short run (one seed, few epochs) and is scored by its best
validation NDCG@10; the best trial's settings are written as a TOML config that
``mmrec train --config`` and ``mmrec bench quality --config`` read. Test
metrics are never read here, so a config chosen by ``tune`` can be reported on
test once, honestly.

Trials are appended to a JSON-lines log as they finish; running the same
search again (same data set, base config, space and seed) skips the trials
already in the log, so a search that was killed resumes where it stopped and
a longer search extends a shorter one.

Why not KerasTuner: keras-tuner 1.4.8 imports Keras 3 (``import keras``) and
builds Keras 3 models in its tuners, while mmrec's towers are tf.keras (Keras
2, which TensorFlow Recommenders needs); its oracles can be driven from an own
trial loop only through private methods. A seeded random search over a
declared grid is a few lines, and with one seed and short trials it is what a
search of about an hour on 2 cores can afford.

Example:

    space = {"train.learning_rate": [0.001, 0.003], "data.history_length": [20, 50]}
    result = tune("shop", RunConfig(), space, trials=4, epochs=3, log="tune.jsonl")
    result.best["values"], result.best["valid_NDCG@10"]
    write_tuned_config(result, "configs/shop.toml")
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from mmrec.config import RunConfig, set_key
from mmrec.progress import progress

logger = logging.getLogger("mmrec.tune")

DEFAULT_SPACE: dict[str, list] = {
    "train.learning_rate": [0.001, 0.003, 0.006],
    "train.hard_negative_share": [0.25, 0.5, 1.0],
    "data.history_length": [20, 50],
    "model.temperature": [0.05, 0.1],
    "model.item_id_dropout": [0.0, 0.3, 0.6],
}
"""The settings searched by default, "table.key" -> choices. Keys a base
config makes moot (``item_id_dropout`` without an id vector) still cost trials:
pass a space of your own (``--space``) for such configs."""

OBJECTIVE = "valid_NDCG@10"


@dataclasses.dataclass
class TuneResult:
    """The trials of a search (this one's and the log's), best first.

    Attributes:
      trials: one dict per trial: ``values`` ("table.key" -> value),
        ``valid_NDCG@10`` (best epoch), ``best_epoch``, ``epochs_done``,
        ``seconds``, ``key`` (the search it belongs to) and ``trial``.
      base: the config every trial starts from, as a TOML-ready dict.
      space: the searched choices.
      epochs: the epochs each trial trained at most.
      dataset: what was tuned on.
    """

    trials: list[dict]
    base: dict
    space: dict[str, list]
    epochs: int
    dataset: str

    @property
    def best(self) -> dict:
        return self.trials[0]


def read_space(document: dict) -> dict[str, list]:
    """A space from a TOML document laid out like a config whose every leaf is
    a list of choices: ``[train] learning_rate = [0.001, 0.003]``."""
    space: dict[str, list] = {}

    def walk(table: dict, prefix: str) -> None:
        for key, value in table.items():
            name = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict):
                walk(value, name)
            elif isinstance(value, list) and value:
                space[name] = list(value)
            else:
                raise ValueError(f"search space: {name} must be a non-empty list of choices, "
                                 f"got {value!r}")
    walk(document, "")
    if not space:
        raise ValueError("search space: no setting to search")
    return space


def with_values(document: dict, values: dict) -> dict:
    """A copy of a config document with each "table.key" set."""
    document = json.loads(json.dumps(document))
    for name, value in values.items():
        set_key(document, name.split("."), value)
    return document


def candidates(space: dict[str, list], trials: int, seed: int) -> list[dict]:
    """The first ``trials`` settings of one seeded shuffle of the whole grid (no
    setting twice; a longer search with the same seed extends a shorter one)."""
    names = sorted(space)
    grid = list(itertools.product(*(space[n] for n in names)))
    order = np.random.default_rng(seed).permutation(len(grid))
    return [dict(zip(names, grid[i])) for i in order[:trials]]


def search_key(dataset: str, base: dict, space: dict, epochs: int, seed: int) -> str:
    """What makes two trials comparable: data set, base config, space, epochs, seed."""
    text = json.dumps([dataset, base, space, epochs, seed], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def tune(dataset: str, base: RunConfig | dict, space: dict[str, list] | None = None, *,
         trials: int = 12, epochs: int | None = 3, seed: int = 1,
         log: str | os.PathLike | None = None, verbose: bool = True) -> TuneResult:
    """Runs (or resumes) a random search; returns every trial, best first.

    Args:
      dataset: a built-in name or a data folder, as ``mmrec train`` takes it.
      base: the config every trial starts from (a :class:`RunConfig` or its dict).
      space: "table.key" -> choices (default :data:`DEFAULT_SPACE`).
      trials: how many settings to try (at most the grid's size).
      epochs: epochs per trial (None: the base config's); short trials rank
        settings well enough at a fraction of the cost.
      seed: orders the grid and seeds every trial's training.
      log: JSON-lines file of finished trials, appended to and read back.
    """
    from mmrec.train.preparation import load_run_dataset, prepare_data
    from mmrec.train.trainer import train

    if trials < 1:
        raise ValueError(f"--trials must be at least 1, got {trials}")
    base_doc = base.to_dict() if isinstance(base, RunConfig) else json.loads(json.dumps(base))
    space = dict(space or DEFAULT_SPACE)
    base_config = RunConfig.from_dict(base_doc)
    epochs = epochs or base_config.train.epochs
    base_doc = with_values(base_doc, {"train.epochs": epochs, "train.seed": seed,
                                      "data.seed": seed})
    settings = candidates(space, trials, seed)
    for values in settings:  # refuse an impossible setting before any training
        RunConfig.from_dict(with_values(base_doc, values))
    key = search_key(dataset, base_doc, space, epochs, seed)
    done = _read_log(log, key)
    prepared: dict[str, object] = {}
    todo = [v for v in settings if _name(v) not in done]
    if done and todo:
        logger.info("tune: %d of %d trials already in %s; %d to run", len(settings) - len(todo),
                    len(settings), log, len(todo))
    for values in progress(todo, desc="tune trials", min_items=1 if verbose else len(todo) + 1):
        config = RunConfig.from_dict(with_values(base_doc, values))
        data_key = json.dumps(config.data.to_dict(), sort_keys=True, default=str)
        if data_key not in prepared:
            prepared.clear()  # one prepared data set in memory at a time
            prepared[data_key] = prepare_data(load_run_dataset(dataset, config.data),
                                              config.data)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="mmrec-tune-") as out:
            metrics = train(dataset, config, out, verbose=0, data=prepared[data_key])
        value = metrics["valid"]["NDCG@10"]
        trial = {"key": key, "trial": len(done) + 1, "values": values,
                 OBJECTIVE: float(value) if math.isfinite(value) else None,
                 "best_epoch": metrics.get("best_epoch"),
                 "epochs_done": metrics.get("epochs_done"),
                 "seconds": round(time.perf_counter() - started, 1)}
        done[_name(values)] = trial
        if log is not None:
            Path(log).parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a") as handle:
                handle.write(json.dumps(trial) + "\n")
        logger.info("tune: trial %d %s: validation NDCG@10 %.4f", trial["trial"], values, value)
    ranked = sorted((done[_name(v)] for v in settings),
                    key=lambda t: -(t[OBJECTIVE] if t[OBJECTIVE] is not None else -1.0))
    return TuneResult(trials=ranked, base=base_doc, space=space, epochs=epochs,
                      dataset=dataset)


def _name(values: dict) -> str:
    return json.dumps(values, sort_keys=True)


def _read_log(log, key: str) -> dict[str, dict]:
    """Finished trials of this search in the log, by setting."""
    if log is None or not Path(log).exists():
        return {}
    done = {}
    for number, line in enumerate(Path(log).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            trial = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{log}, line {number}: not a JSON trial ({error}); remove the "
                             f"line or start a new log") from error
        if trial.get("key") == key:
            done[_name(trial["values"])] = trial
    return done


def write_tuned_config(result: TuneResult, path: str | os.PathLike,
                       command: str | None = None) -> Path:
    """Writes the best trial's settings over the base config as TOML, with the
    search (command, date, every trial's validation NDCG@10) in its comments.

    The epochs and seed of the short trials are not written: a run with the
    config trains the base config's (or the default) epochs."""
    best = result.best
    chosen = with_values(_explicit(result.base), best["values"])
    chosen = {table: chosen[table] for table in ("data", "model", "train") if table in chosen}
    lines = [f"# Chosen by `mmrec tune` on {result.dataset} validation NDCG@10 "
             f"({time.strftime('%Y-%m-%d')}); test was not read.",
             f"# {len(result.trials)} trials of {result.epochs} epochs, one seed:"]
    if command:
        lines.insert(1, f"#   {command}")
    for trial in result.trials:
        value = trial[OBJECTIVE]
        lines.append(f"#   {'nan' if value is None else f'{value:.4f}'}  "
                     + ", ".join(f"{k}={v}" for k, v in sorted(trial["values"].items())))
    lines.append("")
    lines += _toml_tables(chosen)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _explicit(base: dict) -> dict:
    """The base config's keys that differ from the defaults (what a TOML file
    needs), without the trials' epochs and seeds."""
    defaults = RunConfig().to_dict()
    base = with_values(base, {})
    for name in ("train.epochs", "train.seed", "data.seed"):
        *tables, key = name.split(".")
        base.get(tables[0], {}).pop(key, None)

    def differ(table: dict, default: dict) -> dict:
        kept = {}
        for key, value in table.items():
            if isinstance(value, dict) and isinstance(default.get(key), dict):
                inner = differ(value, default[key])
                if inner:
                    kept[key] = inner
            elif key not in default or not _same(value, default[key]):
                kept[key] = value
        return kept
    kept = differ(base, defaults)
    kept.get("data", {}).pop("cache_dir", None)  # a machine's path, not a setting
    return kept


def _same(a, b) -> bool:
    return json.dumps(a, default=str) == json.dumps(b, default=str)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if value is None:
        raise ValueError("TOML has no null; leave the key out")
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_tables(document: dict, prefix: str = "") -> list[str]:
    lines: list[str] = []
    scalars = {k: v for k, v in document.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in document.items() if isinstance(v, dict)}
    if prefix and scalars:
        lines.append(f"[{prefix}]")
    for key, value in scalars.items():
        if value is not None:
            lines.append(f"{key} = {_toml_value(value)}")
    if scalars:
        lines.append("")
    for key, table in tables.items():
        lines += _toml_tables(table, f"{prefix}.{key}" if prefix else key)
    return lines
