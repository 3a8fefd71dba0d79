"""A population of moving, growing and dividing nuclei, recorded as a ground-truth lineage.

Cells are points (with a radius, shape, orientation and brightness) in a box the
size of the field of view plus a populated margin, so cells wander in and out of
view. Per frame interval, in order:

1. *Motion*: ``substeps`` sub-steps of a persistent random walk, a soft-repulsion
   relaxation and reflection at the box walls; every cell ages by the interval.
2. *Division*: a cell whose age reached its gamma-distributed cycle duration is
   replaced by two daughters at ``±daughter_offset_radii`` daughter radii along a
   uniformly random axis from its position, each with half its volume (radius
   ``/2^(1/3)``), its brightness and velocity, and a fresh cycle duration, shape
   and orientation. Optionally (``sister_separation_radii``) the sisters keep
   drifting apart along that axis for ``sister_separation_h`` after birth.
3. *Crowding*: ``substeps`` more relaxation steps so daughters do not overlap
   their neighbours.

Each cell in each frame is one node. Edges join a cell to itself one frame later,
and a mother's last node to the first nodes of its daughters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd

from labloop.lineage import Lineage
from labloop.synth.config import DENSITY_UNIT_UM, RngLike, SynthConfig, make_rng
from labloop.synth.geometry import fov_bounds_um, in_fov, simulation_box_um
from labloop.synth.motion import reflect_into_box, repel, stationary_velocities, walk_step
from labloop.synth.nuclei import (
    division_brightness_boost,
    draw_axis_factors,
    draw_brightness,
    draw_cycle_durations,
    draw_division_axes,
    draw_full_radii,
    draw_orientations,
    radius_at_age,
)

#: Relaxation steps, each removing half of every overlap, applied to the randomly
#: placed initial population before the first frame.
INITIAL_RELAXATION_STEPS = 50
INITIAL_RELAXATION_FRACTION = 0.5

#: Node columns describing each nucleus, besides ``t, z, y, x, score``.
NUCLEUS_COLUMNS = ("radius_um", "volume_um3", "axis_a_um", "axis_b_um", "axis_c_um",
                   "quat_x", "quat_y", "quat_z", "quat_w", "brightness", "brightness_boost")


@dataclass
class _Cells:
    """Mutable state of the living cells, one row per cell."""

    cell_id: np.ndarray  # (N,) int64
    parent_id: np.ndarray  # (N,) int64, mother's cell id in a daughter's first frame, else −1
    position_um: np.ndarray  # (N, 3)
    velocity_um_per_h: np.ndarray  # (N, 3)
    full_radius_um: np.ndarray  # (N,) equivalent radius at division
    age_h: np.ndarray  # (N,)
    cycle_h: np.ndarray  # (N,)
    axis_factors: np.ndarray  # (N, 3)
    quaternion: np.ndarray  # (N, 4) x, y, z, w
    brightness: np.ndarray  # (N,)
    born_by_division: np.ndarray  # (N,) bool
    separation_um_per_h: np.ndarray  # (N, 3) drift away from the sister, while young

    def radius_um(self) -> np.ndarray:
        return radius_at_age(self.full_radius_um, self.age_h, self.cycle_h)

    def take(self, index: np.ndarray) -> _Cells:
        return _Cells(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def concat(parts: list[_Cells]) -> _Cells:
        return _Cells(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                         for f in fields(_Cells)})


def _active_axes(config: SynthConfig) -> np.ndarray:
    return np.array([not config.is_2d, True, True])


def _uniform_in(lower: np.ndarray, upper: np.ndarray, n: int, rng: np.random.Generator
                ) -> np.ndarray:
    return lower + (upper - lower) * rng.uniform(size=(n, 3))


def _initial_positions(config: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """``initial_cells`` uniform in the field of view, the margin at the same density."""
    fov_lower, fov_upper = fov_bounds_um(config.shape, config.voxel_size_um)
    box_lower, box_upper = simulation_box_um(config.shape, config.voxel_size_um,
                                             config.margin_um)
    if config.is_2d:
        fov_lower[0] = fov_upper[0] = 0.0
    inside = _uniform_in(fov_lower, fov_upper, config.initial_cells, rng)
    active = _active_axes(config)
    box_measure = float(np.prod((box_upper - box_lower)[active]))
    fov_measure = float(np.prod((fov_upper - fov_lower)[active]))
    n_margin = round(config.cell_density / DENSITY_UNIT_UM * (box_measure - fov_measure))
    margin = np.empty((0, 3))
    while len(margin) < n_margin:  # rejection sampling of the band around the field of view
        batch = _uniform_in(box_lower, box_upper, 2 * (n_margin - len(margin)) + 8, rng)
        outside = ~np.all((batch >= fov_lower) & (batch < fov_upper), axis=1)
        margin = np.concatenate([margin, batch[outside]])[:n_margin]
    return np.concatenate([inside, margin])


def _steady_state_ages(cycle_h: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ages (h) from the steady age distribution of an exponentially growing population.

    With cycle duration ``T`` the density of ages is ``p(a) = (2 ln 2 / T)·2^(−a/T)``
    on ``[0, T)`` (young cells outnumber old ones two to one), so the division rate
    is ``ln 2 / T`` from the first frame on. Inverse-CDF draw:
    ``a = −T·log₂(1 − u/2)``, ``u ~ U(0, 1)``.
    """
    return -cycle_h * np.log2(1.0 - 0.5 * rng.uniform(size=len(cycle_h)))


def _initial_cells(config: SynthConfig, rng: np.random.Generator) -> _Cells:
    positions = _initial_positions(config, rng)
    n = len(positions)
    cycle = draw_cycle_durations(n, config, rng)
    cells = _Cells(
        cell_id=np.arange(n, dtype=np.int64),
        parent_id=np.full(n, -1, dtype=np.int64),
        position_um=positions,
        velocity_um_per_h=stationary_velocities(n, config.speed_um_per_h,
                                                _active_axes(config), rng),
        full_radius_um=draw_full_radii(n, config, rng),
        age_h=_steady_state_ages(cycle, rng),
        cycle_h=cycle,
        axis_factors=draw_axis_factors(n, config, rng),
        quaternion=draw_orientations(n, config, rng),
        brightness=draw_brightness(n, config, rng),
        born_by_division=np.zeros(n, dtype=bool),
        separation_um_per_h=np.zeros((n, 3)),
    )
    box = simulation_box_um(config.shape, config.voxel_size_um, config.margin_um)
    for _ in range(INITIAL_RELAXATION_STEPS):
        moved = repel(cells.position_um, cells.radius_um(), config.contact_factor,
                      INITIAL_RELAXATION_FRACTION, _active_axes(config), rng)
        cells.position_um, _ = reflect_into_box(moved, cells.velocity_um_per_h, *box)
    return cells


def _divide(cells: _Cells, next_id: int, config: SynthConfig, rng: np.random.Generator
            ) -> tuple[_Cells, int]:
    """Replace every cell whose age reached its cycle duration by two daughters."""
    dividing = cells.age_h >= cells.cycle_h
    n = int(dividing.sum())
    if n == 0:
        return cells, next_id
    mothers = cells.take(np.flatnonzero(dividing))
    # the mother's size in her last frame; each daughter gets half of that volume
    mother_radius = radius_at_age(mothers.full_radius_um, mothers.age_h - config.frame_interval_h,
                                  mothers.cycle_h)
    daughter_radius = mother_radius / np.cbrt(2.0)
    axes = draw_division_axes(n, config, rng)
    offset = (config.daughter_offset_radii * daughter_radius)[:, None] * axes
    separation = (config.sister_separation_radii * daughter_radius
                  / config.sister_separation_h)[:, None] * axes
    daughters = _Cells(
        cell_id=next_id + np.arange(2 * n, dtype=np.int64),
        parent_id=np.tile(mothers.cell_id, 2),
        position_um=np.concatenate([mothers.position_um + offset,
                                    mothers.position_um - offset]),
        velocity_um_per_h=np.tile(mothers.velocity_um_per_h, (2, 1)),
        full_radius_um=np.tile(mother_radius, 2),
        age_h=np.zeros(2 * n),
        cycle_h=draw_cycle_durations(2 * n, config, rng),
        axis_factors=draw_axis_factors(2 * n, config, rng),
        quaternion=draw_orientations(2 * n, config, rng),
        brightness=np.tile(mothers.brightness, 2),
        born_by_division=np.ones(2 * n, dtype=bool),
        separation_um_per_h=np.concatenate([separation, -separation]),
    )
    survivors = cells.take(np.flatnonzero(~dividing))
    return _Cells.concat([survivors, daughters]), next_id + 2 * n


def _frame_table(cells: _Cells, t: int, config: SynthConfig) -> pd.DataFrame:
    radius = cells.radius_um()
    axes = cells.axis_factors * radius[:, None]
    table = pd.DataFrame({
        "t": np.full(len(radius), t, dtype=np.int64),
        "z": cells.position_um[:, 0],
        "y": cells.position_um[:, 1],
        "x": cells.position_um[:, 2],
        "score": 1.0,
        "radius_um": radius,
        "volume_um3": 4.0 / 3.0 * np.pi * radius**3,
        "axis_a_um": axes[:, 0],
        "axis_b_um": axes[:, 1],
        "axis_c_um": axes[:, 2],
        "quat_x": cells.quaternion[:, 0],
        "quat_y": cells.quaternion[:, 1],
        "quat_z": cells.quaternion[:, 2],
        "quat_w": cells.quaternion[:, 3],
        "brightness": cells.brightness,
        "brightness_boost": division_brightness_boost(cells.age_h, cells.born_by_division,
                                                      config),
        "cell_id": cells.cell_id,
        "parent_cell_id": cells.parent_id,
    })
    if config.is_2d:
        table["z"] = 0.0
    return table


def _edges(nodes: pd.DataFrame) -> pd.DataFrame:
    """Link each node to its cell's node, or its mother's node, one frame earlier."""
    later = nodes[nodes["t"] > 0]
    previous_cell = np.where(later["parent_cell_id"] >= 0, later["parent_cell_id"],
                             later["cell_id"])
    keys = pd.DataFrame({"t": nodes["t"].to_numpy(), "cell_id": nodes["cell_id"].to_numpy(),
                         "source": nodes.index.to_numpy()})
    wanted = pd.DataFrame({"t": later["t"].to_numpy() - 1, "cell_id": previous_cell,
                           "target": later.index.to_numpy()})
    edges = wanted.merge(keys, on=["t", "cell_id"], how="inner", validate="many_to_one")
    return edges[["source", "target"]].sort_values("target", kind="stable").reset_index(
        drop=True)


def simulate_cells(config: SynthConfig, rng: RngLike = None, *,
                   include_margin: bool = False) -> Lineage:
    """Simulate moving, growing, dividing nuclei and return their true lineage.

    Parameters
    ----------
    config
        Geometry, population, nucleus, motion and cell-cycle settings.
    rng
        Generator or seed of every random draw; ``None`` uses ``config.seed``.
    include_margin
        Also return the cells in the margin around the field of view (with a
        boolean ``in_fov`` column), e.g. to render light from nuclei just outside
        the image. By default only nodes whose centre is in the field of view are
        kept, with edges only between consecutive frames where both ends are in
        view (a cell that leaves and returns starts a new track).

    Returns
    -------
    Lineage
        Nodes with columns ``t`` (frame), ``z, y, x`` (µm, origin at the centre of
        voxel (0, 0, 0)), ``score`` (1), ``radius_um`` (equivalent-sphere radius),
        ``volume_um3``, semi-axes ``axis_a_um, axis_b_um, axis_c_um`` (µm),
        orientation ``quat_x, quat_y, quat_z, quat_w`` (see
        :mod:`labloop.synth.nuclei`), ``brightness`` (relative, mean 1),
        ``brightness_boost`` (extra factor after division), ``cell_id`` and
        ``parent_cell_id`` (simulation identities, ``−1`` for none). Edges go
        ``t → t+1``; a division is two edges from the mother's last node. Node
        ids are consecutive in frame order and deterministic for a seed.

    Examples
    --------
    >>> truth = simulate_cells(SynthConfig(frames=3, shape=(1, 64, 64), n_cells=10))
    >>> sorted(truth.nodes["t"].unique().tolist())
    [0, 1, 2]
    """
    rng = make_rng(rng, config.seed)
    active = _active_axes(config)
    box = simulation_box_um(config.shape, config.voxel_size_um, config.margin_um)
    dt_h = config.frame_interval_h / config.substeps
    fraction = 1.0 - np.exp(-config.repulsion_rate_per_h * dt_h)

    def relax(cells: _Cells) -> None:
        moved = repel(cells.position_um, cells.radius_um(), config.contact_factor, fraction,
                      active, rng)
        cells.position_um, cells.velocity_um_per_h = reflect_into_box(
            moved, cells.velocity_um_per_h, *box)

    cells = _initial_cells(config, rng)
    next_id = len(cells.cell_id)
    tables = [_frame_table(cells, 0, config)]
    for t in range(1, config.frames):
        cells.parent_id = np.full_like(cells.parent_id, -1)
        for _ in range(config.substeps):
            cells.velocity_um_per_h = walk_step(cells.velocity_um_per_h, dt_h,
                                                config.speed_um_per_h, config.persistence_h,
                                                active, rng)
            # the part of this sub-step that falls inside the separation window
            window = np.clip(config.sister_separation_h - cells.age_h, 0.0, dt_h)[:, None]
            cells.position_um = (cells.position_um + cells.velocity_um_per_h * dt_h
                                 + cells.separation_um_per_h * window)
            cells.age_h = cells.age_h + dt_h
            relax(cells)
        cells, next_id = _divide(cells, next_id, config, rng)
        for _ in range(config.substeps):
            relax(cells)
        tables.append(_frame_table(cells, t, config))

    nodes = pd.concat(tables, ignore_index=True)
    nodes.index = pd.RangeIndex(len(nodes), name="node")
    edges = _edges(nodes)
    nodes["in_fov"] = in_fov(nodes[["z", "y", "x"]].to_numpy(), config.shape,
                             config.voxel_size_um)
    full = Lineage(nodes, edges, frame_interval_h=config.frame_interval_h,
                   attrs={"simulator": "labloop.synth", "config": asdict(config)})
    return full if include_margin else restrict_to_fov(full)


def restrict_to_fov(lineage: Lineage) -> Lineage:
    """Keep the nodes with ``in_fov`` true and the edges between two kept nodes.

    Parameters
    ----------
    lineage
        A lineage from ``simulate_cells(..., include_margin=True)``.

    Returns
    -------
    Lineage
        The ground truth as seen in the image, without the ``in_fov`` column.
    """
    keep = lineage.nodes["in_fov"].to_numpy(dtype=bool)
    nodes = lineage.nodes[keep].drop(columns="in_fov")
    kept = nodes.index
    edges = lineage.edges
    edges = edges[edges["source"].isin(kept) & edges["target"].isin(kept)]
    return Lineage(nodes, edges[["source", "target", "probability"]],
                   frame_interval_h=lineage.frame_interval_h, attrs=dict(lineage.attrs))
