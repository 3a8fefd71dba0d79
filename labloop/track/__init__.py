"""Tracking with calibrated error probabilities.

detections → candidate links (:mod:`.candidates`) → scale-free cues
(:mod:`.features`) → calibrated event probabilities (:mod:`.events`) → energy
(:mod:`.costs`, :mod:`.problem`) → most probable lineage by ILP (:mod:`.solve`,
:mod:`.constraints`) → marginal error probabilities by belief propagation
(:mod:`.marginals`) → :class:`~labloop.lineage.Lineage`; alternative lineages by
perturb-and-MAP (:mod:`.sampling`); products along paths (:mod:`.paths`); a
user's corrections pinned and the probabilities around them recomputed
(:mod:`.curation`).
"""

from labloop.track.api import prepare, sample_lineages, track, track_store
from labloop.track.curation import (
    Correction,
    CurationSettings,
    apply_corrections,
    curate_store,
    doubtful_links,
    read_corrections,
)
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
    "Correction",
    "CurationSettings",
    "DetectionNoise",
    "EventModel",
    "MarginalSettings",
    "SolverSettings",
    "TrackSettings",
    "apply_corrections",
    "curate_store",
    "doubtful_links",
    "load_event_model",
    "perturb_detections",
    "prepare",
    "read_corrections",
    "sample_lineages",
    "track",
    "track_probabilities",
    "track_store",
]
