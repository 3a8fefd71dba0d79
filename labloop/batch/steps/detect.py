"""The ``detect`` step: nuclei in time windows of frames, as parallel tasks, then one table.

Each window of frames is one task that runs the detector's own per-frame API
(:func:`labloop.detect.detect` with ``frames=``) and caches its table in the
store at ``labloop/batch/detect_windows/<t0>-<t1>`` (atomically, tagged with the
step's fingerprint), so a run killed mid-store resumes with the windows already
done. The finishing task concatenates the windows in time order — the same
table, row for row, that detecting all frames at once gives — writes
``labloop/detections`` with the usual provenance, and drops the cache.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from labloop.batch.ledger import batch_path, ensure_group
from labloop.batch.steps.base import Step, StepConfig
from labloop.errors import InputError
from labloop.io.store import (
    DETECTIONS,
    Experiment,
    open_experiment,
    provenance,
    read_record,
    read_table,
)
from labloop.io.store import write_table as write_table_at

#: cache of finished windows inside ``labloop/batch``
WINDOWS = "detect_windows"


@dataclass(frozen=True)
class DetectOptions:
    """Batch options of the ``detect`` step.

    Parameters
    ----------
    window
        Frames per task. Smaller windows spread a store over more workers and lose
        less work when a run is killed; each task pays a little overhead.
    model
        Detector weights (``.safetensors``); relative paths are taken from the
        current directory. Omitted: the model shipped with labloop.
    """

    window: int = 1
    model: str | None = None

    def __post_init__(self) -> None:
        if self.window < 1:
            raise InputError(f"window must be at least 1 frame, got {self.window}")
        if self.model is not None:
            model = Path(self.model).expanduser().resolve()
            if not model.is_file():
                raise InputError("no such detector model file", model)
            object.__setattr__(self, "model", str(model))


def windows(n_frames: int, size: int) -> list[tuple[int, int]]:
    """Split frames ``0..n_frames-1`` into consecutive windows ``[t0, t1)`` of ``size``.

    Examples
    --------
    >>> windows(5, 2)
    [(0, 2), (2, 4), (4, 5)]
    """
    return [(t0, min(t0 + size, n_frames)) for t0 in range(0, n_frames, size)]


def _window_path(experiment: Experiment, part: tuple[int, int]) -> Path:
    return batch_path(experiment, WINDOWS, f"{part[0]}-{part[1]}")


def _cached_window(path: Path, key: str) -> bool:
    """True when a window table exists and was made with fingerprint ``key``."""
    record = read_record(path)
    return record is not None and record.get("params", {}).get("key") == key


class DetectStep(Step):
    """Detect nuclei with the U-Net (:mod:`labloop.detect`), window by window."""

    name = "detect"
    result = DETECTIONS
    options_type = DetectOptions

    def settings_type(self) -> type:
        """:class:`labloop.detect.DetectSettings`."""
        from labloop.detect import DetectSettings

        return DetectSettings

    def params(self, config: StepConfig) -> dict[str, Any]:
        """Settings, model file and the model's checksum (the window size does not matter)."""
        from labloop.detect import default_model_path

        model = Path(config.options.model or default_model_path())
        digest = hashlib.sha256(model.read_bytes()).hexdigest() if model.is_file() else None
        return {"settings": asdict(config.settings), "model": str(model),
                "model_sha256": digest}

    def parts(self, config: StepConfig, n_frames: int) -> list[tuple[int, int]]:
        """Windows of ``options.window`` frames."""
        return windows(n_frames, config.options.window)

    def prepare(self, experiment: Experiment) -> None:
        """Create the window cache group (done once, before tasks run in parallel)."""
        ensure_group(batch_path(experiment, WINDOWS))

    def run_part(self, path: Path, config: StepConfig, key: str, part: tuple[int, int]) -> bool:
        """Detect frames ``[t0, t1)`` and cache their table; False if already cached."""
        from labloop.detect import detect, load_model

        experiment = open_experiment(path)
        destination = _window_path(experiment, part)
        if _cached_window(destination, key):
            return False
        table = detect(experiment.image, model=load_model(config.options.model),
                       settings=config.settings, frames=range(*part), progress=False)
        write_table_at(destination, table,
                       provenance("detect-window", {"key": key, "t0": part[0], "t1": part[1]}))
        return True

    def finish(self, path: Path, config: StepConfig, key: str,
               parts: list[tuple[int, int]]) -> None:
        """Concatenate the windows into ``labloop/detections`` and drop the cache."""
        from labloop.detect import load_model
        from labloop.detect.store import detection_params

        experiment = open_experiment(path)
        tables = []
        for part in parts:
            window = _window_path(experiment, part)
            if not _cached_window(window, key):
                raise InputError(f"detection window {part[0]}-{part[1]} is missing", path)
            tables.append(read_table(window))
        detections = pd.concat(tables, ignore_index=True)
        detector = load_model(config.options.model)
        experiment.write_detections(
            detections, detection_params(config.options.model, detector, config.settings))
        shutil.rmtree(batch_path(experiment, WINDOWS), ignore_errors=True)
