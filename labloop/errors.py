"""Errors that labloop reports to users as one clear line.

Every problem caused by the user's input (a missing file, a store without voxel
size, a corrupt chunk, NaN coordinates, ...) is raised as :class:`InputError`.
The command line prints its message on one line and exits with status 2; the
Python API lets it propagate so notebooks see a normal exception.
"""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad user input: the message names the file (if any) and the problem.

    Parameters
    ----------
    problem
        What is wrong, in words a biologist understands.
    path
        The file or store the problem was found in, if any.
    """

    def __init__(self, problem: str, path: str | Path | None = None) -> None:
        self.problem = problem
        self.path = None if path is None else Path(path)
        message = problem if path is None else f"{path}: {problem}"
        super().__init__(message)
