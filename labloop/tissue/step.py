"""One simulation step as a composition of small pure steps.

A step is any function ``(state, params, key, model) -> state``. :func:`compose`
chains them, giving each its own key split from the step's key, and advances
the step counter; :data:`DEFAULT_STEPS` is the model of issue #6:

    growth factor → gene network → division → growth → mechanics

Adding a process (e.g. cell death, a new cell type's rule) is a new step
function placed in the list, not a new branch inside an existing one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax

from labloop.tissue.division import division_step
from labloop.tissue.gene_network import gene_network_step
from labloop.tissue.growth import growth_step
from labloop.tissue.growth_factor import growth_factor_step
from labloop.tissue.mechanics import mechanics_step
from labloop.tissue.model import TissueModel
from labloop.tissue.params import TissueParams
from labloop.tissue.state import TissueState

Step = Callable[[TissueState, TissueParams, jax.Array, TissueModel], TissueState]

DEFAULT_STEPS: tuple[Step, ...] = (growth_factor_step, gene_network_step, division_step,
                                   growth_step, mechanics_step)


def compose(steps: Sequence[Step] = DEFAULT_STEPS) -> Step:
    """One step that applies ``steps`` in order and then counts itself."""
    steps = tuple(steps)

    def step(state: TissueState, params: TissueParams, key: jax.Array,
             model: TissueModel) -> TissueState:
        keys = jax.random.split(key, len(steps))
        for sub, k in zip(steps, keys, strict=True):
            state = sub(state, params, k, model)
        counters = dataclasses.replace(state.counters, step=state.counters.step + 1)
        return state.replace(counters=counters)

    return step


default_step = compose(DEFAULT_STEPS)
