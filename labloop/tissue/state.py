"""The tissue state: a fixed-capacity table of cells with an ``alive`` mask.

Every array has the capacity ``N`` (a static number of slots) as its leading
axis, so that the state keeps one shape through ``jit``, ``vmap`` and
``lax.scan`` while cells divide. A dead slot holds ``alive = False`` and is
ignored by every step; a division writes its daughter into the first free
slot. When no slot is free, the division is not performed and the counter
``overflow`` grows: capacity overflow is never silent and never a crash.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import IntEnum

import jax
import jax.numpy as jnp


class CellType(IntEnum):
    """Kinds of cells. Extensible: a new kind is a new value here plus its rules."""

    #: secretes the growth factor, does not divide
    SOURCE = 0
    #: reads the growth factor through its gene network and divides
    PROLIFERATING = 1


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Counters:
    """Scalar counters carried through a simulation.

    Attributes
    ----------
    step
        Steps taken (int).
    next_id
        Next unused lineage id (int).
    overflow
        Divisions refused because every slot was taken (int). Non-zero means
        the capacity was too small for this run.
    neighbour_overflow
        Cell-list or neighbour-list entries dropped because a grid cell or a
        neighbour list was full (int). A full list keeps its nearest cells, so
        the forces missed are the weakest; a full grid cell misses any.
    source_overflow
        Source cells beyond ``max_sources`` left out of the growth-factor field.
    log_prob
        Sum over steps and cells of the log-probability of the sampled division
        decisions, ``Σ d log p + (1 − d) log(1 − p)`` (the score of the
        score-function gradient estimator).
    divisions
        Divisions performed (int).
    """

    step: jax.Array
    next_id: jax.Array
    overflow: jax.Array
    neighbour_overflow: jax.Array
    source_overflow: jax.Array
    log_prob: jax.Array
    divisions: jax.Array


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class TissueState:
    """State of a cell cluster; leading axis = capacity ``N``.

    Attributes
    ----------
    position_um
        ``(N, 3)`` cell centres ``(z, y, x)`` in µm (2D models keep ``z = 0``).
    radius_um
        ``(N,)`` cell radii in µm.
    cell_type
        ``(N,)`` int, a :class:`CellType`.
    alive
        ``(N,)`` bool, slot holds a cell.
    weight
        ``(N,)`` float presence of the cell, exactly ``alive`` in the forward
        pass; with the straight-through division estimator, a daughter's weight
        carries the derivative of its birth probability (its value stays 1), so
        weighted morphometrics pass gradients through divisions.
    gene
        ``(N, G)`` gene-network state (dimensionless, in [0, 1] at steady state).
    growth_factor
        ``(N,)`` growth-factor concentration at each cell (arbitrary units, a.u.).
    division_rate_per_h
        ``(N,)`` division propensity λ (1/h) from the last step.
    expected_divisions
        ``(N,)`` divisions the cell in this slot was expected to make since it
        was born (or the run began): ``Σ weight · (1 − e^{−λ dt})`` over its
        steps. Its change between two recorded frames is the Rao–Blackwellised
        count of divisions in between, exact at every step (the rates of
        recorded frames lag the steps' rates and miss the first frame's).
    visible_divisions
        ``(N,)`` divisions of the cell in this slot *as the recorded frames show
        them*, expected: a cell seen at a frame is a mother at the next only if
        it divides once and neither daughter divides again before that frame.
        Each step adds the expected change of that indicator given the state:
        ``weight · p`` while the cell has not divided, ``−P(a daughter divides
        now)`` while its division is visible, 0 after. Its change between frames
        is the smooth, unbiased count of the divisions a lineage of the
        recorded frames shows.
    frame_ancestor
        ``(N,)`` int slot of the cell's ancestor at the last recorded frame, or
        ``-1`` for a cell present at that frame (:meth:`at_recorded_frame`).
    frame_divisions
        ``(N,)`` int divisions since the last recorded frame among the
        descendants of the cell that held this slot at that frame.
    cell_id
        ``(N,)`` int lineage id, unique over a run (``-1`` in dead slots). Both
        daughters of a division get new ids.
    mother
        ``(N,)`` int id of the mother cell (``-1`` for founders).
    born
        ``(N,)`` int step at which the cell was born (0 for founders).
    counters
        :class:`Counters`.
    """

    position_um: jax.Array
    radius_um: jax.Array
    cell_type: jax.Array
    alive: jax.Array
    weight: jax.Array
    gene: jax.Array
    growth_factor: jax.Array
    division_rate_per_h: jax.Array
    expected_divisions: jax.Array
    visible_divisions: jax.Array
    frame_ancestor: jax.Array
    frame_divisions: jax.Array
    cell_id: jax.Array
    mother: jax.Array
    born: jax.Array
    counters: Counters

    @property
    def capacity(self) -> int:
        """Number of slots ``N``."""
        return int(self.alive.shape[-1])

    @property
    def n_alive(self) -> jax.Array:
        """Number of living cells."""
        return jnp.sum(self.alive, axis=-1)

    def at_recorded_frame(self) -> TissueState:
        """This state as a recorded frame: every living cell is present at it."""
        return dataclasses.replace(self, frame_ancestor=jnp.full_like(self.frame_ancestor, -1),
                                   frame_divisions=jnp.zeros_like(self.frame_divisions))

    def replace(self, **changes: object) -> TissueState:
        """A copy with some fields replaced (states are immutable)."""
        from dataclasses import replace

        return replace(self, **changes)


def zero_counters(next_id: int | jax.Array) -> Counters:
    """Counters of a fresh simulation whose founders used ids ``0 … next_id − 1``."""
    dtype = jnp.result_type(float)
    return Counters(step=jnp.asarray(0, jnp.int32), next_id=jnp.asarray(next_id, jnp.int32),
                    overflow=jnp.asarray(0, jnp.int32),
                    neighbour_overflow=jnp.asarray(0, jnp.int32),
                    source_overflow=jnp.asarray(0, jnp.int32),
                    log_prob=jnp.asarray(0.0, dtype), divisions=jnp.asarray(0, jnp.int32))
