"""Configuration of the feedback store, in one dataclass with documented defaults.

What counts as a valid event (which kinds, how far in the future, how large a
context), which events make a user's history, and how the store talks to its
database are decided here, once; the Python API and every ``mmrec feedback``
command read the same :class:`StoreConfig`. A TOML file's ``[feedback]``
table maps onto it key by key, and an unknown key, a value of the wrong type
or an impossible value is refused naming the key.

Where the store lives is not configuration but an address: the ``--store
URL`` option, else the ``MMREC_FEEDBACK_STORE`` environment variable, else
``sqlite:///feedback.db`` (:func:`store_url`).

Example:

    config = StoreConfig(max_future_seconds=60)
    config = StoreConfig.from_dict({"event_kinds": ["click", "purchase"]})
    store = FeedbackStore(store_url(None), config)
"""

from __future__ import annotations

import dataclasses
import os

from mmrec.data.timestamps import TIMESTAMP_UNITS
from mmrec.typed_fields import checked_values

DEFAULT_STORE_URL = "sqlite:///feedback.db"
STORE_URL_VARIABLE = "MMREC_FEEDBACK_STORE"


def store_url(explicit: str | None) -> str:
    """The store's URL: ``explicit`` (``--store``), else ``$MMREC_FEEDBACK_STORE``,
    else ``sqlite:///feedback.db`` in the working folder."""
    return explicit or os.environ.get(STORE_URL_VARIABLE) or DEFAULT_STORE_URL


def normal_kind(kind: str) -> str:
    """``"Add-to-cart"`` and ``"add to cart"`` are ``"add_to_cart"``: producers spell
    event kinds in many ways, the store in one."""
    return kind.strip().lower().replace("-", "_").replace(" ", "_")


@dataclasses.dataclass(frozen=True)
class StoreConfig:
    """How the feedback store checks, keeps and reads events.

    Attributes:
      batch_size: events per transaction when a file or stream is ingested
        (``ingest_batches``, ``mmrec feedback ingest``): each batch is
        acknowledged, all or nothing, before the next is read. 10,000 keeps
        a batch's commit cost (one fsync, the index pages it touches) small
        against its events; much smaller batches are slower, much larger ones
        make a crash redo more work.
      event_kinds: the kinds of event accepted, in the store's spelling
        (lower case, underscores; "add-to-cart" is read as "add_to_cart").
      default_event: the kind of an event that names none.
      history_events: the kinds that make a user's history
        (``recent_items``, ``seen_items``). Impressions are left out: being
        shown an item says nothing about wanting it.
      timestamp_unit: unit of epoch-number timestamps: "auto" detects
        seconds, milliseconds, microseconds or nanoseconds from the value's
        magnitude, as the data loaders do (:mod:`mmrec.data.timestamps`).
      max_future_seconds: an event stamped more than this after the moment it
        is received is refused ("future timestamp"): a clock that is wrong
        by hours, or milliseconds read as seconds, would otherwise sit at the
        top of a user's history for years. Ten minutes allows ordinary clock
        skew between web servers.
      max_context_bytes: the largest context (UTF-8 JSON) an event may carry;
        larger ones are refused ("oversized context"). The context is for
        small facts (page, position, device), not payloads.
      max_id_chars: the longest user, item or event id accepted.
      busy_timeout_seconds: SQLite only: how long a writer waits for another
        writer's transaction before giving up. Writers take turns on SQLite,
        so with several ingesting processes each waits for the others' batches.
      sqlite_cache_mib: SQLite only: page cache per connection. The indexes of
        a store of a million events (about 150 MB) fit, so reads and the
        duplicate checks do not go to disk.
    """

    batch_size: int = 10_000
    event_kinds: tuple[str, ...] = ("click", "impression", "add_to_cart", "purchase")
    default_event: str = "click"
    history_events: tuple[str, ...] = ("click", "add_to_cart", "purchase")
    timestamp_unit: str = "auto"
    max_future_seconds: float = 600.0
    max_context_bytes: int = 4096
    max_id_chars: int = 256
    busy_timeout_seconds: float = 60.0
    sqlite_cache_mib: int = 256

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_context_bytes", "max_id_chars", "sqlite_cache_mib"):
            if getattr(self, name) < 1:
                raise ValueError(f"feedback.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_future_seconds", "busy_timeout_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"feedback.{name} must be >= 0, got {getattr(self, name)}")
        kinds = tuple(normal_kind(k) for k in self.event_kinds)
        if not kinds or any(not k for k in kinds):
            raise ValueError(f"feedback.event_kinds must name at least one kind, got "
                             f"{list(self.event_kinds)}")
        object.__setattr__(self, "event_kinds", kinds)
        object.__setattr__(self, "default_event", normal_kind(self.default_event))
        object.__setattr__(self, "history_events",
                           tuple(normal_kind(k) for k in self.history_events))
        if self.default_event not in kinds:
            raise ValueError(f"feedback.default_event {self.default_event!r} is not one of "
                             f"feedback.event_kinds {list(kinds)}; add it there or choose one")
        unknown = [k for k in self.history_events if k not in kinds]
        if unknown or not self.history_events:
            raise ValueError(f"feedback.history_events must be some of feedback.event_kinds "
                             f"{list(kinds)}, got {list(self.history_events)}")
        if self.timestamp_unit not in TIMESTAMP_UNITS:
            raise ValueError(f"feedback.timestamp_unit must be one of {list(TIMESTAMP_UNITS)}, "
                             f"got {self.timestamp_unit!r}")

    @classmethod
    def from_dict(cls, values: dict) -> "StoreConfig":
        """Builds from a TOML ``[feedback]`` table; unknown keys and values of the
        wrong type are refused, naming the key."""
        return cls(**checked_values(cls, values, "feedback"))


def read_store_config(path: str | None):
    """The :class:`StoreConfig` of a TOML file's ``[feedback]`` table (defaults without one)."""
    from mmrec.config import read_toml
    if path is None:
        return StoreConfig()
    table = read_toml(path).get("feedback", {})
    if not isinstance(table, dict):
        raise ValueError(f"{path}: feedback must be a table, e.g. [feedback]")
    try:
        return StoreConfig.from_dict(table)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from error
