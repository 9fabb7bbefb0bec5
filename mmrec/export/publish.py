"""Publishing a model as the next version, and loading a version to change it.

Every path that puts a model in front of users ends here: ``mmrec export``
(a trained run), adding catalogue items, and a fine-tuning job. Publishing
takes a model and its tables, never a run folder, so a version can be loaded,
changed and published again many times a day with no run behind it. One
function writes every version the same way: the SavedModel with its warm-up
requests and, in the side car, the weights, item features, serving tables,
split and a manifest (:mod:`mmrec.export.layout`), all into a hidden folder
that is renamed into place only when complete. A reader (TF Serving, the
Python :class:`~mmrec.serve.Recommender`) never sees half a version, and a
publish that dies leaves the earlier versions as they were.

Example:

    published = load_published("saved_models/mmrec")          # the latest version
    ...                                                        # change its model or tables
    publish(published.model, published.features, published.tables, published.config,
            "saved_models/mmrec", k=published.k, data=published.data, split=published.split,
            lineage={"from": "version", "version": published.number},
            ranker=published.ranker)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from mmrec.config import RunConfig
from mmrec.data.dataset import Dataset
from mmrec.data.fingerprint import check_fingerprint, data_fingerprint
from mmrec.data.registry import load_dataset
from mmrec.data.splits import Split
from mmrec.export.layout import (
    FORMAT_VERSION,
    STAGING_PREFIX,
    WARMUP_FILE,
    VersionFiles,
    VersionFormatError,
    latest_version,
    rename_into_place,
)
from mmrec.export.load_test import load_test
from mmrec.export.serving_module import ServingModule
from mmrec.export.serving_tables import ServingTables
from mmrec.features.item_features import ItemFeatures
from mmrec.features.text import TextTokenizer
from mmrec.model.ranker import RankingModel
from mmrec.model.two_tower import TwoTowerModel, build_two_tower

logger = logging.getLogger("mmrec.export")


def warmup_requests(tables: ServingTables, signatures: list[str]) -> list[tuple[str, dict]]:
    """(signature, inputs) pairs that call every signature: a known and an
    unknown user, with and without a history, and one new item to embed."""
    users = tables.user_ids[:8].tolist() or ["warm-up-user"]
    items = tables.item_ids[:2].tolist()
    history = [items + [""], [items[0], "not-an-item", ""]]
    requests = {
        "serving_default": [{"user_id": users[:1]}, {"user_id": users[:8]}],
        "recommend_with_history": [{"user_id": [users[0], "a-new-user"], "history": history}],
        "user_embedding": [{"user_id": [users[0], "a-new-user"]}],
        "user_embedding_with_history": [{"user_id": [users[0], "a-new-user"],
                                         "history": history}],
        "retrieve": [{"user_id": users[:8]}],
        "retrieve_with_history": [{"user_id": [users[0], "a-new-user"], "history": history}],
        "rank_candidates": [{"user_id": [users[0], "a-new-user"], "history": history,
                             "candidate_ids": [items[:1] + ["not-an-item"],
                                               items[-1:] + items[:1]]}],
        "embed_items": [{"item_id": ["warm-up-item"], "text": ["a warm-up item"],
                         "image": [b""]}],
    }
    return [(name, inputs) for name in signatures for inputs in requests.get(name, [])]


def write_warmup(version_dir: Path, requests: list[tuple[str, dict]]) -> Path:
    """PredictionLog records TF Serving replays before it serves the version
    (and the load test replays in a fresh process): one per request."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    path = version_dir.joinpath(*WARMUP_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, inputs in requests:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=version_dir.parent.name,
                                               signature_name=signature))
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value, dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def publish(model: TwoTowerModel, features: ItemFeatures, tables: ServingTables,
            config: RunConfig, model_dir: str | os.PathLike, *, k: int = 100,
            data: dict | None = None, split: Split | None = None,
            lineage: dict | None = None, item_embeddings: np.ndarray | None = None,
            gates: np.ndarray | None = None, verify: bool = False,
            extra: dict | None = None, ranker: RankingModel | None = None) -> Path:
    """Writes ``model`` with its tables as the next version in ``model_dir``.

    Args:
      model: the two-tower model, item features attached.
      features: its item features (saved, so the version can train further).
      tables: item and user ids, histories, seen items, popularity.
      config: the run config the model was built with.
      model_dir: the folder of versions (TF Serving's base path).
      k: items each recommending signature returns (at most the catalogue).
      data: the reference to the data the model was trained on: data set
        name or path and the content hashes (``{"dataset": ..., "fingerprint":
        {...}}``); None when unknown.
      split: the split of that data, kept so a later job can replay it.
      lineage: where the version comes from, e.g. ``{"from": "run", "run":
        "runs/ml"}`` or ``{"from": "version", "version": 3}``.
      item_embeddings, gates: the item vectors [N, D] and modality gates
        [N, 2] to serve, when the caller has them (a catalogue change keeps
        the existing items' vectors bit for bit); by default the model's
        item tower encodes the whole catalogue.
      extra: more manifest entries, by name (a fine-tuning job records the
        store position it trained through under ``"feedback"``).
      ranker: the ranking stage to serve after retrieval (one features row per
        item of ``tables``), kept in the side car so later versions carry it
        on; None serves retrieval alone.
      verify: before the version becomes visible, load it in a fresh process
        and call every signature with its warm-up requests
        (:func:`mmrec.export.load_test.load_test`); a failure publishes nothing.

    Raises:
      LoadTestError: ``verify`` and the candidate failed to load or answer.

    Returns:
      The new version's folder.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if tables.num_items != len(features):
        raise ValueError(f"the tables hold {tables.num_items} items, the item features "
                         f"{len(features)}")
    if k > tables.num_items:
        logger.warning("k=%d is larger than the catalogue; using %d", k, tables.num_items)
        k = tables.num_items
    started = time.perf_counter()
    if item_embeddings is None or gates is None:
        item_embeddings, gates = model.encode_catalogue()
    if len(item_embeddings) != tables.num_items or len(gates) != tables.num_items:
        raise ValueError(f"{len(item_embeddings)} item embeddings and {len(gates)} gates for "
                         f"{tables.num_items} items")
    model.item_table.assign(item_embeddings)
    module = ServingModule(model, tables, item_embeddings,
                           TextTokenizer(features.vocabulary, config.data.max_text_tokens), k,
                           ranker=ranker)
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=model_dir))
    try:
        signatures = module.signatures()
        tf.saved_model.save(module, str(staging), signatures=signatures)
        write_warmup(staging, warmup_requests(tables, sorted(signatures)))
        files = VersionFiles(staging)
        files.side_car.mkdir()
        model.write_checkpoint(files.weights_dir)
        features.save(files.item_features_dir)
        tables.save(files.tables_file)
        if split is not None:
            split.save(files.split_file)
        np.save(files.gates_file, gates.astype(np.float32))
        if ranker is not None:
            ranker.write(files.ranker_dir)
        files.items_file.write_text(json.dumps({
            "item_ids": tables.item_ids.tolist(), "metadata": tables.metadata,
            "history_length": tables.history_length, "k": k}))
        files.manifest_file.write_text(json.dumps({
            "format": FORMAT_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "config": config.to_dict(), "k": k, "history_length": tables.history_length,
            "items": tables.num_items, "users": len(tables.user_ids),
            "data": data, "data_until": tables.data_until, "lineage": lineage or {},
            "ranker": ({"candidates": module.candidates,
                        "attention": ranker.config.attention} if ranker is not None else None),
            **(extra or {})}, indent=2))
        if verify:
            load_test(staging)
        target = rename_into_place(staging, model_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("published version %s in %.1f s", target.name, time.perf_counter() - started)
    return target


@dataclasses.dataclass
class PublishedModel:
    """A version loaded to be changed and published again.

    Attributes:
      number, path: the version.
      model: the two-tower model with its weights and item features.
      features: the item features.
      tables: the serving tables (ids, histories, seen items, popularity).
      config: the run config the model was built with.
      k: items per request.
      data: the reference to the data it was trained on (or None).
      split: the split of that data.
      manifest: the whole manifest.
      item_embeddings: float32 [N, D] the vectors the version serves.
      gates: float32 [N, 2] their modality gate weights (text, image).
      ranker: the ranking stage the version serves after retrieval, or None.
    """

    number: int
    path: Path
    model: TwoTowerModel
    features: ItemFeatures
    tables: ServingTables
    config: RunConfig
    k: int
    data: dict | None
    split: Split
    manifest: dict
    item_embeddings: np.ndarray
    gates: np.ndarray
    ranker: RankingModel | None = None

    def load_data(self) -> tuple[Dataset, Split]:
        """The data set this version was trained on, loaded again, and its split.

        A job that replays the original interactions (or re-checks the
        validation split) must see the same data: its content hash is compared
        part by part with the one recorded at publishing.

        Raises:
          VersionFormatError: the version records no data reference.
          DataChangedError: the data found now differs (naming the parts).
        """
        if not self.data or "fingerprint" not in self.data:
            raise VersionFormatError(f"version {self.path} records no reference to the data "
                                     "it was trained on")
        name = self.data["dataset"]
        dataset = load_dataset(name, **self.config.data.loader_options(name))
        check_fingerprint(self.data["fingerprint"], data_fingerprint(dataset, self.split),
                          f"version {self.path}")
        return dataset, self.split


def load_published(path: str | os.PathLike, *, task: str = "load for training") -> PublishedModel:
    """Loads a version folder (or the latest version of a model folder) with
    everything needed to train it further and publish it again.

    Raises:
      VersionFormatError: the version lacks a part (an older format names
        what it lacks and how to get a version that has it).
    """
    path = Path(path)
    if not (path / "saved_model.pb").is_file():
        path = latest_version(path)
    files = VersionFiles(path)
    files.require(task)
    manifest = files.manifest()
    config = RunConfig.from_dict(manifest["config"])
    features = ItemFeatures.load(files.item_features_dir)
    tables = ServingTables.load(files.tables_file, files.items()["metadata"])
    model = build_two_tower(config, features, num_users=len(tables.user_ids))
    model.read_checkpoint(files.weights_dir)
    served = tf.train.load_checkpoint(str(path / "variables" / "variables"))
    return PublishedModel(number=files.number, path=path, model=model, features=features,
                          tables=tables, config=config, k=int(manifest["k"]),
                          data=manifest.get("data"), split=Split.load(files.split_file),
                          manifest=manifest,
                          item_embeddings=served.get_tensor(
                              "item_embeddings/.ATTRIBUTES/VARIABLE_VALUE"),
                          gates=np.load(files.gates_file),
                          ranker=(RankingModel.read(files.ranker_dir)[0]
                                  if files.ranker_dir.exists() else None))
