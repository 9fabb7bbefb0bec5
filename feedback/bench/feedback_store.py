"""``mmrec bench feedback-store``: how fast the click store takes and answers, and
that it loses nothing while doing so.

The recipe (issue 12): a store already holding ``events`` events (1,000,000),
then ``measured_events`` more in batches of 10,000 through the Python API,
with 1% duplicates of stored events and 1% bad records, timed; the counts are
checked afterwards (every new event stored once, every bad record in
quarantine, every duplicate refused), so a fast store that drops events
fails. Then ``recent_items`` latency at that size (random users, the
history length 20), and the CLI path: the same mix written to a JSONL file
and ingested by ``mmrec feedback ingest`` in a fresh process, timed from
process start. Targets on 2 cores: SQLite at least 50,000 events/s,
PostgreSQL (a local server) at least 20,000, ``recent_items`` p99 at most
2 ms on each.

Events carry no ``event_id`` (the store derives one from the content), like
most click logs; user ids are drawn from 100,000 users and item ids from
50,000 items, timestamps spread over 30 days before the measured hour.
PostgreSQL is a private server started for the run (unless ``postgres_url``
names one), with PostgreSQL's durable defaults (fsync and synchronous commit
on) except ``shared_buffers = 1GB`` (:data:`SERVER_SETTINGS`): the default
128 MB holds less than a third of a million-event store, and every
production server raises it (to a quarter of memory, commonly).

Example:

    report = run_store_benchmark(events=1_000_000, backends=("sqlite",))
    print(format_report(report))
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from feedback.store.postgres_server import LocalPostgres
from feedback.store.store import FeedbackStore

TARGETS = {"sqlite": 50_000, "postgresql": 20_000}
"""Events per second through the API that the issue asks for."""
P99_TARGET_MS = 2.0
SERVER_SETTINGS = {"shared_buffers": "1GB"}
"""The benchmark's PostgreSQL server: defaults, but a cache that holds the store."""
HISTORY_LENGTH = 20
BACKENDS = ("sqlite", "postgresql")


class EventMaker:
    """Click records in memory: new events, duplicates of earlier ones, bad records.

    Args:
      users, items: how many distinct ids to draw from.
      seed: the random seed.
    """

    BAD_KINDS = ("missing item", "future timestamp", "malformed", "wrong type")

    def __init__(self, users: int = 100_000, items: int = 50_000, seed: int = 1) -> None:
        self.users, self.items = users, items
        self.random = random.Random(seed)
        self.kept: list[dict] = []  # a sample of made events, to duplicate later

    def events(self, count: int, start: float, end: float) -> list[dict]:
        """``count`` new events with timestamps rising from ``start`` to ``end``."""
        draw = self.random.randrange
        step = (end - start) / max(count, 1)
        made = [{"user_id": f"u{draw(self.users)}", "item_id": f"i{draw(self.items)}",
                 "timestamp": round(start + k * step, 3), "event": "click"}
                for k in range(count)]
        self.kept.extend(self.random.sample(made, min(len(made), max(200, count // 20))))
        return made

    def bad(self, count: int, now: float) -> list:
        records = []
        for k in range(count):
            kind = self.BAD_KINDS[k % len(self.BAD_KINDS)]
            user = f"u{self.random.randrange(self.users)}"
            if kind == "missing item":
                records.append({"user_id": user, "timestamp": now - 10})
            elif kind == "future timestamp":
                records.append({"user_id": user, "item_id": "i1", "timestamp": now + 86400 + k})
            elif kind == "malformed":
                records.append('{"user_id": "%s", "item_id": ' % user + str(k))
            else:
                records.append({"user_id": user, "item_id": ["i1"], "timestamp": now - 10 - k})
        return records

    def mix(self, count: int, start: float, end: float, now: float,
            duplicate_share: float, bad_share: float) -> tuple[list, dict]:
        """``count`` records: new events, duplicates of earlier events and bad ones,
        shuffled; returns them and how many of each."""
        duplicates = int(round(count * duplicate_share))
        bad = int(round(count * bad_share))
        fresh = count - duplicates - bad
        if duplicates > len(self.kept):
            raise ValueError(f"{duplicates} duplicates asked for, but only {len(self.kept)} "
                             "events were made before to copy: make more events first")
        copies = [dict(e) for e in self.random.sample(self.kept, duplicates)]
        records = self.events(fresh, start, end) + copies + self.bad(bad, now)
        self.random.shuffle(records)
        return records, {"new": fresh, "duplicates": duplicates, "bad": bad}


def _machine() -> dict:
    return {"cpu_cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "load_average_1min": round(os.getloadavg()[0], 2)}


def _ingest_timed(store: FeedbackStore, records: list, batch_size: int):
    seconds, total = 0.0, None
    for start in range(0, len(records), batch_size):
        batch = records[start:start + batch_size]
        began = time.perf_counter()
        report = store.ingest(batch)
        seconds += time.perf_counter() - began
        total = report if total is None else total + report
    return total, seconds


def _latency(store: FeedbackStore, users: int, calls: int, seed: int) -> dict:
    draw = random.Random(seed).randrange
    for k in range(min(calls, 100)):  # warm the cache and the driver's prepared statements
        store.recent_items(f"u{draw(users)}", HISTORY_LENGTH)
    times, found = [], 0
    for _ in range(calls):
        user = f"u{draw(users)}"
        began = time.perf_counter()
        history = store.recent_items(user, HISTORY_LENGTH)
        times.append(time.perf_counter() - began)
        found += len(history)
    ms = np.asarray(times) * 1000
    return {"calls": calls, "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "max_ms": round(float(ms.max()), 3), "mean_items": round(found / max(calls, 1), 1)}


def _cli_ingest(url: str, path: Path, batch_size: int) -> tuple[dict, float]:
    environment = {**os.environ, "MMREC_PROGRESS": "0"}
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mmrec.cli", "feedback", "ingest", str(path),
                           "--store", url, "--batch-size", str(batch_size), "--json"],
                          capture_output=True, text=True, env=environment, check=False)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"mmrec feedback ingest failed ({done.returncode}): "
                           f"{done.stderr[-2000:]}")
    return json.loads(done.stdout), seconds


def run_backend(backend: str, url: str, *, events: int, measured_events: int,
                cli_events: int, batch_size: int, calls: int, folder: Path,
                duplicate_share: float = 0.01, bad_share: float = 0.01, seed: int = 1,
                users: int = 100_000, items: int = 50_000) -> dict:
    """The recipe on one empty store; returns its part of the report."""
    maker = EventMaker(users, items, seed)
    now = time.time()
    fill_start, fill_end = now - 30 * 86400, now - 3 * 3600
    result: dict = {"backend": backend, "target_events_per_second": TARGETS.get(backend)}
    with FeedbackStore(url) as store:
        seconds, filled = 0.0, 0
        for start in range(0, events, batch_size):
            count = min(batch_size, events - start)
            span = (fill_end - fill_start) / max(events, 1)
            batch = maker.events(count, fill_start + start * span,
                                 fill_start + (start + count) * span)
            began = time.perf_counter()
            filled += store.ingest(batch).accepted
            seconds += time.perf_counter() - began
        result["fill"] = {"events": events, "accepted": filled, "seconds": round(seconds, 2),
                          "events_per_second": round(events / seconds) if seconds else None}

        records, made = maker.mix(measured_events, now - 3 * 3600, now - 2 * 3600, now,
                                  duplicate_share, bad_share)
        report, seconds = _ingest_timed(store, records, batch_size)
        stored = store.count()
        quarantined = sum(r.times for r in store.quarantined())
        checks = {"accepted == new": report.accepted == made["new"],
                  "duplicates == duplicates sent": report.duplicates == made["duplicates"],
                  "rejected == bad sent": report.rejected == made["bad"],
                  "store count == fill + accepted": stored == filled + report.accepted,
                  "quarantine holds every rejection": quarantined == made["bad"]}
        result["api"] = {"records": measured_events, **made, "batches": report.batches,
                         "seconds": round(seconds, 2),
                         "events_per_second": round(measured_events / seconds),
                         "report": report.summary(), "store_count": stored, "checks": checks}
        result["recent_items"] = _latency(store, users, calls, seed)

        if cli_events:
            records, made_cli = maker.mix(cli_events, now - 2 * 3600, now - 3600, now,
                                          duplicate_share, bad_share)
            path = folder / f"feedback-bench-{backend}.jsonl"
            with open(path, "w", encoding="utf-8") as handle:
                for record in records:
                    handle.write((record if isinstance(record, str) else json.dumps(record))
                                 + "\n")
            cli, seconds = _cli_ingest(url, path, batch_size)
            path.unlink()
            after = store.count()
            cli_checks = {"accepted == new": cli["accepted"] == made_cli["new"],
                          "rejected == bad sent": cli["rejected"] == made_cli["bad"],
                          "store count grew by accepted": after == stored + cli["accepted"]}
            result["cli"] = {"records": cli_events, **made_cli,
                             "seconds_with_process_start": round(seconds, 2),
                             "events_per_second": round(cli_events / seconds),
                             "events_per_second_ingesting": cli["events_per_second"],
                             "checks": cli_checks}
        result["store_events_at_end"] = store.count()
    checks = dict(result["api"]["checks"], **result.get("cli", {}).get("checks", {}))
    result["counts_checked"] = all(checks.values())
    target = TARGETS.get(backend)
    result["throughput_target_met"] = (target is not None and
                                       result["api"]["events_per_second"] >= target)
    result["latency_target_met"] = result["recent_items"]["p99_ms"] <= P99_TARGET_MS
    return result


def run_store_benchmark(*, events: int = 1_000_000, measured_events: int = 200_000,
                        cli_events: int = 200_000, batch_size: int = 10_000,
                        backends: tuple[str, ...] = BACKENDS, postgres_url: str | None = None,
                        calls: int = 2000, folder: str | os.PathLike | None = None,
                        seed: int = 1) -> dict:
    """Runs the recipe on each backend; returns the JSON report.

    Args:
      events: events in the store before the timed part.
      measured_events: records ingested while timed (1% duplicates, 1% bad).
      cli_events: records in the JSONL file for the CLI path (0 skips it).
      batch_size: records per ``ingest`` call (one transaction).
      backends: "sqlite" and/or "postgresql".
      postgres_url: an empty PostgreSQL database to use instead of starting
        a local server.
      calls: ``recent_items`` calls timed.
      folder: where the SQLite file and the JSONL file go (default: temporary).

    Raises:
      ValueError: an unknown backend or a size below one batch's worth.
    """
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise ValueError(f"--backends must be some of {list(BACKENDS)}, got {list(backends)}")
    if min(events, measured_events, batch_size) < 1 or cli_events < 0 or calls < 1:
        raise ValueError("--events, --measured-events, --batch-size and --calls must be at "
                         "least 1 (--cli-events at least 0)")
    report = {"benchmark": "feedback-store",
              "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": _machine(), "events_before": events,
              "measured_events": measured_events, "cli_events": cli_events,
              "batch_size": batch_size, "targets": {"events_per_second": TARGETS,
                                                    "recent_items_p99_ms": P99_TARGET_MS},
              "results": {}}
    with tempfile.TemporaryDirectory(prefix="mmrec-bench-feedback-") as scratch:
        where = Path(folder) if folder else Path(scratch)
        where.mkdir(parents=True, exist_ok=True)
        for backend in backends:
            options = dict(events=events, measured_events=measured_events,
                           cli_events=cli_events, batch_size=batch_size, calls=calls,
                           folder=where, seed=seed)
            if backend == "sqlite":
                database = where / "feedback-bench.db"
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{database}{suffix}").unlink(missing_ok=True)
                report["results"][backend] = run_backend(backend, f"sqlite:///{database}",
                                                         **options)
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{database}{suffix}").unlink(missing_ok=True)
            elif postgres_url:
                report["results"][backend] = run_backend(backend, postgres_url, **options)
            else:
                with LocalPostgres(SERVER_SETTINGS) as server:
                    report["results"][backend] = run_backend(
                        backend, server.create_database("feedback_bench"), **options)
    report["machine"]["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    report["all_counts_checked"] = all(r["counts_checked"] for r in report["results"].values())
    return report


def format_report(report: dict) -> str:
    """The markdown table for docs/BENCHMARKS.md."""
    machine = report["machine"]
    lines = [f"feedback store, {report['events_before']:,} events before, batches of "
             f"{report['batch_size']:,}, {report['date']}, {machine['cpu_cores']} cores "
             f"(load {machine['load_average_1min']} -> {machine['load_average_1min_at_end']})",
             "",
             "| database | API events/s (target) | CLI events/s (from process start) | "
             "recent_items p50 / p99 ms | counts checked |",
             "|---|---|---|---|---|"]
    for backend, result in report["results"].items():
        api = result["api"]
        cli = result.get("cli")
        cli_text = (f"{cli['events_per_second']:,} ({cli['events_per_second_ingesting']:,} "
                    "ingesting)") if cli else "-"
        latency = result["recent_items"]
        met = "met" if result["throughput_target_met"] else "not met"
        lines.append(
            f"| {backend} | {api['events_per_second']:,} "
            f"({result['target_events_per_second']:,}, {met}) "
            f"| {cli_text} | {latency['p50_ms']} / {latency['p99_ms']}"
            f"{' (met)' if result['latency_target_met'] else ' (not met)'} "
            f"| {'yes' if result['counts_checked'] else 'NO: ' + json.dumps(api['checks'])} |")
    return "\n".join(lines)
