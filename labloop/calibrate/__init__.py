"""Lab-in-the-loop recalibration: fit the tissue model to what was filmed.

``observe`` turns a lineage into :class:`Observations` (morphometrics with
their uncertainty), ``recalibrate`` fits the free parameters of the JAX tissue
model to them by gradients (optax, several starts, early stopping) and returns
a :class:`Fit` with a Laplace uncertainty, sensitivities and identifiability
notes (and, via :func:`derived_intervals`, intervals for quantities such as the
division rate without growth factor); ``predict`` simulates forward from the fitted parameters;
``calibrate_store`` does all of it on an experiment store;
``corrected_for_observation`` refits for what filming, detection and tracking do
to the morphometrics, measured on the fitted tissue filmed alike.
"""

from labloop.calibrate.derived import (
    DIVISION_LAW,
    Derived,
    derived_intervals,
    division_rate_at,
    steady_gene_levels,
)
from labloop.calibrate.fit import (
    DEFAULT_FREE,
    CalibrateSettings,
    Experiment,
    Fit,
    combined_minima,
    recalibrate,
    steps_per_frame,
    with_values,
)
from labloop.calibrate.initial import cell_radius_from, initial_from_lineage
from labloop.calibrate.loss import gaussian_loss, standardised_residuals
from labloop.calibrate.observation import (
    Acquisition,
    ObservationBias,
    corrected_for_observation,
    linearised_refit,
    observation_bias,
)
from labloop.calibrate.observations import Observations, motion_segments, observe
from labloop.calibrate.store import StoreSettings, calibrate_store

__all__ = ["DEFAULT_FREE", "DIVISION_LAW", "Acquisition", "CalibrateSettings", "Derived",
           "Experiment", "Fit", "ObservationBias", "Observations", "StoreSettings",
           "calibrate_store", "cell_radius_from", "combined_minima",
           "corrected_for_observation",
           "derived_intervals", "division_rate_at", "gaussian_loss", "initial_from_lineage",
           "linearised_refit", "motion_segments", "observation_bias", "observe",
           "recalibrate", "standardised_residuals", "steady_gene_levels", "steps_per_frame",
           "with_values"]
