"""Errors as one line for a notification."""

from __future__ import annotations

from labloop.errors import InputError

#: longest message shown
MAX_CHARS = 300


def one_line(error: BaseException) -> str:
    """The first line of an error; prefixed with its type unless it is a labloop input error."""
    lines = str(error).strip().splitlines()
    first = lines[0][:MAX_CHARS] if lines else ""
    return first if isinstance(error, InputError) else f"{type(error).__name__}: {first}"
