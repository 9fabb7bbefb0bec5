"""``mmrec bench quality``: the model, its ablations and the baselines, one harness.

Every system is trained on the same split and scored by the same full-ranking
code, in one run: most-popular, EASE (closed form, L2 tuned on validation),
the TFRS tutorial two-tower (ids only), the full multimodal model and its
ablations (text only, image only, concatenation instead of cross-modal
attention, mean instead of attention pooling, no item-id embedding), and on
the shop data set the oracle that ranks by the generator's true utilities and
the "true attributes" scorer (each item's true attributes, each user's tastes
estimated from their clicks: the share of the oracle reachable from history).
Neural systems run once per seed and report mean and standard deviation.

A second, cold-start table (first seed only) holds a share of items out of
training entirely and compares Recall@20 on those items with Recall@20 on warm
items.

Example:

    report = run_quality_benchmark("movielens-100k", seeds=(1, 2, 3))
    print(format_quality_table(report))
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import platform
import tempfile
import time

import numpy as np
import tensorflow as tf

from mmrec.config import DataConfig, RunConfig
from mmrec.data.splits import SplitConfig
from mmrec.evaluate.baselines import EASE, MostPopular
from mmrec.evaluate.metrics import evaluate_scorer
from mmrec.evaluate.model_scores import evaluate_model
from mmrec.features.pipeline import make_dataset
from mmrec.model.id_two_tower import IdTwoTower
from mmrec.train.preparation import PreparedData, load_run_dataset, prepare_data
from mmrec.train.runtime import seed_everything
from mmrec.train.trainer import load_trained, train

logger = logging.getLogger("mmrec.bench")
METRICS = ("HR@10", "NDCG@10", "MRR@10", "Recall@20", "NDCG@20")

ABLATIONS: dict[str, dict] = {
    "mmrec (full)": {},
    "text only": {"modalities": "text"},
    "image only": {"modalities": "image"},
    "concat fusion": {"fusion": "concat"},
    "mean pooling": {"history_pooling": "mean"},
    "no item id": {"item_id_embedding": False},
}


def applicable(name: str, has_images: bool) -> bool:
    """Ablations that need pictures (or equal the full model without them) are skipped
    on a catalogue without pictures."""
    return has_images or name not in ("image only", "concat fusion", "text only")


def evaluate_baseline(baseline, data: PreparedData) -> tuple[dict, dict]:
    """Validation and test metrics of anything with ``score(queries, indices)``:
    a baseline, or a data set's reference scorer."""
    kwargs = dict(num_items=len(data.dataset.catalogue), cold_items=data.split.cold_items,
                  train_item_counts=data.train_item_counts)
    return (evaluate_scorer(functools.partial(baseline.score, data.valid), data.valid, **kwargs),
            evaluate_scorer(functools.partial(baseline.score, data.test), data.test, **kwargs))


def train_id_two_tower(data: PreparedData, seed: int, epochs: int = 3,
                       batch_size: int = 8192) -> tuple[dict, dict]:
    """The TFRS tutorial recipe, trained and scored in our harness."""
    seed_everything(seed)
    config = DataConfig(batch_size=batch_size, seed=seed)
    batches = make_dataset({k: data.train_examples[k] for k in ("user", "item")}, config,
                           training=True)
    model = IdTwoTower(data.dataset.interactions.num_users, len(data.dataset.catalogue))
    model.compile(optimizer=tf.keras.optimizers.Adagrad(0.1))
    model.fit(batches, epochs=epochs, verbose=0)
    items = model.item_vectors().numpy()
    results = []
    for queries in (data.valid, data.test):
        users = model.user_vectors(queries.user).numpy()
        results.append(evaluate_scorer(
            lambda idx, users=users: users[idx] @ items.T, queries,
            num_items=len(data.dataset.catalogue), cold_items=data.split.cold_items,
            train_item_counts=data.train_item_counts))
    return results[0], results[1]


def summarise(runs: list[dict]) -> dict:
    """Mean and standard deviation of each metric over seeds."""
    summary = {"seeds": len(runs)}
    for metric in METRICS + ("coverage@10", "popularity_percentile@10"):
        values = [r[metric] for r in runs if r.get(metric) is not None]
        if values:
            summary[metric] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
    for group in ("warm", "cold"):
        values = [r[group]["Recall@20"] for r in runs
                  if r.get(group) and r[group].get("Recall@20") is not None]
        if values:
            summary[f"{group} Recall@20"] = {"mean": float(np.mean(values)),
                                              "std": float(np.std(values))}
    return summary


def run_quality_benchmark(dataset: str, *, seeds=(1, 2, 3), epochs: int = 8,
                          systems: tuple[str, ...] | None = None,
                          cold_item_share: float = 0.1, base: RunConfig | None = None,
                          trained_runs: tuple[str, ...] = (),
                          partial_json: str | None = None) -> dict:
    """Trains and evaluates every system; returns a JSON-ready report.

    ``trained_runs`` are already trained run folders whose best weights are
    evaluated in the same harness and added to the main table. With
    ``partial_json`` the report so far is written after every system, so a
    long benchmark that dies keeps what it measured.
    """
    def save_partial() -> None:
        if partial_json:
            import json
            with open(partial_json, "w") as handle:
                json.dump(report, handle, indent=2)

    base = base or RunConfig()
    started = time.perf_counter()
    report = {"dataset": dataset, "seeds": list(seeds), "epochs": epochs,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                         f"GPU: {bool(tf.config.list_physical_devices('GPU'))}",
              "date": time.strftime("%Y-%m-%d"), "main": {}, "cold_start": {}}
    for table, share in (("main", 0.0), ("cold_start", cold_item_share)):
        if table == "cold_start" and not share:
            continue
        data_config = dataclasses.replace(base.data, split=SplitConfig(cold_item_share=share))
        dataset_obj = load_run_dataset(dataset, data_config)
        data = prepare_data(dataset_obj, data_config)
        has_images = data.features.images is not None or data.features.image_features is not None
        wanted = lambda name: systems is None or name in systems  # noqa: E731
        results = report[table]
        if table == "main":
            if wanted("most popular"):
                results["most popular"] = {"test": evaluate_baseline(
                    MostPopular().fit(dataset_obj.interactions, data.split, len(
                        dataset_obj.catalogue)), data)[1]}
                save_partial()
            if wanted("EASE"):
                ease = EASE().fit(dataset_obj.interactions, data.split, len(dataset_obj.catalogue))
                l2 = ease.tune(data.valid)
                results["EASE"] = {"test": evaluate_baseline(ease, data)[1], "l2": l2}
                save_partial()
            for name, reference in dataset_obj.reference_scorers.items():
                if wanted(name):
                    reference.fit(dataset_obj.interactions, data.split,
                                  len(dataset_obj.catalogue))
                    results[name] = {"test": evaluate_baseline(reference, data)[1]}
                    save_partial()
        # The cold-start table is a check of one property: its first seed only.
        table_seeds = seeds if table == "main" else seeds[:1]
        if wanted("TFRS two-tower"):
            tfrs_runs = [train_id_two_tower(data, seed)[1] for seed in table_seeds]
            results["TFRS two-tower"] = {"test": summarise(tfrs_runs), "runs": tfrs_runs}
            save_partial()
        names = ["mmrec (full)"] if table == "cold_start" else list(ABLATIONS)
        for name in names:
            if not wanted(name) or not applicable(name, has_images):
                continue
            model_config = dataclasses.replace(base.model, **ABLATIONS[name])
            if name != "mmrec (full)" and model_config == base.model:
                logger.info("%s skipped: the same model as mmrec (full) under this config",
                            name)
                continue
            model_runs, seconds = [], []
            for seed in table_seeds:
                config = RunConfig(data=dataclasses.replace(data_config, seed=seed),
                                   model=model_config,
                                   train=dataclasses.replace(base.train, epochs=epochs, seed=seed))
                logger.info("%s / %s / seed %d", table, name, seed)
                with tempfile.TemporaryDirectory(prefix="mmrec-bench-") as out:
                    metrics = train(dataset, config, out, verbose=0, data=data)
                model_runs.append(metrics["test"])
                seconds.append(metrics["train_seconds"])
                results[name] = {"test": summarise(model_runs), "runs": model_runs,
                                 "model_changes": ABLATIONS[name],
                                 "train_seconds": float(np.mean(seconds))}
                save_partial()
    for run in trained_runs:
        model, data, _, document = load_trained(run)
        if document["dataset"] != dataset:
            raise ValueError(f"run {run} was trained on {document['dataset']!r}, not {dataset!r}")
        report["main"][f"mmrec ({run})"] = {"test": evaluate_model(model, data.test, data)}
    report["seconds"] = round(time.perf_counter() - started, 1)
    save_partial()
    return report


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, dict):
        return (f"{value['mean']:.4f} ± {value['std']:.4f}" if value.get("std")
                else f"{value['mean']:.4f}")
    return f"{value:.4f}"


def format_quality_table(report: dict) -> str:
    """Markdown tables of a quality report."""
    lines = [f"**{report['dataset']}**, full ranking, leave-one-out; seeds {report['seeds']}, "
             f"at most {report['epochs']} epochs; {report['date']}", "",
             "| system | " + " | ".join(METRICS) + " | coverage@10 | pop. pct@10 |",
             "|---" * (len(METRICS) + 3) + "|"]
    for name, result in report["main"].items():
        test = result["test"]
        lines.append(f"| {name} | " + " | ".join(_cell(test.get(m)) for m in METRICS) +
                     f" | {_cell(test.get('coverage@10'))} | "
                     f"{_cell(test.get('popularity_percentile@10'))} |")
    if report.get("cold_start"):
        lines += ["", "Cold-start items (held out of training entirely):", "",
                  "| system | warm Recall@20 | cold Recall@20 | cold / warm |", "|---|---|---|---|"]
        for name, result in report["cold_start"].items():
            test = result["test"]
            warm = test.get("warm Recall@20") or (test.get("warm") or {}).get("Recall@20")
            cold = test.get("cold Recall@20") or (test.get("cold") or {}).get("Recall@20")
            mean = lambda v: v["mean"] if isinstance(v, dict) else v  # noqa: E731
            ratio = (f"{mean(cold) / mean(warm):.2f}" if warm and cold is not None
                     and mean(warm) > 0 else "–")
            lines.append(f"| {name} | {_cell(warm)} | {_cell(cold)} | {ratio} |")
    return "\n".join(lines)
