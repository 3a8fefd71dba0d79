"""The ``measure`` step: :func:`labloop.measure.measure_store` on the store's lineage."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from labloop.batch.steps.base import Step, StepConfig
from labloop.errors import InputError
from labloop.io.store import MORPHOMETRICS


@dataclass(frozen=True)
class MeasureOptions:
    """Batch options of the ``measure`` step.

    Parameters
    ----------
    tracker_samples
        Lineages re-sampled by the tracker for the 90% intervals (0: use the
        links' error probabilities instead).
    """

    tracker_samples: int = 20

    def __post_init__(self) -> None:
        if self.tracker_samples < 0:
            raise InputError(f"tracker_samples must be ≥ 0, got {self.tracker_samples}")


class MeasureStep(Step):
    """Morphometrics with 90% intervals into ``labloop/morphometrics``."""

    name = "measure"
    result = MORPHOMETRICS
    options_type = MeasureOptions

    def settings_type(self) -> type:
        """:class:`labloop.measure.MeasureSettings`."""
        from labloop.measure import MeasureSettings

        return MeasureSettings

    def params(self, config: StepConfig) -> dict[str, Any]:
        """Settings and the number of tracker samples."""
        return {"settings": asdict(config.settings), **asdict(config.options)}

    def finish(self, path: Path, config: StepConfig, key: str,
               parts: list[tuple[int, int]]) -> None:
        """Measure the tracks and write ``labloop/morphometrics``."""
        from labloop.measure import measure_store

        measure_store(path, config.settings, tracker_samples=config.options.tracker_samples,
                      progress=False)
