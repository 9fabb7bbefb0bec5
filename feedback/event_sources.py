"""Events from a file or standard input, one record at a time, for ``ingest``.

``mmrec feedback ingest`` reads JSONL, CSV or Parquet files, and JSONL or
CSV from standard input (``-``) so a stream consumer can pipe into it. It
never holds a whole text input in memory: the store takes the records in
batches and acknowledges each batch before the next is read. A Parquet file
is read a batch of rows at a time too (it cannot come from standard input:
its footer is at the end).

Why not :func:`mmrec.data.tables.read_table` for every format: it stops a
load at the first line that is not JSON or a CSV row with the wrong number of
fields, which is right for training data (a broken file should be fixed) and
wrong for a feedback stream, where one bad line must be quarantined and the
rest kept. So text formats are read here line by line; a line that cannot be
split becomes an :class:`~feedback.store.events.Unreadable` record (the store
quarantines it as "malformed") and JSON lines go to the store as text, parsed
by its validator. Parquet files (whose rows cannot be malformed one by one)
are read with ``read_table``. Text is decoded as the data loaders decode it
(:mod:`mmrec.data.encodings`: UTF-8 through a byte-order mark by default;
undecodable bytes are reported per line).

Each record comes with its source, ``"clicks.jsonl line 12"`` (``"stdin line
12"``; CSV and Parquet count data rows from 1 after the header), which the
quarantine keeps.

Example:

    for source, record in read_events("clicks.jsonl"):
        ...
    store.ingest_batches(read_events("-", format="csv"))
"""

from __future__ import annotations

import csv
import io
import os
import sys
from pathlib import Path
from typing import Any, Iterator, TextIO

from mmrec.data.encodings import ERRORS, reading_codec, undecodable, undecodable_message
from mmrec.data.problems import DataError
from mmrec.data.tables import read_table

from feedback.store.events import Unreadable

FORMATS = ("jsonl", "csv", "parquet")
STDIN = "-"

Records = Iterator[tuple[str, Any]]


def input_format(path: str, format: str | None) -> str:
    """The format of ``path``: ``format`` if given, else its suffix.

    Raises:
      DataError: an unknown format, standard input without ``--format``, or
        Parquet from standard input.
    """
    if format is not None:
        chosen = format.lower().lstrip(".")
    elif path == STDIN:
        raise DataError("reading standard input needs --format jsonl or --format csv",
                        file="stdin")
    else:
        chosen = Path(path).suffix.lower().lstrip(".")
        chosen = {"json": "jsonl", "ndjson": "jsonl"}.get(chosen, chosen)
    if chosen not in FORMATS:
        raise DataError(f"unknown event file format {chosen!r}; expected one of {FORMATS} "
                        "(by suffix, or --format)", file=path)
    if chosen == "parquet" and path == STDIN:
        raise DataError("Parquet cannot be read from a stream; write it to a file, or pipe "
                        "JSONL or CSV", file="stdin")
    return chosen


def read_events(path: str | os.PathLike, format: str | None = None, *,
                encoding: str = "utf-8") -> Records:
    """``(source, record)`` pairs from a file, or from standard input for ``"-"``.

    Args:
      path: a file, or ``"-"`` for standard input.
      format: "jsonl", "csv" or "parquet"; by default the file's suffix.
      encoding: of a text input (UTF-8 by default).

    Raises:
      DataError: naming the file: it does not exist, an unknown format or
        encoding, a CSV without a header, an unreadable Parquet file. Bad
        *lines* are not errors: they come out as records to quarantine.
    """
    path = str(path)
    chosen = input_format(path, format)
    codec = reading_codec(encoding)
    if chosen == "parquet":
        _, rows = read_table(path, "parquet")
        return ((f"{path} row {number}", row) for number, row in rows)
    if path == STDIN:
        stream = io.TextIOWrapper(sys.stdin.buffer, encoding=codec, errors=ERRORS, newline="")
        return _text_records(stream, "stdin", chosen, encoding, close=False)
    if not Path(path).is_file():
        raise DataError("file does not exist", file=path)
    stream = open(path, encoding=codec, errors=ERRORS, newline="")
    return _text_records(stream, path, chosen, encoding, close=True)


def count_records(path: str, format: str | None = None) -> int | None:
    """How many records a file holds (lines, or Parquet rows), for a progress bar;
    None for standard input."""
    if path == STDIN:
        return None
    chosen = input_format(path, format)
    if chosen == "parquet":
        import pyarrow.parquet as pq
        return pq.ParquetFile(path).metadata.num_rows
    with open(path, "rb") as handle:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    return lines - (1 if chosen == "csv" else 0)


def _text_records(stream: TextIO, name: str, format: str, encoding: str,
                  close: bool) -> Records:
    try:
        if format == "jsonl":
            yield from _jsonl(stream, name, encoding)
        else:
            yield from _csv(stream, name, encoding)
    finally:
        if close:
            stream.close()


def _jsonl(stream: TextIO, name: str, encoding: str) -> Records:
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        text = line.rstrip("\r\n")
        source = f"{name} line {number}"
        if undecodable(text):
            yield source, Unreadable(text.encode("utf-8", "surrogateescape").decode(
                "utf-8", "replace"), undecodable_message(text, encoding))
        else:
            yield source, text


def _csv(stream: TextIO, name: str, encoding: str) -> Records:
    reader = csv.reader(stream)
    try:
        header = [column.strip() for column in next(reader)]
    except StopIteration:
        raise DataError("empty CSV: expected a header row naming user_id, item_id, "
                        "timestamp", file=name, row=0) from None
    if undecodable("".join(header)):
        raise DataError(undecodable_message("".join(header), encoding), file=name, row=0)
    for number, values in enumerate(reader, start=1):
        if not values or (len(values) == 1 and not values[0].strip()):
            continue
        source = f"{name} row {number}"
        if len(values) != len(header) or undecodable("".join(values)):
            text = _csv_line(values)
            detail = (undecodable_message(text, encoding) if undecodable(text) else
                      f"expected {len(header)} fields ({', '.join(header)}), found {len(values)}")
            yield source, Unreadable(text.encode("utf-8", "surrogateescape").decode(
                "utf-8", "replace"), detail)
            continue
        yield source, dict(zip(header, values))


def _csv_line(values: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue().rstrip("\r\n")
