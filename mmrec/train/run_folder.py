"""A run folder: everything a trained model needs to be evaluated and exported.

::

    runs/NAME/
      config.json          the RunConfig, which data set it trained on, and the
                           content hash of that data (items, interactions, split)
      item_features/       vocabulary and per-item arrays (the feature cache key inside)
      split.npz            the train/valid/test rows and cold items
      checkpoints/         a checkpoint per epoch (model + optimizer), for --resume
      best/                the weights of the best validation epoch
      state.json           epochs done, the best epoch and the validation history
      metrics.json         validation and test metrics of the best weights
      logs/                TensorBoard

A run killed mid-epoch resumes from the last finished epoch (one killed in
its first epoch starts over from the saved config, features and split); a
folder that cannot resume says exactly which of these parts is missing. A run
is bound to its data: whoever loads it again compares the data's content hash
with the recorded one (:mod:`mmrec.data.fingerprint`), and a folder from
before runs recorded it is refused.

Example:

    folder = RunFolder("runs/ml")
    folder.check_complete()      # raises with the missing parts listed
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

from mmrec.config import DataConfig, RunConfig
from mmrec.data.splits import Split

RUN_FORMAT = 2
"""2: config.json records the data's fingerprint (1: before it did)."""


def replace_folder(target: Path, write: Callable[[Path], object]) -> None:
    """Writes a folder with ``write(path)`` beside ``target`` and swaps it in,
    so a kill mid-write never leaves ``target`` half written: the earlier one
    stays until the new one is complete (leftovers of a killed write are
    cleared first)."""
    partial = target.with_name(f"{target.name}.partial")
    previous = target.with_name(f"{target.name}.previous")
    shutil.rmtree(partial, ignore_errors=True)
    write(partial)
    shutil.rmtree(previous, ignore_errors=True)
    if target.exists():
        target.rename(previous)
    partial.rename(target)
    shutil.rmtree(previous, ignore_errors=True)


class IncompleteRunError(FileNotFoundError):
    """A run folder lacks parts it needs; the message lists them."""


class OldRunFolderError(ValueError):
    """A run folder written by an older mmrec, which this one cannot check."""


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
    backup_dir = property(lambda self: self.path / "backup")
    """Keras' BackupAndRestore state of a multi-worker run (gone once it finished)."""

    def worker_scratch(self, index: int) -> "RunFolder":
        """Where worker ``index`` of a multi-worker run, not the chief, writes
        its copy of the run (beside the run, so a restarted worker finds its
        own state again); only the chief's folder is the run."""
        return RunFolder(self.path.parent / f".{self.path.name}.worker-{index}")

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

    def write_config(self, config: RunConfig, dataset: str, fingerprint: dict[str, str]) -> None:
        """Writes config.json: the config, the data set and its fingerprint."""
        self.path.mkdir(parents=True, exist_ok=True)
        document = {"format": RUN_FORMAT, "dataset": dataset, "config": config.to_dict(),
                    "data_fingerprint": fingerprint}
        self.config_file.write_text(json.dumps(document, indent=2))

    def read_config(self) -> tuple[RunConfig, dict]:
        """The run's config and its config.json document.

        Raises:
          OldRunFolderError: the folder was written before runs recorded the
            fingerprint of their data.
        """
        document = json.loads(self.config_file.read_text())
        if int(document.get("format", 1)) < RUN_FORMAT or "data_fingerprint" not in document:
            raise OldRunFolderError(
                f"run folder {self.path} was written by an older mmrec, before runs recorded "
                "the content hash of the data they were trained on, so it cannot be checked "
                "against its data: train it again with `mmrec train` (this folder cannot be "
                "resumed, evaluated or exported)")
        table = document["config"]
        table["data"]["cache_dir"] = DataConfig().cache_dir
        return RunConfig.from_dict(table), document

    def write_split(self, split: Split) -> None:
        split.save(self.split_file)

    def read_split(self) -> Split:
        return Split.load(self.split_file)

    def write_json(self, path: Path, document: dict) -> None:
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(document, indent=2, default=float))
        temporary.replace(path)

    def read_state(self) -> dict:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
