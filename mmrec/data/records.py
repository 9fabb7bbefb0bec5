"""Turning table rows into a :class:`Catalogue` and :class:`Interactions`.

Every reader (RecBole atomic files, the CSV/JSONL/Parquet schema, the MMRec
layout) ends here, so the rules for bad input are written once:

* errors (the load stops, naming file, row and field): a missing required
  column, an empty id, a timestamp that is not a number or ISO-8601 time,
  text stored as bytes that are not the file's encoding, and interactions of
  which more than half name items the catalogue does not have (the two files
  almost surely write their ids differently: "007" against "7");
* counted skips (the row is left out and reported): a duplicate item id, an
  interaction with an item the catalogue does not have (when it is not most
  of them), an exact duplicate interaction (same user, item and timestamp);
* counted repairs (the row stays and is reported): an empty text, a missing or
  corrupt image (the item keeps its other modalities; its mask is off), rows
  whose timestamp goes back in time (kept; splits sort stably by time),
  epoch timestamps in milliseconds, microseconds or nanoseconds (converted to
  seconds, see :mod:`mmrec.data.timestamps`).

Ids are compared as text, exactly as written: "007", "7" and "7.0" are three
different items. That is the only safe rule (a catalogue may mean "007" and
"7" as two products), so mmrec never normalises ids; it only says so when the
normalised forms would have matched.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from pathlib import Path
from typing import Iterable

import numpy as np

from mmrec.data.catalogue import Catalogue
from mmrec.data.encodings import decode_bytes, reading_codec
from mmrec.data.images import ImageProblem, decode_image
from mmrec.data.interactions import Interactions
from mmrec.data.problems import DataError, LoadReport
from mmrec.data.timestamps import check_unit, column_seconds
from mmrec.data.timestamps import parse_timestamp  # noqa: F401  (its former home)
from mmrec.progress import progress

# More than this share of interactions with unknown items stops the load.
UNKNOWN_ITEM_LIMIT = 0.5
UNKNOWN_ITEM_EXAMPLES = 3
_PLAIN_NUMBER = re.compile(r"\d+(?:\.0*)?")


@dataclasses.dataclass(frozen=True)
class ItemFields:
    """Which item columns mean what.

    Attributes:
      item_id: the id column.
      text: columns joined (space-separated) into the item text; None means
        every column that is not the id or an image column, in file order.
      title: the column shown as the item's title; None means the first text
        column.
      image_path: a column of image paths, relative to ``image_root``.
      image_bytes: a column of encoded image bytes (Parquet binary).
    """

    item_id: str = "item_id"
    text: tuple[str, ...] | None = None
    title: str | None = None
    image_path: str = "image_path"
    image_bytes: str = "image"


@dataclasses.dataclass(frozen=True)
class InteractionFields:
    """Which interaction columns mean what; ``event`` is optional."""

    user_id: str = "user_id"
    item_id: str = "item_id"
    timestamp: str = "timestamp"
    event: str = "event_type"


def read_options(encoding: str = "utf-8", timestamp_unit: str = "auto") -> dict[str, str]:
    """The options a folder was read with, checked; a :class:`Dataset` keeps
    them so its split file is read the same way.

    Raises:
      DataError: an unknown encoding. ValueError: an unknown timestamp unit.
    """
    reading_codec(encoding)
    return {"encoding": encoding, "timestamp_unit": check_unit(timestamp_unit)}


def text_value(value, *, encoding: str = "utf-8", file: str | None = None,
               row: int | None = None, field: str | None = None) -> str:
    """A cell as text: "" for missing or NaN, lists joined by spaces, bytes
    (Parquet binary columns) decoded with ``encoding``, never their repr.

    Raises:
      DataError: naming file, row and field, for bytes that are not ``encoding``.
    """
    if type(value) is str:  # noqa: E721  (the usual case, first: one check per cell)
        return value.strip()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bytes):
        return decode_bytes(value, encoding, file=file, row=row, field=field).strip()
    if isinstance(value, (list, tuple)):
        return " ".join(text_value(v, encoding=encoding, file=file, row=row, field=field)
                        for v in value)
    return str(value).strip()


def normalised_id(item_id: str) -> str:
    """An id without the formatting a number picks up on its way through a
    spreadsheet or a float column: "007" and "7.0" become "7"; an id that is
    not a plain number stays as it is. Used only to explain a mismatch."""
    if _PLAIN_NUMBER.fullmatch(item_id):
        return str(int(item_id.split(".")[0]))
    return item_id


def build_catalogue(columns: list[str], rows: Iterable[tuple[int, dict]], *, file: str,
                    report: LoadReport, fields: ItemFields = ItemFields(),
                    image_root: Path | None = None, image_size: int = 64,
                    image_channels: int = 3,
                    encoding: str = "utf-8") -> tuple[Catalogue, np.ndarray]:
    """Reads item rows; returns the catalogue and the kept source-row positions.

    The second value lists, for each catalogue item, its position among the
    file's data rows, so arrays aligned with the file (precomputed feature
    matrices) can be aligned with the catalogue. Text stored as bytes is
    decoded with ``encoding``; the ``fields.image_bytes`` column stays bytes.
    """
    text = functools.partial(text_value, encoding=encoding, file=file)
    if fields.item_id not in columns:
        raise DataError(f"missing required column {fields.item_id!r}; columns are {columns}",
                        file=file, field=fields.item_id)
    image_columns = {fields.image_path, fields.image_bytes}
    text_fields = list(fields.text) if fields.text is not None else [
        c for c in columns if c != fields.item_id and c not in image_columns]
    for name in text_fields:
        if name not in columns:
            raise DataError(f"text column {name!r} not in {columns}", file=file, field=name)
    title_field = fields.title or (text_fields[0] if text_fields else None)
    has_images = fields.image_path in columns or fields.image_bytes in columns

    ids, texts, titles, positions, sources = [], [], [], [], []
    seen: set[str] = set()
    for position, (row_number, row) in enumerate(rows):
        item_id = text(row.get(fields.item_id), row=row_number, field=fields.item_id)
        if not item_id:
            raise DataError("empty item id", file=file, row=row_number, field=fields.item_id)
        if item_id in seen:
            report.skip(file, "duplicate item id (first row kept)", row=row_number,
                        field=fields.item_id, value=item_id)
            continue
        seen.add(item_id)
        item_text = " ".join(t for t in (text(row.get(c), row=row_number, field=c)
                                         for c in text_fields) if t)
        if not item_text and text_fields:
            report.skip(file, "empty text (item kept without text)", row=row_number,
                        field="+".join(text_fields), value=item_id, kept=True)
        ids.append(item_id)
        texts.append(item_text)
        titles.append(text(row.get(title_field), row=row_number, field=title_field)
                      if title_field else item_id)
        positions.append(position)
        sources.append((row_number, row.get(fields.image_bytes) or text(
            row.get(fields.image_path), row=row_number, field=fields.image_path)))

    images = image_mask = None
    if has_images:
        images = np.zeros((len(ids), image_size, image_size, image_channels), dtype=np.uint8)
        image_mask = np.zeros(len(ids), dtype=bool)
        for i, (row_number, source) in enumerate(progress(sources, desc="decoding images")):
            if not source:
                report.skip(file, "no image (item kept without image)", row=row_number,
                            value=ids[i], kept=True)
                continue
            if isinstance(source, str):
                source = (image_root or Path(file).parent) / source
            try:
                images[i] = decode_image(source, image_size, image_channels)
                image_mask[i] = True
            except ImageProblem as problem:
                reason = str(problem).split(" (")[0].replace(f" {source}", "")
                report.skip(file, f"{reason} (item kept without image)", row=row_number,
                            field=fields.image_path, value=str(source) if not isinstance(
                                source, bytes) else ids[i], kept=True)
    catalogue = Catalogue.build(ids, texts, images=images, image_mask=image_mask,
                                metadata={"title": titles})
    return catalogue, np.asarray(positions, dtype=np.int64)


def _explain_unknown_items(unknown: list[tuple[int, str]], total: int,
                           item_index: dict[str, int], *, file: str,
                           catalogue_file: str | None, field: str,
                           report: LoadReport) -> None:
    """Counts interactions with unknown items, or stops when they are most.

    A few unknown items are normal (a product delisted since the log was
    written). Most of them unknown means the two files write their ids
    differently, and skipping would leave a log too small to learn from with
    nothing but a count to show for it; so that stops with examples from both
    files, and with the normalised match when there is one.
    """
    if not unknown:
        return
    catalogue_name = Path(catalogue_file).name if catalogue_file else "the catalogue"
    by_normal: dict[str, str] = {}
    for item_id in item_index:
        by_normal.setdefault(normalised_id(item_id), item_id)
    near = {row: by_normal[normalised_id(item_id)] for row, item_id in unknown
            if normalised_id(item_id) in by_normal}
    as_text = ""
    if near:
        row, item_id = next((r, i) for r, i in unknown if r in near)
        as_text = (f"ids are compared as text: {item_id!r} in {Path(file).name} and "
                   f"{near[row]!r} in {catalogue_name} differ")
    if len(unknown) > UNKNOWN_ITEM_LIMIT * total:
        examples = list(dict.fromkeys(i for _, i in unknown))[:UNKNOWN_ITEM_EXAMPLES]
        known = list(item_index)[:UNKNOWN_ITEM_EXAMPLES]
        message = (f"{len(unknown)} of {total} interactions name an item id that is not in "
                   f"{catalogue_name} (e.g. {', '.join(map(repr, examples))}), whose ids are "
                   f"such as {', '.join(map(repr, known))}")
        if near:
            message += (f"; {as_text}; with leading zeros and a trailing '.0' removed, "
                        f"{len(near)} of the {len(unknown)} would match. Write the ids the "
                        "same way in both files")
        else:
            message += "; check that both files come from the same catalogue and id column"
        raise DataError(message, file=file, row=unknown[0][0], field=field)
    for row, item_id in unknown:
        reason = "unknown item id (not in the catalogue)"
        if row in near:
            reason = (f"unknown item id (not in the catalogue; {as_text}, but match once "
                      "leading zeros and a trailing '.0' are removed)")
        report.skip(file, reason, row=row, field=field, value=item_id)


def build_interactions(columns: list[str], rows: Iterable[tuple[int, dict]], *, file: str,
                       item_index: dict[str, int], report: LoadReport,
                       fields: InteractionFields = InteractionFields(),
                       encoding: str = "utf-8", timestamp_unit: str = "auto",
                       catalogue_file: str | None = None
                       ) -> tuple[Interactions, np.ndarray]:
    """Reads interaction rows; returns the log and each kept row's file row number.

    Args:
      columns, rows: what :func:`~mmrec.data.tables.read_table` gave.
      file: the interactions file, named in errors and the report.
      item_index: the catalogue's id -> index.
      report: collects skips and repairs.
      fields: which columns mean what.
      encoding: decodes text stored as bytes (Parquet binary columns).
      timestamp_unit: one of :data:`~mmrec.data.timestamps.TIMESTAMP_UNITS`;
        "auto" decides the unit of the whole file from its magnitude.
      catalogue_file: where the catalogue came from, named when ids mismatch.

    Raises:
      DataError: a missing column, an empty id, a bad timestamp, or more than
        half the interactions naming items the catalogue does not have.
    """
    check_unit(timestamp_unit)
    for name in (fields.user_id, fields.item_id, fields.timestamp):
        if name not in columns:
            raise DataError(f"missing required column {name!r}; columns are {columns}",
                            file=file, field=name)
    text = functools.partial(text_value, encoding=encoding, file=file)
    has_event = fields.event in columns
    read = []  # (row number, user id, item id, timestamp as written, event)
    for row_number, row in rows:
        user_id = text(row.get(fields.user_id), row=row_number, field=fields.user_id)
        item_id = text(row.get(fields.item_id), row=row_number, field=fields.item_id)
        if not user_id:
            raise DataError("empty user id", file=file, row=row_number, field=fields.user_id)
        if not item_id:
            raise DataError("empty item id", file=file, row=row_number, field=fields.item_id)
        when = row.get(fields.timestamp)
        if isinstance(when, bytes):
            when = text(when, row=row_number, field=fields.timestamp)
        event = text(row.get(fields.event), row=row_number, field=fields.event) \
            if has_event else None
        read.append((row_number, user_id, item_id, when, event))
    if not read:
        raise DataError("no usable interactions", file=file)
    all_seconds = column_seconds(((r[0], r[3]) for r in read), timestamp_unit, file=file,
                                 field=fields.timestamp, report=report)
    _explain_unknown_items([(r[0], r[2]) for r in read if r[2] not in item_index], len(read),
                           item_index, file=file, catalogue_file=catalogue_file,
                           field=fields.item_id, report=report)

    users, items, times, events, row_numbers = [], [], [], [], []
    seen: set[tuple[str, int, float]] = set()
    previous_time = -math.inf
    for (row_number, user_id, item_id, when, event), seconds in zip(read, all_seconds.tolist()):
        item = item_index.get(item_id)
        if item is None:
            continue  # counted above
        key = (user_id, item, seconds)
        if key in seen:
            report.skip(file, "duplicate interaction (same user, item and timestamp)",
                        row=row_number, value=f"{user_id}/{item_id}")
            continue
        seen.add(key)
        if seconds < previous_time:
            report.skip(file, "timestamp earlier than the row before (kept; splits sort "
                        "stably by time)", row=row_number, field=fields.timestamp,
                        value=when, kept=True)
        previous_time = seconds
        users.append(user_id)
        items.append(item)
        times.append(seconds)
        events.append(event)
        row_numbers.append(row_number)
    if not users:
        raise DataError("no usable interactions", file=file)
    interactions = Interactions.build(users, items, times, events if has_event else None)
    return interactions, np.asarray(row_numbers, dtype=np.int64)
