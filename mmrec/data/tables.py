"""Reading rows from CSV, TSV, JSONL, Parquet and RecBole atomic files.

Every format becomes the same thing: a list of column names and an iterator
of ``(row_number, {column: value})``, row numbers counted from 1 after the
header, so later checks can name the exact row. Structural problems (a row
with the wrong number of fields, a line that is not JSON) stop the load with a
:class:`~mmrec.data.problems.DataError` naming file and row.

RecBole atomic files (``*.inter``, ``*.item``, ``*.user``) are tab-separated
with typed headers such as ``user_id:token``; the type suffix is stripped from
the column name and checked against RecBole's four types.

Text files are decoded with the ``encoding`` argument (UTF-8 by default, read
through a byte-order mark); bytes that do not decode stop the load with an
error naming file, row and field and the fix (see
:mod:`mmrec.data.encodings`). Fields may be as long as the platform allows:
product descriptions of 200 KB exist, and the csv module's default limit
(131,072 characters) would refuse them.

Example:

    columns, rows = read_table("data/items.csv")
    for row_number, row in rows:
        print(row_number, row["item_id"])
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import Iterator

from mmrec.data.encodings import ERRORS, reading_codec, undecodable, undecodable_message
from mmrec.data.problems import DataError

Rows = Iterator[tuple[int, dict]]
ATOMIC_SUFFIXES = (".inter", ".item", ".user")
ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")


def _raise_csv_field_limit() -> None:
    """Lets a CSV field be as long as the platform's C long allows.

    The limit is global to the csv module; it exists against runaway quoting,
    which the field-count check of every row catches anyway.
    """
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:  # a 32-bit C long (Windows)
            limit //= 2


_raise_csv_field_limit()


def read_table(path: str | os.PathLike, format: str | None = None, *,
               encoding: str = "utf-8") -> tuple[list[str], Rows]:
    """Opens a table; returns (columns, rows).

    Args:
      path: the file.
      format: one of "atomic", "csv", "tsv", "jsonl", "parquet"; by default
        the file suffix decides (``.inter``/``.item``/``.user`` are atomic).
      encoding: of a text file (CSV, TSV, JSONL, atomic); UTF-8 is read with or
        without a byte-order mark. Parquet text is Arrow strings; its binary
        columns are decoded by whoever knows which hold text.

    Raises:
      DataError: naming file, row and field: an unknown encoding, bytes that
        are not ``encoding``, a row with the wrong number of fields, a line
        that is not JSON, an unreadable Parquet file.
    """
    path = Path(path)
    reading_codec(encoding)  # an unknown name fails before any file is opened
    if not path.is_file():
        raise DataError("file does not exist", file=str(path))
    suffix = "." + format if format else path.suffix.lower()
    if suffix in ATOMIC_SUFFIXES or suffix == ".atomic":
        return _read_delimited(path, "\t", atomic=True, encoding=encoding)
    if suffix in (".csv", ".tsv"):
        return _read_delimited(path, "\t" if suffix == ".tsv" else ",", atomic=False,
                               encoding=encoding)
    if suffix == ".jsonl":
        return _read_jsonl(path, encoding=encoding)
    if suffix == ".parquet":
        return _read_parquet(path)
    raise DataError(f"unknown table format {suffix!r}; expected one of "
                    f"{', '.join(TABLE_SUFFIXES + ATOMIC_SUFFIXES)}", file=str(path))


def _check_decoded(values: list[str], columns: list[str] | None, *, path: Path, row: int,
                   encoding: str) -> None:
    """DataError naming the first field that holds bytes ``encoding`` cannot read."""
    if not undecodable("".join(values)):  # one search per row: the usual, clean case
        return
    for k, value in enumerate(values):
        if undecodable(value):
            field = columns[k] if columns and k < len(columns) else None
            raise DataError(undecodable_message(value, encoding), file=str(path), row=row,
                            field=field)


def _read_header(path: Path, delimiter: str, atomic: bool, *, encoding: str) -> list[str]:
    """The header's names as written (atomic type suffixes included)."""
    with open(path, newline="", encoding=reading_codec(encoding), errors=ERRORS) as handle:
        header_line = handle.readline()
    if not header_line.strip():
        raise DataError("file is empty: expected a header row", file=str(path), row=0)
    header = next(csv.reader([header_line], delimiter=delimiter,
                             quoting=csv.QUOTE_NONE if atomic else csv.QUOTE_MINIMAL))
    _check_decoded(header, None, path=path, row=0, encoding=encoding)
    return header


def _read_delimited(path: Path, delimiter: str, atomic: bool, *,
                    encoding: str) -> tuple[list[str], Rows]:
    header = _read_header(path, delimiter, atomic, encoding=encoding)
    columns = []
    for name in header:
        name = name.strip()
        if atomic:
            if ":" not in name or name.rsplit(":", 1)[1] not in ATOMIC_TYPES:
                raise DataError(
                    f"atomic-file header {name!r} needs a type suffix, one of "
                    f"{', '.join(ATOMIC_TYPES)} (e.g. 'item_id:token')",
                    file=str(path), row=0, field=name)
            name = name.rsplit(":", 1)[0]
        columns.append(name)
    if len(set(columns)) != len(columns):
        raise DataError(f"duplicate column names in header {columns}", file=str(path), row=0)

    def rows() -> Rows:
        with open(path, newline="", encoding=reading_codec(encoding), errors=ERRORS) as handle:
            reader = csv.reader(handle, delimiter=delimiter,
                                quoting=csv.QUOTE_NONE if atomic else csv.QUOTE_MINIMAL)
            next(reader)
            for row_number, values in enumerate(reader, start=1):
                if not values or (len(values) == 1 and not values[0].strip()):
                    continue  # blank line
                _check_decoded(values, columns, path=path, row=row_number, encoding=encoding)
                if len(values) != len(columns):
                    raise DataError(
                        f"expected {len(columns)} fields ({', '.join(columns)}), "
                        f"found {len(values)}", file=str(path), row=row_number)
                yield row_number, dict(zip(columns, values))

    return columns, rows()


def _undecodable_field(record: dict) -> tuple[str | None, str | None]:
    """The first key whose name or (nested) text holds undecodable bytes, and that text."""
    def bad_text(value) -> str | None:
        if isinstance(value, str):
            return value if undecodable(value) else None
        items = value.items() if isinstance(value, dict) else (
            enumerate(value) if isinstance(value, list) else ())
        for key, inner in items:
            found = bad_text(key) if isinstance(key, str) else None
            found = found or bad_text(inner)
            if found:
                return found
        return None
    for key, value in record.items():
        text = bad_text(key) or bad_text(value)
        if text:
            return key, text
    return None, None


def _read_jsonl(path: Path, *, encoding: str) -> tuple[list[str], Rows]:
    columns: list[str] = []
    records = []
    with open(path, encoding=reading_codec(encoding), errors=ERRORS) as handle:
        for row_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                if undecodable(line):  # the bytes, not the JSON, are the problem
                    raise DataError(undecodable_message(line, encoding), file=str(path),
                                    row=row_number) from error
                raise DataError(f"not valid JSON: {error.msg} at column {error.colno}",
                                file=str(path), row=row_number) from error
            if not isinstance(record, dict):
                raise DataError(f"expected a JSON object, found {type(record).__name__}",
                                file=str(path), row=row_number)
            if undecodable(line):
                key, text = _undecodable_field(record)
                raise DataError(undecodable_message(text or line, encoding), file=str(path),
                                row=row_number, field=key)
            columns.extend(k for k in record if k not in columns)
            records.append((row_number, record))
    return columns, iter(records)


PARQUET_BATCH_ROWS = 65_536
"""Rows read from a Parquet file at a time: its rows stream, one batch in memory."""


def _read_parquet(path: Path) -> tuple[list[str], Rows]:
    """Rows of Python values, read batch by batch (a feed of millions of rows
    never sits in memory whole); binary columns stay bytes (text or pictures:
    only the caller knows), timestamp columns become datetimes (naive ones
    are UTC wall-clock times, as Arrow stores them). A file that cannot be
    opened fails here; a damaged part later in it fails when its rows are
    reached, naming the first row that could not be read."""
    try:
        import pyarrow.parquet as pq
    except ImportError as error:
        raise DataError("reading Parquet needs pyarrow: pip install 'mmrec[parquet]'",
                        file=str(path)) from error
    try:
        handle = pq.ParquetFile(path)
        columns = list(handle.schema_arrow.names)
    except Exception as error:  # pyarrow raises several types for bad files
        raise DataError(f"not a readable Parquet file: {error}", file=str(path)) from error

    def rows() -> Rows:
        number = 0
        try:
            for batch in handle.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                data = _with_microseconds(batch).to_pydict()
                for i in range(batch.num_rows):
                    number += 1
                    yield number, {c: data[c][i] for c in columns}
        except Exception as error:  # noqa: BLE001  (pyarrow's many types, as above)
            raise DataError(f"not a readable Parquet file: {error}", file=str(path),
                            row=number + 1) from error
        finally:
            handle.close()

    return columns, rows()


def _with_microseconds(batch):
    """``batch`` with nanosecond timestamps cut to microseconds: Python datetimes
    hold microseconds, Arrow refuses to drop nanoseconds unless told, and a
    click's nanoseconds do not matter."""
    import pyarrow as pa
    arrays = [column.cast(pa.timestamp("us", tz=field.type.tz), safe=False)
              if pa.types.is_timestamp(field.type) and field.type.unit == "ns" else column
              for field, column in zip(batch.schema, batch.columns)]
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def require_columns(columns: list[str], required: list[str], file: str) -> None:
    """Raises DataError naming the first required column that is missing."""
    for name in required:
        if name not in columns:
            raise DataError(f"missing required column {name!r}; columns are {columns}",
                            file=file, field=name)


def atomic_column_types(path: str | os.PathLike, *, encoding: str = "utf-8") -> dict[str, str]:
    """The RecBole types of an atomic file's columns, e.g. {'item_id': 'token'}."""
    header = _read_header(Path(path), "\t", atomic=True, encoding=encoding)
    return dict(name.strip().rsplit(":", 1) for name in header if ":" in name)
