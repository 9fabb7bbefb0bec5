"""Training a two-tower model into a run folder.

The loop is Keras ``fit`` on a TFRS model: the train step is compiled with
XLA per ``train.jit``, runs under the current ``tf.distribute`` strategy,
shows Keras' progress bar, logs to TensorBoard, checkpoints every epoch,
evaluates full-ranking NDCG@10 on the validation users after every epoch, keeps
the best epoch's weights and stops early when validation stops improving.

Example:

    from mmrec.config import RunConfig
    result = train("movielens-100k", RunConfig(), "runs/ml")
    result["test"]["NDCG@10"]
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from mmrec.config import DataConfig, RunConfig, TrainConfig
from mmrec.data.dataset import Dataset
from mmrec.data.registry import load_dataset
from mmrec.data.splits import Split, make_split
from mmrec.evaluate.metrics import evaluate_scorer
from mmrec.evaluate.queries import EvaluationQueries, build_queries
from mmrec.features.examples import build_examples
from mmrec.features.item_features import ItemFeatures, prepare_item_features
from mmrec.features.pipeline import make_dataset
from mmrec.model.image_encoder import check_picture_size
from mmrec.model.towers import CatalogueSpec
from mmrec.model.two_tower import TwoTowerModel
from mmrec.train.image_pretraining import pretrain_model_images
from mmrec.train.run_folder import IncompleteRunError, RunFolder
from mmrec.train.runtime import (
    describe_jit,
    precision_policy,
    resolve_jit,
    seed_everything,
)

logger = logging.getLogger("mmrec.train")


@dataclasses.dataclass
class PreparedData:
    """A data set with its item features, split, training examples and queries."""

    dataset: Dataset
    features: ItemFeatures
    split: Split
    train_examples: dict[str, np.ndarray]
    valid: EvaluationQueries
    test: EvaluationQueries

    @property
    def train_item_counts(self) -> np.ndarray:
        return np.bincount(self.dataset.interactions.item[self.split.train],
                           minlength=len(self.dataset.catalogue))


def load_run_dataset(name: str, config: DataConfig, shop: dict | None = None) -> Dataset:
    """Loads the data set a run names (``shop`` with its generator options)."""
    shop_config = None
    if name == "shop" and shop:
        from mmrec.data.shop import ShopConfig
        shop_config = ShopConfig(**shop)
    return load_dataset(name, image_size=config.image_size, image_channels=config.image_channels,
                        shop_config=shop_config)


def prepare_data(dataset: Dataset, config: DataConfig, split: Split | None = None,
                 features: ItemFeatures | None = None) -> PreparedData:
    """Item features, split, examples and evaluation queries for ``dataset``."""
    features = features or prepare_item_features(dataset.catalogue, config)
    split = split or make_split(dataset, config.split)
    num_items = len(dataset.catalogue)
    examples = build_examples(dataset.interactions, split, "train", config.history_length,
                              num_items)
    if len(examples["item"]) == 0:
        raise ValueError("the split leaves no training interactions")
    return PreparedData(
        dataset=dataset, features=features, split=split, train_examples=examples,
        valid=build_queries(dataset.interactions, split, "valid", config.history_length),
        test=build_queries(dataset.interactions, split, "test", config.history_length))


def check_config(config: RunConfig, data: PreparedData) -> None:
    """Refuses settings the data cannot satisfy, before any training."""
    num_items = len(data.dataset.catalogue)
    if config.train.eval_k > num_items:
        raise ValueError(f"train.eval_k ({config.train.eval_k}) is larger than the catalogue "
                         f"({num_items} items)")
    if config.data.batch_size > len(data.train_examples["item"]):
        raise ValueError(f"data.batch_size ({config.data.batch_size}) is larger than the "
                         f"{len(data.train_examples['item'])} training examples")
    spec = CatalogueSpec.from_features(data.features)
    if config.model.modalities == "image" and not spec.uses_image(config.model):
        raise ValueError(f"model.modalities='image' but data set {data.dataset.name!r} has no "
                         "images or image features")
    if spec.uses_image(config.model) and spec.image_shape is not None:
        check_picture_size(min(spec.image_shape[:2]), config.model.image_channels)


def learning_rate(config: TrainConfig, steps_per_epoch: int):
    """Adam's step size: a constant, or a cosine decay over the whole run.

    The schedule counts optimizer steps, which the checkpoint keeps, so a
    resumed run continues the decay where it stopped.
    """
    if config.learning_rate_schedule == "constant":
        return config.learning_rate
    return tf.keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=config.epochs * steps_per_epoch, alpha=0.1)


def build_model(config: RunConfig, data: PreparedData) -> TwoTowerModel:
    model = TwoTowerModel(config.model, CatalogueSpec.from_features(data.features),
                          history_length=config.data.history_length,
                          num_users=data.dataset.interactions.num_users,
                          logq_correction=config.train.logq_correction,
                          remove_accidental_hits=config.train.remove_accidental_hits,
                          num_hard_negatives=config.train.hard_negative_count(
                              config.data.batch_size))
    model.attach_item_features(data.features)
    return model


def user_vectors(model: TwoTowerModel, queries: EvaluationQueries,
                 batch_size: int = 1024) -> np.ndarray:
    """The user embeddings of every query, [Q, D]."""
    encode = getattr(model, "_encode_users", None)
    if encode is None:  # one traced function per model, not one per call
        encode = tf.function(lambda h, m, u: model.user_vectors(h, m, u)[0],
                             reduce_retracing=True)
        object.__setattr__(model, "_encode_users", encode)
    parts = [encode(queries.history[s:s + batch_size], queries.history_mask[s:s + batch_size],
                    queries.user[s:s + batch_size]).numpy()
             for s in range(0, len(queries.target), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, model.config.embedding_dim))


def evaluate_model(model: TwoTowerModel, queries: EvaluationQueries, data: PreparedData,
                   ks: tuple[int, ...] = (10, 20)) -> dict:
    """Full-ranking metrics of ``model`` on ``queries`` (refreshes the item table)."""
    table = model.refresh_item_table()
    users = user_vectors(model, queries)
    return evaluate_scorer(lambda idx: users[idx] @ table.T, queries,
                           num_items=len(data.dataset.catalogue),
                           cold_items=data.split.cold_items,
                           train_item_counts=data.train_item_counts,
                           ks=tuple(sorted(set(ks))))


class TrainingMonitor(tf.keras.callbacks.Callback):
    """Refreshes the history-item table, validates, checkpoints, stops early."""

    def __init__(self, model_ref: TwoTowerModel, data: PreparedData, config: RunConfig,
                 folder: RunFolder, manager: tf.train.CheckpointManager,
                 best: tf.train.Checkpoint, state: dict) -> None:
        super().__init__()
        self.two_tower, self.data, self.config = model_ref, data, config
        self.folder, self.manager, self.best, self.state = folder, manager, best, state
        self.metric = f"NDCG@{config.train.eval_k}"
        self.started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.two_tower.refresh_item_table()
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        every = self.config.train.table_refresh_steps
        if every and (batch + 1) % every == 0:
            self.two_tower.refresh_item_table()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        logs = logs if logs is not None else {}
        value = self._validate()
        logs[f"val_{self.metric}"] = value
        examples = len(self.data.train_examples["item"])
        self.manager.save(checkpoint_number=epoch + 1)  # first: the checkpoint is the truth
        self._record({"epoch": epoch + 1, "loss": float(logs.get("loss", np.nan)),
                      f"val_{self.metric}": value, "seconds": round(seconds, 2),
                      "examples_per_second": round(examples / max(seconds, 1e-9), 1)})
        if epoch + 1 - self.state["best_epoch"] >= self.config.train.early_stopping_patience:
            logger.info("early stop: no better validation %s for %d epochs", self.metric,
                        self.config.train.early_stopping_patience)
            self.model.stop_training = True

    def recover_epoch(self, epoch: int) -> None:
        """Records an epoch whose checkpoint was saved but whose state.json
        line was not (the process died in between): the restored weights are
        validated again (evaluation is deterministic, so the value is the one
        the lost line held) and may still become the best epoch."""
        value = self._validate()
        logger.info("epoch %d was checkpointed but not recorded; validated again", epoch)
        self._record({"epoch": epoch, "loss": None, f"val_{self.metric}": value,
                      "seconds": None, "examples_per_second": None, "recovered": True})

    def _validate(self) -> float:
        metrics = evaluate_model(self.two_tower, self.data.valid, self.data,
                                 ks=(10, 20, self.config.train.eval_k))
        if self.metric not in metrics:
            raise KeyError(f"validation metrics lack {self.metric}: {sorted(metrics)}")
        return float(metrics[self.metric] or 0.0)

    def _record(self, record: dict) -> None:
        """Adds an epoch to the state; a better one replaces ``best/`` first."""
        epoch, value = record["epoch"], record[f"val_{self.metric}"]
        self.state.setdefault("history", []).append(record)
        self.state["epochs_done"] = epoch
        if value > self.state.get("best_value", -1.0):
            self.state.update(best_value=value, best_epoch=epoch)
            self._write_best()
        self.folder.write_json(self.folder.state_file, self.state)
        logger.info("epoch %d: val %s %.4f (best %.4f at epoch %d)", epoch, self.metric,
                    value, self.state["best_value"], self.state["best_epoch"])

    def _write_best(self) -> None:
        """Writes the best weights beside ``best/`` and swaps them in, so a kill
        mid-write never leaves ``best/`` half written."""
        import shutil
        partial = self.folder.path / "best.partial"
        shutil.rmtree(partial, ignore_errors=True)
        self.best.write(str(partial / "weights"))
        # tf.train.Checkpoint.write keeps no "checkpoint" index file; the folder
        # check looks for one.
        (partial / "checkpoint").write_text('model_checkpoint_path: "weights"\n')
        previous = self.folder.path / "best.previous"
        shutil.rmtree(previous, ignore_errors=True)
        if self.folder.best_dir.exists():
            self.folder.best_dir.rename(previous)
        partial.rename(self.folder.best_dir)
        shutil.rmtree(previous, ignore_errors=True)


def train(dataset: str, config: RunConfig, out: str | Path, *, resume: bool = False,
          verbose: int | str = "auto", shop: dict | None = None,
          data: PreparedData | None = None) -> dict:
    """Trains into run folder ``out``; returns the metrics written to metrics.json.

    Args:
      dataset: a built-in name or a data folder.
      config: data, model and training settings.
      out: the run folder (created; must be new unless ``resume``).
      resume: continue an interrupted run from its last finished epoch.
      verbose: Keras' fit verbosity.
      shop: ShopConfig fields when ``dataset`` is "shop".
      data: already prepared data (benchmarks reuse it across models).
    """
    folder = RunFolder(out)
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
        saved_shop = document.get("shop")
        if shop is not None and shop != saved_shop:
            raise ValueError(f"--resume: {folder.path} was trained on shop {saved_shop}, "
                             f"not {shop}")
        shop = saved_shop
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
        loaded = load_run_dataset(dataset, config.data, shop)
        data = prepare_data(loaded, config.data,
                            split=folder.read_split() if resume else None,
                            features=ItemFeatures.load(folder.features_dir) if resume else None)
    check_config(config, data)
    if not resume:
        folder.write_config(config, dataset, {"shop": shop} if shop else None)
        data.features.save(folder.features_dir)
        folder.write_split(data.split)
    with precision_policy(config.train.precision):
        return _fit(dataset, config, folder, data, state, jit, resume, verbose)


def _fit(dataset: str, config: RunConfig, folder: RunFolder, data: PreparedData, state: dict,
         jit: bool, resume: bool, verbose: int | str) -> dict:
    """Builds the model in the current strategy's scope, trains, writes metrics."""
    batches = make_dataset(data.train_examples, None, config.data, training=True)
    steps_per_epoch = int(batches.cardinality())
    checkpoint_path = tf.train.latest_checkpoint(str(folder.checkpoints_dir)) if resume else None
    if resume and checkpoint_path is None:
        logger.info("--resume: %s holds no finished epoch; training starts at epoch 1 with "
                    "the run's saved config, item features and split", folder.checkpoints_dir)
        state.clear()
    strategy = tf.distribute.get_strategy()
    with strategy.scope():
        model = build_model(config, data)
        if config.train.image_pretraining != "none" and checkpoint_path is None:
            state["image_pretraining"] = pretrain_model_images(
                model, data.features, config.train, jit_compile=jit, verbose=verbose)
        model.compile(optimizer=tf.keras.optimizers.Adam(
            learning_rate(config.train, steps_per_epoch)), jit_compile=jit)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    manager = tf.train.CheckpointManager(checkpoint, str(folder.checkpoints_dir), max_to_keep=2)
    best = tf.train.Checkpoint(model=model)
    monitor = TrainingMonitor(model, data, config, folder, manager, best, state)
    initial_epoch = 0
    if checkpoint_path is not None:
        checkpoint.restore(checkpoint_path)
        initial_epoch = int(checkpoint_path.rsplit("-", 1)[1])
        # The checkpoint is the truth: state.json may hold epochs after it
        # (dropped here) or lack its own (validated again).
        recorded = [h for h in state.get("history", []) if h["epoch"] <= initial_epoch]
        state["history"] = recorded
        state["epochs_done"] = recorded[-1]["epoch"] if recorded else 0
        logger.info("resuming after epoch %d from %s", initial_epoch, checkpoint_path)
        if state["epochs_done"] < initial_epoch:
            monitor.recover_epoch(initial_epoch)

    started = time.perf_counter()
    if initial_epoch < config.train.epochs and not (
            state and initial_epoch - state.get("best_epoch", 0)
            >= config.train.early_stopping_patience):
        model.fit(batches, epochs=config.train.epochs, initial_epoch=initial_epoch,
                  verbose=verbose, callbacks=[
                      monitor, tf.keras.callbacks.TensorBoard(str(folder.logs_dir),
                                                              profile_batch=0)])
    train_seconds = time.perf_counter() - started

    best.read(str(folder.best_dir / "weights")).expect_partial()
    metrics = {
        "dataset": dataset, "jit_compile": jit, "precision": config.train.precision,
        "replicas": tf.distribute.get_strategy().num_replicas_in_sync,
        "best_epoch": state.get("best_epoch"), "epochs_done": state.get("epochs_done"),
        "train_seconds": round(train_seconds, 1), "history": state.get("history", []),
        "image_pretraining": state.get("image_pretraining"),
        "valid": evaluate_model(model, data.valid, data),
        "test": evaluate_model(model, data.test, data)}
    folder.write_json(folder.metrics_file, metrics)
    return metrics


def load_trained(run: str | Path) -> tuple[TwoTowerModel, PreparedData, RunConfig, dict]:
    """The best model of a finished run, with its data, ready to evaluate."""
    folder = RunFolder(run)
    folder.check_complete(trained=True)
    config, document = folder.read_config()
    dataset = load_run_dataset(document["dataset"], config.data, document.get("shop"))
    data = prepare_data(dataset, config.data, split=folder.read_split(),
                        features=ItemFeatures.load(folder.features_dir))
    model = build_model(config, data)
    tf.train.Checkpoint(model=model).read(str(folder.best_dir / "weights")).expect_partial()
    # Build the towers (restores are deferred until variables exist).
    model.refresh_item_table()
    user_vectors(model, data.valid)
    return model, data, config, document
