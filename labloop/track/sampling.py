"""Alternative lineages from the same model by perturb-and-MAP.

Every binary variable's cost gets independent logistic noise scaled by the
temperature, ``c' = c − T·(G₁ − G₀)`` with ``G₀, G₁`` standard Gumbel (so
``G₁ − G₀`` is standard logistic), and the ILP is solved again. For a single
variable this samples exactly ``P(x = 1) = σ(−c/T)``; for the whole lineage it is
the usual first-order perturb-and-MAP approximation of the Boltzmann distribution
(Papandreou & Yuille 2011). Draws are seeded: the same seed gives the same lineages.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labloop.track.problem import TrackingProblem
from labloop.track.solve import Solution, solve_map


def perturbed_solutions(problem: TrackingProblem, n: int, seed: int) -> list[Solution]:
    """``n`` MAP solutions of independently perturbed energies (seeded)."""
    rng = np.random.default_rng(seed)
    base = problem.costs
    size = len(base.vector())
    out = []
    for _ in range(n):
        noise = -problem.temperature * rng.logistic(size=size)
        out.append(solve_map(problem.cand.source, problem.cand.target, problem.det.n,
                             base.perturbed(noise), problem.settings.solver))
    return out


def sampling_attrs(seed: int, index: int) -> dict[str, Any]:
    """Provenance of one sample."""
    return {"sample": {"method": "perturb-and-MAP (logistic noise × T)", "seed": seed,
                       "index": index}}
