"""The experiment store: one OME-Zarr per field of view, with labloop's results beside the image.

Layout (see DESIGN.md)::

    experiment.zarr/
      0/ ...                 OME-Zarr image (multiscales, axes t,(c),z,y,x)
      labloop/detections     table: one zarr array per column, attrs = provenance
      labloop/tracks.geff    lineage (GEFF)
      labloop/morphometrics  table
      labloop/fit/           fitted tissue-model results
      labloop/prediction     simulated tissue for the viewer
      labloop/truth.geff     ground truth of simulated sample data

Every result is written under a temporary name and renamed into place, and
records the labloop version, the step's parameters and the time it was written
(``labloop`` key of its attributes), so batch runs can resume and results are
reproducible.
"""

from __future__ import annotations

import datetime as _dt
import json
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labloop.errors import InputError
from labloop.io.atomic import atomic_path
from labloop.io.images import Image, read_ome_zarr
from labloop.lineage import Lineage

RESULTS_GROUP = "labloop"
DETECTIONS = "detections"
TRACKS = "tracks.geff"
TRUTH = "truth.geff"
MORPHOMETRICS = "morphometrics"
#: the recalibrated model's simulated nuclei and morphometrics (``labloop calibrate``)
PREDICTION = "prediction"
PREDICTED_MORPHOMETRICS = "predicted_morphometrics"
#: a curator's corrections of the lineage, in order (``labloop.track.curation``)
CURATION = "curation"


def provenance(step: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record stored with every result: labloop version, step, parameters, time."""
    from labloop import __version__

    return {
        "version": __version__,
        "step": step,
        "params": json.loads(json.dumps(params or {}, default=str)),
        "written_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def write_table(path: str | Path, table: pd.DataFrame, record: dict[str, Any]) -> None:
    """Write a DataFrame as a zarr v3 group of 1-D column arrays, atomically.

    Parameters
    ----------
    path
        Destination group folder.
    table
        Numeric, boolean or text columns (text is stored as integer codes with
        the category names in the attributes); the index is not stored.
    record
        Provenance stored under the group's ``labloop`` attribute.
    """
    import zarr

    categories: dict[str, list[str]] = {}
    columns: dict[str, np.ndarray] = {}
    for column in table.columns:
        values = table[column]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            columns[str(column)] = np.ascontiguousarray(values.to_numpy())
        elif pd.api.types.is_string_dtype(values) and values.notna().all():
            # text (e.g. quantity names) as integer codes: portable across zarr readers
            codes, uniques = pd.factorize(values, sort=True)
            columns[str(column)] = codes.astype(np.int32)
            categories[str(column)] = [str(u) for u in uniques]
        else:
            raise InputError(f"table column {column!r} is neither numeric nor text")
    with atomic_path(path) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        for name, values in columns.items():
            group.create_array(name, data=values, chunks=(max(len(values), 1),))
        group.attrs["labloop"] = {**record, "columns": list(columns), "categories": categories,
                                  "n_rows": len(table)}


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a table written by :func:`write_table`."""
    import zarr

    path = Path(path)
    if not path.exists():
        raise InputError("no such table", path)
    try:
        group = zarr.open_group(str(path), mode="r")
        meta: dict[str, Any] = dict(group.attrs["labloop"])  # type: ignore[arg-type]
        table = pd.DataFrame({c: np.asarray(group[c][:]) for c in meta["columns"]})
        for column, names in meta.get("categories", {}).items():
            table[column] = np.asarray(names, dtype=object)[table[column].to_numpy()]
        return table
    except InputError:
        raise
    except Exception as error:
        raise InputError(f"table cannot be read ({type(error).__name__}: "
                         f"{str(error).splitlines()[0][:200] if str(error) else ''})",
                         path) from error


def read_record(group: str | Path) -> dict[str, Any] | None:
    """The ``labloop`` provenance record in a zarr group's attributes.

    ``None`` where the group, its ``zarr.json`` or the record is missing or
    unreadable (callers treat that as "not done yet").
    """
    try:
        record = json.loads((Path(group) / "zarr.json").read_text())["attributes"]["labloop"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return dict(record) if isinstance(record, dict) else None


class Experiment:
    """An experiment store: the image plus labloop's results.

    Parameters
    ----------
    path
        The ``.zarr`` folder (an OME-Zarr image at its root).
    voxel_size_um, frame_interval_h
        Fill in (or override) what the image metadata lack.

    Examples
    --------
    >>> experiment = open_experiment("sample_data/sample.zarr")  # doctest: +SKIP
    >>> experiment.image.shape, experiment.has(TRUTH)  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, voxel_size_um: tuple[float, float, float] | None = None,
                 frame_interval_h: float | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputError("no such experiment store", self.path)
        is_zarr = (self.path / "zarr.json").exists() or (self.path / ".zattrs").exists()
        if not self.path.is_dir() or not is_zarr:
            raise InputError("not a zarr store (no zarr.json)", self.path)
        self._voxel_size_um = voxel_size_um
        self._frame_interval_h = frame_interval_h

    @cached_property
    def image(self) -> Image:
        """The store's image (lazy)."""
        return read_ome_zarr(self.path, self._voxel_size_um, self._frame_interval_h)

    @property
    def results_path(self) -> Path:
        """The folder of labloop's results inside the store."""
        return self.path / RESULTS_GROUP

    def result_path(self, name: str) -> Path:
        """Path of the named result, e.g. ``result_path("tracks.geff")``."""
        return self.results_path / name

    def has(self, name: str) -> bool:
        """True if the named result has been written."""
        return (self.result_path(name) / "zarr.json").exists()

    def _ensure_results_group(self) -> None:
        import zarr

        if not (self.results_path / "zarr.json").exists():
            zarr.open_group(str(self.results_path), mode="a", zarr_format=3)

    def record(self, name: str) -> dict[str, Any]:
        """The provenance record of a result (version, step, params, time)."""
        path = self.result_path(name) / "zarr.json"
        if not path.exists():
            raise InputError(f"the store has no {name!r} result yet", self.path)
        attributes = json.loads(path.read_text()).get("attributes", {})
        if "labloop" in attributes:
            return dict(attributes["labloop"])
        geff_extra = attributes.get("geff", {}).get("extra", {}).get("labloop", {})
        return dict(geff_extra.get("attrs", {}).get("provenance", {}))

    # ---------------------------------------------------------------- tables
    def write_table(self, name: str, table: pd.DataFrame, step: str,
                    params: dict[str, Any] | None = None) -> None:
        """Write a result table atomically with its provenance."""
        self._ensure_results_group()
        write_table(self.result_path(name), table, provenance(step, params))

    def read_table(self, name: str) -> pd.DataFrame:
        """Read a result table."""
        if not self.has(name):
            raise InputError(f"the store has no {name!r} result yet", self.path)
        return read_table(self.result_path(name))

    def write_detections(self, detections: pd.DataFrame,
                         params: dict[str, Any] | None = None) -> None:
        """Store detections (``t, z, y, x`` in µm, ``score``, ...)."""
        self.write_table(DETECTIONS, detections, "detect", params)

    def read_detections(self) -> pd.DataFrame:
        """The stored detections."""
        return self.read_table(DETECTIONS)

    # -------------------------------------------------------------- lineages
    def write_lineage(self, name: str, lineage: Lineage, step: str,
                      params: dict[str, Any] | None = None) -> None:
        """Write a lineage as GEFF inside the store, atomically, with provenance."""
        from labloop.io.geff import write_geff

        self._ensure_results_group()
        attrs = {**lineage.attrs, "provenance": provenance(step, params)}
        write_geff(Lineage(lineage.nodes, lineage.edges, lineage.frame_interval_h, attrs),
                   self.result_path(name))

    def read_lineage(self, name: str) -> Lineage:
        """Read a stored lineage (``tracks.geff`` or ``truth.geff``)."""
        from labloop.io.geff import read_geff

        if not self.has(name):
            raise InputError(f"the store has no {name!r} result yet", self.path)
        return read_geff(self.result_path(name))

    def write_tracks(self, lineage: Lineage, params: dict[str, Any] | None = None) -> None:
        """Store the tracked lineage."""
        self.write_lineage(TRACKS, lineage, "track", params)

    def read_tracks(self) -> Lineage:
        """The tracked lineage."""
        return self.read_lineage(TRACKS)

    def read_truth(self) -> Lineage:
        """The ground-truth lineage of simulated data."""
        return self.read_lineage(TRUTH)

    def __repr__(self) -> str:
        return f"Experiment({str(self.path)!r})"


def open_experiment(path: str | Path, voxel_size_um: tuple[float, float, float] | None = None,
                    frame_interval_h: float | None = None) -> Experiment:
    """Open an experiment store (an OME-Zarr image folder with labloop results).

    Parameters
    ----------
    path
        The ``.zarr`` folder.
    voxel_size_um, frame_interval_h
        Override or complete the image metadata.
    """
    return Experiment(path, voxel_size_um, frame_interval_h)


def create_experiment(
    path: str | Path,
    image: Image,
    truth: Lineage | None = None,
    params: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Experiment:
    """Create an experiment store from an image (and optional ground truth), atomically.

    The whole store is assembled under a temporary name and renamed into place,
    so an interrupted call leaves nothing behind.

    Parameters
    ----------
    path
        Destination ``.zarr`` folder.
    image
        Pixels with voxel size and frame interval.
    truth
        Ground-truth lineage (simulated data), written to ``labloop/truth.geff``.
    params
        Parameters that produced the store (recorded with the truth).
    overwrite
        Replace an existing store.
    """
    import zarr

    from labloop.io.geff import write_geff
    from labloop.io.images import write_ome_zarr_group

    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError("already exists (use --overwrite to replace it)", path)
    with atomic_path(path) as tmp:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        write_ome_zarr_group(root, image, name=path.stem)
        root.attrs["labloop"] = provenance("create", params)
        zarr.open_group(str(tmp / RESULTS_GROUP), mode="w", zarr_format=3)
        if truth is not None:
            attrs = {**truth.attrs, "provenance": provenance("sample", params)}
            write_geff(Lineage(truth.nodes, truth.edges, truth.frame_interval_h, attrs),
                       tmp / RESULTS_GROUP / TRUTH)
    return Experiment(path)
