"""What a batch step is: its settings, the result it writes, and how it runs as dask tasks.

A step runs on one store as zero or more independent *parts* (e.g. the time
windows of detection), which dask may run in parallel, followed by one *finish*
task that writes the step's result into the store. Steps without parts simply
do all their work in :meth:`Step.finish`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from labloop.batch.settings import settings_from_table
from labloop.errors import InputError
from labloop.io.store import Experiment


@dataclass(frozen=True)
class NoOptions:
    """A step without batch-level options."""


@dataclass(frozen=True)
class StepConfig:
    """One step of a pipeline with its parsed parameters.

    Attributes
    ----------
    name
        The step's name in the registry (``"detect"``, ``"track"``, ...).
    settings
        The step function's settings dataclass (e.g. ``DetectSettings``).
    options
        The step's batch-level options (e.g. frames per detection task), a
        dataclass of the step's :attr:`Step.options_type`.
    """

    name: str
    settings: Any
    options: Any


class Step:
    """A pipeline step; subclasses set the class attributes and override the methods.

    Attributes
    ----------
    name
        Name used in pipeline files.
    result
        The store result the step writes (``labloop/<result>``); the step counts
        as done when that result still carries the record written by the batch.
    options_type
        Dataclass of batch-level options, given in the step's table beside the
        settings fields.
    """

    name: ClassVar[str]
    result: ClassVar[str]
    options_type: ClassVar[type] = NoOptions

    def settings_type(self) -> type:
        """The settings dataclass of the step function."""
        raise NotImplementedError

    def configure(self, table: dict[str, Any], source: Path | None = None) -> StepConfig:
        """Parse the step's table of a pipeline file.

        Keys that are fields of :attr:`options_type` are batch options; every
        other key must be a field of :meth:`settings_type`.
        """
        option_names = {f.name for f in dataclasses.fields(self.options_type)}
        settings_type = self.settings_type()
        known = option_names | {f.name for f in dataclasses.fields(settings_type)}
        for key in table:
            if key not in known:
                raise InputError(f"unknown key {self.name}.{key} (known keys of [{self.name}]: "
                                 f"{', '.join(sorted(known))})", source)
        options = {k: v for k, v in table.items() if k in option_names}
        rest = {k: v for k, v in table.items() if k not in option_names}
        return StepConfig(self.name, settings_from_table(settings_type, rest, self.name, source),
                          settings_from_table(self.options_type, options, self.name, source))

    def params(self, config: StepConfig) -> dict[str, Any]:
        """The parameters that determine the result (compared to decide "done")."""
        return {"settings": dataclasses.asdict(config.settings)}

    def prepare(self, experiment: Experiment) -> None:
        """Get the store ready before the step's tasks run in parallel (default: nothing)."""

    def parts(self, config: StepConfig, n_frames: int) -> list[tuple[int, int]]:
        """Independent pieces of work (default: none, all work is in :meth:`finish`)."""
        return []

    def run_part(self, path: Path, config: StepConfig, key: str, part: tuple[int, int]) -> bool:
        """Do one part; return False when its cached result was reused."""
        raise NotImplementedError(f"step {self.name!r} has no parts")

    def finish(self, path: Path, config: StepConfig, key: str,
               parts: list[tuple[int, int]]) -> None:
        """Write the step's result into the store (atomically, with provenance)."""
        raise NotImplementedError
