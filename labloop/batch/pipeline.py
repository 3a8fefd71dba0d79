"""Pipeline files: which steps to run, in order, with which parameters (TOML).

::

    [pipeline]
    name = "standard"
    steps = ["detect", "track", "measure"]

    [detect]                 # fields of DetectSettings, plus window and model
    min_score = 0.5
    window = 1

    [track.solver]           # nested settings are nested tables
    min_division_probability = 0.02

Every key is optional and defaults to the step function's documented default;
see ``pipelines/README.md`` for the full list. Anything unknown or of the wrong
type is reported on one line naming the file and the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labloop.batch.ledger import step_key
from labloop.batch.steps import STEPS, StepConfig, get_step
from labloop.errors import InputError

#: the steps of :func:`default_pipeline`
STANDARD_STEPS = ("detect", "track", "measure")
#: keys allowed in the ``[pipeline]`` table
PIPELINE_KEYS = ("name", "description", "steps")


@dataclass(frozen=True)
class Pipeline:
    """An ordered list of configured steps.

    Attributes
    ----------
    name
        A label for summaries.
    steps
        The steps, in the order they run on each store.
    source
        The file it was read from, if any.
    """

    name: str
    steps: tuple[StepConfig, ...]
    source: Path | None = None

    def keys(self) -> list[str]:
        """Fingerprint of every step: its parameters chained with those of earlier steps."""
        keys: list[str] = []
        for config in self.steps:
            params = get_step(config.name).params(config)
            keys.append(step_key(config.name, params, keys[-1] if keys else None))
        return keys


def default_pipeline() -> Pipeline:
    """detect → track → measure with every setting at its default."""
    return parse_pipeline({"pipeline": {"name": "standard", "steps": list(STANDARD_STEPS)}})


def load_pipeline(path: str | Path) -> Pipeline:
    """Read and check a pipeline file (TOML).

    Parameters
    ----------
    path
        The ``.toml`` file.

    Raises
    ------
    InputError
        Missing file, invalid TOML, unknown step or key, a value of the wrong type,
        or a step whose module is unavailable.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such pipeline file", path)
    if path.suffix.lower() != ".toml":
        raise InputError("pipeline files are TOML (.toml); see pipelines/README.md", path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"not valid TOML ({error})", path) from None
    return parse_pipeline(data, path)


def parse_pipeline(data: dict[str, Any], source: Path | None = None) -> Pipeline:
    """Build a :class:`Pipeline` from a parsed TOML document (see :func:`load_pipeline`)."""
    head = data.get("pipeline")
    if not isinstance(head, dict):
        raise InputError("no [pipeline] table (it lists the steps: steps = [\"detect\", ...])",
                         source)
    for key in head:
        if key not in PIPELINE_KEYS:
            raise InputError(f"unknown key pipeline.{key} (known keys of [pipeline]: "
                             f"{', '.join(PIPELINE_KEYS)})", source)
    names = head.get("steps")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise InputError("pipeline.steps must be a non-empty list of step names, e.g. "
                         "[\"detect\", \"track\", \"measure\"]", source)
    steps = [get_step(name, source) for name in names]
    if len(set(names)) != len(names):
        raise InputError("pipeline.steps names a step twice", source)
    order = list(STEPS)
    if [order.index(n) for n in names] != sorted(order.index(n) for n in names):
        raise InputError(f"pipeline.steps must follow the loop order {' → '.join(order)}",
                         source)
    for table in data:
        if table != "pipeline" and table not in names:
            raise InputError(f"table [{table}] is not a step of this pipeline (steps: "
                             f"{', '.join(names)})", source)
    configs = []
    for step in steps:
        table = data.get(step.name, {})
        if not isinstance(table, dict):
            raise InputError(f"{step.name} must be a table ([{step.name}])", source)
        configs.append(step.configure(table, source))
    name = head.get("name", source.stem if source is not None else "pipeline")
    return Pipeline(str(name), tuple(configs), source)
