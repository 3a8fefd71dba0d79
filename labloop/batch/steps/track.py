"""The ``track`` step: :func:`labloop.track.track_store` on the store's detections."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from labloop.batch.steps.base import Step, StepConfig
from labloop.errors import InputError
from labloop.io.store import TRACKS


class TrackStep(Step):
    """Link detections into a lineage with calibrated error probabilities."""

    name = "track"
    result = TRACKS

    def settings_type(self) -> type:
        """:class:`labloop.track.TrackSettings` (tables ``[track.candidates]`` etc.)."""
        from labloop.track import TrackSettings

        return TrackSettings

    def configure(self, table: dict[str, Any], source: Path | None = None) -> StepConfig:
        """Parse ``[track]``; a relative ``model_path`` is taken from the current directory."""
        config = super().configure(table, source)
        if config.settings.model_path is None:
            return config
        model = Path(config.settings.model_path).expanduser().resolve()
        if not model.is_file():
            raise InputError("track.model_path: no such event-model file", model)
        return replace(config, settings=replace(config.settings, model_path=str(model)))

    def finish(self, path: Path, config: StepConfig, key: str,
               parts: list[tuple[int, int]]) -> None:
        """Track and write ``labloop/tracks.geff``."""
        from labloop.track import track_store

        track_store(path, config.settings)
