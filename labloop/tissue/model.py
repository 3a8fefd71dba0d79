"""Static settings of the tissue model (shapes, time step, numerics).

Everything here fixes array shapes or compiled code, so it is hashable and
passed as a static argument; everything that can be fitted lives in
:class:`~labloop.tissue.params.TissueParams`.
"""

from __future__ import annotations

from dataclasses import dataclass

from labloop.errors import InputError

DIVISION_GRADIENTS = ("score", "straight_through", "expected_growth")
NEIGHBOUR_METHODS = ("auto", "dense", "cells")


@dataclass(frozen=True)
class TissueModel:
    """Static settings of a simulation.

    Attributes
    ----------
    capacity
        Number of cell slots ``N`` (cells beyond it are refused and counted).
    dim
        2 (monolayer in the ``y, x`` plane, ``z = 0``) or 3.
    dt_h
        Time step (h) of growth factor, gene network, division and growth.
    mechanics_substeps
        Euler substeps of the mechanics per step (the mechanical relaxation is
        faster than the cell cycle).
    gene_substeps
        Euler substeps of the gene network per step.
    cutoff_um
        Range of the pair interaction (µm); also the side of the cell-list grid.
    skin_um
        Extra range of the neighbour list, which is built once per step and
        must cover the motion during the mechanical substeps (µm).
    neighbours
        ``"dense"`` (all pairs, O(N²), for small N), ``"cells"`` (hashed cell
        list, O(N)) or ``"auto"`` (dense up to ``dense_below`` slots).
    dense_below
        Capacity below which ``"auto"`` uses all pairs.
    max_per_cell
        Slots of one grid cell of the cell list.
    max_neighbours
        Length of each cell's neighbour list (the nearest cells in range).
    max_sources
        Source cells taken into the growth-factor field (the field costs
        ``O(N · max_sources)``).
    division_gradient
        ``"score"``: hard Bernoulli divisions whose log-probability is summed
        for the score-function estimator; ``"straight_through"``: the same hard
        draws (Gumbel trick) with the derivative of a relaxed sample
        ``σ((logit p + g)/τ)`` passed to the daughter's ``weight`` and offset.
    temperature
        τ of the relaxed division.
    division_offset
        Half the distance between two daughters, as a fraction of a
        daughter's radius.
    """

    capacity: int = 256
    dim: int = 3
    dt_h: float = 0.2
    mechanics_substeps: int = 4
    gene_substeps: int = 2
    cutoff_um: float = 14.0
    skin_um: float = 1.0
    neighbours: str = "auto"
    dense_below: int = 512
    max_per_cell: int = 12
    max_neighbours: int = 32
    max_sources: int = 32
    division_gradient: str = "score"
    temperature: float = 0.5
    division_offset: float = 0.75

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise InputError(f"capacity must be at least 1 cell, got {self.capacity}")
        if self.dim not in (2, 3):
            raise InputError(f"dim must be 2 or 3, got {self.dim}")
        if not self.dt_h > 0:
            raise InputError(f"the time step must be positive (hours), got {self.dt_h}")
        if self.division_gradient not in DIVISION_GRADIENTS:
            raise InputError(f"division_gradient must be one of {DIVISION_GRADIENTS}, got "
                             f"{self.division_gradient!r}")
        if self.neighbours not in NEIGHBOUR_METHODS:
            raise InputError(f"neighbours must be one of {NEIGHBOUR_METHODS}, got "
                             f"{self.neighbours!r}")
        if self.mechanics_substeps < 1 or self.gene_substeps < 1:
            raise InputError("substeps must be at least 1")

    @property
    def uses_cell_list(self) -> bool:
        """Whether the neighbour search is the O(N) cell list."""
        if self.neighbours == "auto":
            return self.capacity >= self.dense_below
        return self.neighbours == "cells"
