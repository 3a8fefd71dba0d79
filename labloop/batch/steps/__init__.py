"""The steps a pipeline can name, one module each; :data:`STEPS` is the registry."""

from __future__ import annotations

from pathlib import Path

from labloop.batch.steps.base import Step, StepConfig
from labloop.batch.steps.calibrate import CalibrateStep
from labloop.batch.steps.detect import DetectStep
from labloop.batch.steps.measure import MeasureStep
from labloop.batch.steps.track import TrackStep
from labloop.errors import InputError

#: every step by name, in the order of the full loop
STEPS: dict[str, Step] = {step.name: step for step in
                          (DetectStep(), TrackStep(), MeasureStep(), CalibrateStep())}


def get_step(name: str, source: Path | None = None) -> Step:
    """The registered step called ``name``, or a one-line error listing the known ones."""
    if name not in STEPS:
        raise InputError(f"unknown step {name!r} (known steps: {', '.join(STEPS)})", source)
    return STEPS[name]


__all__ = ["STEPS", "Step", "StepConfig", "get_step"]
