"""``mmrec feedback finetune | skip | rollback | history``: the loop from the command line.

    mmrec feedback finetune --model-dir saved_models/mmrec [--store URL] [--config F.toml]
                            [--train attention|attention+ids|all] [--every 15m]
    mmrec feedback skip     --model-dir saved_models/mmrec --to TXID:SEQ
    mmrec feedback rollback --model-dir saved_models/mmrec [--to N] [--keep K]
    mmrec feedback history  --model-dir saved_models/mmrec [--plot runs.png] [--json]

``finetune`` exits 0 when it published, 3 when the gate rejected the
candidate, 4 when there was nothing new, 1 on an error, so a scheduler can
act on it (README: a cron line and a Kubernetes CronJob). With ``--every`` it
runs in a loop (the exit code of each run is logged) until stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time

logger = logging.getLogger("feedback.finetune")


def add_finetune_commands(sub: argparse._SubParsersAction, common) -> None:
    """Adds the loop's commands to ``mmrec feedback`` (``common`` adds --store/--config)."""
    finetune = sub.add_parser("finetune", help="fine-tune the live version on new clicks; "
                              "publish it if it passes the gate (exit 0 published, 3 "
                              "rejected, 4 nothing new, 1 error)")
    finetune.add_argument("--model-dir", default="saved_models/mmrec")
    finetune.add_argument("--train", choices=["attention", "attention+ids", "all"],
                          help="which weights move (default: the config's, attention)")
    finetune.add_argument("--replay-share", type=float,
                          help="replayed original clicks per new click (default 0.25)")
    finetune.add_argument("--every", help="run in a loop, e.g. 15m, 1h, 30s")
    finetune.add_argument("--consumer", help="the store consumer to read as (default "
                          "finetune:<model folder name>)")
    common(finetune)
    finetune.set_defaults(handler=cmd_finetune, quiet=False)

    skip = sub.add_parser("skip", help="move the job's watermark past a window judged bad")
    skip.add_argument("--model-dir", default="saved_models/mmrec")
    skip.add_argument("--to", required=True, metavar="TXID:SEQ",
                      help="the watermark to move to (mmrec feedback stats lists consumers)")
    skip.add_argument("--consumer")
    common(skip)
    skip.set_defaults(handler=cmd_skip, quiet=True)

    rollback = sub.add_parser("rollback", help="republish an earlier version as the next one; "
                              "prune old versions")
    rollback.add_argument("--model-dir", default="saved_models/mmrec")
    rollback.add_argument("--to", type=int, help="the version to go back to (default: the one "
                          "before the live one)")
    rollback.add_argument("--keep", type=int, help="then delete all but the newest K versions "
                          "(never the live one)")
    rollback.add_argument("--no-rollback", action="store_true",
                          help="only prune (with --keep)")
    rollback.set_defaults(handler=cmd_rollback, quiet=True)

    history = sub.add_parser("history", help="the fine-tuning runs of a model folder")
    history.add_argument("--model-dir", default="saved_models/mmrec")
    history.add_argument("--plot", help="write a PNG of the gated NDCG@10 over the runs")
    history.add_argument("--json", action="store_true", help="print JSON")
    history.set_defaults(handler=cmd_history, quiet=True)


def parse_every(text: str) -> float:
    """``15m`` -> 900.0 seconds (s, m, h; a bare number is seconds)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text or "")
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"--every {text!r}: expected a duration such as 30s, 15m or 1h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def _config(args: argparse.Namespace):
    from mmrec.config import read_toml

    from feedback.finetune.config import FinetuneConfig
    table = dict(read_toml(args.config).get("finetune", {})) if args.config else {}
    if args.train is not None:
        table["train"] = args.train
    if args.replay_share is not None:
        table["replay_share"] = args.replay_share
    try:
        return FinetuneConfig.from_dict(table)
    except ValueError as error:
        raise ValueError(f"{args.config}: {error}" if args.config else str(error)) from None


def cmd_finetune(args: argparse.Namespace) -> int:
    from feedback.finetune.job import EXIT_ERROR, JobBusyError, run_finetune
    from feedback.store import FeedbackStore
    config = _config(args)
    every = parse_every(args.every) if args.every else None
    while True:
        try:
            with FeedbackStore.open(args.store, args.config) as store:
                result = run_finetune(store, args.model_dir, config, consumer=args.consumer,
                                      verbose=0 if every is not None or args.json else 2)
            code = result.exit_code
            print(json.dumps(result.report, default=float) if args.json
                  else result.summary(), flush=True)
        except JobBusyError as error:
            print(f"mmrec: {error}", file=sys.stderr)
            code = EXIT_ERROR
        except Exception as error:  # noqa: BLE001  (a scheduler needs exit 1, and the reason)
            if every is None:
                raise
            logger.exception("fine-tuning run failed: %s", error)
            code = EXIT_ERROR
        if every is None:
            return code
        logger.warning("fine-tuning run ended with exit code %d; next in %s", code, args.every)
        time.sleep(every)


def cmd_skip(args: argparse.Namespace) -> int:
    from feedback.finetune.job import default_consumer
    from feedback.store import FeedbackStore, Watermark
    match = re.fullmatch(r"(\d+):(\d+)", args.to.strip())
    if not match:
        raise ValueError(f"--to {args.to!r}: expected TXID:SEQ, e.g. 1234:9 "
                         "(mmrec feedback stats lists the consumers' watermarks)")
    consumer = args.consumer or default_consumer(args.model_dir)
    with FeedbackStore.open(args.store, args.config) as store:
        store.commit(consumer, Watermark(int(match.group(1)), int(match.group(2))))
    if args.json:
        print(json.dumps({"consumer": consumer, "watermark": [int(match.group(1)),
                                                              int(match.group(2))]}))
        return 0
    print(f"{consumer} now reads after {args.to}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from mmrec.export.rollback import prune_versions, rollback
    if not args.no_rollback:
        target = rollback(args.model_dir, to=args.to)
        print(f"rolled back: version {target.name} serves the content of "
              f"{'the previous version' if args.to is None else f'version {args.to}'}")
    if args.keep is not None:
        removed = prune_versions(args.model_dir, args.keep)
        print(f"pruned versions {removed}" if removed else "nothing to prune")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from feedback.finetune.history import format_history, plot_history, read_history
    records = read_history(args.model_dir)
    print(json.dumps(records, indent=2) if args.json else format_history(records))
    if args.plot:
        plot_history(records, args.plot)
        print(f"plot: {args.plot}", file=sys.stderr)
    return 0
