"""Fitting a two-tower model: the Keras loop, callbacks, resume, early stopping.

Two entry points share one model and one train step:

* :func:`fit_run` trains a run folder: it checkpoints every epoch, validates
  full-ranking NDCG on the validation users after each, keeps the best
  epoch's weights in ``best/``, stops early when validation stops improving,
  and resumes a killed run from its last finished epoch;
* :func:`fit_examples` fits a model that already exists on given examples
  for a few epochs, optionally only a chosen subset of its variables (a
  fine-tuning job passes the attention weights), without a run folder.

The train step is compiled with XLA per ``train.jit`` and runs under the
current ``tf.distribute`` strategy. The item-embedding table that history
items are read from is refreshed at every epoch's start and every
``train.table_refresh_steps`` steps.

Example:

    model, seconds = fit_run(config, RunFolder("runs/ml"), data, state={}, jit=False,
                             resume=False, verbose=2)
    history = fit_examples(model, new_examples, config, variables=model.attention_variables(),
                           epochs=1)
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from mmrec.config import RunConfig, TrainConfig
from mmrec.evaluate.model_scores import evaluate_model
from mmrec.features.pipeline import make_dataset
from mmrec.model.two_tower import TwoTowerModel, build_two_tower
from mmrec.train.image_pretraining import pretrain_model_images
from mmrec.train.preparation import PreparedData
from mmrec.train.run_folder import RunFolder, replace_folder

logger = logging.getLogger("mmrec.train")


def learning_rate(config: TrainConfig, steps_per_epoch: int, epochs: int | None = None):
    """Adam's step size: a constant, or a cosine decay over the whole run.

    The schedule counts optimizer steps, which the checkpoint keeps, so a
    resumed run continues the decay where it stopped.
    """
    if config.learning_rate_schedule == "constant":
        return config.learning_rate
    return tf.keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=(epochs or config.epochs) * steps_per_epoch,
        alpha=0.1)


class ItemTableRefresh(tf.keras.callbacks.Callback):
    """Re-encodes the catalogue into the history-item table as training moves it.

    Every ``every_steps`` steps: the whole catalogue, or with ``slice_items``
    the next that many items in turn (then the whole catalogue only when
    training starts; see ``TrainConfig.table_refresh_items``).
    """

    def __init__(self, model_ref: TwoTowerModel, every_steps: int, slice_items: int = 0) -> None:
        super().__init__()
        self.two_tower, self.every_steps, self.slice_items = model_ref, every_steps, slice_items
        self.next_item = 0

    def on_train_begin(self, logs=None):
        if self.slice_items:
            self.two_tower.refresh_item_table()

    def on_epoch_begin(self, epoch, logs=None):
        if not self.slice_items:
            self.two_tower.refresh_item_table()

    def on_train_batch_end(self, batch, logs=None):
        if not self.every_steps or (batch + 1) % self.every_steps:
            return
        if self.slice_items:
            self.next_item = self.two_tower.refresh_item_slice(self.next_item, self.slice_items)
        else:
            self.two_tower.refresh_item_table()


class TrainingMonitor(ItemTableRefresh):
    """Refreshes the item table, validates, checkpoints, stops early."""

    def __init__(self, model_ref: TwoTowerModel, data: PreparedData, config: RunConfig,
                 folder: RunFolder, manager: tf.train.CheckpointManager, state: dict) -> None:
        super().__init__(model_ref, config.train.table_refresh_steps,
                         config.train.table_refresh_items)
        self.data, self.config = data, config
        self.folder, self.manager, self.state = folder, manager, state
        self.metric = f"NDCG@{config.train.eval_k}"
        self.started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        started = time.perf_counter()  # the epoch's cost includes its table refresh
        super().on_epoch_begin(epoch, logs)
        # A multi-worker run restored by BackupAndRestore starts at the epoch
        # its backup holds, which the state may not have recorded yet.
        done = self.state.get("epochs_done", 0)
        if done < epoch:
            self.recover_epoch(epoch)
            started = time.perf_counter()  # not the validation of the recovered epoch
        elif done > epoch:
            self.rewind_to(epoch)
        self.started = started

    def rewind_to(self, epoch: int) -> None:
        """Makes the state agree with weights restored after ``epoch``: recorded
        epochs after it are dropped (the restored weights never saw them; they
        are trained again). ``epochs_done`` becomes the last epoch still
        recorded, which is below ``epoch`` when the run stopped between
        checkpointing an epoch and recording it; the caller then records it
        with :meth:`recover_epoch`.

        The best epoch is kept as recorded, even a dropped one: ``best/`` holds
        its weights, which were validated, and a retrained epoch replaces them
        only by beating its value, so the state always describes ``best/``."""
        history = self.state.get("history", [])
        kept = [h for h in history if h["epoch"] <= epoch]
        dropped = [h["epoch"] for h in history if h["epoch"] > epoch]
        if dropped:
            logger.info("restored after epoch %d: epochs %s are trained again", epoch, dropped)
        self.state["history"] = kept
        self.state["epochs_done"] = kept[-1]["epoch"] if kept else 0
        if not kept and "best_epoch" not in self.state:
            self.state.update(best_value=-1.0, best_epoch=0)

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        logs = logs if logs is not None else {}
        validating = time.perf_counter()
        value = self._validate()
        validation_seconds = time.perf_counter() - validating
        logs[f"val_{self.metric}"] = value
        examples = len(self.data.train_examples["item"])
        self.manager.save(checkpoint_number=epoch + 1)  # first: the checkpoint is the truth
        self._record({"epoch": epoch + 1, "loss": float(logs.get("loss", np.nan)),
                      f"val_{self.metric}": value, "seconds": round(seconds, 2),
                      "validation_seconds": round(validation_seconds, 2),
                      "examples": examples,
                      "examples_per_second": round(examples / max(seconds, 1e-9), 1)})
        patience = self.config.train.early_stopping_patience
        if patience and epoch + 1 - self.state["best_epoch"] >= patience:
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
                      "seconds": None, "validation_seconds": None, "examples": None,
                      "examples_per_second": None, "recovered": True})

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
        replace_folder(self.folder.best_dir, self.two_tower.write_checkpoint)


def fit_run(config: RunConfig, folder: RunFolder, data: PreparedData, state: dict, *,
            jit: bool, resume: bool, verbose: int | str,
            outside_pictures: Callable | None = None,
            backup_dir: Path | None = None) -> tuple[TwoTowerModel, float]:
    """Builds the model in the current strategy's scope and trains the run.

    Args:
      config: the run's settings.
      folder: the run folder (checkpoints, best weights, state, logs).
      data: the prepared data.
      state: the run's state.json contents (empty for a new run); updated.
      jit: compile the train step with XLA.
      resume: continue from the last checkpoint in ``folder``.
      verbose: Keras' fit verbosity.
      outside_pictures: the data set's pictures outside the catalogue, for
        image pretraining (see :mod:`mmrec.train.image_pretraining`).
      backup_dir: a multi-worker run's shared backup folder: Keras'
        ``BackupAndRestore`` saves the model and optimizer there after every
        epoch and restores them when the cluster restarts (the run's own
        per-epoch checkpoints, which each worker writes apart, are then not
        what it resumes from).

    Returns:
      The model with the best epoch's weights, and the seconds spent fitting.
    """
    batches = make_dataset(data.train_examples, config.data, training=True)
    steps_per_epoch = int(batches.cardinality())
    checkpoint_path = (tf.train.latest_checkpoint(str(folder.checkpoints_dir))
                       if resume and backup_dir is None else None)
    trained_out = False
    if backup_dir is not None and resume:
        # BackupAndRestore deletes its backup when fit ends: a recorded run
        # without one had finished training.
        trained_out = bool(state.get("epochs_done")) and (
            tf.train.latest_checkpoint(str(backup_dir / "chief")) is None)
    elif resume and checkpoint_path is None:
        logger.info("--resume: %s holds no finished epoch; training starts at epoch 1 with "
                    "the run's saved config, item features and split", folder.checkpoints_dir)
        state.clear()
    strategy = tf.distribute.get_strategy()
    with strategy.scope():
        model = build_two_tower(config, data.features, data.dataset.interactions.num_users)
        model.set_negative_pool(data.train_examples["item"])
        model.mark_trained_items(data.train_examples["item"])
        if config.train.image_pretraining != "none" and checkpoint_path is None:
            state["image_pretraining"] = pretrain_model_images(
                model, data.features, config.train, outside_pictures, jit_compile=jit,
                verbose=verbose)
        model.compile(optimizer=tf.keras.optimizers.Adam(
            learning_rate(config.train, steps_per_epoch)), jit_compile=jit)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    manager = tf.train.CheckpointManager(checkpoint, str(folder.checkpoints_dir), max_to_keep=2)
    monitor = TrainingMonitor(model, data, config, folder, manager, state)
    initial_epoch = 0
    if checkpoint_path is not None:
        checkpoint.restore(checkpoint_path)
        initial_epoch = int(checkpoint_path.rsplit("-", 1)[1])
        # The checkpoint is the truth: state.json may hold epochs after it
        # (dropped here) or lack its own (validated again).
        monitor.rewind_to(initial_epoch)
        logger.info("resuming after epoch %d from %s", initial_epoch, checkpoint_path)
        if state["epochs_done"] < initial_epoch:
            monitor.recover_epoch(initial_epoch)

    started = time.perf_counter()
    patience = config.train.early_stopping_patience
    done = state.get("epochs_done", initial_epoch) if backup_dir is not None else initial_epoch
    callbacks = [monitor, tf.keras.callbacks.TensorBoard(str(folder.logs_dir), profile_batch=0)]
    if backup_dir is not None:  # first: an epoch is backed up before it is recorded
        callbacks.insert(0, tf.keras.callbacks.BackupAndRestore(str(backup_dir)))
    if not trained_out and done < config.train.epochs and not (
            state and patience and done - state.get("best_epoch", 0) >= patience):
        model.fit(batches, epochs=config.train.epochs, initial_epoch=initial_epoch,
                  verbose=verbose, callbacks=callbacks)
    seconds = time.perf_counter() - started
    model.read_checkpoint(folder.best_dir)
    return model, seconds


def fit_examples(model: TwoTowerModel, examples: dict[str, np.ndarray], config: RunConfig, *,
                 variables: list[tf.Variable] | None = None, epochs: int = 1,
                 step_size: float | None = None, jit: bool = False,
                 verbose: int | str = 0,
                 callbacks: list[tf.keras.callbacks.Callback] | None = None
                 ) -> dict[str, list[float]]:
    """Fits ``model`` on ``examples`` in place; returns Keras' per-epoch history.

    With ``variables``, only those are updated, and every batch-norm layer
    runs in inference mode (its moving statistics stay as they were): a job
    that tunes the attention weights must not shift how the frozen CNN
    normalises pictures. The model keeps its own item features: ``examples``
    are index arrays as :func:`mmrec.features.examples.build_examples` gives.

    Args:
      model: a built two-tower model with item features attached.
      examples: training examples (user, item, history, history_mask,
        candidate_sampling_probability).
      config: batch size, shuffling seed and table refresh come from it.
      variables: the subset to fit; None fits every trainable variable.
      epochs: passes over ``examples``.
      step_size: Adam's constant step size (default ``config.train.learning_rate``).
      jit: compile the train step with XLA.
      verbose: Keras' fit verbosity.
      callbacks: more Keras callbacks for the fit.
    """
    batches = make_dataset(examples, config.data, training=True)
    model.set_negative_pool(examples["item"])  # catalogue negatives: items these clicks know
    bias = model.item_tower.bias_table
    if bias is not None and (variables is None or any(v is bias for v in variables)):
        model.mark_trained_items(examples["item"])  # their biases learn from these clicks
    frozen = []
    if variables is not None:
        frozen = [layer for layer in model.submodules
                  if isinstance(layer, tf.keras.layers.BatchNormalization) and layer.trainable]
    model.fit_only(variables)
    for layer in frozen:
        layer.trainable = False
    try:
        model.compile(optimizer=tf.keras.optimizers.Adam(step_size or config.train.learning_rate),
                      jit_compile=jit)
        history = model.fit(batches, epochs=epochs, verbose=verbose,
                            callbacks=[ItemTableRefresh(model, config.train.table_refresh_steps,
                                                        config.train.table_refresh_items),
                                       *(callbacks or [])])
    finally:
        for layer in frozen:
            layer.trainable = True
        model.fit_only(None)
    model.refresh_item_table()
    return {key: [float(v) for v in values] for key, values in history.history.items()}
