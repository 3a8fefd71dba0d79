"""The pipeline steps, run in a child process: ``python -m labloop_napari._steps STEP STORE``.

The child reports on its standard output, one JSON object a line:
``{"progress": [done, total]}``, then ``{"done": summary}``, ``{"error": message}``
(one line) or ``{"cancelled": true}`` (after an interrupt, SIGINT). Anything the
libraries print goes to standard error, so the protocol stays clean. Every
store write is atomic, so an interrupted step leaves the store as it was.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

from labloop_napari._errors import one_line

Progress = Callable[[int, int], None]


def detect(path: Path, progress: Progress) -> str:
    """Detect nuclei (``labloop.detect.detect_store``)."""
    from labloop.detect import detect_store

    detections = detect_store(path, progress=False)
    return f"{len(detections)} nuclei in {detections['t'].nunique()} frames"


def track(path: Path, progress: Progress) -> str:
    """Track the detections (``labloop.track.track_store``)."""
    from labloop.track import track_store

    lineage = track_store(path)
    return f"{lineage.n_edges} links, {lineage.n_divisions} divisions"


def measure(path: Path, progress: Progress) -> str:
    """Measure the lineage (``labloop.measure.measure_store``, intervals from tracker samples)."""
    from labloop.measure import measure_store

    table = measure_store(path, progress=False)
    return f"{table['quantity'].nunique()} morphometrics"


def calibrate(path: Path, progress: Progress) -> str:
    """Fit the tissue model and predict (``labloop.calibrate.calibrate_store``)."""
    from labloop.calibrate import calibrate_store

    calibrate_store(path, progress=progress)
    return "tissue model fitted; prediction written"


STEPS: dict[str, Callable[[Path, Progress], str]] = {
    "detect": detect, "track": track, "measure": measure, "calibrate": calibrate}


def run(step: str, path: Path, out: IO[str]) -> int:
    """Run one step, reporting on ``out``; the exit status (0 done, 1 error, 130 cancelled)."""

    def send(message: dict) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    try:
        summary = STEPS[step](path, lambda done, total: send({"progress": [done, total]}))
    except KeyboardInterrupt:
        send({"cancelled": True})
        return 130
    except Exception as error:
        send({"error": one_line(error)})
        return 1
    send({"done": summary})
    return 0


def main(argv: list[str]) -> int:
    """Entry point of the child process."""
    step, store = argv
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints go to stderr
    return run(step, Path(store), protocol)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
