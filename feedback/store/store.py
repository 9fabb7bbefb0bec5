"""FeedbackStore: a durable, idempotent, validated store of user events.

Production recommenders take events from a stream into durable storage before
any model reads them; this is that storage for mmrec. It promises what the
serving history (``Recommender(history_source=store)``) and the fine-tuning
job downstream rely on:

* **Nothing acknowledged is lost.** ``ingest(batch)`` is one transaction: when
  it returns, the whole batch is committed (SQLite with ``synchronous=FULL``
  in WAL mode, PostgreSQL with its defaults: both survive a killed process
  and a power cut); when it raises, or the process dies inside it, none of
  the batch is. "Acknowledged" means ``ingest`` returned.
* **Nothing is counted twice.** Events are unique by ``event_id`` (derived
  from the content when the producer sends none); re-sending a batch, a file,
  or an overlapping stream accepts nothing new, and several processes
  ingesting the same events at once store each exactly once.
* **Nothing is dropped silently.** Every refused record is kept in a
  quarantine table with its raw payload and reason; every event for an item
  the live catalogue does not know is kept as *pending* and becomes an
  ordinary event when the item is added. Each batch's report balances:
  ``received = accepted + duplicates + rejected + pending``.
* **Consumers see every event exactly once**, in order, even while several
  writers commit out of order (see :mod:`feedback.store.schema` for the
  ``(txid, seq)`` watermark), and ``prune`` never deletes what a consumer has
  not read.

One code path on SQLAlchemy Core serves **SQLite** (the embedded default,
``sqlite:///feedback.db``: WAL mode, writers take turns) and **PostgreSQL**
(``postgresql+psycopg://user@host/db``; ``postgresql://`` is read the same),
for deployments where several web servers write at once.

The live catalogue. Until a catalogue is set the store accepts every item id.
After ``set_catalogue(item_ids)`` (e.g. a published version's items: ``mmrec
feedback catalogue --model-dir saved_models/mmrec``) an event whose item is
not in it is kept as pending; ``add_items(item_ids)`` extends the catalogue
and releases the pending events of those items into the event log (with new
serial numbers, so a consumer that already read past them still gets them).
Ingest decides "unknown item -> pending" against the catalogue as committed
when its batch's transaction starts; on PostgreSQL a catalogue change waits
for batches in flight and batches wait for it, so no event is judged against
a catalogue that a concurrent change has already replaced.

Serving reads ``recent_items(user_id, limit)``: a list of item ids, newest
first (what :class:`mmrec.serve.recommender.RecentItems` asks for), that also
carries ``.timestamps``; ``since=`` keeps only events after a time (a
version's ``data_until``).

What the store does not do (its limits):

* It is not a stream processor: it holds no events in memory and buffers
  nothing; a producer batches (the CLI reads ``batch_size`` events at a time).
  Events smaller than a batch are fine but cost a commit each.
* Ids are case-sensitive text; ``" u1"`` and ``"u1"`` are two users.
* Repeated clicks on one item are kept as they came; ``recent_items`` does
  not fold them.
* On SQLite one writer works at a time; many writing servers belong on
  PostgreSQL. Deleting (``forget_user``, ``prune``) frees space for reuse
  but does not shrink the file (``VACUUM`` does, offline).
* ``forget_user`` finds a quarantined record by its user id only where the
  id could be read; a malformed line that never parsed is found by ``prune``
  (by date), not by user.
* On PostgreSQL a transaction left open anywhere on the server holds
  consumers back (they wait at the horizon; they never skip).
* It does not migrate data between SQLite and PostgreSQL.

Example:

    store = FeedbackStore("sqlite:///feedback.db")
    report = store.ingest([{"user_id": "u1", "item_id": "i9", "timestamp": 1704103200}])
    report.accepted                                    # 1
    store.recent_items("u1", 20)                       # ["i9"], .timestamps [1704103200.0]
    batch = store.events_since("finetune", limit=10_000)
    ...                                                # train on batch.events
    store.commit("finetune", batch.watermark)
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from feedback.store import schema
from feedback.store.config import StoreConfig, store_url
from feedback.store.events import (Event, EventValidator, Rejection, clean_text, context_json,
                                   event_key)
from feedback.store.schema import StoreError

_CHUNK = 5000  # ids per IN (...) list: below every database's parameter limit
_RETRIES = 5
_RETRYABLE = ("40P01", "40001")  # PostgreSQL: deadlock detected, serialization failure


@dataclasses.dataclass(frozen=True)
class IngestReport:
    """What became of a batch (or the sum over batches).

    ``received == accepted + duplicates + rejected + pending`` always holds
    (checked when a report is made).

    Attributes:
      received: records handed to ``ingest``.
      accepted: new events, now in the log.
      duplicates: events already stored (or twice in the batch), same content.
      rejected: records refused and kept in quarantine.
      pending: events kept until their item joins the catalogue.
      reasons: rejected records by reason.
      batches: transactions committed.
    """

    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    pending: int = 0
    reasons: Mapping[str, int] = dataclasses.field(default_factory=dict)
    batches: int = 0

    def __post_init__(self) -> None:
        parts = self.accepted + self.duplicates + self.rejected + self.pending
        if parts != self.received or sum(self.reasons.values()) != self.rejected:
            raise AssertionError(f"ingest report does not balance: received {self.received} "
                                 f"!= accepted {self.accepted} + duplicates {self.duplicates} "
                                 f"+ rejected {self.rejected} + pending {self.pending}, or "
                                 f"reasons {dict(self.reasons)} do not sum to rejected")

    def __add__(self, other: "IngestReport") -> "IngestReport":
        reasons = dict(self.reasons)
        for reason, count in other.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + count
        return IngestReport(self.received + other.received, self.accepted + other.accepted,
                            self.duplicates + other.duplicates, self.rejected + other.rejected,
                            self.pending + other.pending, reasons, self.batches + other.batches)

    def summary(self) -> str:
        """One line: ``received 10 = accepted 7 + duplicates 1 + rejected 1 (...) + pending 1``."""
        why = ", ".join(f"{count:,} {reason}" for reason, count in sorted(self.reasons.items()))
        return (f"received {self.received:,} = accepted {self.accepted:,} + duplicates "
                f"{self.duplicates:,} + rejected {self.rejected:,}"
                f"{f' ({why})' if why else ''} + pending {self.pending:,}")


@dataclasses.dataclass(frozen=True, order=True)
class Watermark:
    """How far a consumer has read: the ``(txid, seq)`` of the last event.

    Opaque to consumers: read it from :class:`EventBatch`, hand it to
    :meth:`FeedbackStore.commit`. ``Watermark(0, 0)`` is the start.
    """

    txid: int = 0
    seq: int = 0


@dataclasses.dataclass(frozen=True)
class EventBatch:
    """Events a consumer has not read yet, oldest first, and the watermark after them.

    Attributes:
      consumer: the consumer's name.
      events: up to ``limit`` events in commit order.
      watermark: commit this once the events are processed; equal to the
        consumer's stored watermark when ``events`` is empty.
    """

    consumer: str
    events: list[Event]
    watermark: Watermark


class History(list):
    """A user's recent item ids, newest first, with their times.

    It *is* a list of item ids, so it satisfies
    :class:`mmrec.serve.recommender.RecentItems` as is; ``timestamps[k]`` is
    when ``self[k]`` happened (epoch seconds).

    Example:

        history = store.recent_items("u1", 20)
        list(zip(history, history.timestamps))    # [("i9", 1704103200.0), ...]
    """

    def __init__(self, item_ids: Iterable[str] = (), timestamps: Iterable[float] = ()) -> None:
        super().__init__(item_ids)
        self.timestamps: list[float] = list(timestamps)


@dataclasses.dataclass(frozen=True)
class QuarantinedRecord:
    """A refused record: why, what came, from where, how often."""

    id: int
    reason: str
    detail: str
    payload: str
    user_id: str | None
    source: str | None
    first_received_at: float
    last_received_at: float
    times: int


@dataclasses.dataclass(frozen=True)
class ForgetReport:
    """What ``forget_user`` deleted."""

    events: int
    pending: int
    quarantined: int


@dataclasses.dataclass(frozen=True)
class PruneReport:
    """What ``prune`` deleted, and the events it kept because a consumer has
    not read them."""

    events: int
    kept_unread: int
    pending: int
    quarantined: int


@dataclasses.dataclass(frozen=True)
class StoreStats:
    """Counts for ``mmrec feedback stats``."""

    backend: str
    schema_version: int
    events: int
    users: int
    items: int
    events_by_kind: dict[str, int]
    first_timestamp: float | None
    last_timestamp: float | None
    pending: int
    pending_items: int
    quarantined: int
    quarantined_by_reason: dict[str, int]
    catalogue_items: int | None
    consumers: dict[str, dict[str, int]]


def engine_url(url: str) -> sa.URL:
    """The SQLAlchemy URL for a store URL; ``postgresql://`` means psycopg 3.

    Raises:
      StoreError: not a URL, another database, or an SQLite store whose folder
        does not exist.
    """
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as error:
        raise StoreError(f"--store {url!r} is not a database URL; expected e.g. "
                         "sqlite:///feedback.db or postgresql://user@host/db") from error
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg"):
            raise StoreError(f"--store {url!r}: PostgreSQL is used through psycopg 3; write "
                             "postgresql://... or postgresql+psycopg://...")
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise StoreError(f"--store {url!r}: SQLite is used through Python's sqlite3; "
                             "write sqlite:///PATH")
        if not parsed.database or parsed.database == ":memory:":
            raise StoreError(f"--store {url!r}: an in-memory SQLite database is not a store; "
                             "give a file, e.g. sqlite:///feedback.db")
        folder = Path(parsed.database).expanduser().resolve().parent
        if not folder.is_dir():
            raise StoreError(f"--store {url!r}: folder {folder} does not exist; create it or "
                             "choose another path")
        return parsed
    raise StoreError(f"--store {url!r}: the feedback store runs on SQLite or PostgreSQL, "
                     f"not {backend!r}")


def _batches(records: Iterable, size: int) -> Iterator[tuple[list, list]]:
    """``(records, sources)`` lists of up to ``size``; a record may come as
    ``(source, record)``."""
    batch: list = []
    sources: list = []
    for record in records:
        if type(record) is tuple:
            sources.append(record[0])
            batch.append(record[1])
        else:
            sources.append(None)
            batch.append(record)
        if len(batch) >= size:
            yield batch, sources
            batch, sources = [], []
    if batch:
        yield batch, sources


def _chunks(values: Sequence, size: int = _CHUNK) -> Iterator[Sequence]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


class FeedbackStore:
    """The click store: ingest, read for serving and training, forget, prune.

    Args:
      url: ``sqlite:///PATH`` or ``postgresql://user@host:port/db``; None
        means ``$MMREC_FEEDBACK_STORE``, else ``sqlite:///feedback.db``.
      config: validation limits and database settings (:class:`StoreConfig`).

    Raises:
      StoreError: the URL is not usable, the database cannot be reached, or
        it is not a feedback store; :class:`~feedback.store.schema.SchemaVersionError`
        when a newer version of this code wrote it.

    Example:

        with FeedbackStore("sqlite:///feedback.db") as store:
            print(store.ingest(events).summary())
            recent = store.recent_items("u1", 20)
    """

    def __init__(self, url: str | None = None, config: StoreConfig | None = None) -> None:
        self.config = config or StoreConfig()
        given = store_url(url)
        self._url = engine_url(given)
        self.where = sa.make_url(given).render_as_string(hide_password=True)
        self.backend = self._url.get_backend_name()
        self._validator = EventValidator(self.config)
        self._insert = (sqlite_dialect.insert if self.backend == "sqlite"
                        else postgresql_dialect.insert)
        self._engine = self._create_engine()
        self._inserts = {table.name: self._insert(table).on_conflict_do_nothing(
            index_elements=["key"]) for table in (schema.events, schema.pending)}
        self._bulk_inserts = {table.name: self._bulk_insert(table)
                              for table in (schema.events, schema.pending)}
        self._compiled: dict[str, str] = {}
        self._catalogue_version: str | None = None
        self._catalogue: frozenset[str] | None = None
        try:
            with self._write() as connection:
                schema.prepare_schema(connection, self.where)
                self.store_id: str = schema.read_meta(connection, "store_id")
        except sa.exc.OperationalError as error:
            self._engine.dispose()
            reason = " ".join(str(error.orig).split())  # the driver's lines, as one
            raise StoreError(f"cannot open feedback store {self.where}: {reason}; check the "
                             "URL, that the server is running and that this user may write "
                             "there") from error
        except BaseException:
            self._engine.dispose()
            raise

    @classmethod
    def open(cls, url: str | None = None, config_path: str | None = None) -> "FeedbackStore":
        """The store at ``url`` (else ``$MMREC_FEEDBACK_STORE``, else the default)
        with the ``[feedback]`` table of TOML file ``config_path`` (what every
        command's ``--store`` and ``--config`` say)."""
        from feedback.store.config import read_store_config
        return cls(url, read_store_config(config_path))

    # -- connections ---------------------------------------------------------------------
    def _create_engine(self) -> sa.Engine:
        if self.backend != "sqlite":
            return sa.create_engine(self._url, pool_pre_ping=True)
        config = self.config
        engine = sa.create_engine(self._url, connect_args={
            "check_same_thread": False, "timeout": config.busy_timeout_seconds})

        @sa_event.listens_for(engine, "connect")
        def configure(dbapi_connection, _record) -> None:
            # We issue BEGIN ourselves (below): the driver's implicit one is DEFERRED,
            # and a deferred reader that later writes fails at once when another
            # writer holds the database, instead of waiting its turn.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            # synchronous=FULL: a commit is on disk before ingest returns (power cuts
            # included; NORMAL measured only 8% faster). Large pages and rare
            # checkpoints: a batch of users' clicks dirties most pages of the user
            # index, and each dirty page is logged once per commit and copied once
            # per checkpoint; 16 KB pages and a checkpoint per 512 MB of log, against
            # SQLite's 4 KB and 4 MB, doubled the rows/s of this schema at a million
            # rows in a raw SQLite test (docs/BENCHMARKS.md). The log is cut back to
            # 64 MB after each checkpoint.
            for pragma in ("page_size = 16384", "journal_mode = WAL", "synchronous = FULL",
                           f"cache_size = -{config.sqlite_cache_mib * 1024}",
                           "wal_autocheckpoint = 32768", "journal_size_limit = 67108864"):
                cursor.execute(f"PRAGMA {pragma}")
            cursor.close()

        @sa_event.listens_for(engine, "begin")
        def begin(connection) -> None:
            writes = connection.get_execution_options().get("feedback_writes", False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")

        return engine

    def _write(self):
        """A transaction that will write (SQLite: takes the write lock at once)."""
        return self._engine.execution_options(feedback_writes=True).begin()

    def _read(self):
        """A read-only transaction (one consistent snapshot)."""
        return self._engine.begin()

    def close(self) -> None:
        """Closes every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> "FeedbackStore":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FeedbackStore({self.where!r})"

    # -- ingesting -----------------------------------------------------------------------
    def ingest(self, events: Iterable[Mapping[str, Any] | str | bytes],
               sources: Sequence[str | None] | None = None) -> IngestReport:
        """Stores one batch in one transaction, all or nothing.

        Args:
          events: records (mappings, or JSON lines) as :class:`EventValidator`
            reads them.
          sources: where each record came from (e.g. ``"clicks.jsonl row 12"``),
            kept with rejections; parallel to ``events``.

        Returns:
          The batch's report. When this returns, the batch is durable.

        Raises:
          StoreError, sqlalchemy errors: the database failed; nothing of the
            batch was stored (send it again: that is safe).
        """
        return self._store(*self._check(list(events), sources))

    def ingest_batches(self, records: Iterable[Mapping[str, Any] | str | bytes |
                                               tuple[str | None, Any]],
                       batch_size: int | None = None,
                       on_batch: Callable[[IngestReport], None] | None = None) -> IngestReport:
        """Ingests a long iterable in batches of ``batch_size``, one transaction each.

        Args:
          records: records, or ``(source, record)`` pairs.
          batch_size: records per transaction (default ``config.batch_size``).
          on_batch: called with each batch's report once it is acknowledged
            (progress bars, logs).

        Returns:
          The sum of the batches' reports. If this raises, every batch
          acknowledged before is stored and no later one is; re-running the
          whole input is safe.
        """
        total = IngestReport()
        for batch, sources in _batches(records, batch_size or self.config.batch_size):
            report = self._store(*self._check(batch, sources))
            if on_batch is not None:
                on_batch(report)
            total = total + report
        return total

    def _check(self, records: list, sources: Sequence[str | None] | None
               ) -> tuple[list[Event | Rejection], float]:
        now = time.time()
        validate = self._validator.validate
        if sources is None:
            return [validate(raw, None, now) for raw in records], now
        return [validate(raw, source, now) for raw, source in zip(records, sources)], now

    def _store(self, checked: list[Event | Rejection], now: float) -> IngestReport:
        # A row is a tuple in schema.EVENT_FIELDS order: (key, event_id, user_id,
        # item_id, event, timestamp, context, received_at).
        received = len(checked)
        rejections: list[Rejection] = []
        unique: dict[bytes, tuple] = {}
        duplicates = 0
        for item in checked:
            if type(item) is Rejection:
                rejections.append(item)
                continue
            key = event_key(item.event_id)
            row = (key, item.event_id, item.user_id, item.item_id, item.event, item.timestamp,
                   context_json(item.context), now)
            seen = unique.get(key)
            if seen is None:
                unique[key] = row
            elif _same_content(seen, row):
                duplicates += 1
            else:
                rejections.append(_conflict(row, seen))
        # Stored in key order (a batch commits as one, so its order inside is free;
        # across batches the log is in commit order): two PostgreSQL writers
        # inserting overlapping batches then wait for each other instead of
        # deadlocking (each waiting on the other's uncommitted key; seen in the
        # four-process test before sorting). A deadlock or serialization failure
        # that happens all the same is retried: a batch is idempotent.
        rows = sorted(unique.values())
        for attempt in range(_RETRIES):
            try:
                return self._write_batch(received, rows, list(rejections), duplicates, now)
            except sa.exc.OperationalError as error:
                if getattr(error.orig, "sqlstate", None) not in _RETRYABLE or (
                        attempt == _RETRIES - 1):
                    raise
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
        raise AssertionError("unreachable")

    def _write_batch(self, received: int, rows: list[tuple], rejections: list[Rejection],
                     duplicates: int, now: float) -> IngestReport:
        """The batch's transaction: rows new in the batch, checked against the store."""
        with self._write() as connection:
            known = self._known_items(connection)
            if known is None:
                to_events, to_pending = rows, []
            else:
                to_events = [row for row in rows if row[_ITEM] in known]
                to_pending = [row for row in rows if row[_ITEM] not in known]
            # An event stored in the other table (the catalogue changed since) is a duplicate too.
            elsewhere = self._stored_rows(connection, schema.events,
                                          [row[_KEY] for row in to_pending])
            if to_events and self._has_pending(connection):
                elsewhere.update(self._stored_rows(connection, schema.pending,
                                                   [row[_KEY] for row in to_events]))
            counts = {}
            for table, chosen in ((schema.events, to_events), (schema.pending, to_pending)):
                inserted = self._insert_new(connection, table,
                                            [row for row in chosen if row[_KEY] not in elsewhere])
                repeated = [row for row in chosen if row[_KEY] in elsewhere or (
                    inserted is not None and row[_KEY] not in inserted)]
                counts[table.name] = len(chosen) - len(repeated)
                stored = dict(elsewhere)
                stored.update(self._stored_rows(connection, table, [
                    row[_KEY] for row in repeated if row[_KEY] not in stored]))
                for row in repeated:
                    if _same_content(stored[row[_KEY]], row):
                        duplicates += 1
                    else:
                        rejections.append(_conflict(row, stored[row[_KEY]]))
            self._quarantine(connection, rejections, now)
        reasons: dict[str, int] = {}
        for rejection in rejections:
            reasons[rejection.reason] = reasons.get(rejection.reason, 0) + 1
        return IngestReport(received, counts[schema.events.name], duplicates, len(rejections),
                            counts[schema.pending.name], reasons, batches=1)

    def _insert_rows(self, connection: sa.Connection, table: sa.Table,
                     rows: list[tuple]) -> int:
        """Inserts rows (``ON CONFLICT DO NOTHING``); returns how many went in.

        The one place the two databases differ, because their fastest bulk
        paths differ. SQLite is in-process: the statement, built with Core and
        compiled once, runs through the driver's executemany with plain tuples
        (SQLAlchemy's own per-row parameter handling cost as much as SQLite's
        work). PostgreSQL is a round trip per statement: the whole batch
        travels as one JSON array of rows, unpacked by the server in a single
        ``INSERT ... SELECT ... FROM json_array_elements(:rows)``. Measured at
        10,000-event batches: 1.7x the rows per second of executemany, and 15%
        more than one array per column (whose text encoding psycopg does in Python).
        """
        if self.backend == "postgresql":
            payload = json.dumps([(row[0].hex(),) + row[1:] for row in rows],
                                 ensure_ascii=False)
            return connection.execute(self._bulk_inserts[table.name],
                                      {"rows": payload}).rowcount
        compiled = self._compiled.get(table.name)
        if compiled is None:
            compiled = self._compiled[table.name] = str(self._inserts[table.name].compile(
                dialect=connection.dialect, column_keys=list(schema.EVENT_FIELDS)))
        return connection.exec_driver_sql(compiled, rows).rowcount

    def _bulk_insert(self, table: sa.Table) -> sa.Executable:
        """PostgreSQL: ``INSERT INTO table (key, event_id, ...) SELECT decode(row->>0,
        'hex'), row->>1, ... FROM json_array_elements(:rows) AS row``."""
        row = sa.func.json_array_elements(
            sa.cast(sa.bindparam("rows", type_=sa.Text), postgresql_dialect.JSON)
        ).column_valued("row")
        fields = []
        for k, name in enumerate(schema.EVENT_FIELDS):
            text = row.op("->>")(k)
            fields.append(sa.func.decode(text, "hex") if name == "key" else
                          sa.cast(text, table.c[name].type) if name in ("timestamp",
                                                                         "received_at")
                          else text)
        return (postgresql_dialect.insert(table)
                .from_select(list(schema.EVENT_FIELDS), sa.select(*fields))
                .on_conflict_do_nothing(index_elements=["key"])
                .execution_options(preserve_rowcount=True))  # SQLAlchemy keeps it for DML only

    def _insert_new(self, connection: sa.Connection, table: sa.Table,
                    rows: list[tuple]) -> set[bytes] | None:
        """Inserts rows whose key is not stored yet.

        Returns None when every row went in (the usual case, found from the row
        count alone), else the keys this transaction inserted. ``ON CONFLICT
        DO NOTHING`` makes racing writers safe: on PostgreSQL a writer inserting
        a key another transaction is inserting waits for it, then skips the row
        if it committed. The keys are read back as the rows carrying this
        transaction's id and a serial number above the highest one before the
        insert (ours are allocated after that read); a plain multi-row insert
        is half again as fast as one with RETURNING.
        """
        if not rows:
            return None
        before = connection.execute(sa.select(sa.func.max(table.c.seq))).scalar() or 0
        inserted = self._insert_rows(connection, table, rows)
        if inserted == len(rows):
            return None
        ours = table.c.seq > before
        if "txid" in table.c:
            ours = sa.and_(table.c.txid == schema.WriterTransaction(), ours)
        return set(connection.execute(sa.select(table.c.key).where(ours)).scalars().all())

    def _stored_rows(self, connection: sa.Connection, table: sa.Table,
                     keys: Sequence[bytes]) -> dict[bytes, tuple]:
        found: dict[bytes, tuple] = {}
        columns = [table.c[name] for name in schema.EVENT_FIELDS]
        for chunk in _chunks(keys):
            for row in connection.execute(sa.select(*columns).where(table.c.key.in_(chunk))):
                found[row[_KEY]] = tuple(row)
        return found

    def _has_pending(self, connection: sa.Connection) -> bool:
        return connection.execute(sa.select(schema.pending.c.seq).limit(1)).first() is not None

    def _quarantine(self, connection: sa.Connection, rejections: list[Rejection],
                    now: float) -> None:
        if not rejections:
            return
        rows: dict[bytes, dict] = {}
        for r in rejections:
            key = event_key(f"{r.reason}\x1f{r.payload}")
            if key in rows:
                rows[key]["times"] += 1
                continue
            rows[key] = {"key": key, "reason": r.reason, "detail": clean_text(r.detail),
                         "payload": clean_text(r.payload),
                         "user_id": None if r.user_id is None else clean_text(r.user_id),
                         "source": None if r.source is None else clean_text(r.source),
                         "first_received_at": now, "last_received_at": now, "times": 1}
        table = schema.quarantine
        statement = self._insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=["key"],
            set_={"times": table.c.times + statement.excluded.times,
                  "last_received_at": statement.excluded.last_received_at})
        connection.execute(statement, [rows[key] for key in sorted(rows)])  # key order, as above

    # -- the live catalogue --------------------------------------------------------------
    def _catalogue_state(self, connection: sa.Connection, lock: bool) -> str:
        query = sa.select(schema.meta.c.value).where(schema.meta.c.name == "catalogue_version")
        if lock:
            query = query.with_for_update(read=True)
        return connection.execute(query).scalar_one()

    def _known_items(self, connection: sa.Connection) -> frozenset[str] | None:
        """The catalogue as committed now (None: no catalogue, every item is known).

        Read under a shared lock on the catalogue's version row, so on
        PostgreSQL a catalogue change waits for this batch, and the next batch
        waits for the change; cached between batches while the version stays.
        """
        state = self._catalogue_state(connection, lock=True)
        if state != self._catalogue_version:
            enforced = state.endswith(":on")
            self._catalogue = frozenset(connection.execute(
                sa.select(schema.catalogue.c.item_id)).scalars()) if enforced else None
            self._catalogue_version = state
        return self._catalogue

    def _change_catalogue(self, connection: sa.Connection, enforced: bool) -> None:
        number = int(self._catalogue_state(connection, lock=False).split(":")[0])
        connection.execute(sa.update(schema.meta).where(schema.meta.c.name == "catalogue_version")
                           .values(value=f"{number + 1}:{'on' if enforced else 'off'}"))

    def set_catalogue(self, item_ids: Iterable[str] | None) -> int:
        """Replaces the live catalogue; None turns the check off (every item known).

        Pending events of items now in the catalogue are released. Events
        already accepted stay, whatever the new catalogue says.

        Returns:
          The number of pending events released.
        """
        with self._write() as connection:
            connection.execute(sa.delete(schema.catalogue))
            if item_ids is not None:
                self._add_catalogue_rows(connection, item_ids)
            self._change_catalogue(connection, enforced=item_ids is not None)
            return self._release(connection, everything=item_ids is None)

    def add_items(self, item_ids: Iterable[str]) -> int:
        """Adds items to the live catalogue and releases their pending events.

        Until a catalogue is set every item is known, and this starts one with
        these items.

        Returns:
          The number of pending events released into the event log.
        """
        with self._write() as connection:
            self._add_catalogue_rows(connection, item_ids)
            self._change_catalogue(connection, enforced=True)
            return self._release(connection, everything=False)

    def release_pending(self) -> int:
        """Moves pending events whose item is now known into the event log.

        ``set_catalogue`` and ``add_items`` do this themselves; call it after
        changing the catalogue table by other means.
        """
        with self._write() as connection:
            enforced = self._catalogue_state(connection, lock=False).endswith(":on")
            return self._release(connection, everything=not enforced)

    def _add_catalogue_rows(self, connection: sa.Connection, item_ids: Iterable[str]) -> None:
        ids = sorted({str(item_id) for item_id in item_ids})
        statement = self._insert(schema.catalogue).on_conflict_do_nothing(
            index_elements=["item_id"])
        for chunk in _chunks(ids, 10_000):
            connection.execute(statement, [{"item_id": item_id} for item_id in chunk])

    def _release(self, connection: sa.Connection, everything: bool) -> int:
        pending = schema.pending
        fields = list(schema.EVENT_FIELDS)
        known = (sa.true() if everything else
                 pending.c.item_id.in_(sa.select(schema.catalogue.c.item_id)))
        chosen = sa.select(*[pending.c[name] for name in fields]).where(known).order_by(
            pending.c.seq)
        moved = connection.execute(
            self._insert(schema.events).from_select(fields, chosen)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(schema.events.c.seq)).all()
        connection.execute(sa.delete(pending).where(known))
        return len(moved)

    # -- reading -------------------------------------------------------------------------
    def recent_items(self, user_id: str, limit: int, since: float | None = None) -> History:
        """The user's latest history events' items, newest first, with their times.

        Args:
          user_id: the user.
          limit: at most this many (the model's history length).
          since: only events after this time (epoch seconds), e.g. a version's
            ``data_until``, to merge with the history frozen in the version.

        Returns:
          A :class:`History`: a list of item ids (``RecentItems``-compatible)
          with ``.timestamps``. Only ``config.history_events`` kinds count;
          pending events (unknown items) do not.
        """
        events = schema.events
        query = (sa.select(events.c.item_id, events.c.timestamp)
                 .where(events.c.user_id == str(user_id),
                        events.c.event.in_(self.config.history_events))
                 .order_by(events.c.timestamp.desc(), events.c.seq.desc())
                 .limit(int(limit)))
        if since is not None:
            query = query.where(events.c.timestamp > since)
        with self._read() as connection:
            rows = connection.execute(query).all()
        return History((row[0] for row in rows), (row[1] for row in rows))

    def seen_items(self, user_id: str) -> set[str]:
        """Every item of the user's history events (to leave out of recommendations)."""
        events = schema.events
        query = sa.select(events.c.item_id).distinct().where(
            events.c.user_id == str(user_id), events.c.event.in_(self.config.history_events))
        with self._read() as connection:
            return set(connection.execute(query).scalars())

    def events_since(self, consumer: str, limit: int = 10_000) -> EventBatch:
        """The next events a named consumer has not read, oldest first.

        A consumer is registered by its first call (from the start of the log);
        from then on ``prune`` keeps what it has not read. Call
        :meth:`commit` with the batch's watermark once the events are
        processed; until then the same events come again (at-least-once
        processing, exactly-once delivery of each committed position).

        Args:
          consumer: the consumer's name, e.g. ``"finetune"``.
          limit: at most this many events.
        """
        events = schema.events
        with self._read() as connection:
            mark = self._watermark(connection, consumer)
        if mark is None:
            with self._write() as connection:
                connection.execute(self._insert(schema.consumers).values(
                    name=consumer, txid=0, seq=0, updated_at=time.time())
                    .on_conflict_do_nothing(index_elements=["name"]))
                mark = self._watermark(connection, consumer)
        with self._read() as connection:
            query = (sa.select(events.c.txid, events.c.seq, events.c.event_id,
                               events.c.user_id, events.c.item_id, events.c.event,
                               events.c.timestamp, events.c.context)
                     .where(sa.tuple_(events.c.txid, events.c.seq) >
                            sa.tuple_(sa.literal(mark.txid), sa.literal(mark.seq)),
                            events.c.txid < schema.CommittedHorizon())
                     .order_by(events.c.txid, events.c.seq).limit(int(limit)))
            rows = connection.execute(query).all()
        found = [Event(r.event_id, r.user_id, r.item_id, r.event, r.timestamp,
                       json.loads(r.context) if r.context else None) for r in rows]
        last = Watermark(rows[-1].txid, rows[-1].seq) if rows else mark
        return EventBatch(consumer, found, last)

    def commit(self, consumer: str, watermark: Watermark) -> None:
        """Records that ``consumer`` has processed everything up to ``watermark``.

        Committing an older watermark makes the consumer read again from there
        (events pruned meanwhile are gone).
        """
        statement = self._insert(schema.consumers).values(
            name=consumer, txid=watermark.txid, seq=watermark.seq, updated_at=time.time())
        statement = statement.on_conflict_do_update(
            index_elements=["name"], set_={"txid": statement.excluded.txid,
                                           "seq": statement.excluded.seq,
                                           "updated_at": statement.excluded.updated_at})
        with self._write() as connection:
            connection.execute(statement)

    def consumers(self) -> dict[str, Watermark]:
        """Every registered consumer's watermark."""
        with self._read() as connection:
            rows = connection.execute(sa.select(schema.consumers)).all()
        return {row.name: Watermark(row.txid, row.seq) for row in rows}

    def _watermark(self, connection: sa.Connection, consumer: str) -> Watermark | None:
        row = connection.execute(sa.select(schema.consumers.c.txid, schema.consumers.c.seq)
                                 .where(schema.consumers.c.name == consumer)).first()
        return Watermark(row.txid, row.seq) if row else None

    def quarantined(self, reason: str | None = None,
                    limit: int | None = None) -> list[QuarantinedRecord]:
        """Refused records, oldest first, optionally of one reason."""
        table = schema.quarantine
        query = sa.select(table).order_by(table.c.id)
        if reason is not None:
            query = query.where(table.c.reason == reason)
        if limit is not None:
            query = query.limit(int(limit))
        with self._read() as connection:
            rows = connection.execute(query).all()
        return [QuarantinedRecord(row.id, row.reason, row.detail, row.payload, row.user_id,
                                  row.source, row.first_received_at, row.last_received_at,
                                  row.times) for row in rows]

    def count(self) -> int:
        """Events in the log (pending events not included)."""
        with self._read() as connection:
            return connection.execute(sa.select(sa.func.count()).select_from(
                schema.events)).scalar_one()

    # -- deleting ------------------------------------------------------------------------
    def forget_user(self, user_id: str) -> ForgetReport:
        """Deletes every event, pending event and quarantined record of a user
        (the right to erasure), in one transaction."""
        user_id = str(user_id)
        with self._write() as connection:
            counts = [connection.execute(sa.delete(table).where(table.c.user_id == user_id))
                      .rowcount for table in (schema.events, schema.pending, schema.quarantine)]
            # Only the id is kept, so published versions can be refreshed without the user.
            connection.execute(self._insert(schema.forgotten).values(
                user_id=user_id, forgotten_at=time.time()).on_conflict_do_nothing(
                index_elements=["user_id"]))
        return ForgetReport(*counts)

    def forgotten_users(self) -> list[str]:
        """The ids of users erased with :meth:`forget_user` (no events of theirs remain)."""
        with self._read() as connection:
            return [row[0] for row in connection.execute(
                sa.select(schema.forgotten.c.user_id).order_by(schema.forgotten.c.user_id))]

    def history_events_after(self, timestamp: float | None) -> list[Event]:
        """Every history event (``config.history_events`` kinds) stamped after
        ``timestamp``, oldest first: what a published version, whose data reaches
        ``timestamp``, has not seen (None: all of them)."""
        events = schema.events
        query = (sa.select(events.c.event_id, events.c.user_id, events.c.item_id,
                           events.c.event, events.c.timestamp)
                 .where(events.c.event.in_(self.config.history_events))
                 .order_by(events.c.timestamp, events.c.seq))
        if timestamp is not None:
            query = query.where(events.c.timestamp > float(timestamp))
        with self._read() as connection:
            return [Event(r.event_id, r.user_id, r.item_id, r.event, r.timestamp)
                    for r in connection.execute(query)]

    def prune(self, before: float) -> PruneReport:
        """Deletes events older than ``before`` (epoch seconds) that every
        consumer has read, and pending events and quarantined records older
        than it.

        With no consumer registered, every event older than ``before`` goes.
        """
        events = schema.events
        with self._write() as connection:
            marks = [Watermark(r.txid, r.seq) for r in
                     connection.execute(sa.select(schema.consumers.c.txid,
                                                  schema.consumers.c.seq))]
            old = events.c.timestamp < before
            if marks:
                slowest = min(marks)
                read = sa.tuple_(events.c.txid, events.c.seq) <= sa.tuple_(
                    sa.literal(slowest.txid), sa.literal(slowest.seq))
                kept = connection.execute(sa.select(sa.func.count()).select_from(events)
                                          .where(old, sa.not_(read))).scalar_one()
                old = sa.and_(old, read)
            else:
                kept = 0
            deleted = connection.execute(sa.delete(events).where(old)).rowcount
            pending = connection.execute(sa.delete(schema.pending).where(
                schema.pending.c.timestamp < before)).rowcount
            quarantined = connection.execute(sa.delete(schema.quarantine).where(
                schema.quarantine.c.last_received_at < before)).rowcount
        return PruneReport(deleted, kept, pending, quarantined)

    # -- counting ------------------------------------------------------------------------
    def stats(self) -> StoreStats:
        """Sizes of the log, pending events, quarantine, catalogue and consumers' lag."""
        events, pending, quarantine = schema.events, schema.pending, schema.quarantine
        count = sa.func.count
        with self._read() as connection:
            one = connection.execute
            totals = one(sa.select(count(), count(events.c.user_id.distinct()),
                                   count(events.c.item_id.distinct()),
                                   sa.func.min(events.c.timestamp),
                                   sa.func.max(events.c.timestamp))).one()
            kinds = dict(one(sa.select(events.c.event, count()).group_by(events.c.event)).all())
            waiting = one(sa.select(count(), count(pending.c.item_id.distinct()))).one()
            reasons = dict(one(sa.select(quarantine.c.reason, count())
                               .group_by(quarantine.c.reason)).all())
            state = self._catalogue_state(connection, lock=False)
            catalogue = (one(sa.select(count()).select_from(schema.catalogue)).scalar_one()
                         if state.endswith(":on") else None)
            lag = {}
            for name, mark in ((r.name, Watermark(r.txid, r.seq))
                               for r in one(sa.select(schema.consumers)).all()):
                unread = one(sa.select(count()).select_from(events).where(
                    sa.tuple_(events.c.txid, events.c.seq) >
                    sa.tuple_(sa.literal(mark.txid), sa.literal(mark.seq)))).scalar_one()
                lag[name] = {"txid": mark.txid, "seq": mark.seq, "unread": unread}
            version = int(schema.read_meta(connection, "schema_version"))
        return StoreStats(self.backend, version, totals[0], totals[1], totals[2], kinds,
                          totals[3], totals[4], waiting[0], waiting[1], sum(reasons.values()),
                          reasons, catalogue, lag)


_KEY, _EVENT_ID, _USER, _ITEM = 0, 1, 2, 3
_CONTENT = slice(2, 7)  # user_id, item_id, event, timestamp, context


def _same_content(stored: tuple, row: tuple) -> bool:
    return stored[_CONTENT] == row[_CONTENT]


def _conflict(row: tuple, stored: tuple) -> Rejection:
    names = schema.EVENT_FIELDS[_CONTENT]
    sent = dict(zip(names, row[_CONTENT]), event_id=row[_EVENT_ID])
    shown = dict(zip(names[:4], stored[_CONTENT]))
    return Rejection("conflicting duplicate",
                     f"event_id {row[_EVENT_ID]!r} is already stored with other content "
                     f"({shown}); an event id must name one event: fix the producer",
                     json.dumps(sent, ensure_ascii=False, sort_keys=True), row[_USER])
