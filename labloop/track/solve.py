"""The most probable lineage: an integer linear program solved by HiGHS.

Minimise the energy ``E(y) = cost · y`` (:mod:`labloop.track.problem`) over binary
``y`` under :data:`~labloop.track.constraints.LINEAGE_CONSTRAINTS`, with
:func:`scipy.optimize.milp` (HiGHS, open source).

Without divisions the constraints are those of a bipartite matching (totally
unimodular), and with divisions the linear relaxation is still almost always
integral. So the LP relaxation is solved first (about a second for a whole
embryo): when its optimum is integral it *is* the ILP optimum, proven. Otherwise
the branch-and-bound runs on the neighbourhood of the fractional variables (the
detections they touch, widened by ``REPAIR_HOPS`` candidate links), every other
variable fixed at its integral LP value — a local repair that keeps the solve fast
on whole movies; its time limit is a setting, and the best lineage found is used. HiGHS is
deterministic for a given input, and the variables are laid out in a fixed order,
so the same detections always give the same lineage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import vstack

from labloop.errors import InputError
from labloop.track.constraints import LINEAGE_CONSTRAINTS, Layout
from labloop.track.costs import EnergyCosts
from labloop.track.settings import SolverSettings

#: a binary variable counts as set above this value of the solver's solution
INTEGRALITY_THRESHOLD = 0.5
#: an LP value this close to 0 or 1 counts as integral
INTEGRALITY_TOLERANCE = 1e-6
#: candidate-link hops by which the repaired neighbourhood of fractional variables grows
REPAIR_HOPS = 2


def _variable_nodes(source: np.ndarray, target: np.ndarray, costs: EnergyCosts,
                    layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """(variable, detection) incidence pairs: which detections each variable touches."""
    nodes = np.arange(layout.n_nodes)
    links = np.arange(layout.n_links)
    pairs = layout.division + np.arange(layout.n_divisions)
    var = np.concatenate([links, links, layout.appear + nodes, layout.disappear + nodes,
                          layout.false_positive + nodes, pairs])
    node = np.concatenate([source, target, nodes, nodes, nodes, costs.division_nodes])
    return var, node


def _repair_bounds(x: np.ndarray, source: np.ndarray, target: np.ndarray, costs: EnergyCosts,
                   layout: Layout) -> Bounds:
    """Bounds fixing every variable but those near fractional ones to its rounded LP value."""
    fractional = np.minimum(x, 1 - x) >= INTEGRALITY_TOLERANCE
    var, node = _variable_nodes(source, target, costs, layout)
    free_node = np.zeros(layout.n_nodes, dtype=bool)
    free_node[node[fractional[var]]] = True
    for _ in range(REPAIR_HOPS):
        touched = free_node[source] | free_node[target]
        free_node[source[touched]] = True
        free_node[target[touched]] = True
    free = np.zeros(layout.size, dtype=bool)
    free[var[free_node[node]]] = True
    rounded = np.round(x)
    return Bounds(np.where(free, 0.0, rounded), np.where(free, 1.0, rounded))


@dataclass(frozen=True)
class Solution:
    """Chosen variables of the MAP lineage.

    Attributes
    ----------
    link
        ``(E,)`` bool: which candidate links are used.
    appear, disappear, false_positive
        ``(N,)`` bool per detection.
    division
        ``(M,)`` bool per allowed division (``costs.division_nodes`` and
        ``costs.division_links``).
    energy
        The energy of the solution.
    """

    link: np.ndarray
    appear: np.ndarray
    disappear: np.ndarray
    false_positive: np.ndarray
    division: np.ndarray
    energy: float
    relaxation_integral: bool = True


def solve_map(source: np.ndarray, target: np.ndarray, n_nodes: int, costs: EnergyCosts,
              settings: SolverSettings, constraints: tuple = LINEAGE_CONSTRAINTS) -> Solution:
    """Solve the ILP for candidate links ``source → target`` (detection rows).

    Raises
    ------
    InputError
        If HiGHS finds no solution within the time limit.
    """
    layout = Layout(len(source), n_nodes, len(costs.division_nodes))
    c = costs.vector()
    if layout.size == 0:
        empty = np.zeros(0, dtype=bool)
        return Solution(empty, empty, empty, empty, empty, 0.0)
    parts = [con.rows(source, target, costs, layout) for con in constraints]
    matrix = vstack([p[0] for p in parts]).tocsr()
    lower = np.concatenate([p[1] for p in parts])
    upper = np.concatenate([p[2] for p in parts])
    constraint = LinearConstraint(matrix, lower, upper)
    relaxed = milp(c, integrality=np.zeros(layout.size), bounds=Bounds(0, 1),
                   constraints=constraint, options={"time_limit": settings.time_limit_s})
    integral = relaxed.x is not None and bool(np.all(
        np.minimum(relaxed.x, 1 - relaxed.x) < INTEGRALITY_TOLERANCE))
    result = relaxed
    if not integral and relaxed.x is not None:
        result = milp(c, integrality=np.ones(layout.size),
                      bounds=_repair_bounds(relaxed.x, source, target, costs, layout),
                      constraints=constraint,
                      options={"time_limit": settings.time_limit_s,
                               "mip_rel_gap": settings.mip_rel_gap, "presolve": True})
        if result.x is None:  # the neighbourhood had no integral completion: solve it all
            result = milp(c, integrality=np.ones(layout.size), bounds=Bounds(0, 1),
                          constraints=constraint,
                          options={"time_limit": settings.time_limit_s,
                                   "mip_rel_gap": settings.mip_rel_gap, "presolve": True})
    if result.x is None:
        raise InputError(f"the tracking solver found no lineage ({result.message})")
    y = result.x > INTEGRALITY_THRESHOLD
    return Solution(
        link=y[:layout.n_links],
        appear=y[layout.appear:layout.disappear],
        disappear=y[layout.disappear:layout.false_positive],
        false_positive=y[layout.false_positive:layout.division],
        division=y[layout.division:],
        energy=float(c @ y),
        relaxation_integral=integral,
    )
