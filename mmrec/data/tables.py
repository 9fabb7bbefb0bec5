"""Reading rows from CSV, TSV, JSONL, Parquet and RecBole atomic files.

Every format becomes the same thing: a list of column names and an iterator
of ``(row_number, {column: value})``, row numbers counted from 1 after the
header, so later checks can name the exact row. Structural problems (a row
with the wrong number of fields, a line that is not JSON) stop the load with a
:class:`~mmrec.data.problems.DataError` naming file and row.

RecBole atomic files (``*.inter``, ``*.item``, ``*.user``) are tab-separated
with typed headers such as ``user_id:token``; the type suffix is stripped from
the column name and checked against RecBole's four types.

Example:

    columns, rows = read_table("data/items.csv")
    for row_number, row in rows:
        print(row_number, row["item_id"])
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Iterator

from mmrec.data.problems import DataError

Rows = Iterator[tuple[int, dict]]
ATOMIC_SUFFIXES = (".inter", ".item", ".user")
ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")


def read_table(path: str | os.PathLike, format: str | None = None) -> tuple[list[str], Rows]:
    """Opens a table; returns (columns, rows).

    Args:
      path: the file.
      format: one of "atomic", "csv", "tsv", "jsonl", "parquet"; by default
        the file suffix decides (``.inter``/``.item``/``.user`` are atomic).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("file does not exist", file=str(path))
    suffix = "." + format if format else path.suffix.lower()
    if suffix in ATOMIC_SUFFIXES or suffix == ".atomic":
        return _read_delimited(path, "\t", atomic=True)
    if suffix in (".csv", ".tsv"):
        return _read_delimited(path, "\t" if suffix == ".tsv" else ",", atomic=False)
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".parquet":
        return _read_parquet(path)
    raise DataError(f"unknown table format {suffix!r}; expected one of "
                    f"{', '.join(TABLE_SUFFIXES + ATOMIC_SUFFIXES)}", file=str(path))


def _read_delimited(path: Path, delimiter: str, atomic: bool) -> tuple[list[str], Rows]:
    with open(path, newline="", encoding="utf-8") as handle:
        header_line = handle.readline()
    if not header_line.strip():
        raise DataError("file is empty: expected a header row", file=str(path), row=0)
    header = next(csv.reader([header_line], delimiter=delimiter,
                             quoting=csv.QUOTE_NONE if atomic else csv.QUOTE_MINIMAL))
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
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle, delimiter=delimiter,
                                quoting=csv.QUOTE_NONE if atomic else csv.QUOTE_MINIMAL)
            next(reader)
            for row_number, values in enumerate(reader, start=1):
                if not values or (len(values) == 1 and not values[0].strip()):
                    continue  # blank line
                if len(values) != len(columns):
                    raise DataError(
                        f"expected {len(columns)} fields ({', '.join(columns)}), "
                        f"found {len(values)}", file=str(path), row=row_number)
                yield row_number, dict(zip(columns, values))

    return columns, rows()


def _read_jsonl(path: Path) -> tuple[list[str], Rows]:
    columns: list[str] = []
    records = []
    with open(path, encoding="utf-8") as handle:
        for row_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"not valid JSON: {error.msg} at column {error.colno}",
                                file=str(path), row=row_number) from error
            if not isinstance(record, dict):
                raise DataError(f"expected a JSON object, found {type(record).__name__}",
                                file=str(path), row=row_number)
            columns.extend(k for k in record if k not in columns)
            records.append((row_number, record))
    return columns, iter(records)


def _read_parquet(path: Path) -> tuple[list[str], Rows]:
    try:
        import pyarrow.parquet as pq
    except ImportError as error:
        raise DataError("reading Parquet needs pyarrow: pip install 'mmrec[parquet]'",
                        file=str(path)) from error
    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for bad files
        raise DataError(f"not a readable Parquet file: {error}", file=str(path)) from error
    columns = table.column_names
    data = table.to_pydict()

    def rows() -> Rows:
        for i in range(table.num_rows):
            yield i + 1, {c: data[c][i] for c in columns}

    return columns, rows()


def require_columns(columns: list[str], required: list[str], file: str) -> None:
    """Raises DataError naming the first required column that is missing."""
    for name in required:
        if name not in columns:
            raise DataError(f"missing required column {name!r}; columns are {columns}",
                            file=file, field=name)


def atomic_column_types(path: str | os.PathLike) -> dict[str, str]:
    """The RecBole types of an atomic file's columns, e.g. {'item_id': 'token'}."""
    with open(path, encoding="utf-8") as handle:
        header = handle.readline().rstrip("\r\n").split("\t")
    return dict(name.strip().rsplit(":", 1) for name in header if ":" in name)
