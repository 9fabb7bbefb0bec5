"""``mmrec export``: a trained run to the next SavedModel version.

Loads the run's best weights (refusing a run whose data changed since it was
trained), builds the serving tables from the whole click log (every user's
last H clicks and every item they saw), and publishes them through the one
atomic :func:`mmrec.export.publish.publish`. The version is self-contained:
it serves, and can be trained further, with the run folder deleted.

Example:

    version_dir = export_run("runs/ml", "saved_models/mmrec", k=100)
    version_dir = export_run("runs/ml", "saved_models/mmrec", rerank=False)  # retrieval alone

A run's ranker is exported only if it did not lower validation NDCG@10 below
retrieval alone's (``rerank=True`` exports it anyway): serving a second stage
that makes the ranking worse costs latency for nothing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from mmrec.data.fingerprint import data_fingerprint
from mmrec.export.publish import publish
from mmrec.export.serving_tables import ServingTables
from mmrec.train.ranker_training import has_ranker, load_ranker, losing_ranker_message
from mmrec.train.trainer import load_trained

logger = logging.getLogger("mmrec.export")


def export_run(run: str | os.PathLike, model_dir: str | os.PathLike, k: int = 100,
               rerank: bool | None = None) -> Path:
    """Exports run folder ``run`` as the next version under ``model_dir``.

    Args:
      rerank: None (the default) exports a ranker trained into the run
        (``mmrec train-ranker``), so that the version serves both stages,
        unless the ranker lowered validation NDCG@10 below retrieval alone's,
        which is logged as a warning; True exports it regardless; False
        serves retrieval alone. A run without a ranker serves retrieval alone.

    Returns the new version's folder.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    model, data, config, document = load_trained(run)
    dataset = data.dataset
    tables = ServingTables.from_interactions(dataset.catalogue, dataset.interactions,
                                             config.data.history_length,
                                             trained_items=~np.asarray(data.split.cold_items))
    name = document["dataset"]
    if Path(name).is_dir():  # a data folder: where a later job finds it again
        name = str(Path(name).resolve())
    reference = {"dataset": name, "source": dataset.source,
                 "fingerprint": data_fingerprint(dataset, data.split)}
    ranker = None
    if rerank is not False and has_ranker(run):
        ranker, ranker_document = load_ranker(run, model)
        losing = losing_ranker_message(ranker_document)
        if losing and rerank is None:
            logger.warning("%s: the version serves retrieval alone (export with rerank=True, "
                           "`mmrec export --rerank`, to serve it anyway)", losing)
            ranker = None
        elif losing:
            logger.warning("%s; exported as asked", losing)
    return publish(model, data.features, tables, config, model_dir, k=k, data=reference,
                   split=data.split, lineage={"from": "run", "run": str(Path(run).resolve())},
                   ranker=ranker)
