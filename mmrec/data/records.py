"""Turning table rows into a :class:`Catalogue` and :class:`Interactions`.

Every reader (RecBole atomic files, the CSV/JSONL/Parquet schema, the MMRec
layout) ends here, so the rules for bad input are written once:

* errors (the load stops, naming file, row and field): a missing required
  column, an empty id, a timestamp that is not a number or ISO-8601 time;
* counted skips (the row is left out and reported): a duplicate item id, an
  interaction with an item the catalogue does not have, an exact duplicate
  interaction (same user, item and timestamp);
* counted repairs (the row stays and is reported): an empty text, a missing or
  corrupt image (the item keeps its other modalities; its mask is off), rows
  whose timestamp goes back in time (kept; splits sort stably by time).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from pathlib import Path
from typing import Iterable

import numpy as np

from mmrec.data.catalogue import Catalogue
from mmrec.data.images import ImageProblem, decode_image
from mmrec.data.interactions import Interactions
from mmrec.data.problems import DataError, LoadReport
from mmrec.progress import progress


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


def _text_value(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(_text_value(v) for v in value)
    return str(value).strip()


def build_catalogue(columns: list[str], rows: Iterable[tuple[int, dict]], *, file: str,
                    report: LoadReport, fields: ItemFields = ItemFields(),
                    image_root: Path | None = None, image_size: int = 64,
                    image_channels: int = 3) -> tuple[Catalogue, np.ndarray]:
    """Reads item rows; returns the catalogue and the kept source-row positions.

    The second value lists, for each catalogue item, its position among the
    file's data rows, so arrays aligned with the file (precomputed feature
    matrices) can be aligned with the catalogue.
    """
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
        item_id = _text_value(row.get(fields.item_id))
        if not item_id:
            raise DataError("empty item id", file=file, row=row_number, field=fields.item_id)
        if item_id in seen:
            report.skip(file, "duplicate item id (first row kept)", row=row_number,
                        field=fields.item_id, value=item_id)
            continue
        seen.add(item_id)
        text = " ".join(t for t in (_text_value(row.get(c)) for c in text_fields) if t)
        if not text and text_fields:
            report.skip(file, "empty text (item kept without text)", row=row_number,
                        field="+".join(text_fields), value=item_id, kept=True)
        ids.append(item_id)
        texts.append(text)
        titles.append(_text_value(row.get(title_field)) if title_field else item_id)
        positions.append(position)
        sources.append((row_number, row.get(fields.image_bytes) or row.get(fields.image_path)))

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


def parse_timestamp(value, *, file: str, row: int, field: str) -> float:
    """Seconds from a number or an ISO-8601 time; DataError otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, dt.datetime):
        seconds = value.timestamp()
    else:
        text = _text_value(value)
        if not text:
            raise DataError("empty timestamp", file=file, row=row, field=field)
        try:
            seconds = float(text)
        except ValueError:
            try:
                moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError as error:
                raise DataError(f"timestamp {text!r} is neither a number nor an ISO-8601 time",
                                file=file, row=row, field=field) from error
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.timezone.utc)
            seconds = moment.timestamp()
    if not math.isfinite(seconds):
        raise DataError(f"timestamp {value!r} is not finite", file=file, row=row, field=field)
    return seconds


def build_interactions(columns: list[str], rows: Iterable[tuple[int, dict]], *, file: str,
                       item_index: dict[str, int], report: LoadReport,
                       fields: InteractionFields = InteractionFields()
                       ) -> tuple[Interactions, np.ndarray]:
    """Reads interaction rows; returns the log and each kept row's file row number."""
    for name in (fields.user_id, fields.item_id, fields.timestamp):
        if name not in columns:
            raise DataError(f"missing required column {name!r}; columns are {columns}",
                            file=file, field=name)
    has_event = fields.event in columns
    users, items, times, events, row_numbers = [], [], [], [], []
    seen: set[tuple[str, int, float]] = set()
    previous_time = -math.inf
    for row_number, row in rows:
        user_id = _text_value(row.get(fields.user_id))
        item_id = _text_value(row.get(fields.item_id))
        if not user_id:
            raise DataError("empty user id", file=file, row=row_number, field=fields.user_id)
        if not item_id:
            raise DataError("empty item id", file=file, row=row_number, field=fields.item_id)
        seconds = parse_timestamp(row.get(fields.timestamp), file=file, row=row_number,
                                  field=fields.timestamp)
        item = item_index.get(item_id)
        if item is None:
            report.skip(file, "unknown item id (not in the catalogue)", row=row_number,
                        field=fields.item_id, value=item_id)
            continue
        key = (user_id, item, seconds)
        if key in seen:
            report.skip(file, "duplicate interaction (same user, item and timestamp)",
                        row=row_number, value=f"{user_id}/{item_id}")
            continue
        seen.add(key)
        if seconds < previous_time:
            report.skip(file, "timestamp earlier than the row before (kept; splits sort "
                        "stably by time)", row=row_number, field=fields.timestamp,
                        value=row.get(fields.timestamp), kept=True)
        previous_time = seconds
        users.append(user_id)
        items.append(item)
        times.append(seconds)
        events.append(_text_value(row.get(fields.event)) if has_event else None)
        row_numbers.append(row_number)
    if not users:
        raise DataError("no usable interactions", file=file)
    interactions = Interactions.build(users, items, times, events if has_event else None)
    return interactions, np.asarray(row_numbers, dtype=np.int64)
