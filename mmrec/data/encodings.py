"""Text encodings of input files: naming the encoding, and bytes that fit none.

Real exports are not all UTF-8. Spreadsheet programs write a UTF-8 byte-order
mark before the header; older shop systems write Latin-1 or Windows cp1252,
where "Café" is the bytes ``43 61 66 e9`` and ``e9`` alone is not UTF-8. A
reader that trusts the default either turns the first column into
``"\\ufeffitem_id"`` or dies in the middle of a file with a
``UnicodeDecodeError`` that names a byte offset in an 8 KB buffer, not a row.

So every reader decodes with :func:`reading_codec` (UTF-8 is read as
``utf-8-sig``: a mark at the start is dropped, one is never required) and the
``surrogateescape`` error handler, which keeps each undecodable byte as a
lone surrogate instead of raising. After a row is split into fields the reader
looks for those surrogates with :func:`undecodable`, so the error can name the
file, the row and the field, show the bytes, and say how the text would read
in cp1252, the usual culprit. The fix is always the ``encoding`` option (TOML
``data.encoding``, CLI ``--encoding``, the readers' ``encoding=`` argument).

Example:

    codec = reading_codec("utf-8")           # "utf-8-sig"
    text = decode_bytes(b"Caf\\xc3\\xa9", "utf-8", file="items.parquet", row=1,
                        field="title")        # "Café"
"""

from __future__ import annotations

import codecs
import io
import re

from mmrec.data.problems import DataError

ERRORS = "surrogateescape"
# What surrogateescape turns the undecodable bytes 0x80-0xff into.
_ESCAPED = re.compile("[\udc80-\udcff]+")
# Tried, in order, to show how undecodable bytes would read: cp1252 first
# because Windows spreadsheet and shop exports use it; UTF-8 for a file that
# was read as something else; Latin-1 last because it decodes any byte.
LIKELY_ENCODINGS = ("cp1252", "utf-8", "latin-1")


def reading_codec(encoding: str) -> str:
    """The codec to read ``encoding`` with; refuses names Python cannot read.

    UTF-8 is read as ``utf-8-sig`` so a byte-order mark at the start of a file
    is dropped rather than glued to the first column's name.

    Raises:
      DataError: ``encoding`` is not the name of a text encoding.
    """
    try:
        name = codecs.lookup(encoding).name
        io.TextIOWrapper(io.BytesIO(), encoding=encoding)  # refuses bytes-to-bytes codecs
    except (LookupError, TypeError) as error:
        raise DataError(f"unknown text encoding {encoding!r}: expected a name such as "
                        "'utf-8', 'cp1252' or 'latin-1'", field="encoding") from error
    return "utf-8-sig" if name == "utf-8" else encoding


def undecodable(text: str) -> bool:
    """Whether ``text`` holds bytes that the reading codec could not decode."""
    return _ESCAPED.search(text) is not None


def undecodable_message(text: str, encoding: str) -> str:
    """Says which bytes of ``text`` (decoded with surrogateescape) are not
    ``encoding``, how they read in the likeliest other encoding, and how to
    name the file's encoding."""
    # Back to the file's bytes; "utf-8-sig" would put a byte-order mark in front.
    codec = "utf-8" if reading_codec(encoding) == "utf-8-sig" else encoding
    bad = _ESCAPED.search(text)
    bad_bytes = bytes(ord(c) - 0xDC00 for c in bad.group()) if bad else b""
    start = max(bad.start() - 20, 0) if bad else 0
    shown = text[start:start + 60].encode(codec, ERRORS)
    is_utf8 = codecs.lookup(encoding).name == "utf-8"
    likely = "the file is probably not UTF-8 (a Latin-1 or cp1252 export?)" if is_utf8 \
        else f"the file is probably not {encoding}"
    suggestion, reading = "cp1252", ""
    for candidate in LIKELY_ENCODINGS:
        if codecs.lookup(candidate).name == codecs.lookup(encoding).name:
            continue
        try:
            reading = f"; as {candidate} it reads {shown.decode(candidate)!r}"
        except UnicodeDecodeError:
            continue
        suggestion = candidate
        break
    return (f"bytes {bad_bytes!r} in {shown!r} are not valid {encoding}: {likely}{reading}. "
            f"Name the file's encoding with the encoding option: data.encoding = "
            f"\"{suggestion}\" in the TOML config, --encoding {suggestion} on the command "
            f"line, encoding=\"{suggestion}\" in Python")


def decode_bytes(value: bytes, encoding: str, *, file: str, row: int | None,
                 field: str | None) -> str:
    """Text stored as bytes (a Parquet binary column), decoded with ``encoding``.

    Raises:
      DataError: naming file, row and field, when the bytes are not ``encoding``.
    """
    text = value.decode(reading_codec(encoding), ERRORS)
    if undecodable(text):
        raise DataError(undecodable_message(text, encoding), file=file, row=row, field=field)
    return text
