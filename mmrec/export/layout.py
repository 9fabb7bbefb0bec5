"""The layout of a published version: what publishing writes and serving reads.

TF Serving watches a model's base path (``saved_models/mmrec``) and serves
its highest integer sub-folder; it does not check that a folder is complete,
so a version appears only by an atomic rename of a finished folder. Beside
the SavedModel, each version carries a side car (``mmrec/``) with everything
needed to serve it in Python *and to continue training it* without the run
folder it came from::

    saved_models/mmrec/3/
      saved_model.pb, variables/, assets/       the serving graph (TF Serving)
      assets.extra/tf_serving_warmup_requests   PredictionLog warm-up records
      mmrec/manifest.json                       format, config, data reference, data_until,
                                                lineage (format 2 and later)
      mmrec/weights/                            Keras weights (tf.train.Checkpoint)
      mmrec/item_features/                      vocabulary and per-item arrays
      mmrec/tables.npz                          item ids, users, histories, seen items,
                                                popularity, embeddings, trained items
      mmrec/split.npz                           the split of the data it was trained on
      mmrec/items.json                          titles and metadata for display
      mmrec/modality_gate.npy                   modality gate weights per item
      mmrec/ranker/                             the ranking stage, when the version has
                                                one (ranker.json and weights/)

Format 1 (before manifests) had ``mmrec/config.json`` instead of the manifest,
tables and split: it still serves, and a job that needs more names what is
missing. This module reads no TensorFlow, so serving and publishing share it
without pulling in each other's dependencies.

Example:

    versions("saved_models/mmrec")                 # [1, 2, 3]
    version = VersionFiles("saved_models/mmrec/3")
    version.format, version.manifest()["data_until"]
    version.require("fine-tune", VersionFiles.TRAINING_PARTS)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

FORMAT_VERSION = 2
SIDE_CAR = "mmrec"
WARMUP_FILE = ("assets.extra", "tf_serving_warmup_requests")
STAGING_PREFIX = ".incomplete-"


class VersionFormatError(FileNotFoundError):
    """A version lacks what a task needs (older format, or damaged)."""


def versions(model_dir: str | os.PathLike) -> list[int]:
    """The complete versions in ``model_dir``, ascending.

    A folder being written is hidden (``.incomplete-*``) until it is renamed
    into place, so only finished versions are listed.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir()
                  if p.is_dir() and p.name.isdigit() and (p / "saved_model.pb").is_file())


def latest_version(model_dir: str | os.PathLike) -> Path:
    """The folder of the highest complete version.

    Raises:
      FileNotFoundError: ``model_dir`` holds no version.
    """
    available = versions(model_dir)
    if not available:
        raise FileNotFoundError(f"no published version in {model_dir}; run `mmrec export "
                                "--run RUN --model-dir ...` first")
    return Path(model_dir) / str(available[-1])


def rename_into_place(staging: Path, model_dir: Path) -> Path:
    """Renames a finished ``staging`` folder to the next free version number.

    A rename within one file system is atomic, so TF Serving and the Python
    API see the whole version or none of it; if another publisher took that
    number first (its folder is not empty, so the rename fails), the next
    number is tried.
    """
    for _ in range(100):
        target = model_dir / str((versions(model_dir) or [0])[-1] + 1)
        try:
            staging.rename(target)
            return target
        except OSError:
            if not target.exists():
                raise
    raise RuntimeError(f"could not find a free version number in {model_dir}")


class VersionFiles:
    """Paths and small-file reading of one version folder.

    Args:
      path: ``saved_models/<name>/<N>``.
    """

    TRAINING_PARTS = ("manifest.json", "weights/", "item_features/", "tables.npz", "split.npz")
    """What loading a version to train it further needs."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.side_car = self.path / SIDE_CAR

    manifest_file = property(lambda self: self.side_car / "manifest.json")
    weights_dir = property(lambda self: self.side_car / "weights")
    item_features_dir = property(lambda self: self.side_car / "item_features")
    tables_file = property(lambda self: self.side_car / "tables.npz")
    split_file = property(lambda self: self.side_car / "split.npz")
    items_file = property(lambda self: self.side_car / "items.json")
    gates_file = property(lambda self: self.side_car / "modality_gate.npy")
    ranker_dir = property(lambda self: self.side_car / "ranker")
    legacy_config_file = property(lambda self: self.side_car / "config.json")

    @property
    def number(self) -> int:
        return int(self.path.name)

    @property
    def format(self) -> int:
        """1 for versions written before manifests, else the manifest's format."""
        if not self.manifest_file.is_file():
            return 1
        return int(self.manifest().get("format", 1))

    def manifest(self) -> dict:
        """The manifest; for a format-1 version, what its config.json held.

        Raises:
          VersionFormatError: neither file is there, or a newer format.
        """
        if self.manifest_file.is_file():
            manifest = json.loads(self.manifest_file.read_text())
            if int(manifest.get("format", 1)) > FORMAT_VERSION:
                raise VersionFormatError(
                    f"version {self.path} is in format {manifest['format']}, newer than this "
                    f"mmrec reads ({FORMAT_VERSION}); upgrade mmrec to use it")
            return manifest
        if self.legacy_config_file.is_file():
            document = json.loads(self.legacy_config_file.read_text())
            return {"format": 1, "config": document.get("config"),
                    "data": {"dataset": document.get("dataset")}}
        raise VersionFormatError(f"{self.path} is not an mmrec version: it has neither "
                                 f"{SIDE_CAR}/manifest.json nor {SIDE_CAR}/config.json")

    def items(self) -> dict:
        """Item ids, display metadata, history length and k (items.json)."""
        return json.loads(self.items_file.read_text())

    def missing(self, parts: tuple[str, ...]) -> list[str]:
        """Which of ``parts`` (side-car names; a trailing / for folders) are absent."""
        return [part for part in parts
                if not (self.side_car / part.rstrip("/")).exists()]

    def require(self, task: str, parts: tuple[str, ...] = TRAINING_PARTS) -> None:
        """Raises, naming what is missing, if ``task`` cannot use this version.

        Raises:
          VersionFormatError: the version lacks some of ``parts``.
        """
        missing = self.missing(parts)
        if missing:
            older = (f" (it was written in format {self.format}, before versions carried "
                     "them; re-export its run with `mmrec export` to get a version in format "
                     f"{FORMAT_VERSION})" if self.format < FORMAT_VERSION else "")
            raise VersionFormatError(
                f"cannot {task} version {self.path}: it lacks "
                f"{', '.join(f'{SIDE_CAR}/{part}' for part in missing)}{older}")
