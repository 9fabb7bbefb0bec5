"""A run folder: everything a trained model needs to be evaluated and exported.

::

    runs/NAME/
      config.json          the RunConfig, and which data set it trained on
      item_features/       vocabulary and per-item arrays (the feature cache key inside)
      split.npz            the train/valid/test rows and cold items
      checkpoints/         a checkpoint per epoch (model + optimizer), for --resume
      best/                the weights of the best validation epoch
      state.json           epochs done, the best epoch and the validation history
      metrics.json         validation and test metrics of the best weights
      logs/                TensorBoard

A run killed mid-epoch resumes from the last finished epoch (one killed in
its first epoch starts over from the saved config, features and split); a
folder that cannot resume says exactly which of these parts is missing.

Example:

    folder = RunFolder("runs/ml")
    folder.check_complete()      # raises with the missing parts listed
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from mmrec.config import DataConfig, RunConfig
from mmrec.data.splits import Split


class IncompleteRunError(FileNotFoundError):
    """A run folder lacks parts it needs; the message lists them."""


class RunFolder:
    """Paths and small-file I/O of one run folder."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    config_file = property(lambda self: self.path / "config.json")
    features_dir = property(lambda self: self.path / "item_features")
    split_file = property(lambda self: self.path / "split.npz")
    checkpoints_dir = property(lambda self: self.path / "checkpoints")
    best_dir = property(lambda self: self.path / "best")
    state_file = property(lambda self: self.path / "state.json")
    metrics_file = property(lambda self: self.path / "metrics.json")
    logs_dir = property(lambda self: self.path / "logs")

    def missing(self, trained: bool = True) -> list[str]:
        """The parts that are not there (``trained``: also weights and state)."""
        parts = {"config.json": self.config_file, "item_features/meta.json":
                 self.features_dir / "meta.json", "split.npz": self.split_file}
        if trained:
            parts.update({"state.json": self.state_file,
                          "best/ (weights of the best epoch)": self.best_dir / "checkpoint"})
        return [name for name, path in parts.items() if not path.exists()]

    def check_complete(self, trained: bool = True) -> None:
        missing = self.missing(trained)
        if missing:
            raise IncompleteRunError(f"run folder {self.path} is incomplete: missing "
                                     f"{', '.join(missing)}")

    def write_config(self, config: RunConfig, dataset: str, extra: dict | None = None) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        document = {"dataset": dataset, "config": config.to_dict(), **(extra or {})}
        self.config_file.write_text(json.dumps(document, indent=2))

    def read_config(self) -> tuple[RunConfig, dict]:
        document = json.loads(self.config_file.read_text())
        table = document["config"]
        table["data"]["cache_dir"] = DataConfig().cache_dir
        return RunConfig.from_dict(table), document

    def write_split(self, split: Split) -> None:
        np.savez(self.split_file, train=split.train, valid=split.valid, test=split.test,
                 cold_items=split.cold_items, scheme=np.asarray(split.scheme))

    def read_split(self) -> Split:
        with np.load(self.split_file, allow_pickle=False) as stored:
            return Split(train=stored["train"], valid=stored["valid"], test=stored["test"],
                         cold_items=stored["cold_items"], scheme=str(stored["scheme"]))

    def write_json(self, path: Path, document: dict) -> None:
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(document, indent=2, default=float))
        temporary.replace(path)

    def read_state(self) -> dict:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
