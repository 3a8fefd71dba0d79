"""The ``calibrate`` step: :func:`labloop.calibrate.calibrate_store`.

``labloop.calibrate`` fits the JAX tissue model to the store's lineage and writes
``labloop/fit/...`` and the prediction; it is imported only when a pipeline runs
this step, so pipelines without it do not pay for importing JAX.
"""

from __future__ import annotations

from pathlib import Path

from labloop.batch.steps.base import Step, StepConfig


class CalibrateStep(Step):
    """Recalibrate the tissue model to the store's lineage (``labloop/fit/...``)."""

    name = "calibrate"
    #: the fitted parameters with their intervals (labloop.calibrate.store.FIT_PARAMETERS)
    result = "fit/parameters"

    def settings_type(self) -> type:
        """``labloop.calibrate.StoreSettings`` (the optimisation in ``[calibrate.fit]``)."""
        from labloop.calibrate import StoreSettings

        return StoreSettings

    def finish(self, path: Path, config: StepConfig, key: str,
               parts: list[tuple[int, int]]) -> None:
        """Fit and write ``labloop/fit/...`` and the prediction."""
        from labloop.calibrate import calibrate_store

        calibrate_store(path, config.settings)
