"""``simulate(model, params, key, ...) -> Trajectory``: the scanned simulation.

The run is a ``lax.scan`` over frames of a ``lax.scan`` over the steps of a
frame; the state is recorded once per frame. Memory of reverse-mode gradients
is bounded with ``checkpoint``:

``None``     every step's intermediates are kept (fastest, memory ∝ steps);
``"step"``   each step is recomputed in the backward pass (memory ∝ steps × state);
``"frame"``  each frame is recomputed from its recorded state, and within it each
             step (memory ∝ frames × state + steps per frame × state).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp

from labloop.errors import InputError
from labloop.tissue.model import TissueModel
from labloop.tissue.params import TissueParams
from labloop.tissue.state import TissueState
from labloop.tissue.step import Step, default_step

CHECKPOINTS = (None, "step", "frame")


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Trajectory:
    """Recorded frames of a simulation.

    Attributes
    ----------
    frames
        :class:`TissueState` with a leading frame axis ``F + 1`` (frame 0 is
        the initial state); under ``vmap`` over replicates, ``(R, F + 1, ...)``.
    dt_h
        Time step (h).
    steps_per_frame
        Steps between recorded frames.
    dim
        2 or 3.
    """

    frames: TissueState
    dt_h: float = field(metadata={"static": True})
    steps_per_frame: int = field(metadata={"static": True})
    dim: int = field(default=3, metadata={"static": True})

    @property
    def frame_interval_h(self) -> float:
        """Time between recorded frames (h)."""
        return self.dt_h * self.steps_per_frame

    @property
    def n_frames(self) -> int:
        """Number of recorded frames including the initial one."""
        return int(self.frames.alive.shape[-2])

    @property
    def final(self) -> TissueState:
        """The last recorded state."""
        return self.frame(-1)

    def frame(self, index: int) -> TissueState:
        """The state at recorded frame ``index`` (keeps a replicate axis if any)."""
        return jax.tree_util.tree_map(lambda x: _take_frame(x, index, self.frames),
                                      self.frames)

    def replicate(self, index: int) -> Trajectory:
        """One replicate of a ``vmap``-ed trajectory."""
        frames = jax.tree_util.tree_map(lambda x: x[index], self.frames)
        return Trajectory(frames, self.dt_h, self.steps_per_frame, self.dim)

    @property
    def n_replicates(self) -> int:
        """Number of replicates (1 for an un-batched trajectory)."""
        return int(self.frames.counters.step.shape[0]) if self.frames.counters.step.ndim == 2 \
            else 1


def _take_frame(x: jax.Array, index: int, frames: TissueState) -> jax.Array:
    axis = frames.counters.step.ndim - 1  # 0 unbatched, 1 with replicates
    return jnp.take(x, index if index >= 0 else x.shape[axis] + index, axis=axis)


@partial(jax.jit, static_argnames=("model", "n_frames", "steps_per_frame", "checkpoint",
                                   "step"))
def _run(model: TissueModel, params: TissueParams, key: jax.Array, initial: TissueState,
         n_frames: int, steps_per_frame: int, checkpoint: str | None,
         step: Step) -> TissueState:
    def one(state: TissueState, k: jax.Array) -> tuple[TissueState, None]:
        return step(state, params, k, model), None

    if checkpoint is not None:
        one = jax.checkpoint(one)

    def frame(state: TissueState, k: jax.Array) -> tuple[TissueState, TissueState]:
        state, _ = jax.lax.scan(one, state.at_recorded_frame(),
                                jax.random.split(k, steps_per_frame))
        return state, state

    if checkpoint == "frame":
        frame = jax.checkpoint(frame)
    _, frames = jax.lax.scan(frame, initial, jax.random.split(key, n_frames))
    return jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), initial, frames)


def simulate(model: TissueModel, params: TissueParams, key: jax.Array,
             initial: TissueState | None = None, n_frames: int = 10,
             steps_per_frame: int = 5, checkpoint: str | None = None,
             step: Step = default_step) -> Trajectory:
    """Simulate the cluster and record it every ``steps_per_frame`` steps.

    Pure and differentiable in ``params`` (and ``initial``); ``jit``-compiled
    for each ``model`` and run length, and usable under ``jax.grad``,
    ``jax.vmap`` (over keys, for replicates) and ``jax.jit``.

    Parameters
    ----------
    model
        Static settings (capacity, dimension, time step, estimators).
    params
        Physical parameters (:class:`TissueParams`, units in their fields).
    key
        PRNG key of the run (noise, division draws and axes).
    initial
        Initial state; default a round 3D cluster of 20 cells with 4 sources
        on its −x side.
    n_frames, steps_per_frame
        The run lasts ``n_frames · steps_per_frame`` steps of ``model.dt_h``.
    checkpoint
        ``None``, ``"step"`` or ``"frame"``: rematerialisation of the backward
        pass (module doc).
    step
        The step function (default: :data:`~labloop.tissue.step.DEFAULT_STEPS`).

    Returns
    -------
    Trajectory
        ``n_frames + 1`` recorded states (the first is ``initial``).

    Examples
    --------
    >>> model = TissueModel(capacity=64)
    >>> params = default_params()
    >>> traj = simulate(model, params, jax.random.key(0), n_frames=4)  # doctest: +SKIP
    >>> traj.final.n_alive  # doctest: +SKIP
    """
    if checkpoint not in CHECKPOINTS:
        raise InputError(f"checkpoint must be one of {CHECKPOINTS}, got {checkpoint!r}")
    if n_frames < 1 or steps_per_frame < 1:
        raise InputError("n_frames and steps_per_frame must be at least 1")
    if initial is None:
        from labloop.tissue.initial import round_cluster

        initial = round_cluster(model, 20, n_sources=4,
                                n_genes=int(jnp.shape(params.gene.bias)[-1]))
    if initial.capacity != model.capacity:
        raise InputError(f"the initial state has {initial.capacity} slots but the model's "
                         f"capacity is {model.capacity}")
    if initial.gene.shape[-1] != jnp.shape(params.gene.bias)[-1]:
        raise InputError(f"the initial state has {initial.gene.shape[-1]} genes but the "
                         f"parameters have {jnp.shape(params.gene.bias)[-1]}")
    frames = _run(model, params, key, initial, n_frames, steps_per_frame, checkpoint, step)
    return Trajectory(frames, model.dt_h, steps_per_frame, model.dim)
