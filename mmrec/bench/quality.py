"""``mmrec bench quality``: the model, its ablations and the baselines, one harness.

Every system is trained on the same split and scored by the same full-ranking
code, in one run: most-popular, EASE (closed form, L2 tuned on validation),
the TFRS tutorial two-tower (ids only), the full multimodal model and its
ablations (text only, image only, concatenation instead of cross-modal
attention, mean instead of attention pooling, no item-id embedding), and on
the shop data set the oracle that ranks by the generator's true utilities and
the "true attributes" scorer (each item's true attributes, each user's tastes
estimated from their clicks: the share of the oracle reachable from history),
and the content-only TF-IDF scorer (the reference for items nobody clicked).
The ranking stage (``mmrec + ranker``, and its mean-history ablation) re-ranks
the top N of each seed's full model, under the same full-ranking protocol:
items outside the N keep their retrieval order below the re-ranked ones.
Neural systems run once per seed and report, on validation and test, the mean,
the sample standard deviation and a 95% interval of the mean (Student's t).

A second, cold-start table (every seed) holds a share of items out of
training entirely and compares Recall@20 on those items with Recall@20 on warm
items, for the full model, the TFRS two-tower and the TF-IDF scorer.

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

from mmrec.bench.provenance import code_provenance
from mmrec.config import DataConfig, RankerConfig, RunConfig
from mmrec.evaluate.baselines import EASE, ContentTfidf, MostPopular
from mmrec.evaluate.intervals import t_quantile
from mmrec.evaluate.metrics import evaluate_scorer
from mmrec.evaluate.model_scores import evaluate_model, user_vectors
from mmrec.evaluate.probes import attribute_probe, taste_probe
from mmrec.evaluate.reranking import evaluate_reranked
from mmrec.features.pipeline import make_dataset
from mmrec.model.id_two_tower import IdTwoTower
from mmrec.train.preparation import PreparedData, load_run_dataset, prepare_data
from mmrec.train.ranker_fitting import fit_ranker
from mmrec.train.runtime import resolve_jit, seed_everything
from mmrec.train.trainer import load_trained, train, trained_model

logger = logging.getLogger("mmrec.bench")
METRICS = ("HR@10", "NDCG@10", "MRR@10", "Recall@20", "NDCG@20")
CONTENT_TFIDF = "content TF-IDF"
TABLES = ("main", "cold_start")
# Student's t, two-sided 95%, for 1-30 degrees of freedom; beyond, the
ABLATIONS: dict[str, dict] = {
    "mmrec (full)": {},
    "text only": {"modalities": "text"},
    "image only": {"modalities": "image"},
    "concat fusion": {"fusion": "concat"},
    "mean pooling": {"history_pooling": "mean"},
    "no item id": {"item_id_embedding": False},
}
# The ranking stage over each seed's full model: its own settings (the config's
# [ranker] table), then its ablation, the mean history for every candidate.
RANKERS: dict[str, dict] = {
    "mmrec + ranker": {},
    "mmrec + ranker (mean history)": {"attention": "mean"},
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


def rank_run(retriever, data: PreparedData, config: RankerConfig, seed: int,
             jit: bool = False) -> dict:
    """A ranker fitted over one trained retriever (chosen on validation), and
    the two stages' validation and test metrics."""
    started = time.perf_counter()
    ranking, report = fit_ranker(retriever, data, config, jit_compile=jit, seed=seed,
                                 verbose=False)
    seconds = time.perf_counter() - started
    test = evaluate_reranked(retriever, ranking, data.test, data, config.candidates)
    return {"valid": report["valid"], "test": test, "best_epoch": report["best_epoch"],
            "lists_from": report["lists_from"],
            "train_candidate_recall": report["train_candidate_recall"],
            "valid_candidate_recall": report["valid_candidate_recall"],
            "test_candidate_recall": test["candidate_recall"], "seconds": round(seconds, 1)}


def mean_and_interval(values) -> dict:
    """Mean, sample standard deviation (n - 1) and the half-width of the 95%
    interval of the mean (Student's t) of one metric over seeds; with one value
    the spread is unknown and both are None."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n < 2:
        return {"mean": float(values.mean()), "std": None, "ci95": None, "n": n}
    std = float(values.std(ddof=1))
    t = t_quantile(0.975, n - 1)
    return {"mean": float(values.mean()), "std": std, "ci95": t * std / np.sqrt(n), "n": n}


def probe_towers(model, data: PreparedData) -> dict:
    """Linear probes of a trained model's towers against a data set's ground truth
    (the shop's): held-out accuracy of each true attribute group from the item
    vectors, and R² of the users' true tastes (at their test click) from the
    user vectors. Empty for data without ground truth (mmrec/evaluate/probes.py)."""
    truth = data.dataset.ground_truth
    if truth is None or not hasattr(truth, "item_attributes"):
        return {}
    table = model.refresh_item_table()
    queries = data.test
    tastes = np.stack([truth.taste(int(u), float(t))
                       for u, t in zip(queries.user, queries.timestamp)])
    return {"items": {group: attribute_probe(table, codes)
                      for group, codes in truth.item_attributes.items()},
            "users": taste_probe(user_vectors(model, queries), tastes)}


def summarise(runs: list[dict]) -> dict:
    """Mean, sample standard deviation and 95% interval of each metric over seeds."""
    summary = {"seeds": len(runs)}
    for metric in METRICS + ("coverage@10", "popularity_percentile@10"):
        values = [r[metric] for r in runs if r.get(metric) is not None]
        if values:
            summary[metric] = mean_and_interval(values)
    for group in ("warm", "cold"):
        values = [r[group]["Recall@20"] for r in runs
                  if r.get(group) and r[group].get("Recall@20") is not None]
        if values:
            summary[f"{group} Recall@20"] = mean_and_interval(values)
    return summary


def run_quality_benchmark(dataset: str, *, seeds=(1, 2, 3), epochs: int | None = None,
                          systems: tuple[str, ...] | None = None,
                          cold_item_share: float = 0.1, base: RunConfig | None = None,
                          trained_runs: tuple[str, ...] = (),
                          partial_json: str | None = None,
                          tables: tuple[str, ...] = TABLES) -> dict:
    """Trains and evaluates every system; returns a JSON-ready report.

    ``epochs``: every neural run trains at most this many epochs
    (early stopping may end it sooner); None takes the config's ``train.epochs``.
    ``trained_runs`` are already trained run folders whose best weights are
    evaluated in the same harness and added to the main table. With
    ``partial_json`` the report so far is written after every system, so a
    long benchmark that dies keeps what it measured. ``tables`` runs the main
    table, the cold-start table or both (a long benchmark can run them apart
    and ``mmrec bench merge`` join them).
    """
    unknown_tables = sorted(set(tables) - set(TABLES))
    if unknown_tables or not tables:
        raise ValueError(f"bench quality: tables must be among {list(TABLES)}; "
                         f"got {list(tables)}")
    def save_partial() -> None:
        if partial_json:
            import json
            with open(partial_json, "w") as handle:
                json.dump(report, handle, indent=2)

    base = base or RunConfig()
    epochs = epochs or base.train.epochs
    started = time.perf_counter()
    report = {"dataset": dataset, "seeds": list(seeds), "epochs": epochs,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                         f"GPU: {bool(tf.config.list_physical_devices('GPU'))}",
              "date": time.strftime("%Y-%m-%d"), "code": code_provenance(),
              "config": base.to_dict(), "cold_item_share": cold_item_share,
              "tables": [table for table in TABLES if table in tables],
              "main": {}, "cold_start": {}}
    for table, share in (("main", 0.0), ("cold_start", cold_item_share)):
        if table not in tables or (table == "cold_start" and not share):
            continue
        # The config's own split settings (scheme, ranker clicks, ...) hold in both
        # tables; only the share of cold items is the table's.
        data_config = dataclasses.replace(
            base.data, split=dataclasses.replace(base.data.split, cold_item_share=share))
        dataset_obj = load_run_dataset(dataset, data_config)
        data = prepare_data(dataset_obj, data_config)
        has_images = data.features.images is not None or data.features.image_features is not None
        if systems is not None:  # before anything trains: a typo must not cost a run
            known = {"most popular", "EASE", CONTENT_TFIDF, "TFRS two-tower", *ABLATIONS,
                     *RANKERS, *dataset_obj.reference_scorers}
            unknown = sorted(set(systems) - known)
            if unknown:
                raise ValueError(f"bench quality: unknown system(s) {unknown}; {dataset} has "
                                 f"{sorted(known)}")
        wanted = lambda name: systems is None or name in systems  # noqa: E731
        results = report[table]
        if table == "main":
            if wanted("most popular"):
                valid, test = evaluate_baseline(MostPopular().fit(
                    dataset_obj.interactions, data.split, len(dataset_obj.catalogue)), data)
                results["most popular"] = {"valid": valid, "test": test}
                save_partial()
            if wanted("EASE"):
                ease = EASE().fit(dataset_obj.interactions, data.split, len(dataset_obj.catalogue))
                tuning = ease.tune(data.valid)
                valid, test = evaluate_baseline(ease, data)
                results["EASE"] = {"valid": valid, "test": test, "l2": tuning}
                save_partial()
            for name, reference in dataset_obj.reference_scorers.items():
                if wanted(name):
                    reference.fit(dataset_obj.interactions, data.split,
                                  len(dataset_obj.catalogue))
                    valid, test = evaluate_baseline(reference, data)
                    results[name] = {"valid": valid, "test": test}
                    save_partial()
        if wanted(CONTENT_TFIDF):
            # Deterministic and blind to clicks: one run per table, tuned on validation.
            tfidf = ContentTfidf(dataset_obj.catalogue.texts)
            tuning = tfidf.tune(data.valid)
            valid, test = evaluate_baseline(tfidf, data)
            results[CONTENT_TFIDF] = {"valid": valid, "test": test, "decay": tuning}
            save_partial()
        if wanted("TFRS two-tower"):
            tfrs_runs = [train_id_two_tower(data, seed) for seed in seeds]
            results["TFRS two-tower"] = {"valid": summarise([r[0] for r in tfrs_runs]),
                                         "test": summarise([r[1] for r in tfrs_runs]),
                                         "runs": [r[1] for r in tfrs_runs],
                                         "valid_runs": [r[0] for r in tfrs_runs],
                                         "seeds": list(seeds)}
            save_partial()
        names = ["mmrec (full)"] if table == "cold_start" else list(ABLATIONS)
        rankers = {name: dataclasses.replace(base.ranker, **changes)
                   for name, changes in RANKERS.items() if table == "main" and wanted(name)}
        for name in names:
            ranked = rankers if name == "mmrec (full)" else {}
            if not (wanted(name) or ranked) or not applicable(name, has_images):
                continue
            model_config = dataclasses.replace(base.model, **ABLATIONS[name])
            if name != "mmrec (full)" and model_config == base.model:
                logger.info("%s skipped: the same model as mmrec (full) under this config",
                            name)
                continue
            model_runs, valid_runs, seconds, epochs_done, probes = [], [], [], [], []
            ranker_runs: dict[str, list[dict]] = {ranker: [] for ranker in ranked}
            for seed in seeds:
                config = RunConfig(data=dataclasses.replace(data_config, seed=seed),
                                   model=model_config,
                                   train=dataclasses.replace(base.train, epochs=epochs, seed=seed))
                logger.info("%s / %s / seed %d", table, name, seed)
                with tempfile.TemporaryDirectory(prefix="mmrec-bench-") as out:
                    metrics = train(dataset, config, out, verbose=0, data=data)
                    if table == "main" and dataset_obj.ground_truth is not None:
                        probes.append(probe_towers(trained_model(out, config, data), data))
                    for ranker, ranker_config in ranked.items():
                        logger.info("%s / %s / seed %d", table, ranker, seed)
                        ranker_runs[ranker].append(rank_run(
                            trained_model(out, config, data), data, ranker_config, seed,
                            jit=resolve_jit(config.train.jit)))
                model_runs.append(metrics["test"])
                valid_runs.append(metrics["valid"])
                seconds.append(metrics["train_seconds"])
                epochs_done.append(metrics["epochs_done"])
                if wanted(name):
                    results[name] = {"valid": summarise(valid_runs),
                                     "test": summarise(model_runs),
                                     "runs": model_runs, "valid_runs": valid_runs,
                                     "seeds": list(seeds[:len(model_runs)]),
                                     "epochs_done": epochs_done,
                                     **({"probes": probes} if probes else {}),
                                     "model_changes": ABLATIONS[name],
                                     "train_seconds": float(np.mean(seconds))}
                for ranker, runs in ranker_runs.items():
                    results[ranker] = {
                        "valid": summarise([r["valid"] for r in runs]),
                        "test": summarise([r["test"] for r in runs]),
                        "runs": [r["test"] for r in runs],
                        "valid_runs": [r["valid"] for r in runs],
                        "seeds": list(seeds[:len(runs)]), "retriever": "mmrec (full)",
                        "ranker": dataclasses.asdict(ranked[ranker]),
                        "best_epochs": [r["best_epoch"] for r in runs],
                        "lists_from": sorted({r["lists_from"] for r in runs}),
                        "candidate_recall": {part: [r[f"{part}_candidate_recall"] for r in runs]
                                             for part in ("train", "valid", "test")},
                        "train_seconds": float(np.mean([r["seconds"] for r in runs]))}
                save_partial()
    for run in trained_runs:
        model, data, _, document = load_trained(run)
        if document["dataset"] != dataset:
            raise ValueError(f"run {run} was trained on {document['dataset']!r}, not {dataset!r}")
        report["main"][f"mmrec ({run})"] = {"valid": evaluate_model(model, data.valid, data),
                                            "test": evaluate_model(model, data.test, data)}
    report["seconds"] = round(time.perf_counter() - started, 1)
    save_partial()
    return report


def _cell(value, interval: bool = False) -> str:
    """One table cell: a number, or "mean ± sd" (and "[low, high]", the 95%
    interval of the mean, with ``interval``) of a summary over seeds."""
    if value is None:
        return "–"
    if not isinstance(value, dict):
        return f"{value:.4f}"
    if value.get("std") is None:
        return f"{value['mean']:.4f}"
    text = f"{value['mean']:.4f} ± {value['std']:.4f}"
    if interval and value.get("ci95") is not None:
        text += f" [{value['mean'] - value['ci95']:.4f}, {value['mean'] + value['ci95']:.4f}]"
    return text


def format_quality_table(report: dict) -> str:
    """Markdown tables of a quality report: validation NDCG@10 beside the test
    metrics (mean ± sample sd over seeds; test NDCG@10 with its 95% interval)."""
    test_metrics = [m for m in METRICS if m != "NDCG@10"]
    lines = [f"**{report['dataset']}**, full ranking, leave-one-out; seeds {report['seeds']}, "
             f"{report['epochs']} epochs at most; {report['date']}", "",
             "| system | valid NDCG@10 | test NDCG@10 [95% interval] | " +
             " | ".join(test_metrics) + " | coverage@10 | pop. pct@10 |",
             "|---" * (len(test_metrics) + 5) + "|"]
    for name, result in report["main"].items():
        test, valid = result["test"], result.get("valid") or {}
        lines.append(f"| {name} | {_cell(valid.get('NDCG@10'))} | "
                     f"{_cell(test.get('NDCG@10'), interval=True)} | " +
                     " | ".join(_cell(test.get(m)) for m in test_metrics) +
                     f" | {_cell(test.get('coverage@10'))} | "
                     f"{_cell(test.get('popularity_percentile@10'))} |")
    probed = {name: result["probes"] for name, result in report["main"].items()
              if result.get("probes")}
    if probed:
        groups = list(next(iter(probed.values()))[0]["items"])
        lines += ["", "Linear probes (held-out share of items or users; mean over seeds): "
                  "accuracy of each true attribute group from the item vectors "
                  "(majority class in brackets), R² of the true tastes from the user vectors:",
                  "", "| system | " + " | ".join(groups) + " | user tastes R² |",
                  "|---" * (len(groups) + 2) + "|"]
        for name, probes in probed.items():
            cells = []
            for group in groups:
                accuracy = np.mean([p["items"][group]["accuracy"] for p in probes])
                majority = np.mean([p["items"][group]["majority"] for p in probes])
                cells.append(f"{accuracy:.2f} ({majority:.2f})")
            r2 = np.mean([p["users"]["r2"] for p in probes])
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {r2:.2f} |")
    if report.get("cold_start"):
        lines += ["", "Cold-start items (held out of training entirely), test:", "",
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
