"""Type checks of configuration values against a dataclass's annotations.

A TOML file can say ``batch_size = 12.5`` or ``batch_size = "big"``; Python
would carry either into the run and fail far from the file, or not fail at
all. Every configuration table is checked here first, key by key, against
the annotation of the dataclass field it fills, so the refusal names the key,
the type it needs and the value it got, before any work starts.

Example:

    values = checked_values(DataConfig, {"batch_size": 12.5}, "data")
    # ValueError: data.batch_size must be an integer, got 12.5 (float)
"""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from typing import Any, Mapping


def _describe(expected) -> str:
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if expected is int:
        return "an integer"
    if expected is float:
        return "a number"
    if expected is bool:
        return "true or false"
    if expected is str:
        return "a string"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0]).removeprefix('an ').removeprefix('a ')}s"
        return f"a list of {len(args)} values"
    if origin in (dict, collections.abc.Mapping) or expected is dict:
        return "a table"
    return getattr(expected, "__name__", str(expected))


def _matches(value, expected) -> bool:
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if expected is Any:
        return True
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is str:
        return isinstance(value, str)
    if expected is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args))
    if origin in (dict, collections.abc.Mapping) or expected is dict:
        return isinstance(value, collections.abc.Mapping)
    if dataclasses.is_dataclass(expected):
        return isinstance(value, (expected, Mapping))
    return isinstance(value, expected) if isinstance(expected, type) else True


def checked_values(cls, values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """``values`` checked against ``cls``'s fields; lists become tuples.

    Raises:
      ValueError: an unknown key (naming the known ones), or a value of the
        wrong type (naming the key, the expected type and the value).
    """
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"unknown {prefix} config key(s) {unknown}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    checked = {}
    for name, value in values.items():
        expected = hints[name]
        if not _matches(value, expected):
            raise ValueError(f"{prefix}.{name} must be {_describe(expected)}, got {value!r} "
                             f"({type(value).__name__})")
        checked[name] = tuple(value) if isinstance(value, list) else value
    return checked
