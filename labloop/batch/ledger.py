"""What a store remembers of batch runs: which steps finished, with which parameters.

Each finished step leaves a record in ``labloop/batch/steps/<step>`` holding

- ``key``: a hash of the step's name, its parameters and the key of the step
  before it, so changing a parameter invalidates that step and every later one;
- ``result_record``: the provenance record of the result the step wrote.

A step is *done* when its record has the expected key **and** the result in the
store still carries that very provenance record (so a result rewritten since, by
hand or by another command, is not mistaken for the batch's). The record is
written after the result, both atomically: a run killed between the two simply
redoes the step, which gives the same result.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from labloop.io.atomic import atomic_path, temporary_sibling
from labloop.io.store import Experiment, provenance, read_record

#: the batch's own folder inside ``labloop/``
BATCH = "batch"
#: where finished steps are recorded, inside :data:`BATCH`
STEPS = "steps"


def step_key(name: str, params: dict[str, Any], previous: str | None) -> str:
    """Fingerprint of a step: its name, parameters and the previous step's fingerprint."""
    text = json.dumps({"step": name, "params": params, "previous": previous},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def batch_path(experiment: Experiment, *parts: str) -> Path:
    """A path inside the store's ``labloop/batch`` folder."""
    return experiment.results_path.joinpath(BATCH, *parts)


def ensure_group(path: Path) -> None:
    """Make ``path`` an empty zarr group unless it is one; its parent must exist.

    The group's metadata file is made beside it and renamed into place, so a kill
    never leaves a half-written ``zarr.json``.
    """
    import zarr

    if (path / "zarr.json").exists():
        return
    scratch = temporary_sibling(path)
    try:
        zarr.open_group(str(scratch), mode="w", zarr_format=3)
        path.mkdir(exist_ok=True)
        os.replace(scratch / "zarr.json", path / "zarr.json")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def prepare_store(experiment: Experiment) -> None:
    """Make the batch folders and tidy writes that a killed run left half-done.

    A write interrupted by a kill leaves a hidden ``.<name>.tmp-…`` folder (never
    renamed into place: deleted here) or, if killed inside the final swap, the old
    result renamed aside as ``.<name>.old-…`` with nothing at ``<name>`` (put back
    here). Only one batch may work on a store at a time.
    """
    for parent in (experiment.results_path, experiment.results_path / BATCH,
                   batch_path(experiment, STEPS)):
        ensure_group(parent)
    folders = [experiment.results_path,
               *(p for p in batch_path(experiment).rglob("*") if p.is_dir())]
    for folder in folders:
        for entry in list(folder.iterdir()) if folder.exists() else []:
            name = entry.name
            if not name.startswith("."):
                continue
            if ".tmp-" in name:
                _remove(entry)
            elif ".old-" in name:
                destination = entry.with_name(name[1:name.rindex(".old-")])
                if destination.exists():
                    _remove(entry)
                else:
                    os.replace(entry, destination)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def is_done(experiment: Experiment, step: str, result: str, key: str) -> bool:
    """True when ``step`` finished with fingerprint ``key`` and its result is untouched."""
    entry = read_entry(experiment, step)
    if entry is None or entry.get("key") != key or not experiment.has(result):
        return False
    return experiment.record(result) == entry.get("result_record")


def read_entry(experiment: Experiment, step: str) -> dict[str, Any] | None:
    """The record of a finished step, or None (an unreadable one only means it runs again)."""
    entry = (read_record(batch_path(experiment, STEPS, step)) or {}).get("params")
    return dict(entry) if isinstance(entry, dict) else None


def mark_done(experiment: Experiment, step: str, result: str, key: str) -> None:
    """Record that ``step`` wrote ``result`` with fingerprint ``key`` (atomically)."""
    import zarr

    entry = {"key": key, "result": result, "result_record": experiment.record(result)}
    with atomic_path(batch_path(experiment, STEPS, step)) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        group.attrs["labloop"] = provenance("batch", entry)
