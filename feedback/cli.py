"""The ``mmrec feedback`` commands and ``mmrec bench feedback-store``.

mmrec never imports feedback; its CLI finds these commands through the
``mmrec.commands`` entry point that this package registers (pyproject.toml),
which calls :func:`add_commands`. Every command takes ``--store URL`` (else
``$MMREC_FEEDBACK_STORE``, else ``sqlite:///feedback.db``) and ``--config
FILE.toml`` (its ``[feedback]`` table: :class:`~feedback.store.config.StoreConfig`),
and none but ``finetune`` loads TensorFlow:

    mmrec feedback ingest FILE|- [--format jsonl|csv|parquet] [--batch-size N] [--json]
    mmrec feedback stats [--json]
    mmrec feedback quarantine [--reason R] [--limit N] [--export FILE.jsonl] [--json]
    mmrec feedback forget-user USER_ID
    mmrec feedback prune --before DATE
    mmrec feedback catalogue (--model-dir DIR [--version N] | --items FILE | --off) [--add]
    mmrec feedback refresh  [--model-dir DIR]
    mmrec feedback finetune [--model-dir DIR] [--train attention|attention+ids|all] [--every 15m]
    mmrec feedback skip     [--model-dir DIR] --to TXID:SEQ
    mmrec feedback rollback [--model-dir DIR] [--to N] [--keep K]
    mmrec feedback history  [--model-dir DIR] [--plot runs.png] [--json]
    mmrec bench feedback-store [--events 1000000] [--backends sqlite,postgresql] [--json FILE]

Exit status 0 on success, 2 on refused input or an unusable store (the
message says which and the fix).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from mmrec.data.problems import DataError

COMMANDS_HELP = ("the click store (ingest, inspect, quarantine, forget, prune) and the "
                 "fine-tuning loop (finetune, skip, rollback, history)")


def add_commands(commands: argparse._SubParsersAction,
                 groups: dict[str, argparse._SubParsersAction]) -> None:
    """Adds ``feedback ...`` to mmrec's commands and ``feedback-store`` to ``bench``.

    Called by :func:`mmrec.cli.add_plugin_commands` (the ``mmrec.commands``
    entry point). Both set ``quiet=True``: they do not use TensorFlow, so
    mmrec prints no device line for them.
    """
    feedback = commands.add_parser("feedback", help=COMMANDS_HELP, description=__doc__)
    feedback.set_defaults(quiet=True)
    sub = feedback.add_subparsers(dest="feedback_command", required=True)

    ingest = sub.add_parser("ingest", help="store events from a file or standard input")
    ingest.add_argument("file", help="a JSONL, CSV or Parquet file, or - for standard input")
    ingest.add_argument("--format", choices=["jsonl", "csv", "parquet"],
                        help="input format (default: the file's suffix; required for -)")
    ingest.add_argument("--encoding", default="utf-8", help="text encoding (default utf-8)")
    ingest.add_argument("--batch-size", type=int,
                        help="events per transaction (default: feedback.batch_size, 10000)")
    _common(ingest)
    ingest.set_defaults(handler=cmd_ingest)

    stats = sub.add_parser("stats", help="events, users, items, pending, quarantine, consumers")
    _common(stats)
    stats.set_defaults(handler=cmd_stats)

    quarantine = sub.add_parser("quarantine", help="list or export refused records")
    quarantine.add_argument("--reason", help="only this reason, e.g. 'future timestamp'")
    quarantine.add_argument("--limit", type=int, default=20,
                            help="list at most this many (default 20; 0: all)")
    quarantine.add_argument("--export", metavar="FILE",
                            help="write every matching record to FILE as JSONL")
    _common(quarantine)
    quarantine.set_defaults(handler=cmd_quarantine)

    forget = sub.add_parser("forget-user", help="delete every event of a user (erasure)")
    forget.add_argument("user_id")
    _common(forget)
    forget.set_defaults(handler=cmd_forget_user)

    prune = sub.add_parser("prune", help="delete events older than a date that every "
                           "consumer has read")
    prune.add_argument("--before", required=True,
                       help="ISO date or time (2024-01-31, 2024-01-31T12:00:00Z) or epoch")
    _common(prune)
    prune.set_defaults(handler=cmd_prune)

    catalogue = sub.add_parser("catalogue", help="set the live catalogue (unknown items "
                               "wait as pending)")
    source = catalogue.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-dir", help="the items of a published version")
    source.add_argument("--items", help="a CSV, JSONL or Parquet file with an item_id column")
    source.add_argument("--off", action="store_true", help="no catalogue: accept every item")
    catalogue.add_argument("--version", type=int, help="with --model-dir: this version "
                           "(default the latest)")
    catalogue.add_argument("--add", action="store_true",
                           help="add to the catalogue instead of replacing it")
    _common(catalogue)
    catalogue.set_defaults(handler=cmd_catalogue)

    refresh = sub.add_parser("refresh", help="publish the next version with its frozen "
                             "histories, seen items and popularity brought up to date from the "
                             "store (and erased users erased), for TF Serving's serving_default")
    refresh.add_argument("--model-dir", default="saved_models/mmrec")
    _common(refresh)
    refresh.set_defaults(handler=cmd_refresh, quiet=False)

    from feedback.finetune.commands import add_finetune_commands
    add_finetune_commands(sub, _common)

    live = groups["bench"].add_parser(
        "live-history", help="Recommender.recommend with the store as history source, beside "
        "without it")
    live.add_argument("--model-dir", default="saved_models/mmrec")
    live.add_argument("--store", action="append", default=[], metavar="URL",
                      help="a store URL, or 'postgresql' for a private local server "
                           "(repeatable; default: a SQLite file in a temporary folder)")
    live.add_argument("--calls", type=int, default=2000)
    live.add_argument("--json", help="write the report to this file")
    live.set_defaults(handler=cmd_bench_live_history, quiet=False)

    loop = groups["bench"].add_parser(
        "feedback", help="the fine-tuning loop against a full retrain, on taste shifts, "
        "trends and poisoned feeds (the shop)")
    loop.add_argument("--config", default="configs/feedback-bench.toml",
                      help="the benchmark's TOML (default configs/feedback-bench.toml)")
    loop.add_argument("--seeds", default="1,2,3", help="comma-separated shop seeds")
    loop.add_argument("--scenarios", help="comma-separated subset of the config's scenarios")
    loop.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE",
                      help="override one config value, e.g. train.epochs=2 (repeatable)")
    loop.add_argument("--workdir", help="keep data folders, runs and versions here "
                      "(default: a temporary folder, deleted afterwards)")
    loop.add_argument("--json", help="write the report to this file")
    loop.add_argument("--plot", help="write the PNG plot to this file")
    loop.set_defaults(handler=cmd_bench_feedback, quiet=True)

    bench = groups["bench"].add_parser(
        "feedback-store", help="click store throughput and recent_items latency")
    bench.add_argument("--events", type=int, default=1_000_000,
                       help="events already in the store before measuring (default 1000000)")
    bench.add_argument("--measured-events", type=int, default=200_000,
                       help="events ingested while timed (default 200000)")
    bench.add_argument("--cli-events", type=int, default=200_000,
                       help="events in the JSONL file for the CLI path (0: skip)")
    bench.add_argument("--batch-size", type=int, default=10_000)
    bench.add_argument("--backends", default="sqlite,postgresql",
                       help="comma-separated: sqlite, postgresql")
    bench.add_argument("--postgres-url",
                       help="an existing PostgreSQL database (default: start a local server)")
    bench.add_argument("--calls", type=int, default=2000, help="recent_items calls timed")
    bench.add_argument("--folder", help="where to put the SQLite store and the JSONL file "
                       "(default: a temporary folder)")
    bench.add_argument("--json", help="write the report to this file")
    bench.set_defaults(handler=cmd_bench_feedback_store, quiet=True)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="URL", help="sqlite:///PATH or "
                        "postgresql://user@host/db (default $MMREC_FEEDBACK_STORE, else "
                        "sqlite:///feedback.db)")
    parser.add_argument("--config", help="TOML file; its [feedback] table sets StoreConfig "
                        "(feedback/store/config.py documents every key)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _open(args: argparse.Namespace):
    from feedback.store.store import FeedbackStore
    return FeedbackStore.open(args.store, args.config)


def _guarded(handler):
    """Prints a store error as one line and exits 2 (mmrec's CLI handles the rest)."""
    def run(args: argparse.Namespace) -> int:
        from feedback.store.schema import StoreError
        try:
            return handler(args)
        except StoreError as error:
            print(f"mmrec: {error}", file=sys.stderr)
            return 2
    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


@_guarded
def cmd_ingest(args: argparse.Namespace) -> int:
    """Reads events in batches; each batch is acknowledged before the next is read."""
    from mmrec.progress import progress

    from feedback.event_sources import count_records, input_format, read_events
    input_format(args.file, args.format)  # refuse before opening the store
    with _open(args) as store:
        records = read_events(args.file, args.format, encoding=args.encoding)
        total = count_records(args.file, args.format)
        started = time.perf_counter()
        report = store.ingest_batches(
            progress(records, desc=f"ingesting {args.file}", total=total),
            batch_size=args.batch_size)
        seconds = time.perf_counter() - started
    rate = report.received / seconds if seconds > 0 else 0.0
    if args.json:
        print(json.dumps({**dataclasses.asdict(report), "reasons": dict(report.reasons),
                          "seconds": round(seconds, 3), "events_per_second": round(rate),
                          "store": store.where}, indent=2))
    else:
        name = "standard input" if args.file == "-" else args.file
        print(f"{name} -> {store.where}: {report.summary()} in {report.batches:,} "
              f"batch(es), {seconds:.1f} s ({rate:,.0f} events/s)")
        if report.rejected:
            print("see them with: mmrec feedback quarantine" +
                  (f" --store {args.store}" if args.store else ""))
    return 0


@_guarded
def cmd_stats(args: argparse.Namespace) -> int:
    with _open(args) as store:
        stats = store.stats()
    if args.json:
        print(json.dumps({**dataclasses.asdict(stats), "store": store.where}, indent=2))
        return 0
    lines = [f"store {store.where} ({stats.backend}, schema version {stats.schema_version})",
             f"events      {stats.events:,} from {stats.users:,} users on {stats.items:,} items"]
    if stats.events:
        kinds = ", ".join(f"{count:,} {kind}"
                          for kind, count in sorted(stats.events_by_kind.items()))
        lines.append(f"            {kinds}; {_when(stats.first_timestamp)} to "
                     f"{_when(stats.last_timestamp)}")
    lines.append(f"pending     {stats.pending:,} events on {stats.pending_items:,} items "
                 "the catalogue does not know yet")
    reasons = ", ".join(f"{count:,} {reason}" for reason, count in
                        sorted(stats.quarantined_by_reason.items()))
    lines.append(f"quarantine  {stats.quarantined:,} records"
                 + (f" ({reasons})" if reasons else ""))
    lines.append("catalogue   " + ("off (every item accepted)" if stats.catalogue_items is None
                                   else f"{stats.catalogue_items:,} items"))
    for name, consumer in sorted(stats.consumers.items()):
        lines.append(f"consumer    {name}: {consumer['unread']:,} unread")
    print("\n".join(lines))
    return 0


def _when(seconds: float | None) -> str:
    import datetime as dt
    if seconds is None:
        return "-"
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@_guarded
def cmd_quarantine(args: argparse.Namespace) -> int:
    with _open(args) as store:
        records = store.quarantined(args.reason, None if args.export or args.limit == 0
                                    else args.limit)
    if args.export:
        with open(args.export, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(dataclasses.asdict(record), ensure_ascii=False) + "\n")
        print(f"wrote {len(records):,} quarantined record(s) to {args.export}")
        return 0
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in records], indent=2, ensure_ascii=False))
        return 0
    if not records:
        print("quarantine is empty" + (f" for reason {args.reason!r}" if args.reason else ""))
    for record in records:
        times = f" ({record.times}x)" if record.times > 1 else ""
        print(f"#{record.id} {record.reason}{times}, {record.source or 'api'}: {record.detail}\n"
              f"    {record.payload[:200]}")
    return 0


@_guarded
def cmd_forget_user(args: argparse.Namespace) -> int:
    with _open(args) as store:
        report = store.forget_user(args.user_id)
    if args.json:
        print(json.dumps(dataclasses.asdict(report)))
    else:
        print(f"forgot user {args.user_id!r}: deleted {report.events:,} events, "
              f"{report.pending:,} pending events, {report.quarantined:,} quarantined records")
    return 0


@_guarded
def cmd_prune(args: argparse.Namespace) -> int:
    from mmrec.data.timestamps import timestamp_seconds
    try:
        before = timestamp_seconds(args.before)
    except DataError as error:
        raise ValueError(f"--before {args.before!r}: {error}") from None
    with _open(args) as store:
        report = store.prune(before)
    if args.json:
        print(json.dumps(dataclasses.asdict(report)))
    else:
        print(f"pruned before {_when(before)}: {report.events:,} events, {report.pending:,} "
              f"pending events, {report.quarantined:,} quarantined records; kept "
              f"{report.kept_unread:,} older events some consumer has not read")
    return 0


@_guarded
def cmd_catalogue(args: argparse.Namespace) -> int:
    if args.off and args.add:
        raise ValueError("--add adds items to the store's catalogue; with --off there is "
                         "no catalogue to add to")
    if args.off:
        item_ids = None
    elif args.model_dir:
        from mmrec.export.layout import VersionFiles, latest_version
        folder = (Path(args.model_dir) / str(args.version) if args.version is not None
                  else latest_version(args.model_dir))
        if not (folder / "mmrec" / "items.json").is_file():
            raise FileNotFoundError(f"{folder} holds no mmrec/items.json; is it a published "
                                    "mmrec version?")
        item_ids = [str(i) for i in VersionFiles(folder).items()["item_ids"]]
    else:
        from mmrec.data.tables import read_table, require_columns
        columns, rows = read_table(args.items)
        require_columns(columns, ["item_id"], args.items)
        item_ids = []
        for number, row in rows:
            value = row["item_id"]
            if value is None or not str(value).strip():
                raise DataError("an item without an id: every row needs its item_id",
                                file=args.items, row=number, field="item_id")
            item_ids.append(str(value))
    with _open(args) as store:
        if item_ids is None:
            released = store.set_catalogue(None)
        elif args.add:
            released = store.add_items(item_ids)
        else:
            released = store.set_catalogue(item_ids)
    if args.json:
        print(json.dumps({"catalogue": None if item_ids is None else len(set(item_ids)),
                          "added": bool(args.add), "released": released}))
        return 0
    what = "catalogue off" if item_ids is None else (
        f"{'added' if args.add else 'catalogue set to'} {len(set(item_ids)):,} items")
    print(f"{what}; released {released:,} pending events")
    return 0


@_guarded
def cmd_refresh(args: argparse.Namespace) -> int:
    from feedback.refresh import refresh_version
    with _open(args) as store:
        target, report = refresh_version(store, args.model_dir)
    if args.json:
        print(json.dumps({"version": int(target.name), **report}))
        return 0
    print(f"refreshed as version {target.name}: {report['clicks']:,} clicks merged, "
          f"{report['erased_users']:,} erased users removed, {report['skipped_unknown_items']:,} "
          "clicks on items the version does not have skipped")
    return 0


@_guarded
def cmd_bench_live_history(args: argparse.Namespace) -> int:
    import tempfile

    from feedback.bench.live_history import format_live_history_table, run_live_history_benchmark
    with tempfile.TemporaryDirectory(prefix="mmrec-live-history-") as folder:
        urls = args.store or [f"sqlite:///{folder}/feedback.db"]
        report = run_live_history_benchmark(args.model_dir, urls, calls=args.calls)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    print(format_live_history_table(report))
    return 0


@_guarded
def cmd_bench_feedback(args: argparse.Namespace) -> int:
    from feedback.bench.loop import (
        BenchSettings,
        format_feedback_tables,
        plot_feedback,
        run_feedback_benchmark,
        write_report,
    )
    from mmrec.cli import parse_seeds
    assignments = list(args.set)
    if args.scenarios:
        names = ", ".join(f'"{s.strip()}"' for s in args.scenarios.split(",") if s.strip())
        assignments.append(f"feedback_bench.scenarios=[{names}]")
    settings = BenchSettings.from_toml(args.config, assignments)
    seeds = list(parse_seeds(args.seeds))
    report = run_feedback_benchmark(settings, seeds=seeds, workdir=args.workdir,
                                    progress=lambda line: print(line, flush=True))
    if args.json:
        write_report(report, args.json)
    if args.plot:
        plot_feedback(report, args.plot)
    print(format_feedback_tables(report))
    return 0


@_guarded
def cmd_bench_feedback_store(args: argparse.Namespace) -> int:
    from feedback.bench.feedback_store import format_report, run_store_benchmark
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    report = run_store_benchmark(events=args.events, measured_events=args.measured_events,
                                 cli_events=args.cli_events, batch_size=args.batch_size,
                                 backends=backends, postgres_url=args.postgres_url,
                                 calls=args.calls, folder=args.folder)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    print(format_report(report))
    return 0 if report["all_counts_checked"] else 1
