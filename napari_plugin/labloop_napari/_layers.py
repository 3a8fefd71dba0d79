"""napari layer data of an experiment store: image, detections, lineage, truth, prediction.

World coordinates are micrometres for space and frames for time. The image
carries ``scale = (1, *voxel_size_um)``; tracks are in µm (scale 1), as
:meth:`labloop.Lineage.to_napari` gives them. Points layers hold voxel
coordinates with the image's scale: napari shows a point on the planes within
half a *data* unit of it, so in voxels every nucleus shows on the plane of its
centre (in µm, a point between two 2-µm planes would show on neither).

Every layer records ``metadata["labloop"] = {"store": path, "kind": kind}`` so
the widgets find the store and the layer again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from napari.utils.colormaps import Colormap
from scipy.spatial import cKDTree

from labloop.io.images import AXES
from labloop.io.store import DETECTIONS, PREDICTION, TRACKS, TRUTH, Experiment
from labloop.lineage import SPATIAL_COLUMNS, Lineage
from labloop.track.gaps import INTERPOLATED

LayerData = tuple[Any, dict[str, Any], str]

#: metadata key of labloop's layers
META_KEY = "labloop"
#: the layers of a store, bottom to top
KINDS = ("image", "detections", "tracks", "interpolated", "truth", "prediction",
         "prediction_cells")
#: layers that show the prediction
PREDICTION_KINDS = ("prediction", "prediction_cells")
#: marker diameter as a fraction of the median nearest-neighbour distance
MARKER_SPACING = 0.6
#: ring width of point markers, relative to their diameter
MARKER_BORDER = 0.15
#: percentiles of the middle frame used as contrast limits (sparse nuclei: a dark background)
CONTRAST_PERCENTILES = (30.0, 99.9)
#: frames of history drawn behind each track head
TAIL_FRAMES = 6
#: error probability → colour: cyan (sure) through yellow to red (doubtful), absolute 0–1
ERROR_COLORMAP = Colormap(
    colors=[[0.0, 0.85, 1.0, 1.0], [1.0, 0.9, 0.0, 1.0], [1.0, 0.1, 0.1, 1.0]],
    controls=[0.0, 0.3, 1.0], name="labloop_error", display_name="error probability")
PREDICTION_RGBA = (1.0, 0.2, 0.9, 1.0)
#: ring colour of detections that carry no score (viridis at 1)
UNSCORED_COLOUR = "#fde725"
SOURCE_CELL_RGBA = (1.0, 0.6, 0.0, 1.0)
#: one colour for every predicted track (feature ``predicted`` = 1)
PREDICTION_COLORMAP = Colormap(colors=[PREDICTION_RGBA, PREDICTION_RGBA],
                               name="labloop_prediction", display_name="prediction")


def common_kwargs(store: Path, kind: str, **extra: Any) -> dict[str, Any]:
    """Axis labels and the metadata that marks a layer as showing ``kind`` of ``store``."""
    return {"axis_labels": AXES, "metadata": layer_metadata(store, kind, **extra)}


def layer_metadata(store: Path, kind: str, **extra: Any) -> dict[str, Any]:
    """The metadata that marks a layer as showing ``kind`` of ``store``."""
    return {META_KEY: {"store": str(Path(store).resolve()), "kind": kind, **extra}}


def _name(experiment: Experiment, kind: str) -> str:
    return f"{experiment.path.stem} {kind.replace('_', ' ')}"


def image_levels(experiment: Experiment) -> list[Any]:
    """The image's pyramid levels, full resolution first (lazy dask arrays)."""
    import zarr

    from labloop.io.images import read_ome_zarr

    attrs: dict[str, Any] = dict(zarr.open_group(str(experiment.path), mode="r").attrs)
    ome: dict[str, Any] = dict(attrs.get("ome", attrs))  # 0.5 nests it; 0.4 does not
    n_levels = max(len(ome.get("multiscales", [{}])[0].get("datasets", [])), 1)
    image = experiment.image
    return [image.data] + [read_ome_zarr(experiment.path, image.voxel_size_um,
                                         image.frame_interval_h, level=k).data
                           for k in range(1, n_levels)]


def image_layer(experiment: Experiment) -> LayerData:
    """The store's image: lazy, multiscale where the store has a pyramid."""
    levels = image_levels(experiment)
    coarsest = levels[-1]
    middle = np.asarray(coarsest[coarsest.shape[0] // 2])
    low, high = np.percentile(middle, CONTRAST_PERCENTILES)
    image = experiment.image
    kwargs = {
        "name": _name(experiment, "image"),
        "scale": (1.0, *image.voxel_size_um),
        "multiscale": len(levels) > 1,
        "contrast_limits": (float(low), float(max(high, low + 1e-6))),
        "colormap": "gray",
        **common_kwargs(experiment.path, "image", frame_interval_h=image.frame_interval_h),
    }
    return (levels if len(levels) > 1 else levels[0]), kwargs, "image"


def marker_size_um(positions: pd.DataFrame) -> float:
    """Marker diameter (µm): a fraction of the median nearest-neighbour distance in a frame."""
    for _, frame in positions.groupby("t"):
        if len(frame) >= 2:
            distance, _ = cKDTree(frame[list(SPATIAL_COLUMNS)].to_numpy()).query(
                frame[list(SPATIAL_COLUMNS)].to_numpy(), 2)
            return float(MARKER_SPACING * np.median(distance[:, 1]))
    return 5.0


def voxel_points(table: pd.DataFrame, voxel_size_um: tuple[float, float, float]) -> np.ndarray:
    """``(N, 4)`` points ``t, z, y, x`` in frames and voxels from a table in µm."""
    spatial = table[list(SPATIAL_COLUMNS)].to_numpy(dtype=np.float64) / np.asarray(voxel_size_um)
    return np.column_stack([table["t"].to_numpy(dtype=np.float64), spatial])


def points_kwargs(experiment: Experiment, kind: str, size_um: float) -> dict[str, Any]:
    """Keyword arguments shared by the points layers of a store."""
    voxel = experiment.image.voxel_size_um
    return {"name": _name(experiment, kind), "scale": (1.0, *voxel),
            "size": size_um / voxel[1], "face_color": "transparent",
            "border_width": MARKER_BORDER,
            **common_kwargs(experiment.path, kind)}


def detections_layer(experiment: Experiment) -> LayerData:
    """Detections as rings coloured by score (viridis, 0–1; one colour for detections
    without scores); feature ``node`` is the row id."""
    detections = experiment.read_detections()
    features = detections.drop(columns=["t", *SPATIAL_COLUMNS])
    features.insert(0, "node", detections.index.to_numpy())
    colour = ({"border_color": "score", "border_colormap": "viridis",
               "border_contrast_limits": (0.0, 1.0)} if "score" in features.columns
              else {"border_color": UNSCORED_COLOUR})
    kwargs = {**points_kwargs(experiment, "detections", marker_size_um(detections)),
              "features": features, **colour}
    return voxel_points(detections, experiment.image.voxel_size_um), kwargs, "points"


def lineage_layer(experiment: Experiment, lineage: Lineage, kind: str) -> LayerData:
    """A lineage as tracks in µm, coloured by the error probability of the link into each node."""
    data, features, graph = lineage.to_napari()
    kwargs = {
        "name": _name(experiment, kind), "features": features, "graph": graph,
        "color_by": "error_probability", "colormaps_dict": {"error_probability": ERROR_COLORMAP},
        "tail_width": 3, "tail_length": TAIL_FRAMES, "blending": "translucent",
        "visible": kind != "truth",
        **common_kwargs(experiment.path, kind, frame_interval_h=lineage.frame_interval_h),
    }
    return data, kwargs, "tracks"


def tracks_layer(experiment: Experiment) -> LayerData:
    """The tracked lineage (``labloop/tracks.geff``)."""
    return lineage_layer(experiment, experiment.read_tracks(), "tracks")


def interpolated_layer(experiment: Experiment) -> LayerData | None:
    """The nuclei the tracker put back on closed gaps, as squares coloured by error probability.

    None when the lineage was tracked without gap filling (no ``interpolated``
    column); an empty layer when it was but no gap was closed.
    """
    lineage = experiment.read_tracks()
    if INTERPOLATED not in lineage.nodes.columns:
        return None
    nodes = lineage.nodes[lineage.nodes[INTERPOLATED].to_numpy(dtype=bool)]
    features = pd.DataFrame({"node": nodes.index.to_numpy(),
                             "error_probability": nodes["false_positive_probability"]
                             .to_numpy(dtype=np.float64)})
    kwargs = {**points_kwargs(experiment, "interpolated", marker_size_um(lineage.nodes)),
              "symbol": "square", "features": features, "border_color": "error_probability",
              "border_colormap": ERROR_COLORMAP, "border_contrast_limits": (0.0, 1.0)}
    return voxel_points(nodes, experiment.image.voxel_size_um), kwargs, "points"


def truth_layer(experiment: Experiment) -> LayerData:
    """The ground truth of simulated data, hidden at first."""
    return lineage_layer(experiment, experiment.read_truth(), "truth")


def first_replicate(prediction: pd.DataFrame) -> pd.DataFrame:
    """The rows of the prediction's first replicate, sorted by track and frame."""
    first = prediction[prediction["replicate"] == prediction["replicate"].min()]
    return first.sort_values(["track_id", "t"], kind="stable")


def prediction_layer(experiment: Experiment, cells: pd.DataFrame) -> LayerData:
    """The first replicate of the simulated prediction (``cells``) as tracks (one colour)."""
    data = cells[["track_id", "t", *SPATIAL_COLUMNS]].to_numpy(dtype=np.float64)
    parents = cells.drop_duplicates("track_id").set_index("track_id")["parent_track_id"]
    known = set(parents.index.tolist())
    graph = {int(track): [int(parent)] for track, parent in parents.items() if parent in known}
    kwargs = {
        "name": _name(experiment, "prediction"),
        "features": pd.DataFrame({"predicted": np.ones(len(cells))}),
        "graph": graph, "color_by": "predicted",
        "colormaps_dict": {"predicted": PREDICTION_COLORMAP},
        "tail_width": 3, "tail_length": TAIL_FRAMES, "blending": "translucent",
        **common_kwargs(experiment.path, "prediction"),
    }
    return data, kwargs, "tracks"


def prediction_cells_layer(experiment: Experiment, cells: pd.DataFrame) -> LayerData:
    """The predicted cells of the first replicate (``cells``) as rings (source cells orange)."""
    source = cells["source"].to_numpy() > 0 if "source" in cells.columns \
        else np.zeros(len(cells), dtype=bool)
    colours = np.where(source[:, None], SOURCE_CELL_RGBA, PREDICTION_RGBA)
    kwargs = {**points_kwargs(experiment, "prediction_cells", marker_size_um(cells)),
              "border_color": colours}
    return voxel_points(cells, experiment.image.voxel_size_um), kwargs, "points"


#: how each kind of observed layer is read, and whether the store has it
_OBSERVED_BUILDERS = {
    "image": (image_layer, lambda e: True),
    "detections": (detections_layer, lambda e: e.has(DETECTIONS)),
    "tracks": (tracks_layer, lambda e: e.has(TRACKS)),
    "interpolated": (interpolated_layer, lambda e: e.has(TRACKS)),
    "truth": (truth_layer, lambda e: e.has(TRUTH)),
}
#: how each kind of prediction layer is drawn from the prediction's first replicate
_PREDICTION_BUILDERS = {"prediction": prediction_layer,
                        "prediction_cells": prediction_cells_layer}


def store_layers(experiment: Experiment, kinds: tuple[str, ...] = KINDS) -> list[LayerData]:
    """Layer data of the given kinds that the store holds, bottom to top.

    The prediction table is read once for however many prediction layers are asked.
    """
    predicted = (first_replicate(experiment.read_table(PREDICTION))
                 if experiment.has(PREDICTION) and set(kinds) & set(PREDICTION_KINDS) else None)
    layers = []
    for kind in kinds:
        if kind in PREDICTION_KINDS:
            if predicted is not None:
                layers.append(_PREDICTION_BUILDERS[kind](experiment, predicted))
        elif _OBSERVED_BUILDERS[kind][1](experiment):
            layer = _OBSERVED_BUILDERS[kind][0](experiment)
            if layer is not None:
                layers.append(layer)
    return layers
