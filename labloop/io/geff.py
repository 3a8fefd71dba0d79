"""GEFF (graph exchange file format) reading and writing of :class:`Lineage`.

labloop writes node positions in micrometres (``z, y, x`` axes with unit
``micrometer``) and time in frames (axis ``t`` with unit ``frame``, scaled to
hours by the frame interval). Edge properties ``probability`` and
``error_probability`` hold the tracker's calibrated link probabilities.

Files from other tools are accepted when their spatial axes carry a physical
unit, or when the caller gives the voxel size (e.g. the Cell Tracking Challenge
ground truth, whose positions are in voxels).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from labloop.errors import InputError
from labloop.io.atomic import atomic_path
from labloop.lineage import SPATIAL_COLUMNS, Lineage

SPACE_UNIT = "micrometer"
#: conversion factors from OME-NGFF space units to micrometres
_TO_MICROMETRE = {
    "micrometer": 1.0, "micron": 1.0, "um": 1.0, "µm": 1.0,
    "nanometer": 1e-3, "millimeter": 1e3, "angstrom": 1e-4,
}
_TO_HOURS = {"hour": 1.0, "minute": 1 / 60, "second": 1 / 3600, "day": 24.0,
             "millisecond": 1 / 3.6e6}


def _prop(values: np.ndarray) -> dict[str, np.ndarray | None]:
    return {"values": np.ascontiguousarray(values), "missing": None}


def write_geff(
    lineage: Lineage,
    path: str | Path,
    overwrite: bool = True,
    zarr_format: Literal[2, 3] = 3,
) -> None:
    """Write ``lineage`` to a GEFF zarr group at ``path``, atomically.

    Parameters
    ----------
    lineage
        The lineage to write.
    path
        Destination folder, e.g. ``experiment.zarr/labloop/tracks.geff``.
    overwrite
        Replace an existing graph at ``path`` (default). If ``False`` an existing
        path is an error.
    zarr_format
        Zarr format of the GEFF group (3 by default, matching OME-Zarr 0.5 stores).
    """
    import geff
    from geff.core_io import write_arrays
    from geff_spec import Axis, GeffMetadata

    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError("already exists (pass overwrite=True to replace it)", path)
    nodes, edges = lineage.nodes, lineage.edges
    node_ids = nodes.index.to_numpy(dtype=np.int64)
    node_props = {}
    for column in nodes.columns:
        values = nodes[column].to_numpy()
        if values.dtype == object:
            raise InputError(f"node column {column!r} is not numeric and cannot go into GEFF")
        node_props[column] = _prop(values)
    edge_ids = edges[["source", "target"]].to_numpy(dtype=np.int64).reshape(-1, 2)
    edge_props = {c: _prop(edges[c].to_numpy()) for c in edges.columns
                  if c not in ("source", "target")}

    def bounds(column: str) -> dict[str, float | None]:
        if len(nodes) == 0:
            return {"min": None, "max": None}
        return {"min": float(nodes[column].min()), "max": float(nodes[column].max())}

    interval = lineage.frame_interval_h
    time_axis = Axis(name="t", type="time", unit="frame", **bounds("t"),
                     scale=interval, scaled_unit="hour" if interval is not None else None)
    axes = [time_axis] + [Axis(name=c, type="space", unit=SPACE_UNIT, **bounds(c))
                          for c in SPATIAL_COLUMNS]
    from labloop import __version__

    extra = {"labloop": {"version": __version__, "frame_interval_h": interval,
                         "attrs": json.loads(json.dumps(lineage.attrs, default=str))}}
    metadata = GeffMetadata(geff_version=geff.__version__, directed=True, axes=axes,
                            node_props_metadata={}, edge_props_metadata={}, extra=extra)
    with atomic_path(path) as tmp:
        write_arrays(str(tmp), node_ids, node_props, edge_ids, edge_props, metadata,
                     zarr_format=zarr_format)


def _spatial_scale(axes: list[Any], voxel_size_um: tuple[float, float, float] | None,
                   path: Path) -> np.ndarray:
    by_name = {axis.name: axis for axis in axes}
    missing = [c for c in SPATIAL_COLUMNS if c not in by_name]
    if "x" in missing or "y" in missing:
        raise InputError("GEFF has no y/x position axes", path)
    factors: list[float | None] = []
    for column in SPATIAL_COLUMNS:
        axis = by_name.get(column)
        if axis is None:  # 2D graph: z = 0
            factors.append(np.nan)
            continue
        unit = axis.unit if axis.unit not in (None, "pixel") else None
        if unit is None and axis.scaled_unit in _TO_MICROMETRE and axis.scale is not None:
            factors.append(axis.scale * _TO_MICROMETRE[axis.scaled_unit])
        elif unit is not None:
            if unit not in _TO_MICROMETRE:
                raise InputError(f"GEFF axis {column!r} has unsupported unit {unit!r}", path)
            factors.append(_TO_MICROMETRE[unit])
        else:
            factors.append(None)
    if any(f is None for f in factors):
        if voxel_size_um is None:
            raise InputError(
                "GEFF positions have no physical unit; give the voxel size (z, y, x) in µm",
                path)
        return np.asarray(voxel_size_um, dtype=np.float64)
    if voxel_size_um is not None:
        raise InputError("GEFF positions are already in physical units; do not give a "
                         "voxel size", path)
    return np.asarray(factors, dtype=np.float64)


def _frame_interval(axes: list[Any], extra: dict[str, Any], given: float | None) -> float | None:
    if given is not None:
        return float(given)
    stored = extra.get("labloop", {}).get("frame_interval_h")
    if stored is not None:
        return float(stored)
    for axis in axes:
        if axis.name == "t" and axis.scale is not None and axis.scaled_unit in _TO_HOURS:
            return float(axis.scale) * _TO_HOURS[axis.scaled_unit]
    return None


def read_geff(
    path: str | Path,
    voxel_size_um: tuple[float, float, float] | None = None,
    frame_interval_h: float | None = None,
) -> Lineage:
    """Read a GEFF graph as a :class:`Lineage` in micrometres.

    Parameters
    ----------
    path
        The GEFF zarr group.
    voxel_size_um
        ``(z, y, x)`` voxel size, required when the positions are in voxels
        (axes without a physical unit) and refused otherwise.
    frame_interval_h
        Hours between frames; read from the metadata when omitted.

    Returns
    -------
    Lineage

    Raises
    ------
    InputError
        The path is missing or not a GEFF, positions are missing or NaN, or the
        units cannot be determined.

    Examples
    --------
    >>> ce = read_geff("ctc-Fluo-N3DH-CE-01-GT.geff",
    ...                voxel_size_um=(1.0, 0.09, 0.09), frame_interval_h=1 / 60)  # doctest: +SKIP
    """
    from geff.core_io import read_to_memory

    path = Path(path)
    if not path.exists():
        raise InputError("no such GEFF", path)
    try:
        memory = read_to_memory(str(path))
    except Exception as error:  # geff raises several types for a broken file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise InputError(f"not a readable GEFF graph ({type(error).__name__}: "
                         f"{first_line[:200]})", path) from error
    metadata = memory["metadata"]
    axes = list(metadata.axes or [])
    props = memory["node_props"]
    if "t" not in props or not all(c in props for c in ("y", "x")):
        raise InputError("GEFF nodes have no t/y/x positions", path)
    scale = _spatial_scale(axes, voxel_size_um, path)
    columns: dict[str, np.ndarray] = {}
    for name, prop in props.items():
        values = np.asarray(prop["values"])
        if values.ndim != 1:
            continue  # vector-valued props (e.g. covariances) are not per-node scalars here
        missing = prop.get("missing")
        if missing is not None and np.any(missing):
            if name in ("t", *SPATIAL_COLUMNS):
                raise InputError(f"GEFF node property {name!r} has missing values", path)
            values = np.where(missing, np.nan, values.astype(np.float64))
        columns[name] = values
    # geff does not keep property order: positions first, then the rest by name
    order = [c for c in ("t", *SPATIAL_COLUMNS, "score") if c in columns]
    order += sorted(c for c in columns if c not in order)
    nodes = pd.DataFrame({c: columns[c] for c in order},
                         index=np.asarray(memory["node_ids"], dtype=np.int64))
    if "z" not in nodes.columns:
        nodes["z"] = 0.0
    for i, column in enumerate(SPATIAL_COLUMNS):
        factor = 1.0 if np.isnan(scale[i]) else scale[i]
        nodes[column] = nodes[column].astype(np.float64) * factor
    edge_ids = np.asarray(memory["edge_ids"], dtype=np.int64).reshape(-1, 2)
    edges = pd.DataFrame({"source": edge_ids[:, 0], "target": edge_ids[:, 1]})
    for name, prop in sorted(memory["edge_props"].items()):
        if np.asarray(prop["values"]).ndim == 1:
            edges[name] = prop["values"]
    if "probability" not in edges.columns and "error_probability" in edges.columns:
        edges["probability"] = 1.0 - edges["error_probability"]
    edges = edges.drop(columns=["error_probability"], errors="ignore")
    extra = dict(metadata.extra or {})
    attrs = dict(extra.get("labloop", {}).get("attrs", {}))
    try:
        return Lineage(nodes, edges, _frame_interval(axes, extra, frame_interval_h), attrs)
    except InputError as error:
        raise InputError(error.problem, path) from None
