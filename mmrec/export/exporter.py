"""``mmrec export``: a trained run to the next SavedModel version, atomically.

TF Serving watches ``--model_base_path`` (``saved_models/mmrec``) and serves
the highest integer sub-folder. A version is written into a hidden temporary
folder beside the others and renamed into place only when complete, so a
reader never sees half a model, and an export that dies leaves the previous
versions as they were. Each version also carries, outside the SavedModel's
own variables, what a later fine-tuning job and the Python API need::

    saved_models/mmrec/3/
      saved_model.pb, variables/, assets/       the serving graph (TF Serving)
      assets.extra/tf_serving_warmup_requests   PredictionLog warm-up records
      mmrec/config.json                         the run config and data set
      mmrec/weights/                            Keras weights (tf.train.Checkpoint)
      mmrec/item_features/                      vocabulary and item arrays
      mmrec/items.json                          titles and metadata for display
      mmrec/modality_gate.npy                   text/image share per item

Example:

    version_dir = export_run("runs/ml", "saved_models/mmrec", k=100)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from mmrec.data.interactions import Interactions
from mmrec.export.serving_module import ServingModule
from mmrec.features.text import TextTokenizer
from mmrec.train.run_folder import RunFolder
from mmrec.train.trainer import load_trained

logger = logging.getLogger("mmrec.export")
SIDE_CAR = "mmrec"
WARMUP_FILE = ("assets.extra", "tf_serving_warmup_requests")


def versions(model_dir: str | os.PathLike) -> list[int]:
    """The complete versions in ``model_dir``, ascending."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir()
                  if p.is_dir() and p.name.isdigit() and (p / "saved_model.pb").is_file())


def last_items(log: Interactions, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's last ``length`` items, most recent first: ([U, H], mask)."""
    order = log.chronological_order()
    users = log.user[order]
    ends = np.searchsorted(users, np.arange(log.num_users), side="right")
    from_end = ends[users] - 1 - np.arange(len(order))
    keep = from_end < length
    items = np.zeros((log.num_users, length), dtype=np.int32)
    mask = np.zeros((log.num_users, length), dtype=bool)
    items[users[keep], from_end[keep]] = log.item[order][keep]
    mask[users[keep], from_end[keep]] = True
    return items, mask


def seen_items(log: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr [U+1], items) of the distinct items each user interacted with."""
    pairs = np.unique(np.stack([log.user.astype(np.int64), log.item.astype(np.int64)], 1), axis=0)
    indptr = np.searchsorted(pairs[:, 0], np.arange(log.num_users + 1))
    return indptr.astype(np.int64), pairs[:, 1].astype(np.int32)


def popularity_scores(log: Interactions, num_items: int) -> np.ndarray:
    counts = np.bincount(log.item, minlength=num_items).astype(np.float32)
    return np.log1p(counts)


def write_warmup(version_dir: Path, user_ids: list[str]) -> Path:
    """PredictionLog records TF Serving replays before it serves the version."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    path = version_dir.joinpath(*WARMUP_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for batch in (user_ids[:1], user_ids[:8]):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=version_dir.parent.name,
                                               signature_name="serving_default"))
            request.inputs["user_id"].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def export_run(run: str | os.PathLike, model_dir: str | os.PathLike, k: int = 100) -> Path:
    """Exports run folder ``run`` as the next version under ``model_dir``.

    Returns the new version's folder.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    started = time.perf_counter()
    model, data, config, document = load_trained(run)
    log, catalogue = data.dataset.interactions, data.dataset.catalogue
    if k > len(catalogue):
        logger.warning("k=%d is larger than the catalogue; using %d", k, len(catalogue))
        k = len(catalogue)
    item_embeddings, gates = model.encode_catalogue()
    model.item_table.assign(item_embeddings)
    histories, mask = last_items(log, config.data.history_length)
    indptr, items = seen_items(log)
    module = ServingModule(
        model, catalogue.item_ids, log.user_ids, histories, mask, indptr, items,
        popularity_scores(log, len(catalogue)), item_embeddings,
        TextTokenizer(data.features.vocabulary, config.data.max_text_tokens), k)

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".incomplete-", dir=model_dir))
    try:
        tf.saved_model.save(module, str(staging), signatures=module.signatures())
        write_warmup(staging, log.user_ids[:8].tolist())
        side_car = staging / SIDE_CAR
        side_car.mkdir()
        folder = RunFolder(run)
        shutil.copy(folder.config_file, side_car / "config.json")
        shutil.copytree(folder.best_dir, side_car / "weights")
        shutil.copytree(folder.features_dir, side_car / "item_features")
        np.save(side_car / "modality_gate.npy", gates.astype(np.float32))
        (side_car / "items.json").write_text(json.dumps({
            "item_ids": catalogue.item_ids.tolist(),
            "metadata": {key: [str(v) for v in values]
                         for key, values in catalogue.metadata.items()},
            "history_length": config.data.history_length, "k": k,
            "dataset": document["dataset"], "run": str(Path(run).resolve()),
            "exported": time.strftime("%Y-%m-%dT%H:%M:%S")}))
        version = (versions(model_dir) or [0])[-1] + 1
        target = model_dir / str(version)
        staging.rename(target)  # atomic on one file system
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("exported %s as version %d in %.1f s", run, version, time.perf_counter() - started)
    return target
