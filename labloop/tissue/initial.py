"""Initial states: a packed round cluster, optionally with a cap of source cells."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from labloop.errors import InputError
from labloop.tissue.model import TissueModel
from labloop.tissue.state import CellType, TissueState, zero_counters


def initial_state(model: TissueModel, position_um: np.ndarray,
                  cell_type: np.ndarray | None = None, radius_um: float | np.ndarray = 5.0,
                  n_genes: int = 3, gene: np.ndarray | None = None) -> TissueState:
    """A state holding the given cells in its first slots.

    Parameters
    ----------
    model
        Gives the capacity ``N``.
    position_um
        ``(n, 3)`` positions ``(z, y, x)`` in µm.
    cell_type
        ``(n,)`` :class:`CellType` values (default: all proliferating).
    radius_um
        Radii (µm), scalar or ``(n,)``.
    n_genes
        ``G``; genes start at 0 unless ``gene`` ``(n, G)`` is given.

    Raises
    ------
    InputError
        More cells than the capacity, or positions not ``(n, 3)`` finite.
    """
    position = np.asarray(position_um, dtype=np.float64)
    if position.ndim != 2 or position.shape[1] != 3 or not np.isfinite(position).all():
        raise InputError("initial positions must be a finite (n, 3) array (z, y, x) in µm")
    n = len(position)
    if n > model.capacity:
        raise InputError(f"{n} initial cells exceed the model capacity {model.capacity}")
    cap = model.capacity
    dtype = jnp.result_type(float)
    types = (np.full(n, CellType.PROLIFERATING) if cell_type is None
             else np.asarray(cell_type))
    genes = np.zeros((n, n_genes)) if gene is None else np.asarray(gene, dtype=np.float64)

    def pad(values: np.ndarray, fill: float | int, dt: object) -> jax.Array:
        out = np.full((cap, *np.shape(values)[1:]), fill, dtype=np.float64)
        out[:n] = values
        return jnp.asarray(out, dtype=dt)

    alive = np.zeros(cap, bool)
    alive[:n] = True
    return TissueState(
        position_um=pad(position, 0.0, dtype),
        radius_um=pad(np.broadcast_to(np.asarray(radius_um, float), (n,)), 0.0, dtype),
        cell_type=pad(types, CellType.PROLIFERATING, jnp.int32),
        alive=jnp.asarray(alive),
        weight=jnp.asarray(alive, dtype),
        gene=pad(genes, 0.0, dtype),
        growth_factor=jnp.zeros(cap, dtype),
        division_rate_per_h=jnp.zeros(cap, dtype),
        expected_divisions=jnp.zeros(cap, dtype),
        visible_divisions=jnp.zeros(cap, dtype),
        frame_ancestor=jnp.full(cap, -1, jnp.int32),
        frame_divisions=jnp.zeros(cap, jnp.int32),
        cell_id=pad(np.arange(n), -1, jnp.int32),
        mother=jnp.full(cap, -1, jnp.int32),
        born=jnp.zeros(cap, jnp.int32),
        counters=zero_counters(n),
    )


def packed_ball(n_cells: int, spacing_um: float, dim: int = 3) -> np.ndarray:
    """``n_cells`` points of a close-packed lattice (fcc in 3D, hexagonal in 2D),
    nearest the origin, centred; ``(n, 3)`` in µm."""
    side = int(np.ceil((2 * n_cells) ** (1 / dim))) + 2
    r = np.arange(-side, side + 1)
    if dim == 3:
        a = spacing_um * np.sqrt(2.0)
        base = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3) * a
        basis = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]]) * a
        points = (base[:, None, :] + basis[None]).reshape(-1, 3)
    else:
        i, j = np.meshgrid(r, r, indexing="ij")
        y = i * spacing_um * np.sqrt(3) / 2
        x = (j + 0.5 * (i % 2)) * spacing_um
        points = np.stack([np.zeros(y.size), y.ravel(), x.ravel()], -1)
    # tie-break by a fixed direction so the choice is deterministic
    key = np.linalg.norm(points, axis=1) + 1e-6 * (points @ np.array([0.3, 0.2, 0.1]))
    chosen = points[np.argsort(key)[:n_cells]]
    centre = chosen.mean(axis=0)
    if dim == 2:
        centre[0] = 0.0
    return chosen - centre


def round_cluster(model: TissueModel, n_cells: int, n_sources: int = 0, n_genes: int = 3,
                  radius_um: float = 5.0, jitter_um: float = 0.5,
                  key: jax.Array | None = None) -> TissueState:
    """A round, packed cluster whose ``n_sources`` cells of lowest ``x`` are sources.

    The sources form a cap on the ``−x`` side, so the axis "away from the
    sources" is ``+x``. ``n_cells`` counts all cells, sources included.
    ``jitter_um`` adds a random offset (needs ``key``) so no two runs are
    lattice-perfect.
    """
    if not 0 <= n_sources <= n_cells:
        raise InputError(f"n_sources must be between 0 and n_cells, got {n_sources}")
    position = packed_ball(n_cells, 2 * radius_um, model.dim)
    if key is not None and jitter_um > 0:
        noise = np.asarray(jax.random.normal(key, position.shape)) * jitter_um
        if model.dim == 2:
            noise[:, 0] = 0.0
        position = position + noise
    types = np.full(n_cells, CellType.PROLIFERATING)
    types[np.argsort(position[:, 2])[:n_sources]] = CellType.SOURCE
    return initial_state(model, position, types, radius_um, n_genes)
