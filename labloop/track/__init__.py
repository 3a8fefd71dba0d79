"""Tracking with calibrated error probabilities.

detections → candidate links (:mod:`.candidates`) → scale-free cues
(:mod:`.features`) → calibrated event probabilities (:mod:`.events`) → energy
(:mod:`.costs`, :mod:`.problem`) → most probable lineage by ILP (:mod:`.solve`,
:mod:`.constraints`) → marginal error probabilities by belief propagation
(:mod:`.marginals`) → :class:`~labloop.lineage.Lineage`; alternative lineages by
perturb-and-MAP (:mod:`.sampling`); products along paths (:mod:`.paths`).
"""

from labloop.track.api import prepare, sample_lineages, track, track_store
from labloop.track.events import EventModel, load_event_model
from labloop.track.noise import DetectionNoise, perturb_detections
from labloop.track.paths import track_probabilities
from labloop.track.settings import (
    CandidateSettings,
    MarginalSettings,
    SolverSettings,
    TrackSettings,
)

__all__ = [
    "CandidateSettings",
    "DetectionNoise",
    "EventModel",
    "MarginalSettings",
    "SolverSettings",
    "TrackSettings",
    "load_event_model",
    "perturb_detections",
    "prepare",
    "sample_lineages",
    "track",
    "track_probabilities",
    "track_store",
]
