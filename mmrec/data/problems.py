"""Bad input: errors that name the file, row and field, and counted skips.

Every reader follows one rule: a problem either stops the load with a
:class:`DataError` that says where it is, or is skipped, counted and reported
through a :class:`LoadReport`. Nothing is dropped silently.

Example:

    report = LoadReport()
    report.skip("items.csv", "empty text", row=12, field="description")
    print(report.summary())
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Iterable

logger = logging.getLogger("mmrec.data")


class DataError(ValueError):
    """Input that cannot be loaded, with the place it was found.

    Args:
      message: what is wrong and what was expected.
      file: the file the problem is in.
      row: 1-based data row (the header is row 0), where one applies.
      field: the column or field name, where one applies.
    """

    def __init__(self, message: str, *, file: str | None = None,
                 row: int | None = None, field: str | None = None) -> None:
        self.file, self.row, self.field = file, row, field
        where = [part for part in (
            f"file {file}" if file else None,
            f"row {row}" if row is not None else None,
            f"field {field!r}" if field else None) if part]
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


@dataclasses.dataclass
class SkipCount:
    """How often one kind of problem was skipped in one file."""

    file: str
    reason: str
    count: int = 0
    kept: bool = False
    examples: list[str] = dataclasses.field(default_factory=list)


class LoadReport:
    """Counts of what a load skipped or repaired, by file and reason.

    Readers call :meth:`skip` for each problem they step over (the item or row
    is kept without the bad part, or left out, as the reason says);
    :meth:`summary` gives the lines a CLI prints and :meth:`as_dict` the JSON.
    """

    MAX_EXAMPLES = 3

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], SkipCount] = {}

    def skip(self, file: str, reason: str, *, row: int | None = None,
             field: str | None = None, value: object = None, count: int = 1,
             kept: bool = False) -> None:
        """Counts one problem; ``kept=True`` when the row stays, repaired."""
        key = (file, reason)
        entry = self._counts.setdefault(key, SkipCount(file, reason, kept=kept))
        entry.count += count
        if len(entry.examples) < self.MAX_EXAMPLES and (row is not None or value is not None):
            parts = [f"row {row}" if row is not None else "",
                     f"{field}={value!r}" if field else (repr(value) if value is not None else "")]
            entry.examples.append(" ".join(p for p in parts if p))

    def count(self, reason: str | None = None) -> int:
        """Total count, or the count of reasons that start with ``reason``."""
        return sum(c.count for c in self._counts.values()
                   if reason is None or c.reason.startswith(reason))

    def __bool__(self) -> bool:
        return bool(self._counts)

    def entries(self) -> list[SkipCount]:
        return list(self._counts.values())

    def summary(self) -> list[str]:
        lines = []
        for c in self._counts.values():
            example = f" (e.g. {'; '.join(c.examples)})" if c.examples else ""
            action = "kept" if c.kept else "skipped"
            lines.append(f"{c.file}: {action} {c.count} x {c.reason}{example}")
        return lines

    def log(self) -> None:
        for line in self.summary():
            logger.warning("%s", line)

    def as_dict(self) -> list[dict]:
        return [dataclasses.asdict(c) for c in self._counts.values()]


def warn_without_validation(labels: Iterable[str], *, file: str) -> None:
    """Logs a warning when an explicit split labels no interaction "valid".

    Such a split is legal (some benchmarks ship only train and test), but
    training then has no validation users: early stopping and the choice of
    the best epoch have nothing to watch. A warning rather than an error,
    because a fixed number of epochs is a sound way to train on it.
    """
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    if not counts.get("valid"):
        parts = ", ".join(f"{part} {counts.get(part, 0)}" for part in ("train", "test"))
        logger.warning("%s: the split labels no interaction 'valid' (%s): early stopping has "
                       "nothing to watch and the best epoch cannot be chosen; label some rows "
                       "'valid' (e.g. each user's second-to-last) or train a fixed number of "
                       "epochs", file, parts)
