"""Fixed-size neighbour lists under ``jit``: all pairs (small N) or a hashed cell list.

Both return ``(N, K)`` slot indices of the ``K`` nearest neighbours in range,
with ``N`` (one past the last slot) as the fill value, and the number of
neighbours that did not fit (the farthest ones, whose forces are the weakest). The search is
integer work under ``stop_gradient``; forces are then gathered along the list,
so gradients flow through positions only.

Cell list. Space is cut into cubes of side ``h ≥`` the interaction range;
cube ``(i, j, k)`` is hashed into a table of ``T`` (a power of two ≥ 2N)
buckets, ``hash = (73856093 i ⊕ 19349663 j ⊕ 83492791 k) mod T``, cells are
sorted by bucket, and each cell scans the ``M = max_per_cell`` first entries of
the buckets of its 27 (3D) or 9 (2D) surrounding cubes, keeping those whose
cube matches (hash collisions are thus harmless) and which lie within range.
Cost ``O(N log N)`` for the sort and ``O(27 · M · N)`` for the scan: linear in
cells at a fixed density. Buckets holding more than ``M`` cells are counted.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

_PRIMES = np.array([73856093, 19349663, 83492791], dtype=np.int64)


def _nearest(candidates: jax.Array, d2: jax.Array, valid: jax.Array,
             k: int) -> tuple[jax.Array, jax.Array]:
    """Keep per row the ``k`` nearest valid candidates (fill ``N``); count the rest.

    When a list overflows, the farthest neighbours (the weakest forces) are the
    ones dropped, never an arbitrary subset.
    """
    n = candidates.shape[0]
    k = min(k, candidates.shape[1])
    negative_d2, column = jax.lax.top_k(jnp.where(valid, -d2, -jnp.inf), k)
    kept = jnp.take_along_axis(candidates, column, axis=1).astype(jnp.int32)
    out = jnp.where(jnp.isfinite(negative_d2), kept, n)
    overflow = jnp.sum(jnp.maximum(jnp.sum(valid, axis=1) - k, 0))
    return out, overflow.astype(jnp.int32)


def dense_neighbours(position: jax.Array, alive: jax.Array, range_um: float,
                     max_neighbours: int) -> tuple[jax.Array, jax.Array]:
    """All-pairs neighbour list: cells ``j ≠ i`` alive with ``‖xᵢ − xⱼ‖ < range_um``."""
    n = position.shape[0]
    x = jax.lax.stop_gradient(position)
    d2 = jnp.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=-1)
    valid = (d2 < range_um**2) & alive[:, None] & alive[None, :] & ~jnp.eye(n, dtype=bool)
    candidates = jnp.broadcast_to(jnp.arange(n)[None, :], (n, n))
    return _nearest(candidates, d2, valid, max_neighbours)


def _hash(cube: jax.Array, table_size: int) -> jax.Array:
    primes = jnp.asarray(_PRIMES[: cube.shape[-1]].astype(np.uint32))
    h = cube.astype(jnp.uint32) * primes
    out = h[..., 0]
    for d in range(1, cube.shape[-1]):
        out = out ^ h[..., d]
    return (out & jnp.uint32(table_size - 1)).astype(jnp.int32)


def cell_list_neighbours(position: jax.Array, alive: jax.Array, range_um: float,
                         max_neighbours: int, max_per_cell: int,
                         dim: int = 3) -> tuple[jax.Array, jax.Array]:
    """Neighbour list from a hashed cell list (cost linear in cells; see module doc).

    Parameters
    ----------
    position
        ``(N, 3)`` positions (µm); a 2D model uses the last two columns.
    alive
        ``(N,)`` bool.
    range_um
        Neighbour range, also the grid side (µm).
    max_neighbours, max_per_cell
        ``K`` and ``M`` (see module doc).
    dim
        2 or 3.

    Returns
    -------
    (indices, overflow)
        ``(N, K)`` int32 neighbour slots (fill ``N``) and the number of entries
        dropped because a bucket or a list was full.
    """
    n = position.shape[0]
    table = 1 << int(np.ceil(np.log2(max(2 * n, 2))))
    x = jax.lax.stop_gradient(position)[:, 3 - dim:]
    cube = jnp.floor(x / range_um).astype(jnp.int32)
    bucket = jnp.where(alive, _hash(cube, table), table)
    order = jnp.argsort(bucket)
    sorted_bucket = bucket[order]
    occupancy = jnp.zeros(table + 1, jnp.int32).at[bucket].add(1)[:table]
    bucket_overflow = jnp.sum(jnp.maximum(occupancy - max_per_cell, 0))

    offsets = jnp.asarray(list(itertools.product((-1, 0, 1), repeat=dim)), jnp.int32)
    query_cube = cube[:, None, :] + offsets[None, :, :]             # (N, S, dim)
    query = _hash(query_cube, table)                                 # (N, S)
    start = jnp.searchsorted(sorted_bucket, query, side="left")      # (N, S)
    position_in_sorted = start[..., None] + jnp.arange(max_per_cell)  # (N, S, M)
    in_range = position_in_sorted < n
    position_in_sorted = jnp.minimum(position_in_sorted, n - 1)
    candidate = order[position_in_sorted]                            # (N, S, M)
    same_cube = jnp.all(cube[candidate] == query_cube[:, :, None, :], axis=-1)
    d2 = jnp.sum((x[candidate] - x[:, None, None, :]) ** 2, axis=-1)
    close = d2 < range_um**2
    valid = (in_range & (sorted_bucket[position_in_sorted] == query[..., None]) & same_cube
             & close & alive[candidate] & alive[:, None, None]
             & (candidate != jnp.arange(n)[:, None, None]))
    indices, list_overflow = _nearest(candidate.reshape(n, -1), d2.reshape(n, -1),
                                      valid.reshape(n, -1), max_neighbours)
    return indices, (bucket_overflow + list_overflow).astype(jnp.int32)
