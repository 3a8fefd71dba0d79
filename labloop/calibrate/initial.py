"""The model's initial state from the first observed frame."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from labloop.errors import InputError
from labloop.lineage import Lineage
from labloop.tissue import CellType, TissueModel, TissueState, initial_state

#: neighbours farther than this multiple of the median nearest-neighbour distance are
#: beyond the first shell (a close packing's second shell is at √2 times the first)
FIRST_SHELL = 1.25
#: neighbours a cell can touch in a close packing
CONTACTS = 12


def cell_radius_from(lineage: Lineage, frame: int = 0) -> float:
    """Half the median distance between touching nuclei in ``frame`` (µm): the distances
    to every neighbour of the first shell, not only the nearest one.

    The nearest neighbour is the closest of about twelve touching cells, so any
    jitter of positions (localisation noise, cells pressed together) pulls it
    below the contact distance: on a packing of 5-µm cells with 0.5 µm jitter
    it gives 4.55 µm, and a model started with that radius packs its cells
    closer to the sources and divides too little.
    """
    points = lineage.nodes.loc[lineage.nodes["t"] == frame, ["z", "y", "x"]].to_numpy()
    if len(points) < 2:
        raise InputError(f"frame {frame} has {len(points)} nuclei; at least 2 are needed to "
                         "estimate the cell size")
    distance, _ = cKDTree(points).query(points, k=min(CONTACTS, len(points) - 1) + 1)
    neighbours = distance[:, 1:]
    shell = neighbours[neighbours < FIRST_SHELL * np.median(neighbours[:, 0])]
    return float(np.median(shell) / 2)


def initial_from_lineage(model: TissueModel, lineage: Lineage,
                         sources_um: np.ndarray | None = None, *, n_genes: int = 3,
                         radius_um: float | None = None, frame: int = 0) -> TissueState:
    """Cells of ``frame`` as a model state; nuclei at the given source positions become
    source cells.

    Parameters
    ----------
    model
        Gives capacity and dimension.
    lineage
        Observed lineage (µm).
    sources_um
        ``(S, 3)`` source-cell positions at ``frame`` (µm); each replaces the nucleus
        nearest to it (within one cell radius) or is added if none is that close.
    n_genes
        Size of the gene network.
    radius_um
        Cell radius; default :func:`cell_radius_from` the frame.
    """
    nodes = lineage.nodes[lineage.nodes["t"] == frame]
    if len(nodes) == 0:
        raise InputError(f"the lineage has no nuclei in frame {frame}")
    radius = cell_radius_from(lineage, frame) if radius_um is None else float(radius_um)
    points = nodes[["z", "y", "x"]].to_numpy(np.float64)
    types = np.full(len(points), CellType.PROLIFERATING)
    if sources_um is not None and len(sources_um):
        sources = np.asarray(sources_um, np.float64).reshape(-1, 3)
        distance, nearest = cKDTree(points).query(sources)
        keep = np.ones(len(points), bool)
        keep[nearest[distance < radius]] = False
        points = np.concatenate([points[keep], sources])
        types = np.concatenate([types[keep], np.full(len(sources), CellType.SOURCE)])
    if model.dim == 2:
        points[:, 0] = 0.0
    return initial_state(model, points, types, radius, n_genes)
