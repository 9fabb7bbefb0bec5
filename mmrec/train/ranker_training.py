"""The ranking stage, trained over a finished run and kept in its run folder.

A ranker is trained after its retriever and reads nothing but the run
folder: the retriever's best weights, its data and split, and the ``[ranker]``
table of its config (or one given). It lands in the run folder beside the
retriever::

    runs/NAME/ranker/
      ranker.json    the RankerConfig, the shapes it was built with, the fitting
                     report (validation NDCG@10 per epoch, the best epoch, the
                     share of lists holding their click) and the two-stage
                     validation and test metrics beside retrieval alone
      weights/       the ranker's weights, with the retriever's item table and
                     the item features it read (tf.train.Checkpoint)

The folder is written beside the run and renamed into place, so a job killed
while training or writing leaves the previous ranker (or none), never half of
one; training a ranker again replaces it. The ranker is chosen on validation;
test is computed once, for the record, from the chosen weights.

Example:

    result = train_ranker("runs/ml", RankerConfig(candidates=100))
    result["test"]["NDCG@10"], result["retrieval"]["test"]["NDCG@10"]
    model, data, _, _ = load_trained("runs/ml")
    ranking, document = load_ranker("runs/ml", model)

What it does not do: it does not train the retriever again, and a ranker is
bound to the retriever weights it was trained over (retraining the run makes
the ranker stale; train it again).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from mmrec.config import RankerConfig
from mmrec.evaluate.reranking import evaluate_reranked
from mmrec.model.ranker import RankingModel
from mmrec.train.ranker_fitting import fit_ranker
from mmrec.train.run_folder import IncompleteRunError, RunFolder, replace_folder
from mmrec.train.runtime import resolve_jit
from mmrec.train.trainer import load_trained

logger = logging.getLogger("mmrec.train")
RANKER_FORMAT = 1


def ranker_dir(run: str | os.PathLike) -> Path:
    return Path(run) / "ranker"


def has_ranker(run: str | os.PathLike) -> bool:
    """Whether a run folder holds a trained ranker."""
    return (ranker_dir(run) / "ranker.json").exists()


def ranker_lift(document: dict) -> float | None:
    """The two stages' validation NDCG@10 over retrieval alone's, from a
    ranker.json ``document``; None where the run recorded no retrieval metrics.

    Below 1, the ranker made the run's validation ranking worse: ``mmrec
    export`` then leaves it out unless told otherwise (a ranker trained on
    few clicks can lose to its retriever; docs/BENCHMARKS.md measures one).
    """
    retrieval = ((document.get("retrieval") or {}).get("valid") or {}).get("NDCG@10")
    ranked = (document.get("valid") or {}).get("NDCG@10")
    if not retrieval or ranked is None:
        return None
    return float(ranked) / float(retrieval)


def losing_ranker_message(document: dict) -> str | None:
    """What to tell the user when the ranker lowered validation NDCG@10, else None."""
    lift = ranker_lift(document)
    if lift is None or lift >= 1:
        return None
    return (f"the ranker lowers validation NDCG@10 from {document['retrieval']['valid']['NDCG@10']:.4f} "
            f"(retrieval alone) to {document['valid']['NDCG@10']:.4f}")


def train_ranker(run: str | os.PathLike, config: RankerConfig | None = None, *,
                 jit: str | None = None, seed: int | None = None,
                 verbose: bool = True) -> dict:
    """Trains a ranker over a finished run and writes it into ``run/ranker/``.

    Args:
      run: a finished run folder (``mmrec train``).
      config: the ranker's settings; None takes the run config's ``[ranker]``.
      jit: "auto", "on" or "off" for the ranker's train step; None takes the
        run's ``train.jit``.
      seed: seeds the ranker's weights and shuffling; None takes the run's
        ``train.seed``.

    Returns:
      What ranker.json holds: ``config``, ``report`` (the fitting report),
      ``valid`` and ``test`` (two-stage metrics of the chosen weights) and
      ``retrieval`` (the run's own validation and test metrics).
    """
    folder = RunFolder(run)
    retriever, data, run_config, _ = load_trained(run)
    config = config or run_config.ranker
    seed = run_config.train.seed if seed is None else seed
    compiled = resolve_jit(jit or run_config.train.jit)
    model, report = fit_ranker(retriever, data, config, jit_compile=compiled, seed=seed,
                               verbose=verbose)
    test = evaluate_reranked(retriever, model, data.test, data, config.candidates)
    retrieval = (json.loads(folder.metrics_file.read_text())
                 if folder.metrics_file.exists() else {})
    document = {"format": RANKER_FORMAT, "jit_compile": compiled, "seed": seed, "report": report,
                "valid": report["valid"], "test": test,
                "retrieval": {part: retrieval.get(part) for part in ("valid", "test")}}
    replace_folder(ranker_dir(run), lambda path: model.write(path, document))
    document = json.loads((ranker_dir(run) / RankingModel.DOCUMENT).read_text())
    logger.info("ranker: validation NDCG@10 %.4f (retrieval %.4f), written to %s",
                document["valid"]["NDCG@10"],
                (document["retrieval"]["valid"] or {}).get("NDCG@10", float("nan")),
                ranker_dir(run))
    losing = losing_ranker_message(document)
    if losing:
        logger.warning("%s: `mmrec export` leaves it out unless given --rerank", losing)
    return document


def load_ranker(run: str | os.PathLike, retriever=None) -> tuple[RankingModel, dict]:
    """The ranker of a run folder, with its ranker.json document.

    Args:
      run: a run folder holding ``ranker/``.
      retriever: the run's loaded retriever, to check that the ranker was
        trained over the same catalogue (optional).

    Raises:
      IncompleteRunError: the run has no ranker (train one with ``mmrec
        train-ranker``) or its folder lacks the weights.
      ValueError: the ranker's catalogue is not the retriever's.
    """
    if not has_ranker(run):
        raise IncompleteRunError(f"run folder {run} has no ranker (missing ranker/ranker.json): "
                                 f"train one with `mmrec train-ranker --run {run}`")
    try:
        model, document = RankingModel.read(ranker_dir(run))
    except FileNotFoundError as error:
        raise IncompleteRunError(f"the ranker of run {run}: {error}") from None
    items = int(model.item_vectors.shape[0])
    if retriever is not None and int(retriever.item_table.shape[0]) != items:
        raise ValueError(f"the ranker of {run} was trained over {items} items, the run's "
                         f"retriever has {int(retriever.item_table.shape[0])}: train the "
                         f"ranker again")
    return model, document
