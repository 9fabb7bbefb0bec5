"""The click store keeps its promises on SQLite and on a real PostgreSQL server.

Every test that takes ``store_url`` runs twice: on a SQLite file and on a
database of the session's private PostgreSQL server (tests/feedback_fixtures.py).
Concurrency is real: writers are separate processes, a killed writer is
killed with SIGKILL, and counts are checked against what was sent.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from mmrec.data.timestamps import timestamp_seconds

from feedback.event_sources import read_events
from feedback.store import (REASONS, FeedbackStore, History, SchemaVersionError, StoreConfig,
                            StoreError, Watermark)
from feedback.store import schema

NOW = time.time()
T0 = 1_704_103_200  # 2024-01-01T10:00:00Z


def click(user: str, item: str, offset: float = 0.0, **extra) -> dict:
    return {"user_id": user, "item_id": item, "timestamp": T0 + offset, **extra}


def drain(store: FeedbackStore, consumer: str, limit: int = 1000) -> list:
    """Every event the consumer has not read, committing as it goes."""
    seen = []
    while True:
        batch = store.events_since(consumer, limit=limit)
        if not batch.events:
            return seen
        seen.extend(batch.events)
        store.commit(consumer, batch.watermark)


def test_a_batch_is_stored_and_reported_and_history_reads_newest_first(store_url):
    with FeedbackStore(store_url) as store:
        report = store.ingest([click("u1", "i1", 0), click("u1", "i2", 60, event="Add-to-cart"),
                               click("u1", "i3", 30, event="impression"), click("u2", 7, 10),
                               click("u1", "i1", 0)])
        assert (report.received, report.accepted, report.duplicates, report.rejected,
                report.pending) == (5, 4, 1, 0, 0)
        history = store.recent_items("u1", 10)
        assert isinstance(history, History) and isinstance(history, list)
        assert history == ["i2", "i1"]  # the impression is not history
        assert history.timestamps == [T0 + 60, T0]
        assert store.recent_items("u1", 1) == ["i2"]
        assert store.recent_items("u1", 10, since=T0) == ["i2"]
        assert store.recent_items("u2", 10) == ["7"]  # integer ids become text
        assert store.recent_items("nobody", 10) == []
        assert store.seen_items("u1") == {"i1", "i2"}
        assert store.count() == 4


def test_reingesting_the_same_file_accepts_nothing_new(store_url, tmp_path):
    lines = [json.dumps(click(f"u{k % 7}", f"i{k}", k)) for k in range(50)]
    lines += ['{"user_id": "u1", "item_id": ', json.dumps({"user_id": "u1", "timestamp": T0})]
    # the same click in another spelling of its time is the same event
    lines.append(json.dumps({"user_id": "u0", "item_id": "i0",
                             "timestamp": "2024-01-01T10:00:00Z"}))
    path = tmp_path / "clicks.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with FeedbackStore(store_url) as store:
        first = store.ingest_batches(read_events(path), batch_size=16)
        assert (first.accepted, first.duplicates, first.rejected, first.batches) == (50, 1, 2, 4)
        second = store.ingest_batches(read_events(path), batch_size=16)
        assert (second.received, second.accepted, second.duplicates, second.rejected) == (
            53, 0, 51, 2)
        assert store.count() == 50
        quarantined = store.quarantined()
        assert [(q.reason, q.times) for q in quarantined] == [("malformed", 2),
                                                             ("missing field", 2)]
        assert quarantined[0].source == f"{path} line 51"


BAD_RECORDS = [
    ('{"user_id": "u1", "item_id": "i1", "timestamp": ', "malformed"),
    ('["u1", "i1", 1704103200]', "malformed"),
    ({"item_id": "i1", "timestamp": T0}, "missing field"),
    ({"user_id": "u1", "timestamp": T0}, "missing field"),
    ({"user_id": "u1", "item_id": "i1"}, "missing field"),
    ({"user_id": "u1", "item_id": "i1", "timestamp": "  "}, "missing field"),
    ({"user_id": 1.5, "item_id": "i1", "timestamp": T0}, "wrong type"),
    ({"user_id": "u1", "item_id": True, "timestamp": T0}, "wrong type"),
    ({"user_id": "u1", "item_id": "i1", "timestamp": "yesterday"}, "wrong type"),
    ({"user_id": "u1", "item_id": "i1", "timestamp": T0, "context": [1, 2]}, "wrong type"),
    ({"user_id": "u1", "item_id": "i1", "timestamp": T0, "context": "{not json"}, "wrong type"),
    ({"user_id": "u1", "item_id": "i1", "timestamp": T0, "event": "like"}, "invalid value"),
    ({"user_id": "u" * 300, "item_id": "i1", "timestamp": T0}, "invalid value"),
    ({"user_id": "u1", "item_id": "i1", "timestamp": -5}, "invalid value"),
    ('{"user_id": "u\\udc80", "item_id": "i1", "timestamp": 1704103200}', "invalid value"),
    ({"user_id": "u1", "item_id": "i1", "timestamp": T0, "context": {"k": "\udcff"}},
     "invalid value"),
    ({"user_id": "u1", "item_id": "i1", "timestamp": NOW + 7200}, "future timestamp"),
    ({"user_id": "u1", "item_id": "i1", "timestamp": (NOW + 7200) * 1000}, "future timestamp"),
    ({"user_id": "u1", "item_id": "i1", "timestamp": T0, "context": {"blob": "x" * 5000}},
     "oversized context"),
    ({"user_id": "u1", "item_id": "i1", "timestamp": T0, "notes": "y" * 5000},
     "oversized context"),
    ({"user_id": "u1", "item_id": "i1", "timestamp": T0, "event": ["click"]}, "wrong type"),
    ({"user_id": "u1", "item_id": "i1", "timestamp": T0, "event": {"kind": "click"}},
     "wrong type"),
    ({"user_id": "u1", "item_id": "i1", "timestamp": 10 ** 400}, "invalid value"),
    ({"user_id": 10 ** 5000, "item_id": "i1", "timestamp": T0}, "invalid value"),
    ({"event_id": "e1", "user_id": "u1", "item_id": "OTHER", "timestamp": T0},
     "conflicting duplicate"),
]


def test_every_rejected_record_is_in_quarantine_with_its_reason(store_url):
    with FeedbackStore(store_url) as store:
        store.ingest([{"event_id": "e1", "user_id": "u1", "item_id": "i1", "timestamp": T0}])
        report = store.ingest([record for record, _ in BAD_RECORDS],
                              sources=[f"test {k}" for k in range(len(BAD_RECORDS))])
        assert report.rejected == len(BAD_RECORDS) and report.accepted == 0
        quarantined = {q.source: q for q in store.quarantined()}
        for k, (record, reason) in enumerate(BAD_RECORDS):
            kept = quarantined.get(f"test {k}") if reason != "conflicting duplicate" else next(
                q for q in quarantined.values() if q.reason == reason)
            assert kept is not None and kept.reason == reason, (record, kept)
            assert kept.detail  # a sentence saying what is wrong
            if isinstance(record, str):
                assert kept.payload == record
            if isinstance(record, dict) and record.get("user_id") == 10 ** 5000:
                assert f"{10 ** 5000:#x}" in kept.payload  # every digit kept, in hexadecimal
        assert set(report.reasons) == {reason for _, reason in BAD_RECORDS}
        assert set(report.reasons) <= set(REASONS)
        assert store.count() == 1


def test_unknown_items_wait_as_pending_until_the_catalogue_adds_them(store_url):
    with FeedbackStore(store_url) as store:
        store.ingest([click("u1", "old", 0)])
        assert drain(store, "trainer") and store.set_catalogue(["old", "i1"]) == 0
        report = store.ingest([click("u1", "i1", 10), click("u1", "new", 20),
                               click("u2", "new", 30)])
        assert (report.accepted, report.pending) == (1, 2)
        assert store.recent_items("u1", 5) == ["i1", "old"]  # pending is not history yet
        again = store.ingest([click("u1", "new", 20)])
        assert (again.duplicates, again.pending) == (1, 0)
        assert [e.item_id for e in drain(store, "trainer")] == ["i1"]
        assert store.stats().pending == 2
        assert store.add_items(["new"]) == 2
        assert store.recent_items("u1", 5) == ["new", "i1", "old"]
        released = drain(store, "trainer")  # the consumer had read past them: it gets them now
        assert sorted(e.user_id for e in released) == ["u1", "u2"]
        assert store.stats().pending == 0 and store.ingest([click("u2", "new", 30)]).duplicates == 1
        assert store.set_catalogue(None) == 0
        assert store.ingest([click("u3", "anything", 1)]).accepted == 1


def test_forget_user_removes_every_trace_of_the_user(store_url):
    with FeedbackStore(store_url) as store:
        store.set_catalogue(["i1"])
        store.ingest([click("u1", "i1", 0), click("u1", "unknown", 1), click("u2", "i1", 2),
                      {"user_id": "u1", "item_id": "i1", "timestamp": "soon"}])
        report = store.forget_user("u1")
        assert (report.events, report.pending, report.quarantined) == (1, 1, 1)
        assert store.recent_items("u1", 10) == [] and store.seen_items("u1") == set()
        assert [e.user_id for e in drain(store, "c")] == ["u2"]
        assert store.stats().pending == 0 and store.quarantined() == []
        assert store.forget_user("u1").events == 0


def test_prune_keeps_what_consumers_have_not_read(store_url):
    with FeedbackStore(store_url) as store:
        for k in range(10):  # one batch each: the log's order is then the clicks' order
            store.ingest([click("u1", f"i{k}", k)])
        first = store.events_since("slow", limit=4)
        store.commit("slow", first.watermark)
        assert len(drain(store, "fast")) == 10
        report = store.prune(before=T0 + 8)  # events 0..7 are old; "slow" read 0..3
        assert (report.events, report.kept_unread) == (4, 4)
        assert [e.item_id for e in drain(store, "slow")] == [f"i{k}" for k in range(4, 10)]
        assert store.prune(before=T0 + 8).events == 4
        assert store.count() == 2


def test_serial_numbers_are_never_reused_so_deletes_cannot_hide_new_events(store_url):
    with FeedbackStore(store_url) as store:
        store.ingest([click("u1", "i1", 0), click("u2", "i2", 1)])
        assert len(drain(store, "c")) == 2
        store.forget_user("u2")  # deletes the newest row
        store.ingest([click("u3", "i3", 2)])
        assert [e.user_id for e in drain(store, "c")] == ["u3"]


def test_a_store_written_by_a_newer_schema_version_is_refused(store_url):
    FeedbackStore(store_url).close()
    engine = sa.create_engine(store_url)
    with engine.begin() as connection:
        connection.execute(sa.update(schema.meta).where(schema.meta.c.name == "schema_version")
                           .values(value=str(schema.SCHEMA_VERSION + 1)))
    engine.dispose()
    with pytest.raises(SchemaVersionError, match=rf"schema version {schema.SCHEMA_VERSION + 1}"
                       r".*newer than this mmrec reads.*upgrade mmrec"):
        FeedbackStore(store_url)


def test_a_version_1_store_gains_the_tables_of_version_2_and_keeps_its_events(store_url):
    with FeedbackStore(store_url) as store:
        store.ingest([click("u1", "i1", 0)])
        identity = store.store_id
    engine = sa.create_engine(store_url)
    with engine.begin() as connection:  # what version 1 wrote: no forgotten-users table
        connection.execute(sa.text("DROP TABLE feedback_forgotten"))
        connection.execute(sa.update(schema.meta).where(schema.meta.c.name == "schema_version")
                           .values(value="1"))
    engine.dispose()
    with FeedbackStore(store_url) as store:
        assert store.count() == 1 and store.store_id == identity
        store.forget_user("u1")
        assert store.forgotten_users() == ["u1"] and store.count() == 0


def test_each_store_has_its_own_id(store_url, tmp_path):
    with FeedbackStore(store_url) as store, \
            FeedbackStore(f"sqlite:///{tmp_path / 'other.db'}") as other:
        assert len(store.store_id) == 32 and store.store_id != other.store_id


def test_a_database_with_foreign_feedback_tables_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'other.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE feedback_events (id INTEGER)")
    engine.dispose()
    with pytest.raises(StoreError, match="not written by mmrec"):
        FeedbackStore(url)


@pytest.mark.parametrize("url, message", [
    ("mysql://u@h/db", "runs on SQLite or PostgreSQL"),
    ("sqlite://", "in-memory SQLite database is not a store"),
    ("sqlite:////no/such/folder/f.db", "folder /no/such/folder does not exist"),
    ("postgresql+psycopg2://u@h/db", "psycopg 3"),
    ("not a url", "not a database URL"),
])
def test_an_unusable_store_url_is_refused_with_the_fix(url, message):
    with pytest.raises(StoreError, match=message):
        FeedbackStore(url)


def test_an_unreachable_server_is_named_without_its_password():
    with pytest.raises(StoreError, match=r"cannot open feedback store "
                       r"postgresql://u:\*\*\*@127\.0\.0\.1:1/db.*server is running"):
        FeedbackStore("postgresql://u:secret@127.0.0.1:1/db")


# -- several processes ----------------------------------------------------------------------

WORKER = textwrap.dedent('''
    import dataclasses, json, os, sys, time
    from feedback.store import FeedbackStore
    url, spec = sys.argv[1], json.loads(open(sys.argv[2]).read())
    while spec.get("go") and not os.path.exists(spec["go"]):
        time.sleep(0.002)
    store = FeedbackStore(url)
    total = None
    batches = spec.get("batches")
    n = 0
    while batches is None or n < len(batches):
        batch = batches[n] if batches is not None else [
            {"event_id": f"b{n}-{k}", "user_id": f"u{k % 50}", "item_id": f"i{k}",
             "timestamp": 1704103200 + n} for k in range(spec["batch_size"])]
        report = store.ingest(batch)
        total = report if total is None else total + report
        print(json.dumps({"ack": n}), flush=True)  # acknowledged: ingest returned
        n += 1
        time.sleep(spec.get("pause", 0))
    print(json.dumps({"total": dataclasses.asdict(total)}), flush=True)
''')


def start_workers(tmp_path: Path, url: str, specs: list[dict]) -> list[subprocess.Popen]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    workers = []
    for k, spec in enumerate(specs):
        path = tmp_path / f"spec{k}.json"
        path.write_text(json.dumps(spec))
        workers.append(subprocess.Popen([sys.executable, str(script), url, str(path)],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True))
    return workers


def finish(workers: list[subprocess.Popen]) -> list[dict]:
    totals = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err[-3000:]
        totals.append(json.loads(out.strip().splitlines()[-1])["total"])
    return totals


def test_four_processes_ingesting_overlapping_batches_lose_and_duplicate_nothing(
        store_url, tmp_path):
    events = [click(f"u{k % 37}", f"i{k}", k) for k in range(2000)]
    bad = [{"user_id": f"u{k}", "timestamp": T0} for k in range(8)]
    go = tmp_path / "go"
    specs = []
    for p in range(4):  # process p sends events [500p, 500p + 1000): each event twice
        mine = [events[(500 * p + k) % 2000] for k in range(1000)] + bad[2 * p:2 * p + 2]
        mine = mine[::-1] if p % 2 else mine
        specs.append({"go": str(go), "batches": [mine[s:s + 125] for s in range(0, 1002, 125)]})
    FeedbackStore(store_url).close()  # the schema exists before they race
    workers = start_workers(tmp_path, store_url, specs)
    go.touch()
    totals = finish(workers)
    assert sum(t["received"] for t in totals) == 4 * 1002
    assert sum(t["accepted"] for t in totals) == 2000
    assert sum(t["duplicates"] for t in totals) == 2000
    assert sum(t["rejected"] for t in totals) == 8
    with FeedbackStore(store_url) as store:
        assert store.count() == 2000
        seen = drain(store, "audit")
        assert len(seen) == 2000
        assert {(e.user_id, e.item_id) for e in seen} == {(e["user_id"], e["item_id"])
                                                          for e in events}
        assert sum(q.times for q in store.quarantined()) == 8


def test_a_process_killed_mid_ingest_loses_no_acknowledged_batch_and_leaves_no_partial_batch(
        store_url, tmp_path):
    FeedbackStore(store_url).close()
    size = 2000
    worker, = start_workers(tmp_path, store_url, [{"batch_size": size}])
    acknowledged = -1
    while acknowledged < 3:
        line = worker.stdout.readline()
        assert line, worker.stderr.read()[-3000:]
        acknowledged = json.loads(line)["ack"]
    time.sleep(0.013 * (acknowledged % 5))  # somewhere inside the next batch
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    for line in worker.stdout.read().splitlines():  # acks printed before the kill
        acknowledged = max(acknowledged, json.loads(line)["ack"])
    with FeedbackStore(store_url) as store:
        batches: dict[int, int] = {}
        for event in drain(store, "audit", limit=5000):
            number = int(event.event_id[1:].split("-")[0])
            batches[number] = batches.get(number, 0) + 1
        assert all(batches.get(n) == size for n in range(acknowledged + 1)), batches
        assert set(batches.values()) == {size}, f"a partial batch is stored: {batches}"
        assert store.ingest([click("u1", "after", 1)]).accepted == 1  # no lock left behind
    worker.stdout.close()
    worker.stderr.close()


def test_a_consumer_racing_concurrent_writers_sees_every_event_exactly_once(
        store_url, tmp_path):
    FeedbackStore(store_url).close()
    specs = [{"batches": [[click(f"w{w}", f"i{b}-{k}", b) for k in range(150)]
                          for b in range(12)], "pause": 0.01} for w in range(3)]
    workers = start_workers(tmp_path, store_url, specs)
    seen = []
    with FeedbackStore(store_url) as store:
        while any(w.poll() is None for w in workers):
            batch = store.events_since("racer", limit=200)
            seen.extend(batch.events)
            store.commit("racer", batch.watermark)
        finish(workers)
        seen.extend(drain(store, "racer"))
    keys = [(e.user_id, e.item_id) for e in seen]
    assert len(keys) == len(set(keys)) == 3 * 12 * 150


def test_a_commit_that_lands_late_is_not_skipped_by_a_consumer(postgres_server):
    """PostgreSQL hands out serial numbers before commit: a slow transaction holds a
    smaller number than a fast one that commits first. The consumer must wait at
    the horizon, then get both, the slow one first."""
    url = postgres_server.create_database("late_commit")
    with FeedbackStore(url) as store:
        engine = sa.create_engine(url)
        with engine.connect() as slow:
            transaction = slow.begin()
            slow.execute(sa.insert(schema.events).values(
                key=b"s" * 16, event_id="slow", user_id="u1", item_id="i1", event="click",
                timestamp=T0, received_at=NOW))
            assert store.ingest([click("u2", "i2", 5)]).accepted == 1
            blocked = store.events_since("c")
            assert blocked.events == [] and blocked.watermark == Watermark()
            transaction.commit()
        engine.dispose()
        assert [e.event_id for e in store.events_since("c").events][0] == "slow"
        assert len(drain(store, "c")) == 2


# -- validation --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [T0, T0 * 1000, T0 * 1_000_000, str(T0),
                                   "2024-01-01T10:00:00Z", "2024-01-01T11:00:00+01:00"])
def test_timestamps_are_read_by_the_data_loaders_rule(tmp_path, value):
    with FeedbackStore(f"sqlite:///{tmp_path / 'f.db'}") as store:
        store.ingest([{"user_id": "u", "item_id": "i", "timestamp": value}])
        assert store.recent_items("u", 1).timestamps == [timestamp_seconds(value)] == [T0]


def test_unknown_fields_travel_in_the_context(tmp_path):
    with FeedbackStore(f"sqlite:///{tmp_path / 'f.db'}") as store:
        store.ingest([click("u", "i", 0, context={"page": "home"}, position=3, note="")])
        event, = store.events_since("c").events
        assert event.context == {"page": "home", "position": 3}


@pytest.mark.parametrize("values, message", [
    ({"batch_size": 0}, "feedback.batch_size must be at least 1, got 0"),
    ({"batch_size": 2.5}, "feedback.batch_size must be an integer, got 2.5"),
    ({"default_event": "like"}, "default_event 'like' is not one of feedback.event_kinds"),
    ({"history_events": ["view"]}, "history_events must be some of feedback.event_kinds"),
    ({"timestamp_unit": "days"}, "timestamp_unit must be one of"),
    ({"max_future_seconds": -1}, "max_future_seconds must be >= 0"),
    ({"colour": "red"}, r"unknown feedback config key\(s\) \['colour'\]"),
])
def test_store_config_refuses_impossible_values_naming_the_key(values, message):
    with pytest.raises(ValueError, match=message):
        StoreConfig.from_dict(values)


def test_the_store_module_does_not_import_tensorflow():
    code = ("import sys, feedback.store, feedback.event_sources, feedback.cli\n"
            "print('tensorflow' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


def test_reading_events_quarantines_bad_lines_instead_of_stopping(tmp_path):
    csv_file = tmp_path / "clicks.csv"
    csv_file.write_bytes(b"user_id,item_id,timestamp\nu1,i1,1704103200\nu2,i2\n"
                         b"u3,caf\xe9,1704103200\n\nu4,i4,1704103201\n")
    records = list(read_events(csv_file))
    assert [source for source, _ in records] == [f"{csv_file} row {n}" for n in (1, 2, 3, 5)]
    with FeedbackStore(f"sqlite:///{tmp_path / 'f.db'}") as store:
        report = store.ingest_batches(records)
        assert (report.accepted, report.rejected) == (2, 2)
        details = sorted(q.detail for q in store.quarantined())
        assert "expected 3 fields (user_id, item_id, timestamp), found 2" in details[1]
        assert "cp1252" in details[0]  # the undecodable byte, and the likely encoding
