"""Turn a table of a pipeline file into a typed settings dataclass.

The settings of every step are frozen dataclasses whose fields carry type hints
(``int``, ``float``, ``bool``, ``str``, ``X | None``, fixed or variable tuples,
``str | tuple[...]`` unions and nested dataclasses). A pipeline table gives any
subset of their fields; the others keep their documented defaults. A key that is
not a field, or a value of the wrong type, is reported on one line that names the
pipeline file and the dotted key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

from labloop.errors import InputError


def settings_from_table(cls: type, table: dict[str, Any], where: str,
                        source: Path | None = None) -> Any:
    """Build the dataclass ``cls`` from a pipeline table.

    Parameters
    ----------
    cls
        A dataclass type (e.g. :class:`labloop.detect.DetectSettings`).
    table
        Keys and values read from the pipeline file; nested tables for nested
        dataclass fields.
    where
        Dotted name of the table in the file (``"track.solver"``), for errors.
    source
        The pipeline file, for errors.

    Returns
    -------
    An instance of ``cls``.

    Raises
    ------
    InputError
        For an unknown key, a value of the wrong type or a value the dataclass
        itself rejects.

    Examples
    --------
    >>> from labloop.detect import DetectSettings
    >>> settings_from_table(DetectSettings, {"min_score": 0.3}, "detect").min_score
    0.3
    """
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in table.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise InputError(f"unknown key {where}.{key} (known keys of [{where}]: {known})",
                             source)
        values[key] = _convert(hints[key], value, f"{where}.{key}", source)
    try:
        return cls(**values)
    except InputError as error:
        raise InputError(f"[{where}]: {error.problem}", source) from None
    except (TypeError, ValueError) as error:
        raise InputError(f"[{where}]: {error}", source) from None


def _convert(hint: Any, value: Any, key: str, source: Path | None) -> Any:
    """Check ``value`` against the type hint ``hint`` and convert it (lists → tuples)."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, dict):
            raise InputError(f"{key} must be a table ([{key}]), got {value!r}", source)
        return settings_from_table(hint, value, key, source)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        tables = [a for a in options if dataclasses.is_dataclass(a)]
        if tables and isinstance(value, dict):  # a nested table: its own errors are clearer
            return _convert(tables[0], value, key, source)
        for option in options:
            try:
                return _convert(option, value, key, source)
            except InputError:
                continue
        raise InputError(f"{key} must be {_describe(hint)}, got {value!r}", source)
    if origin is tuple:
        if not isinstance(value, list):
            raise InputError(f"{key} must be {_describe(hint)}, got {value!r}", source)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, key, source) for v in value)
        if len(value) != len(args):
            raise InputError(f"{key} must be {_describe(hint)}, got {value!r}", source)
        return tuple(_convert(a, v, key, source) for a, v in zip(args, value, strict=True))
    if _accepts(hint, value):
        return float(value) if hint is float else value
    raise InputError(f"{key} must be {_describe(hint)}, got {value!r}", source)


def _accepts(hint: Any, value: Any) -> bool:
    """True when a plain TOML value fits a scalar hint (ints count as floats, bools do not)."""
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is Any:
        return True
    return False


def _describe(hint: Any) -> str:
    """Words for a type hint, as used in error messages ("a number", "a list of 3 numbers")."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None))
    if origin is tuple:
        count = "" if len(args) == 2 and args[1] is Ellipsis else f"{len(args)} "
        return f"a list of {count}{_NOUNS.get(args[0], 'value')}s"
    if hint is bool:
        return "true or false"
    return f"a {_NOUNS.get(hint, getattr(hint, '__name__', str(hint)))}"


#: names of scalar types in error messages
_NOUNS = {bool: "boolean", int: "whole number", float: "number", str: "text"}
