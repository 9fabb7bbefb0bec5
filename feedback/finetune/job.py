"""The periodic fine-tuning job: store -> fine-tune -> gate -> publish, exactly once.

One run loads the live (highest) version, reads the store's events past its
consumer watermark, trains the chosen weights on them (with a replay sample
of the version's original training clicks), carries a ranking stage over to
the moved item vectors and tunes it on the same clicks
(:mod:`feedback.finetune.ranking`), scores the candidate beside the live
version as each serves (:mod:`feedback.finetune.gate`), and, if it passes,
publishes it through :func:`mmrec.export.publish.publish` after a load test
in a fresh process; then it moves the store's watermark. TF Serving and
``Recommender.reload()`` pick the new version up; a rejected candidate
publishes nothing and leaves the watermark where it was, so the next run
retries with the window plus newer events.

Exactly once, without a transaction that spans the store and the disk: the
version records the watermark it trained through, and every run starts by
reconciling (the store's watermark becomes the newer of the two). So a job
killed while training or while writing the version leaves nothing visible and
the next run trains the same events; one killed after publishing but before
moving the watermark is found out by the next run, which trains nothing twice.
One job at a time per model folder: an advisory lock (``flock``) that the
kernel releases when its holder dies, so a killed job cannot leave it stuck.

Exit codes a scheduler can act on: 0 published, 3 rejected by the gate, 4
nothing new, 1 error.

Example:

    with FeedbackStore("sqlite:///feedback.db") as store:
        result = run_finetune(store, "saved_models/mmrec")
    result.outcome, result.exit_code, result.report["gate"]
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np

import mmrec  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf

from mmrec.evaluate.queries import build_queries
from mmrec.export.layout import latest_version, versions
from mmrec.export.publish import PublishedModel, load_published, publish
from mmrec.features.examples import build_examples
from mmrec.train.fitting import fit_examples

from feedback.finetune.config import FinetuneConfig
from feedback.finetune.gate import gate_scores, judge
from feedback.finetune.ranking import finetune_ranker
from feedback.finetune.window import Click, build_window, with_replay

logger = logging.getLogger("feedback.finetune")
EXIT_PUBLISHED, EXIT_ERROR, EXIT_REJECTED, EXIT_NOTHING_NEW = 0, 1, 3, 4
KILL_VARIABLE = "MMREC_FINETUNE_KILL_AT"
KILL_POINTS = ("training", "export", "after-publish")
"""Where a test may have the job kill itself with SIGKILL (``MMREC_FINETUNE_KILL_AT``)."""
HISTORY_FILE = "finetune-history.jsonl"
LOCK_FILE = ".finetune.lock"


class JobBusyError(RuntimeError):
    """Another fine-tuning job holds the model folder's lock."""


@dataclasses.dataclass
class FinetuneResult:
    """One run's outcome ("published", "rejected" or "nothing new") and its report.

    Example:

        result = run_finetune(store, "saved_models/mmrec")
        print(result.summary())   # published: live version 1, 300 new events, published version 2
        result.report["gate"]     # the gate's numbers, as `mmrec feedback finetune --json` prints
    """

    outcome: str
    exit_code: int
    version: int | None
    report: dict

    def summary(self) -> str:
        """The run in a line, with the gate's reasons and notes below it (the CLI prints this)."""
        report = self.report
        line = (f"{report['outcome']}: live version {report.get('live_version')}, "
                f"{report.get('events', 0)} new events")
        if report.get("version"):
            line += f", published version {report['version']}"
        gate = report.get("gate") or {}
        for reason in gate.get("reasons", []):
            line += f"\n  rejected: {reason}"
        for note in gate.get("notes", []):
            line += f"\n  gate note: {note}"
        if report.get("stopped"):
            line += f"\n  {report['stopped']}"
        if report.get("full_window"):
            line += f"\n  {report['full_window']}"
        return line


def default_consumer(model_dir: str | os.PathLike) -> str:
    """The store consumer a model folder's job reads as: ``finetune:<folder name>``."""
    return f"finetune:{Path(model_dir).resolve().name}"


@contextlib.contextmanager
def job_lock(model_dir: Path) -> Iterator[None]:
    """Holds ``model_dir/.finetune.lock`` for the block, or raises JobBusyError.

    ``flock`` locks belong to the open file: the kernel drops them when the
    process ends, however it ends.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    with open(model_dir / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise JobBusyError(f"another fine-tuning job ({holder}) is running on "
                               f"{model_dir}; try again when it ends") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _kill_requested(point: str) -> bool:
    return os.environ.get(KILL_VARIABLE) == point


def _die() -> None:
    logger.warning("%s: killing this job now", KILL_VARIABLE)
    os.kill(os.getpid(), signal.SIGKILL)


class _KillWhileTraining(tf.keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        _die()


def _kill_while_exporting(model_dir: Path) -> threading.Thread:
    """Kills the process once a new version's staging folder has content."""
    before = set(model_dir.glob(".incomplete-*"))

    def watch() -> None:
        while True:
            fresh = [p for p in model_dir.glob(".incomplete-*") if p not in before]
            if any(any(p.iterdir()) for p in fresh if p.exists()):
                _die()
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def reconcile(store, consumer: str, live: PublishedModel):
    """The store's watermark for ``consumer``, moved up to what the live version
    records if a job published it but died before moving the watermark."""
    from feedback.store import Watermark
    recorded = live.manifest.get("feedback") or {}
    stored = store.consumers().get(consumer)
    if same_feed(recorded, store, consumer) and recorded.get("watermark"):
        mark = Watermark(*recorded["watermark"])
        if stored is None or mark > stored:
            logger.info("reconciling: version %d trained through %s, the store says %s",
                        live.number, mark, stored)
            store.commit(consumer, mark)
            return mark
    return stored


def same_feed(recorded: dict, store, consumer: str) -> bool:
    """Whether a version's record was made reading this store as this consumer
    (a watermark means nothing in another store)."""
    return (recorded.get("consumer") == consumer
            and recorded.get("store") == getattr(store, "store_id", None))


def trained_variables(model, scope: str) -> list[tf.Variable] | None:
    """The variables a scope trains (None: all of them)."""
    if scope == "all":
        return None
    chosen = list(model.attention_variables())
    if scope == "attention+ids":
        chosen += [v for v in model.trainable_variables
                   if "item_id_embedding" in v.name or "user_id_embedding" in v.name]
    return chosen


def run_finetune(store, model_dir: str | os.PathLike, config: FinetuneConfig = FinetuneConfig(),
                 *, consumer: str | None = None, verbose: int | str = 0) -> FinetuneResult:
    """One fine-tuning run on ``model_dir``'s live version; see the module docstring.

    Raises:
      JobBusyError: another job holds the folder's lock.
      VersionFormatError: the live version cannot be trained further.
      DataChangedError: the version's original data is not what it was.
    """
    model_dir = Path(model_dir)
    consumer = consumer or default_consumer(model_dir)
    started = time.perf_counter()
    report: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "consumer": consumer,
                    "config": dataclasses.asdict(config)}
    with job_lock(model_dir):
        live_path = latest_version(model_dir)
        live = load_published(live_path, task="fine-tune")
        report["live_version"] = live.number
        reconcile(store, consumer, live)
        batch = store.events_since(consumer, limit=config.max_events)
        recorded = live.manifest.get("feedback") or {}
        carried = ([Click(**c) for c in recorded.get("held_out", [])]
                   if same_feed(recorded, store, consumer) else [])
        report.update(events=len(batch.events), carried=len(carried))
        window = build_window(live.tables, batch.events, config, carried)
        report["skipped"] = window.skipped
        if len(batch.events) >= config.max_events:  # said if the watermark stays behind it
            report["full_window"] = (
                f"the window is full ({config.max_events:,} events, finetune.max_events): "
                f"until a run publishes, every run reads these same events. Raise "
                f"finetune.max_events, or step past them with `mmrec feedback skip "
                f"--model-dir {model_dir} --consumer {consumer} --to "
                f"{batch.watermark.txid}:{batch.watermark.seq}` (and this run's --store "
                f"and --config)")
        if len(window.examples["item"]) == 0:
            return _finish(model_dir, report, "nothing new", EXIT_NOTHING_NEW, None, started)

        dataset, split = live.load_data()
        history_length = live.tables.history_length
        replay = build_examples(dataset.interactions, split, "train", history_length,
                                len(dataset.catalogue))
        training = with_replay(window.examples, replay, config.replay_share,
                               live.tables.num_items, config.seed)
        validation = build_queries(dataset.interactions, split, "valid", history_length)
        live_ranker = (live.ranker.over(live.item_embeddings, live.gates)
                       if live.ranker is not None else None)
        live_scores = gate_scores(live.model, window.holdout, validation, live_ranker)

        candidate = load_published(live_path, task="fine-tune")
        variables = trained_variables(candidate.model, config.train)
        report["trained_variables"] = [
            {"name": v.name, "parameters": int(np.prod(v.shape))}
            for v in (variables if variables is not None
                      else candidate.model.trainable_variables)]
        report["examples"] = {"new": int(len(window.examples["item"])),
                              "replayed": int(len(training["item"]) -
                                              len(window.examples["item"])),
                              "held_out": len(window.held_out)}
        fit_config = dataclasses.replace(candidate.config, data=dataclasses.replace(
            candidate.config.data, batch_size=min(config.batch_size, len(training["item"])),
            seed=config.seed))
        fitting_started = time.perf_counter()
        history = fit_examples(
            candidate.model, training, fit_config, variables=variables, epochs=config.epochs,
            step_size=config.step_size, verbose=verbose,
            callbacks=[_KillWhileTraining()] if _kill_requested("training") else None)
        report["fit"] = {"seconds": round(time.perf_counter() - fitting_started, 2),
                         "loss": history.get("loss")}
        ranker = item_embeddings = gates = None  # without a ranker, publish encodes
        if live.ranker is not None:
            item_embeddings, gates = candidate.model.encode_catalogue()
            ranker_started = time.perf_counter()
            ranker, report["ranker"] = finetune_ranker(live.ranker, candidate.model, training,
                                                       config, item_embeddings, gates)
            report["ranker"]["seconds"] = round(time.perf_counter() - ranker_started, 2)
        candidate_scores = gate_scores(candidate.model, window.holdout, validation, ranker)
        decision = judge(live_scores, candidate_scores, config)
        report["gate"] = decision.as_dict()
        if not decision.passed:
            logger.warning("candidate rejected: %s", "; ".join(decision.reasons))
            return _finish(model_dir, report, "rejected", EXIT_REJECTED, None, started)

        if versions(model_dir)[-1] != live.number:
            return _finish(model_dir, {**report, "stopped": (
                f"version {versions(model_dir)[-1]} was published while this job trained on "
                f"{live.number}; nothing published, the next run starts from it")},
                "rejected", EXIT_REJECTED, None, started)
        # The tables already count every click up to their data_until (the clicks
        # this version's own job or a refresh merged, the carried ones among
        # them): only newer ones are merged, or popularity would count them twice.
        until = live.tables.data_until
        clicks = [c for c in window.clicks if until is None or c.timestamp > until]
        report["merged_clicks"] = len(clicks)
        item_index = live.tables.item_index()
        tables = live.tables.with_events(
            [c.user_id for c in clicks],
            np.asarray([item_index[c.item_id] for c in clicks], np.int64),
            np.asarray([c.timestamp for c in clicks], np.float64))
        if _kill_requested("export"):
            _kill_while_exporting(model_dir)
        target = publish(
            candidate.model, candidate.features, tables, candidate.config, model_dir,
            k=live.k, data=live.data, split=live.split, verify=True,
            item_embeddings=item_embeddings, gates=gates, ranker=ranker,
            lineage={"from": "version", "version": live.number, "change": "fine-tune",
                     "train": config.train, "events": len(batch.events)},
            extra={"feedback": {"consumer": consumer, "store": store.store_id,
                                "watermark": [batch.watermark.txid, batch.watermark.seq],
                                "held_out": [c.as_dict() for c in window.held_out],
                                "gate": decision.as_dict()}})
        if _kill_requested("after-publish"):
            _die()
        store.commit(consumer, batch.watermark)
        report["watermark"] = [batch.watermark.txid, batch.watermark.seq]
        return _finish(model_dir, report, "published", EXIT_PUBLISHED, int(target.name), started)


def _finish(model_dir: Path, report: dict, outcome: str, code: int, version: int | None,
            started: float) -> FinetuneResult:
    if outcome == "published":
        report.pop("full_window", None)  # the watermark moved past the window
    elif "full_window" in report:
        logger.warning("%s", report["full_window"])
    report.update(outcome=outcome, exit_code=code, version=version,
                  seconds=round(time.perf_counter() - started, 2))
    with open(model_dir / HISTORY_FILE, "a") as handle:
        handle.write(json.dumps(report, default=float) + "\n")
    logger.info("fine-tuning run: %s (exit %d)", outcome, code)
    return FinetuneResult(outcome=outcome, exit_code=code, version=version, report=report)


def read_history(model_dir: str | os.PathLike) -> list[dict]:
    """Every run's report on ``model_dir``, oldest first."""
    path = Path(model_dir) / HISTORY_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
