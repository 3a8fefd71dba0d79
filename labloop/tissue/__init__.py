"""The differentiable tissue model (JAX): a growing cell cluster, end to end differentiable.

Source cells secrete a growth factor; proliferating cells carry a small gene
network that reads it and sets their division propensity; cells move under
overdamped Morse mechanics with active random motility. Steps are small pure
functions (one module each, equations in their docstrings) composed into one
``lax.scan``. Units: µm and hours.

Modules: :mod:`state` (fixed-capacity state, counters), :mod:`params` (typed
parameters with units, reparametrisation, freeze/free), :mod:`model` (static
settings), :mod:`neighbours`, :mod:`mechanics`, :mod:`growth_factor`,
:mod:`gene_network`, :mod:`division`, :mod:`growth`, :mod:`step`,
:mod:`initial`, :mod:`simulate`, :mod:`gradients`, :mod:`morphometrics`.
"""

from labloop.tissue.gradients import (
    gradient_estimate,
    per_replicate_gradients,
    score_function_surrogate,
    simulate_replicates,
)
from labloop.tissue.initial import initial_state, packed_ball, round_cluster
from labloop.tissue.model import TissueModel
from labloop.tissue.morphometrics import (
    axis_elongation,
    cell_count,
    shape,
    to_lineage,
    to_positions,
    to_table,
)
from labloop.tissue.params import (
    DivisionParams,
    Ellipsoid,
    GeneNetworkParams,
    GrowthFactorParams,
    GrowthParams,
    MechanicsParams,
    TissueParams,
    combine,
    constrain,
    default_params,
    describe,
    free_vector,
    freeze,
    parameter_names,
    partition,
    trainable_mask,
    unconstrain,
)
from labloop.tissue.simulate import Trajectory, simulate
from labloop.tissue.state import CellType, Counters, TissueState
from labloop.tissue.step import DEFAULT_STEPS, compose, default_step

__all__ = [
    "DEFAULT_STEPS", "CellType", "Counters", "DivisionParams", "Ellipsoid",
    "GeneNetworkParams", "GrowthFactorParams", "GrowthParams", "MechanicsParams",
    "TissueModel", "TissueParams", "TissueState", "Trajectory", "axis_elongation",
    "cell_count", "combine", "compose", "constrain", "default_params", "default_step",
    "describe", "free_vector", "freeze", "gradient_estimate", "initial_state", "packed_ball",
    "parameter_names", "partition", "per_replicate_gradients", "round_cluster",
    "score_function_surrogate", "shape", "simulate", "simulate_replicates", "to_lineage",
    "to_positions", "to_table", "trainable_mask", "unconstrain",
]
