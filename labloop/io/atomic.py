"""Atomic replacement of files and directories.

Results are written under a hidden temporary name beside their destination and
moved into place with :func:`os.replace` only once complete, so that a reader
(or a batch run resuming after a crash) never sees a half-written output.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


def temporary_sibling(destination: Path) -> Path:
    """Return a unique hidden path in the same directory as ``destination``."""
    return destination.with_name(f".{destination.name}.tmp-{uuid.uuid4().hex[:12]}")


def replace_path(source: Path, destination: Path) -> None:
    """Move ``source`` onto ``destination``, replacing a file or a directory.

    ``os.replace`` is atomic for files and for directories onto a missing or
    empty target. A non-empty destination directory is first renamed aside, so a
    crash leaves either the old or the new result in place, never a mixture.
    """
    if destination.is_dir() and not destination.is_symlink():
        aside = destination.with_name(f".{destination.name}.old-{uuid.uuid4().hex[:12]}")
        os.replace(destination, aside)
        os.replace(source, destination)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(source, destination)


@contextlib.contextmanager
def atomic_path(destination: str | Path) -> Iterator[Path]:
    """Yield a temporary path; on success move it onto ``destination``.

    On any exception the temporary output is deleted and ``destination`` is left
    untouched.

    Examples
    --------
    >>> with atomic_path("out.csv") as tmp:  # doctest: +SKIP
    ...     frame.to_csv(tmp)
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(destination)
    try:
        yield tmp
        replace_path(tmp, destination)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise
