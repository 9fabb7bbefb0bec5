"""Timestamps: epoch numbers in any unit, ISO-8601 times, and the unit rule.

Exports disagree on what an epoch number counts. Unix tools write seconds
(1704103200), JavaScript and Java services milliseconds (1704103200000),
event pipelines microseconds or nanoseconds. Read as seconds, a millisecond
log lands 50,000 years from now: every gap between two clicks is 1,000 times
too long and a time split cuts in the wrong place without a single error. So
mmrec decides the unit from the numbers' magnitude and converts to seconds.

The rule. An epoch number ``x`` counts

* seconds        when ``|x| < 1e11``   (1e8 s is 1973, 1e11 s is the year 5138),
* milliseconds   when ``1e11 <= |x| < 1e14``,
* microseconds   when ``1e14 <= |x| < 1e17``,
* nanoseconds    when ``|x| >= 1e17``.

Every date between 1973 and 5138 falls in exactly one band in every unit, so
the bands cannot confuse a real date. A file is judged once, by the median
magnitude of its numeric timestamps (:func:`column_seconds`), never row by
row: one odd row (a 0, a clock reset) cannot put a file into two units. A
single value arriving alone, as in a stream of feedback events, is judged by
the same bands (:func:`timestamp_seconds`). ISO-8601 strings and datetime
objects are already times: they become seconds directly, a time without a
zone (also Parquet's naive timestamps) being read as UTC, never as the
machine's local time. An explicit unit (``timestamp_unit``, one of
:data:`TIMESTAMP_UNITS`) replaces detection; "auto" is the default.

A detected conversion is a counted repair in the :class:`LoadReport` (the rows
are kept): "timestamps in milliseconds (detected from their magnitude),
converted to seconds". What the rule does not do: milliseconds before March
1973 (below 1e11) look like seconds, and so does a clock that starts at 0;
name the unit (``timestamp_unit``) for such data.

Example:

    timestamp_seconds(1704103200000)             # 1704103200.0 (ms, detected)
    timestamp_seconds("2024-01-01T10:00:00Z")    # 1704103200.0
    timestamp_seconds(1704103200, unit="s")      # 1704103200.0
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Iterable

import numpy as np

from mmrec.data.problems import DataError, LoadReport

TIMESTAMP_UNITS = ("auto", "s", "ms", "us", "ns")
UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
# (unit, upper bound of |x|) in increasing order; beyond the last is "ns".
MAGNITUDE_BANDS = (("s", 1e11), ("ms", 1e14), ("us", 1e17))


def check_unit(unit: str) -> str:
    """``unit`` if it is one of :data:`TIMESTAMP_UNITS`; ValueError otherwise."""
    if unit not in TIMESTAMP_UNITS:
        raise ValueError(f"timestamp_unit must be one of {TIMESTAMP_UNITS}, got {unit!r}")
    return unit


def unit_of_magnitude(number: float) -> str:
    """The unit an epoch number of this size counts, by the bands above."""
    size = abs(number)
    for unit, upper in MAGNITUDE_BANDS:
        if size < upper:
            return unit
    return "ns"


def _utc_seconds(moment: dt.datetime) -> float:
    """Seconds of a datetime; one without a zone is UTC, never the machine's zone."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def _reading(value, *, file: str | None, row: int | None,
             field: str | None) -> tuple[float | int, bool]:
    """(number, True) for an epoch number as written; (seconds, False) for a time."""
    if isinstance(value, bool):
        raise DataError(f"timestamp {value!r} is a boolean, not a time", file=file, row=row,
                        field=field)
    if isinstance(value, (int, float, np.integer, np.floating)):
        number, is_number = value.item() if isinstance(value, np.generic) else value, True
    elif isinstance(value, dt.datetime):
        number, is_number = _utc_seconds(value), False
    else:
        text = "" if value is None else str(value).strip()
        if not text:
            raise DataError("empty timestamp", file=file, row=row, field=field)
        try:
            number, is_number = int(text), True  # exact, so nanoseconds keep their digits
        except ValueError:
            try:
                number, is_number = float(text), True
            except ValueError:
                try:
                    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
                except ValueError as error:
                    raise DataError(f"timestamp {text!r} is neither a number nor an ISO-8601 "
                                    "time", file=file, row=row, field=field) from error
                number, is_number = _utc_seconds(moment), False
    if not math.isfinite(number):
        raise DataError(f"timestamp {value!r} is not finite", file=file, row=row, field=field)
    return number, is_number


def _to_seconds(number: float | int, unit: str) -> float:
    # Division by an exact power of ten rounds once; int / int is exact-then-rounded.
    return number / PER_SECOND[unit]


def timestamp_seconds(value, unit: str = "auto", *, file: str | None = None,
                      row: int | None = None, field: str | None = None) -> float:
    """Seconds since the epoch from one value, as the file rule would read it.

    For a value that arrives alone (one feedback event) there is no column to
    take a median of, so "auto" applies the magnitude bands to the value
    itself; a stream whose events are all in one unit gets the same answer
    as :func:`column_seconds` on a file of them.

    Args:
      value: an epoch number (int, float or numeric text), an ISO-8601 string,
        or a datetime (naive means UTC).
      unit: one of :data:`TIMESTAMP_UNITS`; "auto" detects from the magnitude.
      file, row, field: where the value came from, for the error.

    Raises:
      DataError: empty, neither a number nor ISO-8601, or not finite.
      ValueError: ``unit`` is not one of :data:`TIMESTAMP_UNITS`.
    """
    check_unit(unit)
    number, is_number = _reading(value, file=file, row=row, field=field)
    if not is_number:
        return float(number)
    return _to_seconds(number, unit_of_magnitude(number) if unit == "auto" else unit)


# The name the readers used before units were detected; the same function.
parse_timestamp = timestamp_seconds


def column_unit(numbers: Iterable[float]) -> str:
    """The unit of a file's epoch numbers, from their median magnitude ("s" if none)."""
    magnitudes = np.abs(np.asarray(list(numbers), dtype=np.float64))
    return unit_of_magnitude(float(np.median(magnitudes))) if len(magnitudes) else "s"


def column_seconds(values: Iterable[tuple[int, object]], unit: str = "auto", *, file: str,
                   field: str, report: LoadReport) -> np.ndarray:
    """Seconds for a whole timestamp column, one unit for the whole file.

    Args:
      values: ``(row_number, value)`` pairs, in file order.
      unit: one of :data:`TIMESTAMP_UNITS`; "auto" decides from the median
        magnitude of the column's epoch numbers (ISO times are seconds).
      file, field: named in errors and in the report.
      report: a detected conversion is recorded here as a kept repair.

    Returns:
      float64 seconds, one per value.

    Raises:
      DataError: naming file, row and field, for a value that is not a time.
    """
    check_unit(unit)
    rows, readings = [], []
    for row, value in values:
        rows.append(row)
        readings.append(_reading(value, file=file, row=row, field=field))
    numbered = [(row, number) for row, (number, is_number) in zip(rows, readings) if is_number]
    chosen = column_unit(number for _, number in numbered) if unit == "auto" else unit
    if unit == "auto" and chosen != "s":
        first_row, first_number = numbered[0]
        report.skip(file, f"timestamps in {UNIT_NAMES[chosen]} (detected from their "
                    "magnitude), converted to seconds", row=first_row, field=field,
                    value=first_number, count=len(numbered), kept=True)
    return np.asarray([_to_seconds(number, chosen) if is_number else float(number)
                       for number, is_number in readings], dtype=np.float64)
