"""The feedback store's tables, their version, and the two SQL expressions
that make consumer watermarks safe.

Tables (all prefixed ``feedback_`` so the store can share a PostgreSQL
database with other applications):

* ``feedback_events``: accepted events. ``seq`` is a serial number (SQLite
  AUTOINCREMENT, so a number is never reused after a delete; PostgreSQL
  IDENTITY); ``txid`` the writing transaction (0 on SQLite); ``key`` the
  16-byte digest of ``event_id`` that makes ingestion idempotent.
* ``feedback_pending``: events whose item the live catalogue does not know
  yet; moved into ``feedback_events`` (with new serial numbers, so consumers
  see them then) when the item is added.
* ``feedback_quarantine``: refused records with reason, detail and payload;
  one row per distinct (reason, payload), counting how often it came.
* ``feedback_catalogue``: the live catalogue's item ids, and
  ``feedback_meta``: the schema version, the catalogue's version and the
  store's id (a random UUID made with the store: a consumer's watermark means
  something only in the store it came from).
* ``feedback_consumers``: each named consumer's watermark ``(txid, seq)``.

Why ``txid``. Serial numbers are handed out when a row is inserted, not when
its transaction commits: on PostgreSQL, writer A takes 101-200, writer B
takes 201-300 and commits first, and a consumer that read up to 300 would
never see A's rows when A commits. So each row records its writing
transaction (``pg_current_xact_id()``) and a consumer reads in ``(txid,
seq)`` order, and only rows whose transaction is older than every
transaction still running (``txid < pg_snapshot_xmin(pg_current_snapshot())``).
Every row it can ever see later belongs to a transaction at or above that
horizon, so ``(txid, seq)`` of what it read is a watermark nothing can fall
behind. On SQLite one writer holds the database at a time from its first
insert to its commit, so serial numbers commit in order; ``txid`` is 0 and the
horizon condition is always true. The SQL for both is :class:`WriterTransaction`
and :class:`CommittedHorizon`, compiled per database.

Versions. ``feedback_meta`` holds ``schema_version``; a store written by a
newer version of this code is refused (:class:`SchemaVersionError`) rather
than read wrongly or changed.

Example:

    with engine.begin() as connection:
        prepare_schema(connection)              # creates, or checks the version
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles

SCHEMA_VERSION = 2


class StoreError(RuntimeError):
    """The store cannot be opened or used as asked; the message says why and the fix."""


class SchemaVersionError(StoreError):
    """The store was written by a newer schema version than this code reads."""


class WriterTransaction(sa.sql.expression.FunctionElement):
    """The id of the transaction writing a row: ``pg_current_xact_id()`` on
    PostgreSQL (64-bit, never wraps), 0 on SQLite."""

    type = sa.BigInteger()
    inherit_cache = True


class CommittedHorizon(sa.sql.expression.FunctionElement):
    """A transaction id below which every transaction has finished: the
    snapshot's xmin on PostgreSQL; 1 on SQLite (all rows carry txid 0)."""

    type = sa.BigInteger()
    inherit_cache = True


@compiles(WriterTransaction)
def _writer_transaction(element, compiler, **kw) -> str:
    return "0"


@compiles(WriterTransaction, "postgresql")
def _writer_transaction_postgresql(element, compiler, **kw) -> str:
    return "(pg_current_xact_id()::text)::bigint"


@compiles(CommittedHorizon)
def _committed_horizon(element, compiler, **kw) -> str:
    return "1"


@compiles(CommittedHorizon, "postgresql")
def _committed_horizon_postgresql(element, compiler, **kw) -> str:
    return "(pg_snapshot_xmin(pg_current_snapshot())::text)::bigint"


Serial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite: the rowid itself
Seconds = sa.Double()

metadata = sa.MetaData()


def _event_columns() -> list[sa.Column]:
    return [sa.Column("key", sa.LargeBinary(16), nullable=False, unique=True),
            sa.Column("event_id", sa.Text, nullable=False),
            sa.Column("user_id", sa.Text, nullable=False),
            sa.Column("item_id", sa.Text, nullable=False),
            sa.Column("event", sa.Text, nullable=False),
            sa.Column("timestamp", Seconds, nullable=False),
            sa.Column("context", sa.Text),
            sa.Column("received_at", Seconds, nullable=False)]


EVENT_FIELDS = ("key", "event_id", "user_id", "item_id", "event", "timestamp", "context",
                "received_at")

meta = sa.Table("feedback_meta", metadata,
                sa.Column("name", sa.String(64), primary_key=True),
                sa.Column("value", sa.Text, nullable=False))

events = sa.Table("feedback_events", metadata,
                  sa.Column("seq", Serial, sa.Identity(), primary_key=True),
                  sa.Column("txid", sa.BigInteger, nullable=False,
                            server_default=WriterTransaction()),
                  *_event_columns(),
                  sqlite_autoincrement=True)
sa.Index("feedback_events_user_time", events.c.user_id, events.c.timestamp)
sa.Index("feedback_events_order", events.c.txid, events.c.seq)

pending = sa.Table("feedback_pending", metadata,
                   sa.Column("seq", Serial, sa.Identity(), primary_key=True),
                   *_event_columns(),
                   sqlite_autoincrement=True)
sa.Index("feedback_pending_item", pending.c.item_id)
sa.Index("feedback_pending_user", pending.c.user_id)

quarantine = sa.Table("feedback_quarantine", metadata,
                      sa.Column("id", Serial, sa.Identity(), primary_key=True),
                      sa.Column("key", sa.LargeBinary(16), nullable=False, unique=True),
                      sa.Column("reason", sa.Text, nullable=False),
                      sa.Column("detail", sa.Text, nullable=False),
                      sa.Column("payload", sa.Text, nullable=False),
                      sa.Column("user_id", sa.Text),
                      sa.Column("source", sa.Text),
                      sa.Column("first_received_at", Seconds, nullable=False),
                      sa.Column("last_received_at", Seconds, nullable=False),
                      sa.Column("times", sa.Integer, nullable=False),
                      sqlite_autoincrement=True)
sa.Index("feedback_quarantine_user", quarantine.c.user_id)

forgotten = sa.Table("feedback_forgotten", metadata,
                     sa.Column("user_id", sa.Text, primary_key=True),
                     sa.Column("forgotten_at", Seconds, nullable=False))
"""Users erased with forget_user (their ids only): published versions that still
hold them in frozen histories can be refreshed without them. Added in version 2."""

catalogue = sa.Table("feedback_catalogue", metadata,
                     sa.Column("item_id", sa.Text, primary_key=True))

consumers = sa.Table("feedback_consumers", metadata,
                     sa.Column("name", sa.Text, primary_key=True),
                     sa.Column("txid", sa.BigInteger, nullable=False),
                     sa.Column("seq", sa.BigInteger, nullable=False),
                     sa.Column("updated_at", Seconds, nullable=False))


ADDED_IN = {"feedback_forgotten": 2}
"""Tables added after version 1, with the version that added them (an older store
gets them when a newer mmrec opens it)."""


def read_meta(connection: sa.Connection, name: str) -> str | None:
    return connection.execute(sa.select(meta.c.value).where(meta.c.name == name)).scalar()


def prepare_schema(connection: sa.Connection, where: str) -> None:
    """Creates the tables in an empty database, or checks an existing store's version.

    Runs inside the caller's transaction (on PostgreSQL under an advisory lock,
    so processes opening a new store at once create it once).

    Args:
      connection: a connection inside a transaction.
      where: the store's URL without password, for messages.

    Raises:
      SchemaVersionError: the store was written by a newer schema version.
      StoreError: the database has ``feedback_`` tables but no version.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(7243815001)"))
    names = set(sa.inspect(connection).get_table_names())
    if meta.name in names:
        stored = read_meta(connection, "schema_version")
        if stored is None or not stored.isdigit():
            raise StoreError(f"feedback store {where}: table {meta.name} has no valid "
                             f"schema_version ({stored!r}); this is not a store this code wrote")
        if int(stored) > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"feedback store {where} was written by schema version {stored}, newer than "
                f"this mmrec reads (version {SCHEMA_VERSION}); upgrade mmrec (pip install -U "
                "mmrec) to use it, or point --store / MMREC_FEEDBACK_STORE at another database")
        if int(stored) < SCHEMA_VERSION:
            # Every change so far only added tables: create them, record the version.
            metadata.create_all(connection, tables=[t for t in metadata.sorted_tables
                                                    if t.name in ADDED_IN and
                                                    ADDED_IN[t.name] > int(stored)])
            connection.execute(sa.update(meta).where(meta.c.name == "schema_version")
                               .values(value=str(SCHEMA_VERSION)))
            names = set(sa.inspect(connection).get_table_names())
            stored = str(SCHEMA_VERSION)
        missing = sorted(t for t in metadata.tables if t not in names)
        if missing:
            raise StoreError(f"feedback store {where} (schema version {stored}) lacks the "
                             f"tables {missing}; it is damaged, or was changed by hand")
        if read_meta(connection, "store_id") is None:  # written before stores had one
            connection.execute(sa.insert(meta), [{"name": "store_id",
                                                  "value": uuid.uuid4().hex}])
        return
    ours = sorted(name for name in names if name.startswith("feedback_"))
    if ours:
        raise StoreError(f"feedback store {where} has tables {ours} but no {meta.name}; "
                         "it was not written by mmrec: use another database, or drop them")
    metadata.create_all(connection)
    connection.execute(sa.insert(meta), [{"name": "schema_version", "value": str(SCHEMA_VERSION)},
                                         {"name": "catalogue_version", "value": "0"},
                                         {"name": "store_id", "value": uuid.uuid4().hex}])
