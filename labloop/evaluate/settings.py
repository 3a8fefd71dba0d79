"""Defaults and settings of the evaluation, with their units."""

from __future__ import annotations

from dataclasses import dataclass

from labloop.errors import InputError
from labloop.evaluate.calibration import DEFAULT_N_BINS

#: default matching radius (µm): about one nucleus radius (synthetic nuclei average
#: 3.5 µm), so a detection matches the nucleus it sits in and not its neighbour
DEFAULT_RADIUS_UM = 3.0
#: frames by which a division may be called early or late and still count
#: (division scores are reported for every buffer from 0 to this value)
DEFAULT_DIVISION_FRAME_BUFFER = 1


@dataclass(frozen=True)
class EvaluationSettings:
    """How results are scored, besides the matching radius.

    Parameters
    ----------
    division_frame_buffer
        Largest shift (frames) at which a division called early or late still counts;
        division scores are reported for each buffer from 0 to this value.
    n_bins
        Number of equal-width error-probability bins of the reliability table.
    """

    division_frame_buffer: int = DEFAULT_DIVISION_FRAME_BUFFER
    n_bins: int = DEFAULT_N_BINS

    def __post_init__(self) -> None:
        if self.division_frame_buffer < 0:
            raise InputError(f"division_frame_buffer must be ≥ 0 frames, got "
                             f"{self.division_frame_buffer}")
        if self.n_bins < 1:
            raise InputError(f"n_bins must be ≥ 1, got {self.n_bins}")
