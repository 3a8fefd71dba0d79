"""Public entry points: :func:`track`, :func:`sample_lineages`, :func:`track_store`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labloop.errors import InputError
from labloop.lineage import Lineage
from labloop.track.detections import check_detections
from labloop.track.events import load_event_model
from labloop.track.marginals import Marginals, belief_propagation
from labloop.track.output import to_lineage
from labloop.track.problem import TrackingProblem, build_problem
from labloop.track.sampling import perturbed_solutions, sampling_attrs
from labloop.track.settings import TrackSettings
from labloop.track.solve import solve_map
from labloop.units import check_frame_interval


def prepare(detections: pd.DataFrame, settings: TrackSettings | None = None,
            image_shape_um: tuple[float, float, float] | None = None) -> TrackingProblem:
    """Check detections and build the tracking problem (candidates, probabilities, costs).

    Use it to track once and then sample many alternatives without rebuilding.
    """
    settings = TrackSettings() if settings is None else settings
    det = check_detections(detections)
    model = load_event_model(settings.model_path)
    return build_problem(det, settings, model, image_shape_um)


def marginals_of(problem: TrackingProblem) -> Marginals:
    """Tempered marginals of every candidate link and detection (belief propagation)."""
    return belief_propagation(problem.cand.source, problem.cand.target, problem.det.n,
                              problem.costs, problem.temperature, problem.settings.marginals)


def _attrs(problem: TrackingProblem, marginals: Marginals) -> dict[str, Any]:
    return {"tracker": "labloop.track", "settings": problem.settings.to_dict(),
            "temperature": problem.temperature,
            "event_model": problem.model.metadata.get("name", "custom"),
            "belief_propagation": {"iterations": marginals.iterations,
                                   "converged": marginals.converged}}


def track(detections: pd.DataFrame | TrackingProblem, frame_interval_h: float | None = None,
          settings: TrackSettings | None = None,
          image_shape_um: tuple[float, float, float] | None = None) -> Lineage:
    """Link detections into the most probable lineage, with calibrated error probabilities.

    Parameters
    ----------
    detections
        One row per nucleus: ``t`` (frame), ``z, y, x`` (µm), optionally ``score``
        (0–1), ``intensity``, ``volume_um3``; any row order. Or a problem from
        :func:`prepare`.
    frame_interval_h
        Hours between frames (recorded in the lineage; the tracker itself works in
        frames and local spacings).
    settings
        :class:`~labloop.track.settings.TrackSettings` (defaults documented there).
    image_shape_um
        Extent ``(z, y, x)`` of the imaged volume in µm, for distances to the
        border; default: the detections' bounding box.

    Returns
    -------
    Lineage
        The MAP lineage under the flow constraints. Nodes: the detections not called
        false positives (node ids = the detections' index labels when they are
        unique integers, else row numbers), with ``division_probability`` and
        ``false_positive_probability``. Edges: ``probability`` (calibrated marginal)
        and ``error_probability = 1 − probability``.

    Raises
    ------
    InputError
        For NaN coordinates, fractional or negative frames, duplicated detections,
        scores outside [0, 1] or a missing column.

    Examples
    --------
    >>> import pandas as pd
    >>> det = pd.DataFrame({"t": [0, 1, 2], "z": 0.0, "y": [0.0, 0.5, 1.0], "x": 0.0})
    >>> lineage = track(det)
    >>> lineage.n_edges
    2
    """
    interval = check_frame_interval(frame_interval_h)
    problem = (detections if isinstance(detections, TrackingProblem)
               else prepare(detections, settings, image_shape_um))
    solution = solve_map(problem.cand.source, problem.cand.target, problem.det.n,
                         problem.costs, problem.settings.solver)
    if len(problem.det.frames) <= 1:  # no time: nothing tells a false detection apart
        solution = replace(solution, false_positive=np.zeros(problem.det.n, dtype=bool))
    marginals = marginals_of(problem)
    return to_lineage(problem, solution, marginals, interval, _attrs(problem, marginals))


def sample_lineages(detections_or_problem: pd.DataFrame | TrackingProblem, n: int, seed: int,
                    frame_interval_h: float | None = None,
                    settings: TrackSettings | None = None,
                    image_shape_um: tuple[float, float, float] | None = None) -> list[Lineage]:
    """Draw ``n`` alternative lineages from the tracking model (perturb-and-MAP).

    Parameters
    ----------
    detections_or_problem
        Detections (as for :func:`track`) or a problem from :func:`prepare`.
    n
        Number of lineages (≥ 0).
    seed
        Seed of the perturbations: the same seed gives the same lineages.
    frame_interval_h, settings, image_shape_um
        As for :func:`track` (ignored for a prepared problem, except the interval).

    Returns
    -------
    list of Lineage
        Valid lineages (≤ 1 parent, ≤ 2 children); their links carry the model's
        marginal ``probability`` like :func:`track`'s.
    """
    if not (isinstance(n, int | np.integer) and n >= 0):
        raise InputError(f"the number of samples must be a whole number ≥ 0, got {n}")
    interval = check_frame_interval(frame_interval_h)
    problem = (detections_or_problem if isinstance(detections_or_problem, TrackingProblem)
               else prepare(detections_or_problem, settings, image_shape_um))
    marginals = marginals_of(problem)
    attrs = _attrs(problem, marginals)
    scale = problem.model.sampling_noise_scale
    return [to_lineage(problem, solution, marginals, interval,
                       {**attrs, **sampling_attrs(seed, k, scale)})
            for k, solution in enumerate(perturbed_solutions(problem, int(n), int(seed)))]


def track_store(path: str | Path, settings: TrackSettings | None = None,
                frame_interval_h: float | None = None,
                voxel_size_um: tuple[float, float, float] | None = None) -> Lineage:
    """Track the detections of an experiment store and write ``labloop/tracks.geff``.

    Parameters
    ----------
    path
        The experiment store (``.zarr``) holding ``labloop/detections``.
    settings
        Tracker settings (recorded as provenance).
    frame_interval_h, voxel_size_um
        Override or complete the image metadata.

    Returns
    -------
    Lineage
        The lineage written.
    """
    from labloop.io.store import open_experiment

    settings = TrackSettings() if settings is None else settings
    experiment = open_experiment(path, voxel_size_um=voxel_size_um,
                                 frame_interval_h=frame_interval_h)
    detections = experiment.read_detections()
    image = experiment.image
    lineage = track(detections, frame_interval_h=image.frame_interval_h, settings=settings,
                    image_shape_um=image.extent_um)
    experiment.write_tracks(lineage, params=settings.to_dict())
    return lineage
