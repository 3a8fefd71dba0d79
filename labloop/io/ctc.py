"""Cell Tracking Challenge (CTC) export and import.

The CTC result format is a folder with ``res_track.txt`` (one line ``L B E P``
per track: label, first frame, last frame, parent label or 0) and one label
image per frame, ``mask000.tif`` ... in which each nucleus carries its track
label. labloop tracks points, so on export each nucleus is drawn as a small ball
of ``radius_um`` around its centre; on import nuclei are the label centroids.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from labloop.errors import InputError
from labloop.io.atomic import atomic_path
from labloop.lineage import SPATIAL_COLUMNS, Lineage

TRACK_FILE = "res_track.txt"
#: default radius of the ball drawn for each nucleus in exported masks
DEFAULT_MARKER_RADIUS_UM = 1.5


def _mask_name(t: int, n_frames: int) -> str:
    return f"mask{t:04d}.tif" if n_frames > 1000 else f"mask{t:03d}.tif"


def track_table(lineage: Lineage) -> pd.DataFrame:
    """The CTC track table: columns ``L, B, E, P`` (label, begin, end, parent)."""
    tracklets = lineage.nodes[["t"]].join(lineage.tracklets())
    grouped = tracklets.groupby("track_id")
    table = pd.DataFrame({
        "L": grouped.size().index.to_numpy(dtype=np.int64),
        "B": grouped["t"].min().to_numpy(dtype=np.int64),
        "E": grouped["t"].max().to_numpy(dtype=np.int64),
        "P": grouped["parent_track_id"].first().to_numpy(dtype=np.int64),
    })
    return table


def _ball_offsets(radius_um: float, voxel_size_um: Sequence[float]) -> np.ndarray:
    reach = [int(np.ceil(radius_um / v)) for v in voxel_size_um]
    grid = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"), -1)
    inside = ((grid * np.asarray(voxel_size_um)) ** 2).sum(-1) <= radius_um**2
    return grid[inside].reshape(-1, 3)


def write_ctc(
    lineage: Lineage,
    directory: str | Path,
    shape: Sequence[int] | None = None,
    voxel_size_um: Sequence[float] | None = None,
    radius_um: float = DEFAULT_MARKER_RADIUS_UM,
) -> None:
    """Export ``lineage`` in CTC result format.

    Parameters
    ----------
    lineage
        The lineage.
    directory
        Output folder (created; the export is written atomically).
    shape
        ``(T, Z, Y, X)`` of the image. With ``voxel_size_um`` it enables the
        ``maskTTT.tif`` label images; without, only ``res_track.txt`` is written.
    voxel_size_um
        ``(z, y, x)`` µm per voxel, to place nuclei in the masks.
    radius_um
        Radius of the ball drawn per nucleus in the masks.
    """
    import tifffile

    if (shape is None) != (voxel_size_um is None):
        raise InputError("give both the image shape and the voxel size to write CTC masks")
    table = track_table(lineage)
    with atomic_path(Path(directory)) as tmp:
        tmp.mkdir(parents=True)
        np.savetxt(tmp / TRACK_FILE, table.to_numpy(), fmt="%d")
        if shape is None or voxel_size_um is None:
            return
        if len(shape) != 4:
            raise InputError(f"image shape must be (T, Z, Y, X), got {tuple(shape)}")
        n_frames, *spatial = (int(s) for s in shape)
        if lineage.n_nodes and lineage.nodes["t"].max() >= n_frames:
            raise InputError("the lineage has frames beyond the image")
        extent_um = (np.asarray(spatial) - 0.5) * np.asarray(voxel_size_um)
        outside = ((lineage.positions_um() < -0.5 * np.asarray(voxel_size_um))
                   | (lineage.positions_um() > extent_um)).any(axis=1)
        if outside.any():
            raise InputError(f"{int(outside.sum())} nuclei lie outside the image of shape "
                             f"{tuple(shape)}; check the voxel size")
        labels = lineage.tracklets()["track_id"]
        dtype = np.uint16 if labels.to_numpy().max(initial=0) < 2**16 else np.uint32
        offsets = _ball_offsets(radius_um, voxel_size_um)
        voxel = np.asarray(voxel_size_um, dtype=np.float64)
        upper = np.asarray(spatial) - 1
        by_frame = lineage.nodes.groupby("t")
        for t in range(n_frames):
            mask = np.zeros(spatial, dtype=dtype)
            if t in by_frame.groups:
                frame = by_frame.get_group(t)
                centres = np.rint(frame[list(SPATIAL_COLUMNS)].to_numpy() / voxel).astype(int)
                centres = np.clip(centres, 0, upper)  # a centre on the last voxel's edge
                for centre, label in zip(centres, labels.loc[frame.index], strict=True):
                    points = centre + offsets
                    keep = np.all((points >= 0) & (points <= upper), axis=1)
                    mask[tuple(points[keep].T)] = label
            tifffile.imwrite(tmp / _mask_name(t, n_frames), mask, compression="zlib")


def read_ctc(
    directory: str | Path,
    voxel_size_um: Sequence[float],
    frame_interval_h: float | None = None,
) -> Lineage:
    """Read a CTC result or ground-truth folder (``res_track.txt`` or
    ``man_track.txt`` with ``mask*.tif`` / ``man_track*.tif``) as a :class:`Lineage`.

    Nuclei are the centroids of the labels in each frame, in µm.
    """
    import tifffile
    from scipy import ndimage

    directory = Path(directory)
    track_files = [directory / n for n in (TRACK_FILE, "man_track.txt")
                   if (directory / n).exists()]
    if not track_files:
        raise InputError(f"no {TRACK_FILE} or man_track.txt", directory)
    try:
        table = np.loadtxt(track_files[0], dtype=np.int64, ndmin=2)
    except ValueError as error:
        raise InputError(f"track file is not 4 integer columns ({error})", track_files[0]) from None
    if table.size and table.shape[1] != 4:
        raise InputError("track file must have 4 columns (L B E P)", track_files[0])
    masks = sorted(p for p in directory.glob("*.tif") if "mask" in p.name or "track" in p.name)
    if not masks:
        raise InputError("no mask*.tif label images", directory)
    voxel = np.asarray(voxel_size_um, dtype=np.float64)
    rows = []
    for path in masks:
        t = int("".join(ch for ch in path.stem if ch.isdigit()))
        mask = tifffile.imread(path)
        if mask.ndim == 2:
            mask = mask[None]
        present = np.unique(mask)
        present = present[present > 0]
        if present.size == 0:
            continue
        centres = np.asarray(ndimage.center_of_mass(np.ones_like(mask), mask, present))
        for label, centre in zip(present, centres.reshape(-1, 3) * voxel, strict=True):
            rows.append((t, int(label), *centre))
    nodes = pd.DataFrame(rows, columns=["t", "track_id", *SPATIAL_COLUMNS])
    nodes = nodes.sort_values(["track_id", "t"], kind="stable").reset_index(drop=True)
    same_track = nodes["track_id"].to_numpy()[1:] == nodes["track_id"].to_numpy()[:-1]
    index = nodes.index.to_numpy()
    sources = list(index[:-1][same_track])
    targets = list(index[1:][same_track])
    track_ids = nodes["track_id"]
    first_node = track_ids.reset_index().groupby("track_id")["index"].min().to_dict()
    last_node = track_ids.reset_index().groupby("track_id")["index"].max().to_dict()
    for label, _, _, parent in table.tolist():
        if parent > 0 and label in first_node and parent in last_node:
            sources.append(last_node[parent])
            targets.append(first_node[label])
    edges = pd.DataFrame({"source": sources, "target": targets}, dtype=np.int64)
    try:
        return Lineage(nodes.drop(columns=["track_id"]), edges, frame_interval_h)
    except InputError as error:
        raise InputError(error.problem, directory) from None
