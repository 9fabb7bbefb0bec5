"""Training a two-tower model into a run folder, and loading it back.

A run goes through three steps, each in its own module: preparing the data
(:mod:`mmrec.train.preparation`: data set, item features, split, examples),
fitting (:mod:`mmrec.train.fitting`: XLA, checkpoints, early stopping,
resume) and scoring the best weights (:mod:`mmrec.evaluate.model_scores`).
This module runs them in order and keeps the run folder honest: nothing is
written until preparation succeeded (the set-up is written into a hidden
folder and renamed into place), and the run records the content hash of its
data, so a run whose data changed is refused when resumed, evaluated or
exported.

Example:

    from mmrec.config import RunConfig
    result = train("movielens-100k", RunConfig(), "runs/ml")
    result["test"]["NDCG@10"]
    model, data, config, document = load_trained("runs/ml")
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from mmrec.config import RunConfig
from mmrec.data.fingerprint import check_fingerprint, data_fingerprint
from mmrec.evaluate.model_scores import evaluate_model
from mmrec.features.item_features import ItemFeatures
from mmrec.model.two_tower import TwoTowerModel, build_two_tower
from mmrec.train.fitting import fit_run
from mmrec.train.preparation import PreparedData, check_config, load_run_dataset, prepare_data
from mmrec.train.run_folder import IncompleteRunError, RunFolder
from mmrec.train.runtime import (describe_jit, is_chief, is_multi_worker, precision_policy,
                                 resolve_jit, seed_everything)

logger = logging.getLogger("mmrec.train")


def train(dataset: str, config: RunConfig, out: str | Path, *, resume: bool = False,
          verbose: int | str = "auto", data: PreparedData | None = None) -> dict:
    """Trains into run folder ``out``; returns the metrics written to metrics.json.

    Args:
      dataset: a built-in name or a data folder (a built-in data set's options
        come from ``config.data.dataset_options``).
      config: data, model and training settings.
      out: the run folder (created; must be new unless ``resume``).
      resume: continue an interrupted run from its last finished epoch.
      verbose: Keras' fit verbosity.
      data: already prepared data (benchmarks reuse it across models).

    Under ``tf.distribute.MultiWorkerMirroredStrategy`` every worker calls
    this with the same ``out`` (on storage they share): the chief writes the
    run there, each other worker a scratch copy beside it, and a folder that
    already holds the run's set-up is continued (a restarted cluster resumes
    from the last epoch Keras' ``BackupAndRestore`` saved in ``out/backup``).

    Raises:
      DataChangedError: ``resume`` and the data is not what the run trained on.
      OldRunFolderError: ``resume`` of a folder written by an older mmrec.
    """
    folder = RunFolder(out)
    strategy = tf.distribute.get_strategy()
    backup_dir = None
    if is_multi_worker(strategy):
        # Every worker runs this same code (their collectives must match); the
        # chief writes the run, the others a scratch copy. A restarted cluster
        # continues where Keras' BackupAndRestore, shared by all, left off.
        backup_dir = folder.backup_dir
        if not is_chief(strategy):
            folder = folder.worker_scratch(strategy.cluster_resolver.task_id)
        if folder.config_file.exists() and not resume:
            logger.info("multi-worker: %s holds this run's set-up; continuing it", folder.path)
            resume = True
    state: dict = {}
    if resume:
        missing = folder.missing(trained=False)
        if missing:
            raise IncompleteRunError(
                f"--resume: {folder.path} stopped during its set-up, before any training "
                f"(missing {', '.join(missing)}); nothing trained is lost: delete the folder "
                f"and train again without --resume")
        saved_config, document = folder.read_config()
        if saved_config.to_dict() != config.to_dict() or document["dataset"] != dataset:
            raise ValueError(f"--resume: {folder.path} was trained with another config or data "
                             "set; resume with the same settings or choose a new --out")
        state = folder.read_state()
    elif folder.path.exists() and any(folder.path.iterdir()):
        raise FileExistsError(f"run folder {folder.path} exists and is not empty; use --resume "
                              "to continue it or choose another --out")

    jit = resolve_jit(config.train.jit)
    # Op determinism and XLA do not mix (XLA has no deterministic MaxPool
    # gradient): runs without XLA are bit-reproducible, compiled runs seeded.
    seed_everything(config.train.seed, deterministic=not jit)
    logger.info(describe_jit(config.train.jit))
    if data is None:
        loaded = load_run_dataset(dataset, config.data)
        data = prepare_data(loaded, config.data,
                            split=folder.read_split() if resume else None,
                            features=ItemFeatures.load(folder.features_dir) if resume else None)
    fingerprint = data_fingerprint(data.dataset, data.split)
    if resume:
        check_fingerprint(document["data_fingerprint"], fingerprint, f"run {folder.path}")
    check_config(config, data)
    if not resume:
        write_setup(folder, config, dataset, data, fingerprint)
    with precision_policy(config.train.precision):
        model, seconds = fit_run(config, folder, data, state, jit=jit, resume=resume,
                                 verbose=verbose, outside_pictures=data.dataset.outside_pictures,
                                 backup_dir=backup_dir)
        metrics = {
            "dataset": dataset, "jit_compile": jit, "precision": config.train.precision,
            "replicas": strategy.num_replicas_in_sync,
            "best_epoch": state.get("best_epoch"), "epochs_done": state.get("epochs_done"),
            "train_seconds": round(seconds, 1), "history": state.get("history", []),
            "image_pretraining": state.get("image_pretraining"),
            "valid": evaluate_model(model, data.valid, data),
            "test": evaluate_model(model, data.test, data)}
    folder.write_json(folder.metrics_file, metrics)
    if backup_dir is not None and not is_chief(strategy):
        shutil.rmtree(folder.path, ignore_errors=True)  # a worker's scratch copy, done with
    elif backup_dir is not None and backup_dir.is_dir() and not any(backup_dir.iterdir()):
        backup_dir.rmdir()  # BackupAndRestore emptied it when training ended
    return metrics


def write_setup(folder: RunFolder, config: RunConfig, dataset: str, data: PreparedData,
                fingerprint: dict[str, str]) -> None:
    """Writes config, item features and split beside ``folder`` and renames them in.

    A failure while writing leaves no half-made run folder behind.
    """
    folder.path.parent.mkdir(parents=True, exist_ok=True)
    staging = RunFolder(tempfile.mkdtemp(prefix=f".{folder.path.name}.setting-up-",
                                         dir=folder.path.parent))
    try:
        staging.write_config(config, dataset, fingerprint)
        data.features.save(staging.features_dir)
        staging.write_split(data.split)
        if folder.path.exists():
            folder.path.rmdir()  # empty: checked by the caller
        staging.path.rename(folder.path)
    except BaseException:
        shutil.rmtree(staging.path, ignore_errors=True)
        raise


def load_trained(run: str | Path) -> tuple[TwoTowerModel, PreparedData, RunConfig, dict]:
    """The best model of a finished run, with its data, ready to evaluate.

    Raises:
      IncompleteRunError: the folder lacks a part (named).
      OldRunFolderError: the folder was written by an older mmrec.
      DataChangedError: the data loaded now is not the data the run saw.
    """
    folder = RunFolder(run)
    folder.check_complete(trained=True)
    config, document = folder.read_config()
    dataset = load_run_dataset(document["dataset"], config.data)
    data = prepare_data(dataset, config.data, split=folder.read_split(),
                        features=ItemFeatures.load(folder.features_dir))
    check_fingerprint(document["data_fingerprint"], data_fingerprint(data.dataset, data.split),
                      f"run {folder.path}")
    return trained_model(run, config, data), data, config, document


def trained_model(run: str | Path, config: RunConfig, data: PreparedData) -> TwoTowerModel:
    """The best model of a finished run whose data is already prepared in memory
    (what :func:`train` was given): no data set is loaded again."""
    model = build_two_tower(config, data.features, data.dataset.interactions.num_users)
    model.read_checkpoint(RunFolder(run).best_dir)
    return model
