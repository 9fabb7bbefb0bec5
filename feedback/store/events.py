"""One feedback event, and the checks that decide whether the store keeps it.

A click arrives from a web server, a stream or a file export as a loose
record: ids may be numbers, the time may be epoch seconds, milliseconds or an
ISO-8601 string, the kind may be "Add-to-cart" or missing. The store keeps
events in one shape (:class:`Event`) so that everything downstream (serving
history, fine-tuning) reads them without checks of its own, and it keeps
every record it cannot use, with the reason (:class:`Rejection`): a rule that
silently dropped bad clicks would hide a broken producer for weeks.

An event has ``user_id``, ``item_id``, ``timestamp`` (required), ``event``
(the kind; "click" when absent), ``event_id`` and ``context`` (a small JSON
object). Fields the store does not know travel in ``context`` under their
own names, so nothing a producer sent is lost; empty values (a blank CSV
cell, ``null``) count as absent.

The reasons a record is refused, one word each so they can be counted:

* ``malformed``: not a JSON object, or a CSV line with the wrong number of fields;
* ``missing field``: no ``user_id``, ``item_id`` or ``timestamp``;
* ``wrong type``: an id that is neither text nor an integer, a timestamp
  that is neither a number nor ISO-8601, a context that is not an object;
* ``invalid value``: an unknown event kind, an id longer than
  ``max_id_chars``, a time before 1970;
* ``future timestamp``: later than now plus ``max_future_seconds``;
* ``oversized context``: a context over ``max_context_bytes``;
* ``conflicting duplicate``: an ``event_id`` already stored with other
  content (decided by the store, which knows what is stored).

Idempotency rests on the event id. An event without one gets an id derived
from its content (:func:`derived_event_id`): the same click sent twice, in
any of the accepted spellings (``1704103200``, ``1704103200000``,
``"2024-01-01T10:00:00Z"``), is one event. An event id is unique in the
whole store, however long ago the first copy came. What this does not do: two real
clicks identical in every field, to the fraction of a second, become one;
a producer that can emit such clicks must send its own ``event_id``.

Example:

    validator = EventValidator(StoreConfig())
    checked = validator.validate({"user_id": "u1", "item_id": 42,
                                  "timestamp": "2024-01-01T10:00:00Z"})
    checked.item_id, checked.timestamp, checked.event     # "42", 1704103200.0, "click"
    validator.validate('{"user_id": "u1"').reason          # "malformed"
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple

from mmrec.data.problems import DataError
from mmrec.data.timestamps import timestamp_seconds

from feedback.store.config import StoreConfig, normal_kind

REASONS = ("malformed", "missing field", "wrong type", "invalid value", "future timestamp",
           "oversized context", "conflicting duplicate")
"""Why a record was quarantined; each rejection carries one of these."""

FIELDS = ("event_id", "user_id", "item_id", "event", "timestamp", "context")


class Event(NamedTuple):
    """A checked event, as the store keeps and returns it (a named tuple: cheap
    to make a million of).

    Attributes:
      event_id: given by the producer, or derived from the content.
      user_id, item_id: as text (integer ids become their decimal text).
      event: the kind, one of ``StoreConfig.event_kinds``.
      timestamp: seconds since the epoch (UTC).
      context: a small JSON object, or None.
    """

    event_id: str
    user_id: str
    item_id: str
    event: str
    timestamp: float
    context: Mapping[str, Any] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Rejection:
    """A record the store refused, kept in quarantine with why.

    Attributes:
      reason: one of :data:`REASONS`.
      detail: a sentence naming the field, what came and what is expected.
      payload: the record as received (a JSON line, or the record as JSON).
      user_id: the user, where it could be read (``forget_user`` finds it).
      source: where it came from, e.g. ``"clicks.jsonl row 12"``.
    """

    reason: str
    detail: str
    payload: str
    user_id: str | None = None
    source: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Unreadable:
    """A line a reader could not split into fields (handed on to be quarantined)."""

    payload: str
    detail: str


def derived_event_id(user_id: str, item_id: str, event: str, timestamp: float,
                     context_json: str | None) -> str:
    """A deterministic id from an event's content: 32 lowercase hex digits.

    The first 8 digits are the event's minute (epoch minutes), the other 24 a
    BLAKE2b digest of the content. The minute makes keys of new events
    neighbours in the store's uniqueness index (see :func:`event_key`).
    """
    text = f"{user_id}\x1f{item_id}\x1f{event}\x1f{timestamp!r}\x1f{context_json or ''}"
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()
    return f"{int(timestamp // 60):08x}{digest}"


def event_key(event_id: str) -> bytes:
    """The 16 bytes the store indexes an event id by (unique in the store).

    Event ids are arbitrary text (UUIDs, stream offsets, derived hashes); a
    fixed-size key keeps the uniqueness index small. A derived id (32
    lower-case hex digits) is its own key, so the keys of events from the same
    minute sit together in the index: a batch of new events then touches a
    few index pages instead of one page per event, which is what keeps
    ingestion fast once the store holds millions of events (measured:
    docs/BENCHMARKS.md). Any other id is keyed by its BLAKE2b digest. Two ids
    share a key with probability about n^2 / 2^129: never, for any store.
    """
    if len(event_id) == 32 and event_id.islower():  # lower case: one key per id
        try:
            return bytes.fromhex(event_id)
        except ValueError:
            pass
    return hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def context_json(context: Mapping[str, Any] | None) -> str | None:
    """The canonical JSON text of a context (sorted keys, no spaces)."""
    if context is None:
        return None
    # default=str: a Parquet row's extra datetime or decimal field is kept as its text.
    return json.dumps(context, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


def payload_text(raw: Any) -> str:
    """A record as text for quarantine: a line as it came, a mapping as JSON."""
    if isinstance(raw, Unreadable):
        return raw.payload
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw).decode("utf-8", "replace")
    if isinstance(raw, str):
        return raw
    try:
        return json.dumps(raw, default=str, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):  # mixed key types, or an integer too long for str()
        try:
            return json.dumps(_printable(raw), default=repr, ensure_ascii=False)
        except (TypeError, ValueError):
            return repr(_printable(raw))


def _printable(value: Any) -> Any:
    """``value`` with integers too long for ``str()`` written in hexadecimal (which
    has no length limit), so that a quarantined record keeps every digit."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 10_000:
        return f"{value:#x}"
    if isinstance(value, Mapping):
        return {str(key): _printable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_printable(item) for item in value]
    return value


class _Refused(Exception):
    """Raised inside validation; becomes a :class:`Rejection`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _encodable(text: str) -> bool:
    """False for text no database can store: lone surrogates, which is how Python
    keeps bytes it could not decode (a JSON ``"\\udc80"`` escape, or a line read
    with ``surrogateescape``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_text(text: str) -> str:
    """``text`` with anything not valid Unicode replaced by U+FFFD, to quarantine it."""
    return text if text.isascii() or _encodable(text) else text.encode(
        "utf-8", "replace").decode("utf-8")


def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, str) and (not value or value.isspace()))


class EventValidator:
    """Turns loose records into :class:`Event` or :class:`Rejection`.

    It runs once per event on the ingestion path, so the usual case (text or
    integer ids, a numeric or ISO time, a known kind) takes the shortest way
    through (about 3 us); every refusal takes the long way and explains itself.

    Args:
      config: the kinds, limits and timestamp unit to apply.
      clock: seconds since the epoch now (for the future-timestamp check).

    Example:

        validator = EventValidator(StoreConfig(max_future_seconds=0))
        validator.validate({"user_id": "u1", "item_id": "i1",
                            "timestamp": 4102444800}).reason     # "future timestamp"
    """

    def __init__(self, config: StoreConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self._kinds = {kind: kind for kind in config.event_kinds}  # grows with spellings seen

    def validate(self, raw: Mapping[str, Any] | str | bytes | Unreadable,
                 source: str | None = None, now: float | None = None) -> Event | Rejection:
        """Checks one record.

        Args:
          raw: a mapping (an API call, a CSV or Parquet row), a JSON line
            (text or bytes), or a line a reader could not split.
          source: where it came from, kept with a rejection.
          now: the time of receipt (default: the clock), shared by a batch.

        Returns:
          The event, or the rejection with its reason; never raises for bad input.
        """
        record = raw
        if type(raw) is dict:  # the usual case, without the ABC checks below
            pass
        elif isinstance(raw, Event):
            record = raw._asdict()
        elif isinstance(raw, Unreadable):
            return Rejection("malformed", raw.detail, raw.payload, None, source)
        elif isinstance(raw, (str, bytes, bytearray)):
            try:
                record = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as error:
                return Rejection("malformed", f"not valid JSON: {error}", payload_text(raw),
                                 None, source)
        if type(record) is not dict and not isinstance(record, Mapping):
            return Rejection("malformed", f"expected a JSON object with user_id, item_id and "
                             f"timestamp, found {type(record).__name__}", payload_text(raw),
                             None, source)
        user_id = None
        try:
            user_id = self._id(record.get("user_id"), "user_id")
            return self._event(record, user_id, self.clock() if now is None else now)
        except _Refused as refusal:
            return Rejection(refusal.reason, refusal.detail, payload_text(raw), user_id, source)
        except (TypeError, ValueError, OverflowError, RecursionError) as error:
            # A value no check above foresaw: one record is quarantined, the batch goes on.
            return Rejection("malformed", f"could not be read as an event: "
                             f"{type(error).__name__}: {error}", payload_text(raw), user_id,
                             source)

    def _event(self, record: Mapping[str, Any], user_id: str, now: float) -> Event:
        config = self.config
        get = record.get
        item_id = self._id(get("item_id"), "item_id")
        value = get("timestamp")
        if _absent(value):
            raise _Refused("missing field", "field 'timestamp' is missing or empty: every "
                           "event needs the time it happened (epoch seconds, ms or ISO-8601)")
        try:
            timestamp = timestamp_seconds(value, config.timestamp_unit)
        except DataError as error:
            raise _Refused("wrong type", f"field 'timestamp': {error}") from None
        except (OverflowError, ValueError):  # an integer too large for a float or for str()
            raise _Refused("invalid value", "field 'timestamp' is a number too large to be a "
                           "time") from None
        if not 0 <= timestamp <= now + config.max_future_seconds:
            if timestamp < 0:
                raise _Refused("invalid value", f"field 'timestamp' {value!r} is before 1970")
            raise _Refused("future timestamp", (
                f"field 'timestamp' {value!r} is {timestamp - now:,.0f} s after it was "
                f"received; at most {config.max_future_seconds:,.0f} s are allowed "
                "(feedback.max_future_seconds): check the producer's clock and unit"))
        kind = self._kind(get("event"))
        context = self._context(record) if ("context" in record or
                                            not _FIELD_NAMES.issuperset(record)) else None
        text = None
        if context is not None:
            text = context_json(context)
            if not _encodable(text):
                raise _Refused("invalid value", "field 'context' holds text that is not valid "
                               "Unicode (undecodable bytes); fix the producer's encoding")
            size = len(text.encode("utf-8"))
            if size > config.max_context_bytes:
                raise _Refused("oversized context", (
                    f"field 'context' is {size:,} bytes of JSON, more than "
                    f"{config.max_context_bytes:,} (feedback.max_context_bytes); send small "
                    "facts, or fewer extra fields"))
        event_id = get("event_id")
        if _absent(event_id):
            event_id = derived_event_id(user_id, item_id, kind, timestamp, text)
        else:
            event_id = self._id(event_id, "event_id")
        return Event(event_id, user_id, item_id, kind, timestamp, context)

    def _id(self, value: Any, field: str) -> str:
        kind = type(value)
        if kind is str:
            if (value and len(value) <= self.config.max_id_chars and not value.isspace()
                    and (value.isascii() or _encodable(value))):
                return value
        elif kind is int:
            if value.bit_length() <= 10_000:  # below str()'s limit of 4,300 digits
                text = str(value)
                if len(text) <= self.config.max_id_chars:
                    return text
            else:
                raise _Refused("invalid value", f"field {field!r} is an integer of "
                               f"{value.bit_length():,} bits, far more than "
                               f"{self.config.max_id_chars} digits (feedback.max_id_chars)")
        if _absent(value):
            raise _Refused("missing field", f"field {field!r} is missing or empty")
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise _Refused("wrong type", f"field {field!r} must be text or an integer, got "
                           f"{value!r} ({type(value).__name__})")
        if isinstance(value, str) and not _encodable(value):
            raise _Refused("invalid value", f"field {field!r} {value!r} is not valid Unicode "
                           "text (it holds undecodable bytes); fix the producer's encoding")
        raise _Refused("invalid value", f"field {field!r} is {len(str(value)):,} characters, "
                       f"more than {self.config.max_id_chars} (feedback.max_id_chars)")

    def _kind(self, value: Any) -> str:
        if _absent(value):
            return self.config.default_event
        if not isinstance(value, str):  # before the memo: a list or dict is unhashable
            raise _Refused("wrong type", f"field 'event' must be text, got {value!r}")
        known = self._kinds.get(value)
        if known is not None:
            return known
        kind = normal_kind(value)
        if kind not in self.config.event_kinds:
            raise _Refused("invalid value", f"field 'event' {value!r} is not one of "
                           f"{list(self.config.event_kinds)} (feedback.event_kinds)")
        if len(self._kinds) < 1000:  # a bounded memo of spellings
            self._kinds[value] = kind
        return kind

    def _context(self, record: Mapping[str, Any]) -> dict[str, Any] | None:
        value = record.get("context")
        if _absent(value):
            context = None
        elif isinstance(value, str):
            try:
                context = json.loads(value)
            except ValueError:
                raise _Refused("wrong type", f"field 'context' {value[:80]!r} is text but not "
                               "JSON; send a JSON object") from None
        else:
            context = value
        if context is not None and not isinstance(context, Mapping):
            raise _Refused("wrong type", f"field 'context' must be a JSON object, got "
                           f"{type(context).__name__}")
        extra = {str(key): value for key, value in record.items()
                 if key not in _FIELD_NAMES and not _absent(value)}
        if extra:
            context = {**(context or {}), **extra}
        return dict(context) if context is not None else None


_FIELD_NAMES = frozenset(FIELDS)
