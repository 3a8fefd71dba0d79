"""The ``calibrate`` step: :func:`labloop.calibrate.calibrate_store`, imported lazily.

``labloop.calibrate`` fits the JAX tissue model to the store's lineage and writes
``labloop/fit/...`` and the prediction; it is looked up only when a pipeline
names this step, so pipelines without it work whether or not that module is
present.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from labloop.batch.steps.base import Step, StepConfig
from labloop.errors import InputError

#: the module, its store-level function and that function's settings dataclass
MODULE, FUNCTION, SETTINGS = "labloop.calibrate", "calibrate_store", "StoreSettings"


def _module(source: Path | None = None) -> ModuleType:
    """``labloop.calibrate`` with the names this step needs, or a one-line error.

    ``source`` is the pipeline file that names the step, for the error message.
    """
    try:
        module = importlib.import_module(MODULE)
    except ImportError as error:
        raise InputError(f"the calibrate step needs {MODULE}, which cannot be imported "
                         f"({error})", source) from None
    missing = [name for name in (FUNCTION, SETTINGS) if not hasattr(module, name)]
    if missing:
        raise InputError(f"the calibrate step needs {MODULE}.{missing[0]}, which this "
                         "version of labloop does not have", source)
    return module


class CalibrateStep(Step):
    """Recalibrate the tissue model to the store's lineage (``labloop/fit/...``)."""

    name = "calibrate"
    #: the fitted parameters with their intervals (labloop.calibrate.store.FIT_PARAMETERS)
    result = "fit/parameters"

    def configure(self, table: dict[str, Any], source: Path | None = None) -> StepConfig:
        """Parse ``[calibrate]``, first checking that ``labloop.calibrate`` is there."""
        _module(source)
        return super().configure(table, source)

    def settings_type(self) -> type:
        """``labloop.calibrate.StoreSettings`` (the optimisation in ``[calibrate.fit]``)."""
        settings: type = getattr(_module(), SETTINGS)
        return settings

    def finish(self, path: Path, config: StepConfig, key: str,
               parts: list[tuple[int, int]]) -> None:
        """Fit and write ``labloop/fit/...`` and the prediction."""
        getattr(_module(), FUNCTION)(path, config.settings)
