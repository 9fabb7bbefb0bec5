"""The ``mmrec`` command line.

Commands mirror the data flow, each a thin layer over the Python API:

    mmrec data describe --dataset movielens-100k [--json] [--encoding cp1252]
    mmrec data prepare  --dataset shop --out prepared/shop [--config mmrec.toml]
                        [--set data.shop.num_items=500]
    mmrec train         --dataset movielens-100k --out runs/ml [--config mmrec.toml]
                        [--jit auto|on|off] [--precision float32|mixed_bfloat16|mixed_float16]
                        [--epochs N] [--resume]
    mmrec tune          --dataset shop --out configs/shop.toml [--config base.toml]
                        [--trials 12] [--epochs 3] [--space space.toml] [--seed 1]
    mmrec train-ranker  --run runs/ml [--config mmrec.toml] [--set ranker.candidates=200]
                        [--jit auto|on|off] [--seed N] [--json]
    mmrec evaluate      --run runs/ml [--json]
    mmrec export        --run runs/ml --model-dir saved_models/mmrec [--k 100] [--rerank|--no-rerank]
    mmrec catalogue add    --model-dir saved_models/mmrec --items new_items.csv
    mmrec catalogue retire --model-dir saved_models/mmrec --items ID1,ID2
    mmrec recommend     --user 196 [-k 10] [--model-dir DIR] [--json] [--sheet recs.png]
                        [--no-rerank]
    mmrec bench quality --dataset movielens-100k [--seeds 1,2,3] [--json FILE]
    mmrec bench merge   seed11.json seed12.json [--json FILE]
    mmrec bench throughput --dataset shop [--precisions float32,mixed_bfloat16] [--json FILE]
    mmrec bench latency --model-dir saved_models/mmrec [--run runs/ml] [--json FILE]
    mmrec bench ann     --model-dir saved_models/mmrec [--items 1000000] [--json FILE]

``--dataset`` takes a built-in name (movielens-100k, shop) or a data folder.
``--config`` reads a TOML file whose ``[data]``, ``[model]`` and ``[train]``
tables map onto :class:`mmrec.config.RunConfig` (a built-in data set's own
options in ``[data.shop]``), and ``--set TABLE.KEY=VALUE`` overrides one key;
unknown keys, values of the wrong type and impossible values are refused
before any work starts.

TensorFlow's C++ logs (a "failed call to cuInit" on every machine without a
GPU, cost-model errors) are off unless ``--verbose``; instead each command
that uses TensorFlow prints one line of its own about the device.

Other packages add command groups through the ``mmrec.commands`` entry point
(:func:`add_plugin_commands`): the ``feedback`` package adds ``mmrec feedback
...`` and ``mmrec bench feedback-store`` this way, so mmrec never imports it.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import logging
import sys
from pathlib import Path
from typing import Iterable

import mmrec  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from mmrec._tf_env import device_summary, show_tensorflow_logs
from mmrec.config import (JIT_MODES, PRECISIONS, TIMESTAMP_UNITS, DataConfig, RunConfig,
                          read_toml, set_key)
from mmrec.data.problems import DataError


def parse_assignment(assignment: str) -> tuple[list[str], object]:
    """``data.shop.num_items=500`` -> (["data", "shop", "num_items"], 500).

    The value is read as a TOML value (numbers, true/false, lists, quoted
    strings); anything else is taken as a plain string, so ``train.jit=on``
    needs no quotes.
    """
    import tomllib
    key, separator, text = assignment.partition("=")
    path = [part.strip() for part in key.split(".")]
    if not separator or len(path) < 2 or not all(path):
        raise ValueError(f"--set {assignment!r}: expected TABLE.KEY=VALUE, e.g. "
                         "train.epochs=3 or data.shop.num_items=500")
    try:
        value = tomllib.loads(f"value = {text.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    return path, value


def parse_seeds(text: str) -> tuple[int, ...]:
    """``--seeds 11,12,13`` -> (11, 12, 13); anything else is refused by name."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        seeds = tuple(int(part) for part in parts)
    except ValueError:
        raise ValueError(f"--seeds {text!r}: expected comma-separated whole numbers, "
                         f"e.g. 11,12,13") from None
    if not seeds:
        raise ValueError("--seeds: give at least one seed, e.g. 11,12,13")
    return seeds


def apply_assignments(document: dict, assignments: list[str]) -> dict:
    """Sets each ``--set TABLE.KEY=VALUE`` in a TOML document (in place)."""
    for assignment in assignments:
        keys, value = parse_assignment(assignment)
        try:
            set_key(document, keys, value)
        except ValueError as error:
            raise ValueError(f"--set {assignment!r}: {error}") from None
    return document


def read_run_config(args: argparse.Namespace) -> RunConfig:
    """The run config a command's options describe.

    The TOML file of ``--config`` (defaults without one), then each ``--set
    TABLE.KEY=VALUE``, then the command's own options (``--split``,
    ``--encoding``, ``--epochs``, ...), all checked together before any work.
    """
    path = getattr(args, "config", None)
    document: dict = read_toml(path) if path is not None else {}
    apply_assignments(document, getattr(args, "set", None) or [])
    options = {("data",): {"encoding": "encoding", "timestamp_unit": "timestamp_unit"},
               ("data", "split"): {"split": "scheme", "split_file": "split_file",
                                   "cold_item_share": "cold_item_share"},
               ("train",): {"jit": "jit", "precision": "precision", "epochs": "epochs",
                            "seed": "seed"}}
    for keys, names in options.items():
        for attribute, key in names.items():
            value = getattr(args, attribute, None)
            if value is not None:
                set_key(document, [*keys, key], value)
    if getattr(args, "seed", None) is not None:  # the shuffling too, as bench quality's seeds do
        set_key(document, ["data", "seed"], args.seed)
    try:
        return RunConfig.from_dict(document)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}" if path else str(error)) from error


def load(args: argparse.Namespace, config: DataConfig):
    return mmrec.load_dataset(args.dataset, **config.loader_options(args.dataset))


def cmd_data_describe(args: argparse.Namespace) -> int:
    from mmrec.data.describe import describe, format_description
    config = read_run_config(args).data
    summary = describe(load(args, config), config.split)
    print(json.dumps(summary, indent=2) if args.json else format_description(summary))
    return 0


def cmd_data_prepare(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from mmrec.data.describe import describe
    from mmrec.data.splits import make_split
    from mmrec.features.item_features import prepare_item_features
    config = read_run_config(args).data
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"--out {out} exists and is not empty; choose another folder")
    dataset = load(args, config)
    features = prepare_item_features(dataset.catalogue, config, use_cache=not args.no_cache)
    split = make_split(dataset, config.split)
    summary = describe(dataset, config.split)
    # Written beside the target and renamed into place: a failure leaves nothing half made.
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.preparing-", dir=out.parent))
    try:
        features.save(staging / "item_features")
        split.save(staging / "split.npz")
        (staging / "summary.json").write_text(json.dumps(summary, indent=2))
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"prepared {summary['items']:,} items ({len(features.vocabulary):,}-token vocabulary, "
          f"key {features.key}) and a {split.scheme} split into {out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from mmrec.train.run_folder import RunFolder
    from mmrec.train.runtime import describe_jit, distribution_strategy, is_chief
    from mmrec.train.trainer import train
    config = read_run_config(args)
    # first: a multi-worker strategy sets up its collectives before any other op runs
    strategy = distribution_strategy(args.strategy,
                                     collective_timeout_s=args.collective_timeout)
    print(f"mmrec: {describe_jit(config.train.jit)}", file=sys.stderr)
    if args.strategy == "multi-worker":
        resolver = strategy.cluster_resolver
        print(f"mmrec: multi-worker strategy, {resolver.task_type} {resolver.task_id} "
              f"({'chief: writes' if is_chief(strategy) else 'writes a scratch copy beside'} "
              f"{args.out}), {strategy.num_replicas_in_sync} replicas in all", file=sys.stderr)
        if RunFolder(args.out).config_file.exists():
            print(f"mmrec: {args.out} holds this run's set-up: continuing it from its last "
                  "backed-up epoch", file=sys.stderr)
    elif strategy.num_replicas_in_sync > 1:
        print(f"mmrec: {args.strategy} strategy over {strategy.num_replicas_in_sync} replicas",
              file=sys.stderr)
    with strategy.scope():
        metrics = train(args.dataset, config, args.out, resume=args.resume,
                        verbose=1 if sys.stderr.isatty() else 2)
    print(format_metrics(metrics))
    return 0


def read_ranker_config(args: argparse.Namespace):
    """The ranking stage's settings for ``mmrec train-ranker``: the run's own
    ``[ranker]`` table, then the ``[ranker]`` table of ``--config``, then each
    ``--set ranker.KEY=VALUE``; keys of other tables are refused (the run's
    data, model and training are fixed)."""
    from mmrec.train.run_folder import RunFolder
    run_config, _ = RunFolder(args.run).read_config()
    document = {"ranker": run_config.to_dict()["ranker"]}
    if args.config is not None:
        document["ranker"].update(read_toml(args.config).get("ranker", {}))
    for assignment in args.set:
        keys, _ = parse_assignment(assignment)
        if keys[0] != "ranker":
            raise ValueError(f"--set {assignment!r}: train-ranker reads only the [ranker] "
                             f"table (the run's data, model and training are fixed), e.g. "
                             f"ranker.candidates=200")
    apply_assignments(document, args.set)
    try:
        return RunConfig.from_dict(document).ranker
    except (TypeError, ValueError) as error:
        raise ValueError(f"{args.config}: {error}" if args.config else str(error)) from error


def cmd_train_ranker(args: argparse.Namespace) -> int:
    from mmrec.train.ranker_training import train_ranker
    config = read_ranker_config(args)
    result = train_ranker(args.run, config, jit=args.jit, seed=args.seed,
                          verbose=sys.stderr.isatty())
    if args.json:
        print(json.dumps(result, indent=2, default=float))
    else:
        print(format_ranker_result(result))
    return 0


def format_ranker_result(result: dict) -> str:
    """The ranker's epochs, then retrieval alone beside the two stages."""
    from mmrec.evaluate.report import format_metrics_table
    from mmrec.train.ranker_training import losing_ranker_message
    report = result["report"]
    epochs = ", ".join(f"{value:.4f}" for value in report["epochs"])
    rows = {}
    for part in ("valid", "test"):
        if result["retrieval"].get(part):
            rows[f"{part}, retrieval"] = result["retrieval"][part]
        rows[f"{part}, retrieval + ranker"] = result[part]
    return "\n".join([
        f"ranker over the top {result['config']['candidates']} "
        f"({result['config']['attention']} attention): best epoch {report['best_epoch']} of "
        f"{len(report['epochs'])} on validation NDCG@10 ({epochs})",
        f"lists holding their click: training {report['train_candidate_recall']:.3f}, "
        f"validation {report['valid_candidate_recall']:.3f}",
        format_metrics_table(rows)] + (
        [f"{losing}: `mmrec export` leaves it out unless given --rerank"]
        if (losing := losing_ranker_message(result)) else []))


def format_metrics(metrics: dict) -> str:
    from mmrec.evaluate.report import format_metrics_table
    rows = {"valid": metrics["valid"], "test": metrics["test"]}
    for part, values in (metrics.get("ranker") or {}).items():
        rows[f"{part}, retrieval + ranker"] = values
    lines = [f"best epoch {metrics.get('best_epoch')} of {metrics.get('epochs_done')}, "
             f"XLA {'on' if metrics.get('jit_compile') else 'off'}",
             format_metrics_table(rows)]
    return "\n".join(lines)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mmrec.evaluate.model_scores import evaluate_model
    from mmrec.train.trainer import load_trained
    from mmrec.evaluate.reranking import evaluate_reranked
    from mmrec.train.ranker_training import has_ranker, load_ranker
    model, data, _, document = load_trained(args.run)
    metrics = {"run": args.run, "dataset": document["dataset"],
               "valid": evaluate_model(model, data.valid, data),
               "test": evaluate_model(model, data.test, data)}
    if has_ranker(args.run):  # the two stages too
        ranking, _ = load_ranker(args.run, model)
        metrics["ranker"] = {part: evaluate_reranked(model, ranking, queries, data,
                                                     ranking.config.candidates)
                             for part, queries in (("valid", data.valid), ("test", data.test))}
    print(json.dumps(metrics, indent=2) if args.json else format_metrics(metrics))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from mmrec.train.tuning import DEFAULT_SPACE, read_space, tune, write_tuned_config
    base = read_run_config(args)  # checked; the written config keeps only its non-defaults
    space = read_space(read_toml(args.space)) if args.space else DEFAULT_SPACE
    log = args.log or str(Path(args.out).with_suffix(".trials.jsonl"))
    result = tune(args.dataset, base, space, trials=args.trials, epochs=args.epochs,
                  seed=args.seed, log=log)
    command = "mmrec tune " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else None
    path = write_tuned_config(result, args.out, command=command)
    print(f"{'valid NDCG@10':>13}  setting")
    for trial in result.trials:
        value = trial["valid_NDCG@10"]
        print(f"{'nan' if value is None else f'{value:.4f}':>13}  " +
              ", ".join(f"{k}={v}" for k, v in sorted(trial["values"].items())))
    print(f"chosen on validation: {result.best['values']} -> {path} (trials: {log})")
    return 0


def cmd_bench_quality(args: argparse.Namespace) -> int:
    from mmrec.bench.quality import format_quality_table, run_quality_benchmark
    seeds = parse_seeds(args.seeds)
    systems = tuple(s.strip() for s in args.systems.split(",")) if args.systems else None
    tables = tuple(t.strip() for t in args.tables.split(",") if t.strip())
    if not tables or set(tables) - {"main", "cold-start"}:
        raise ValueError(f"--tables {args.tables!r}: expected main, cold-start or "
                         f"main,cold-start")
    report = run_quality_benchmark(args.dataset, seeds=seeds, epochs=args.epochs,
                                   systems=systems, cold_item_share=args.cold_item_share,
                                   base=read_run_config(args),
                                   trained_runs=tuple(args.run), partial_json=args.json,
                                   tables=tuple(t.replace("-", "_") for t in tables))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    print(format_quality_table(report))
    return 0


def cmd_bench_merge(args: argparse.Namespace) -> int:
    from mmrec.bench.merge import merge_quality_reports
    from mmrec.bench.quality import format_quality_table
    reports = []
    for path in args.reports:
        try:
            reports.append(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: not a readable JSON report ({error})") from error
    report = merge_quality_reports(reports, sources=list(args.reports))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    print(format_quality_table(report))
    return 0


def cmd_bench_throughput(args: argparse.Namespace) -> int:
    from mmrec.bench.throughput import format_throughput_table, run_throughput_benchmark
    precisions = tuple(p.strip() for p in args.precisions.split(",") if p.strip())
    report = run_throughput_benchmark(args.dataset, steps=args.steps,
                                      base=read_run_config(args), precisions=precisions)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    print(format_throughput_table(report))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import time

    from mmrec.export.exporter import export_run
    from mmrec.export.layout import VersionFiles
    started = time.perf_counter()
    rerank = True if args.rerank else False if args.no_rerank else None
    target = export_run(args.run, args.model_dir, k=args.k, rerank=rerank)
    stages = ("retrieval + ranker" if VersionFiles(target).manifest().get("ranker")
              else "retrieval alone")
    print(f"exported {args.run} as version {target.name}, serving {stages}: {target} "
          f"({time.perf_counter() - started:.1f} s)")
    return 0


def cmd_catalogue_add(args: argparse.Namespace) -> int:
    from mmrec.export.catalogue_changes import add_items
    change = add_items(args.model_dir, args.items, encoding=args.encoding)
    for line in change.report.summary():
        print(f"mmrec: {line}", file=sys.stderr)
    print(f"added {len(change.added):,} items as version {change.version.name}: "
          f"{change.version}")
    return 0


def cmd_catalogue_retire(args: argparse.Namespace) -> int:
    from mmrec.export.catalogue_changes import retire_items
    ids = [i for part in args.items for i in part.split(",")]
    change = retire_items(args.model_dir, ids)
    print(f"retired {len(change.retired):,} items in version {change.version.name}: "
          f"{change.version}")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from mmrec.serve.recommender import Recommender
    recommender = Recommender.load(args.model_dir)
    history = args.history.split(",") if args.history else None
    results = recommender.recommend(args.user, k=args.k, history=history,
                                    rerank=not args.no_rerank)
    if args.json:
        print(json.dumps({"user_id": args.user, "version": recommender.version,
                          "recommendations": [dataclasses.asdict(r) for r in results]},
                         indent=2))
    else:
        print(format_recommendations(args.user, recommender.version, results))
    if args.sheet:
        from mmrec.serve.contact_sheet import write_contact_sheet
        write_contact_sheet(recommender, args.user, results, args.sheet)
        print(f"contact sheet: {args.sheet}")
    return 0


def format_recommendations(user_id: str, version: int, results) -> str:
    if not results:
        return f"user {user_id}: nothing left to recommend (version {version})"
    first = results[0].explanation
    lines = [f"user {user_id}, model version {version}" +
             (" (unknown user: most popular items)" if first.fallback else "") +
             (", re-ranked" if first.reranked else "")]
    because = lambda explanation: "; ".join(  # noqa: E731
        f"{title} ({weight:.0%})" for _, title, weight in explanation.because)
    if first.because and not first.reranked:  # one attention map for the whole list
        lines.append("because you clicked: " + because(first))
    lines.append(f"{'#':>3}  {'score':>7}  {'gate t/i':>10}  item")
    for rank, rec in enumerate(results, 1):
        gate = f"{rec.explanation.text_gate:.0%}/{rec.explanation.image_gate:.0%}"
        lines.append(f"{rank:>3}  {rec.score:>7.3f}  {gate:>10}  {rec.title} [{rec.item_id}]")
        if rec.explanation.reranked and rec.explanation.because:
            lines.append(f"{'':>25}because you clicked: {because(rec.explanation)}")
    return "\n".join(lines)


def cmd_bench_catalogue(args: argparse.Namespace) -> int:
    from mmrec.bench.catalogue import format_catalogue_table, run_catalogue_benchmark
    config = read_run_config(args)
    report = run_catalogue_benchmark(config.data.dataset_options.get("shop", {}),
                                     new_items=args.new_items, per_user=args.per_user,
                                     base=config, seed=args.seed)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    print(format_catalogue_table(report))
    return 0


def cmd_bench_scale(args: argparse.Namespace) -> int:
    from mmrec.bench.scale import format_scale_tables, run_scale_benchmark
    items = tuple(int(n) for n in args.items.split(",") if n.strip())
    report = run_scale_benchmark(items, clicks=args.clicks, clicks_per_item=args.clicks_per_item,
                                 base=read_run_config(args), picture_size=args.picture_size,
                                 picture_channels=args.picture_channels, epochs=args.epochs)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    print(format_scale_tables(report))
    return 0


def cmd_bench_latency(args: argparse.Namespace) -> int:
    from mmrec.bench.latency import format_latency_table, run_latency_benchmark
    report = run_latency_benchmark(args.model_dir, run=args.run, calls=args.calls)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    print(format_latency_table(report))
    return 0


def cmd_bench_ann(args: argparse.Namespace) -> int:
    from mmrec.bench.ann import format_ann_table, run_ann_benchmark
    report = run_ann_benchmark(args.model_dir, items=args.items)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    print(format_ann_table(report))
    return 0


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML config: [data] (with [data.split] and a built-in "
                        "data set's own table such as [data.shop]), [model] and [train] "
                        "(mmrec/config.py and mmrec/data/shop.py document every key)")
    parser.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE",
                        help="override one config key, e.g. data.shop.num_items=500 or "
                             "train.epochs=3 (repeatable; applied after --config)")


def add_dataset_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True,
                        help="movielens-100k, shop, or a data folder (see docs/DATA.md)")
    add_config_options(parser)
    parser.add_argument("--split", choices=["auto", "leave_one_out", "time", "explicit"],
                        help="split scheme (default: the config's, auto)")
    parser.add_argument("--split-file", help="CSV user_id,item_id,timestamp,split")
    parser.add_argument("--cold-item-share", type=float,
                        help="share of items held out of training entirely")
    parser.add_argument("--encoding", help="text encoding of the data folder's files "
                        "(default utf-8; e.g. cp1252 or latin-1 for spreadsheet exports)")
    parser.add_argument("--timestamp-unit", choices=TIMESTAMP_UNITS,
                        help="unit of epoch timestamps (default auto: detected from their "
                             "magnitude and reported)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmrec", description=__doc__.split("\n")[0])
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="log more, TensorFlow's and ScaNN's own C++ logs included")
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="load, check and prepare data sets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    describe = data_commands.add_parser("describe", help="sizes, coverage, splits, problems")
    add_dataset_options(describe)
    describe.add_argument("--json", action="store_true", help="print JSON")
    describe.set_defaults(handler=cmd_data_describe)
    prepare = data_commands.add_parser("prepare", help="write item features and the split")
    add_dataset_options(prepare)
    prepare.add_argument("--out", required=True, help="folder to write")
    prepare.add_argument("--no-cache", action="store_true", help="rebuild item features")
    prepare.set_defaults(handler=cmd_data_prepare)

    train = commands.add_parser("train", help="train the two-tower model into a run folder")
    add_dataset_options(train)
    train.add_argument("--out", required=True, help="run folder (runs/NAME)")
    train.add_argument("--jit", choices=JIT_MODES,
                       help="XLA for the train step (auto: on with a GPU, off on CPU)")
    train.add_argument("--precision", choices=PRECISIONS)
    train.add_argument("--epochs", type=int, help="at most this many epochs")
    train.add_argument("--seed", type=int, help="seeds weights, dropout and shuffling")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run")
    train.add_argument("--strategy", choices=["default", "mirrored", "multi-worker"],
                       default="default",
                       help="tf.distribute strategy: default (one device), mirrored (every "
                            "local GPU) or multi-worker (the cluster in TF_CONFIG; every "
                            "worker runs the same command with an --out they share)")
    train.add_argument("--collective-timeout", type=float, default=600.0, metavar="SECONDS",
                       help="multi-worker: a collective waiting longer fails the run, so a "
                            "dead worker stops it instead of hanging it (default 600)")
    train.set_defaults(handler=cmd_train)

    tune = commands.add_parser("tune", help="choose hyperparameters on validation NDCG@10 "
                               "(random search) and write them as a TOML config")
    add_dataset_options(tune)
    tune.add_argument("--out", required=True, help="the TOML config to write")
    tune.add_argument("--trials", type=int, default=12, help="settings to try (default 12)")
    tune.add_argument("--epochs", type=int, default=3,
                      help="epochs per trial (default 3: short trials rank settings)")
    tune.add_argument("--seed", type=int, default=1,
                      help="orders the search and seeds every trial (default 1)")
    tune.add_argument("--space", help="TOML of choices laid out like a config, e.g. "
                      "[train] learning_rate = [0.001, 0.003] (default: step size, hard "
                      "negatives, history length, temperature, id dropout)")
    tune.add_argument("--log", help="JSON lines of finished trials, read back to resume "
                      "(default: OUT with .trials.jsonl)")
    tune.set_defaults(handler=cmd_tune)

    ranker = commands.add_parser("train-ranker", help="train the ranking stage over a trained "
                                 "run (into RUN/ranker/)")
    ranker.add_argument("--run", required=True, help="trained run folder")
    ranker.add_argument("--config", help="TOML config whose [ranker] table overrides the "
                        "run's (mmrec/config.py's RankerConfig documents every key)")
    ranker.add_argument("--set", action="append", default=[], metavar="ranker.KEY=VALUE",
                        help="override one ranker key, e.g. ranker.candidates=200 "
                             "(repeatable; applied after --config)")
    ranker.add_argument("--jit", choices=JIT_MODES,
                        help="XLA for the ranker's train step (default: the run's train.jit)")
    ranker.add_argument("--seed", type=int, help="seeds the ranker (default: the run's seed)")
    ranker.add_argument("--json", action="store_true", help="print JSON")
    ranker.set_defaults(handler=cmd_train_ranker)

    evaluate = commands.add_parser("evaluate", help="full-ranking metrics of a trained run")
    evaluate.add_argument("--run", required=True, help="run folder")
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    evaluate.set_defaults(handler=cmd_evaluate)

    export = commands.add_parser("export", help="write the next SavedModel version")
    export.add_argument("--run", required=True, help="trained run folder")
    export.add_argument("--model-dir", default="saved_models/mmrec",
                        help="folder of versions (TF Serving's --model_base_path)")
    export.add_argument("--k", type=int, default=100, help="items per request")
    stages = export.add_mutually_exclusive_group()
    stages.add_argument("--no-rerank", action="store_true",
                        help="leave the run's ranker out: the version serves retrieval alone")
    stages.add_argument("--rerank", action="store_true",
                        help="export the run's ranker even if it lowered validation NDCG@10 "
                        "(by default such a ranker is left out, with a warning)")
    export.set_defaults(handler=cmd_export)

    catalogue = commands.add_parser("catalogue", help="change a published catalogue without "
                                    "retraining: add new items, retire old ones")
    catalogue_commands = catalogue.add_subparsers(dest="catalogue_command", required=True)
    add = catalogue_commands.add_parser("add", help="embed new items from their text and "
                                        "pictures and publish the next version with them")
    add.add_argument("--model-dir", default="saved_models/mmrec")
    add.add_argument("--items", required=True, help="items table (CSV, JSONL or Parquet; "
                     "the schema of docs/DATA.md, pictures relative to its folder)")
    add.add_argument("--encoding", default="utf-8", help="the table's text encoding")
    add.set_defaults(handler=cmd_catalogue_add)
    retire = catalogue_commands.add_parser("retire", help="publish the next version in which "
                                           "these items are never recommended")
    retire.add_argument("--model-dir", default="saved_models/mmrec")
    retire.add_argument("--items", required=True, action="append",
                        help="item ids, comma-separated (repeatable)")
    retire.set_defaults(handler=cmd_catalogue_retire)

    recommend = commands.add_parser("recommend", help="recommendations with explanations")
    recommend.add_argument("--user", required=True, help="user id")
    recommend.add_argument("-k", type=int, default=10, help="how many items")
    recommend.add_argument("--model-dir", default="saved_models/mmrec")
    recommend.add_argument("--history", help="comma-separated recent item ids, newest first")
    recommend.add_argument("--json", action="store_true", help="print JSON")
    recommend.add_argument("--sheet", help="write a contact-sheet picture (PNG)")
    recommend.add_argument("--no-rerank", action="store_true",
                           help="retrieval's order even when the version has a ranker")
    recommend.set_defaults(handler=cmd_recommend)

    bench = commands.add_parser("bench", help="benchmarks (JSON and markdown tables)")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True)
    quality = bench_commands.add_parser("quality", help="model, ablations and baselines")
    quality.add_argument("--dataset", required=True)
    add_config_options(quality)
    quality.add_argument("--seeds", default="11,12,13", help="comma-separated seeds (default "
                         "11,12,13: the reporting seeds, never used to choose a setting)")
    quality.add_argument("--epochs", type=int,
                         help="at most this many epochs (default: the config's train.epochs)")
    quality.add_argument("--systems", help="comma-separated subset of the systems to run")
    quality.add_argument("--cold-item-share", type=float, default=0.1,
                         help="share of items held out for the cold-start table (0: skip)")
    quality.add_argument("--tables", default="main,cold-start",
                         help="which tables to run: main, cold-start or both (default)")
    quality.add_argument("--run", action="append", default=[],
                         help="also evaluate this trained run folder (repeatable)")
    quality.add_argument("--json", help="write the report to this file")
    quality.set_defaults(handler=cmd_bench_quality)
    merge = bench_commands.add_parser(
        "merge", help="one quality table from reports that each ran some seeds or systems "
                      "(same data set, config and code)")
    merge.add_argument("reports", nargs="+", help="JSON reports of mmrec bench quality")
    merge.add_argument("--json", help="write the merged report to this file")
    merge.set_defaults(handler=cmd_bench_merge)
    throughput = bench_commands.add_parser("throughput", help="training examples/s, XLA on/off")
    throughput.add_argument("--dataset", required=True)
    add_config_options(throughput)
    throughput.add_argument("--steps", type=int, default=30, help="timed steps per setting")
    throughput.add_argument("--precisions", default="float32",
                            help="comma-separated, e.g. float32,mixed_bfloat16 (mixed needs a GPU "
                                 "to pay off)")
    throughput.add_argument("--json", help="write the report to this file")
    throughput.set_defaults(handler=cmd_bench_throughput)
    catalogue_bench = bench_commands.add_parser(
        "catalogue", help="catalogue add on the shop: time, and whether new items reach the "
        "users whose true tastes they suit")
    add_config_options(catalogue_bench)
    catalogue_bench.add_argument("--new-items", type=int, default=1000,
                                 help="shop items held out of training and added after it")
    catalogue_bench.add_argument("--per-user", type=int, default=5,
                                 help="best-suited and random new items compared per user")
    catalogue_bench.add_argument("--seed", type=int, default=0)
    catalogue_bench.add_argument("--json", help="write the report to this file")
    catalogue_bench.set_defaults(handler=cmd_bench_catalogue)
    scale = bench_commands.add_parser("scale", help="training time and memory as the shop's "
                                      "catalogue grows (same clicks; clicks in proportion)")
    add_config_options(scale)
    scale.add_argument("--items", default="5000,20000,60000",
                       help="catalogue sizes, comma-separated (default 5000,20000,60000)")
    scale.add_argument("--clicks", type=int, default=100_000,
                       help="clicks at every size in the first series (default 100000)")
    scale.add_argument("--clicks-per-item", type=float, default=4.0,
                       help="clicks per item in the second series (0: skip it; default 4)")
    scale.add_argument("--picture-size", type=int, default=64, help="picture side (default 64)")
    scale.add_argument("--picture-channels", type=int, choices=[1, 3], default=3)
    scale.add_argument("--epochs", type=int, default=1, help="epochs per point (default 1)")
    scale.add_argument("--json", help="write the report to this file")
    scale.set_defaults(handler=cmd_bench_scale)
    latency = bench_commands.add_parser("latency", help="export, load and recommend timings")
    latency.add_argument("--model-dir", default="saved_models/mmrec")
    latency.add_argument("--run", help="export this run first and time the export")
    latency.add_argument("--calls", type=int, default=500)
    latency.add_argument("--json", help="write the report to this file")
    latency.set_defaults(handler=cmd_bench_latency)
    ann = bench_commands.add_parser("ann", help="ScaNN vs brute force on a large catalogue")
    ann.add_argument("--model-dir", default="saved_models/mmrec")
    ann.add_argument("--items", type=int, default=1_000_000)
    ann.add_argument("--json", help="write the report to this file")
    ann.set_defaults(handler=cmd_bench_ann)
    add_plugin_commands(commands, {"bench": bench_commands})
    return parser


PLUGIN_GROUP = "mmrec.commands"


def add_plugin_commands(commands: argparse._SubParsersAction,
                        groups: dict[str, argparse._SubParsersAction],
                        plugins: Iterable[importlib.metadata.EntryPoint] | None = None
                        ) -> list[str]:
    """Lets installed packages add commands, without mmrec importing them.

    A package lists a function in its pyproject.toml::

        [project.entry-points."mmrec.commands"]
        feedback = "feedback.cli:add_commands"

    which is called as ``add_commands(commands, groups)``: ``commands`` adds
    top-level commands (``commands.add_parser("feedback")``), ``groups["bench"]``
    adds benchmarks. A command that does not use TensorFlow sets
    ``quiet=True`` in its defaults, and mmrec prints no device line for it.
    With no plugin installed nothing changes; a plugin that fails to load
    is named on standard error and its commands are missing, the rest work.

    Args:
      plugins: the entry points to load (default: those installed in
        ``mmrec.commands``).

    Returns:
      The names of the plugins that added their commands.
    """
    if plugins is None:
        plugins = importlib.metadata.entry_points(group=PLUGIN_GROUP)
    added = []
    for plugin in plugins:
        try:
            plugin.load()(commands, groups)
        except Exception as error:  # a broken plugin must not take the mmrec CLI down
            print(f"mmrec: commands of {plugin.name!r} ({plugin.value}) are unavailable: "
                  f"{type(error).__name__}: {error}", file=sys.stderr)
            continue
        added.append(plugin.name)
    return added


QUIET_COMMANDS = ("data",)
"""Commands that never load TensorFlow (no device line); a plugin's commands say
so themselves with ``quiet=True`` in their parser defaults."""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="mmrec: %(message)s", stream=sys.stderr)
    if args.verbose:
        show_tensorflow_logs()
    try:
        if args.command not in QUIET_COMMANDS and not getattr(args, "quiet", False):
            print(f"mmrec: {device_summary()}", file=sys.stderr)
            if not args.verbose:  # TensorFlow's own Python warnings (retracing, ...)
                import tensorflow as tf
                tf.get_logger().setLevel(logging.ERROR)
        return args.handler(args)
    except DataError as error:
        print(f"mmrec: data error: {error}", file=sys.stderr)
        return 2
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        print(f"mmrec: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
