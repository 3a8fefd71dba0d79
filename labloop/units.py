"""Checks of the physical units every step shares (hours between frames)."""

from __future__ import annotations

import numpy as np

from labloop.errors import InputError


def check_frame_interval(frame_interval_h: float | None,
                         source: str | None = None) -> float | None:
    """Return ``frame_interval_h`` as a float (``None`` stays ``None``).

    Raises
    ------
    InputError
        If it is not a positive, finite number of hours.
    """
    if frame_interval_h is None:
        return None
    value = float(frame_interval_h)
    if not (np.isfinite(value) and value > 0):
        raise InputError(f"frame interval must be a positive number of hours, got "
                         f"{frame_interval_h}", source)
    return value
