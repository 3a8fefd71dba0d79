"""Settings of a simulated time-lapse: geometry, cells, motion, cell cycle, imaging.

All knobs live in one frozen dataclass, :class:`SynthConfig`, so that a whole
simulated experiment is described (and reproduced) by one object, and so that
sweeps for detector training are a single :func:`dataclasses.replace` call.
Units are in the field names (``_um``, ``_h``, ``_per_h``) or in the docstrings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from numbers import Integral, Real
from typing import Any

import numpy as np

from labloop.errors import InputError

#: Largest fraction of the tissue volume (area in 2D) that the nuclei may fill. Above
#: it the soft repulsion cannot keep nuclei apart and the simulation would show
#: overlapping nuclei, so such a configuration is refused.
MAX_PACKING_FRACTION = 0.5

#: Cell densities are counted per this many µm³ (µm² for 2D movies).
DENSITY_UNIT_UM = 1000.0

#: Largest value of a uint16 image.
UINT16_MAX = 65535

RngLike = np.random.Generator | int | None


def make_rng(rng: RngLike, seed: int) -> np.random.Generator:
    """Return ``rng`` as a :class:`numpy.random.Generator`.

    Parameters
    ----------
    rng
        A generator (used as is), an integer seed, or ``None`` to use ``seed``.
    seed
        Fallback seed, normally :attr:`SynthConfig.seed`.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(seed if rng is None else rng)


@dataclass(frozen=True)
class SynthConfig:
    """Every knob of a simulated time-lapse of fluorescent nuclei.

    Parameters
    ----------
    frames
        Number of time points ``T`` (≥ 1). Default 20.
    shape
        Spatial image shape ``(Z, Y, X)`` in voxels; ``Z = 1`` gives a 2D movie of a
        cell monolayer. Default ``(32, 128, 128)``.
    voxel_size_um
        Voxel size ``(z, y, x)`` in µm. Default ``(2.0, 0.5, 0.5)``.
    frame_interval_h
        Time between frames in hours. Default 0.25 h.
    seed
        Seed of every random draw (motion, shapes, noise). Default 0.

    n_cells
        Number of nuclei inside the field of view at frame 0. Default 50. Ignored
        when ``density`` is given.
    density
        Nuclei per 1000 µm³ of tissue (per 1000 µm² for 2D movies) at frame 0. When
        given it takes precedence and ``n_cells`` is derived from it; otherwise it
        is derived from ``n_cells``. See :attr:`initial_cells` and
        :attr:`cell_density`. Default ``None``.
    margin_um
        Width of the populated band simulated around the field of view (µm), from
        which cells wander in and into which they wander out. Default 15 µm.

    radius_mean_um, radius_std_um
        Mean and standard deviation (µm) of the lognormal distribution of the
        full-grown nucleus radius (equivalent-sphere radius just before division).
        A nucleus grows in volume linearly from half that size at birth.
        Defaults 3.5 µm and 0.5 µm.
    aspect_max
        Largest ratio of the longest to the shortest semi-axis of a nucleus (≥ 1);
        nuclei are ellipsoids of random orientation with volume-preserving
        log-uniform axis factors. Default 1.4.
    brightness_sigma
        Standard deviation of log brightness; brightness is lognormal with mean 1
        (dimensionless, relative to the average nucleus). Default 0.25.
    division_boost
        Extra relative brightness of a daughter nucleus in its first frame (compacted
        chromatin after mitosis); 0 switches it off. Default 0.6 (60 % brighter).
    division_boost_half_life_h
        Half-life of that extra brightness, in hours. Default 0.15 h, so the boost
        is visible in the first one or two frames at the default frame interval.
    daughter_offset_radii
        Distance of each daughter from the mother's position at division, in
        daughter radii along a uniformly random axis (in-plane in 2D). Default 1.0.
    sister_separation_radii
        Further distance (in daughter radii) each daughter moves away from the
        mother's position along the division axis after birth, at constant speed
        over ``sister_separation_h`` on top of its other motion: sister nuclei
        keep moving apart for a while after mitosis (in the C. elegans embryo by
        about 0.15 nucleus spacings in the first minute). Default 0 (daughters
        placed at their final offset at once).
    sister_separation_h
        Time (hours) over which that separation happens. Default 0.25 h.

    speed_um_per_h
        Root-mean-square speed of the persistent random walk (µm/h). Default 3.
    persistence_h
        Persistence time of the walk: velocities are an Ornstein–Uhlenbeck process
        with this correlation time (hours). Default 1 h.
    contact_factor
        Two nuclei repel when their centres are closer than ``contact_factor``
        times the sum of their radii. Default 1.1.
    repulsion_rate_per_h
        Rate (1/h) at which overlaps relax: each sub-step removes a fraction
        ``1 − exp(−rate·Δt)`` of every overlap. Default 20 /h.
    substeps
        Integration sub-steps per frame interval (≥ 1). Default 4.

    cycle_mean_h
        Mean cell-cycle duration (hours); durations are gamma distributed. Default
        10 h.
    cycle_shape
        Shape parameter ``k`` of that gamma distribution (coefficient of variation
        ``1/√k``). Default 8.

    snr
        Signal-to-noise ratio, defined as the mean over nuclei (whose centre lies in
        the image) of the expected signal in photons above background at the voxel
        nearest the nucleus centre, divided by ``sqrt(background_photons +
        read_noise²)``. The photon scale of the nuclei is chosen to meet it.
        Default 4.
    background_photons
        Mean background in detected photons per voxel. Default 10.
    read_noise
        Camera read noise, rms, in photo-electrons (= detected photons). Default 2.
    background_gradient
        Relative peak-to-peak amplitude of a smooth linear background ramp across
        the field of view, in a random direction (0 ≤ value ≤ 2; 0 for a flat
        background). Default 0.2.
    psf_sigma_um
        Standard deviation ``(z, y, x)`` of the Gaussian point-spread function in
        µm. Default ``(1.0, 0.3, 0.3)``.
    edge_width_um
        Width (µm) of the soft sigmoid edge of a nucleus. Default 0.25 µm.
    gain_adu_per_photon
        Camera gain: grey levels per photo-electron. Default 1.
    offset_adu
        Camera offset added to every voxel, in grey levels, so that noise is not
        clipped at zero. Default 100.

    Examples
    --------
    >>> config = SynthConfig(shape=(1, 256, 256), n_cells=80, snr=2.0, seed=3)
    >>> config.is_2d, round(config.cell_density, 2)  # nuclei per 1000 µm²
    (True, 4.88)
    """

    # movie geometry and timing
    frames: int = 20
    shape: tuple[int, int, int] = (32, 128, 128)
    voxel_size_um: tuple[float, float, float] = (2.0, 0.5, 0.5)
    frame_interval_h: float = 0.25
    seed: int = 0
    # population
    n_cells: int = 50
    density: float | None = None
    margin_um: float = 15.0
    # nuclei
    radius_mean_um: float = 3.5
    radius_std_um: float = 0.5
    aspect_max: float = 1.4
    brightness_sigma: float = 0.25
    division_boost: float = 0.6
    division_boost_half_life_h: float = 0.15
    daughter_offset_radii: float = 1.0
    sister_separation_radii: float = 0.0
    sister_separation_h: float = 0.25
    # motion
    speed_um_per_h: float = 3.0
    persistence_h: float = 1.0
    contact_factor: float = 1.1
    repulsion_rate_per_h: float = 20.0
    substeps: int = 4
    # cell cycle
    cycle_mean_h: float = 10.0
    cycle_shape: float = 8.0
    # imaging
    snr: float = 4.0
    background_photons: float = 10.0
    read_noise: float = 2.0
    background_gradient: float = 0.2
    psf_sigma_um: tuple[float, float, float] = (1.0, 0.3, 0.3)
    edge_width_um: float = 0.25
    gain_adu_per_photon: float = 1.0
    offset_adu: float = 100.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _shape(self.shape))
        for name in ("voxel_size_um", "psf_sigma_um"):
            object.__setattr__(self, name, _triple(name, getattr(self, name)))
        _validate(self)

    # ------------------------------------------------------------- derived
    @property
    def is_2d(self) -> bool:
        """Whether the movie is 2D (``Z = 1``): cells move in the ``y, x`` plane."""
        return self.shape[0] == 1

    @property
    def fov_measure_um(self) -> float:
        """Volume (µm³) of the field of view, or its area (µm²) for a 2D movie."""
        extent = np.asarray(self.shape, dtype=np.float64) * np.asarray(self.voxel_size_um)
        return float(np.prod(extent[1:] if self.is_2d else extent))

    @property
    def cell_density(self) -> float:
        """Nuclei per 1000 µm³ (µm² in 2D) at frame 0, given or derived from ``n_cells``."""
        if self.density is not None:
            return float(self.density)
        return self.n_cells * DENSITY_UNIT_UM / self.fov_measure_um

    @property
    def initial_cells(self) -> int:
        """Nuclei inside the field of view at frame 0, given or derived from ``density``."""
        if self.density is None:
            return int(self.n_cells)
        return round(self.density * self.fov_measure_um / DENSITY_UNIT_UM)

    @property
    def packing_fraction(self) -> float:
        """Fraction of the volume (area in 2D) filled by full-grown mean-size nuclei."""
        r = self.radius_mean_um
        size = math.pi * r**2 if self.is_2d else 4.0 / 3.0 * math.pi * r**3
        return self.cell_density / DENSITY_UNIT_UM * size


# ---------------------------------------------------------------- validation
def _shape(value: Any) -> tuple[int, int, int]:
    try:
        items = tuple(value)
    except TypeError:
        raise InputError(f"shape must be (Z, Y, X) voxels, got {value!r}") from None
    if len(items) != 3:
        raise InputError(
            f"shape must have 3 axes (Z, Y, X) — use Z = 1 for 2D — got {len(items)}: {value!r}")
    if not all(isinstance(n, Integral) and int(n) >= 1 for n in items):
        raise InputError(f"shape must be whole numbers of voxels ≥ 1, got {value!r}")
    return (int(items[0]), int(items[1]), int(items[2]))


def _triple(name: str, value: Any) -> tuple[float, float, float]:
    try:
        items = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be three numbers (z, y, x) in µm, got {value!r}") from None
    if len(items) != 3:
        raise InputError(f"{name} must be three numbers (z, y, x) in µm, got {value!r}")
    return (items[0], items[1], items[2])


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise InputError(message)


def _validate(config: SynthConfig) -> None:
    for f in fields(config):
        value = getattr(config, f.name)
        if isinstance(value, Real) and not isinstance(value, bool):
            _check(math.isfinite(value), f"{f.name} must be a finite number, got {value}")
    _check(isinstance(config.frames, Integral) and config.frames >= 1,
           f"frames must be a whole number ≥ 1, got {config.frames!r}")
    _check(isinstance(config.seed, Integral) and config.seed >= 0,
           f"seed must be a whole number ≥ 0, got {config.seed!r}")
    _check(isinstance(config.substeps, Integral) and config.substeps >= 1,
           f"substeps must be a whole number ≥ 1, got {config.substeps!r}")
    _check(all(v > 0 and math.isfinite(v) for v in config.voxel_size_um),
           f"voxel_size_um must be positive, got {config.voxel_size_um}")
    _check(all(v >= 0 and math.isfinite(v) for v in config.psf_sigma_um),
           f"psf_sigma_um must be ≥ 0, got {config.psf_sigma_um}")
    _check(config.frame_interval_h > 0, f"frame_interval_h must be > 0 hours, got "
                                        f"{config.frame_interval_h}")
    if config.density is None:
        _check(isinstance(config.n_cells, Integral) and config.n_cells >= 0,
               f"n_cells must be a whole number ≥ 0, got {config.n_cells!r}")
    else:
        _check(math.isfinite(config.density) and config.density >= 0,
               f"density must be ≥ 0 nuclei per 1000 µm³, got {config.density}")
    positive = ("radius_mean_um", "persistence_h", "cycle_mean_h", "cycle_shape", "snr",
                "edge_width_um", "gain_adu_per_photon", "division_boost_half_life_h",
                "sister_separation_h")
    for name in positive:
        value = getattr(config, name)
        _check(value > 0, f"{name} must be > 0, got {value}")
    non_negative = ("margin_um", "radius_std_um", "brightness_sigma", "division_boost",
                    "daughter_offset_radii", "sister_separation_radii", "speed_um_per_h",
                    "contact_factor", "repulsion_rate_per_h", "background_photons", "read_noise",
                    "offset_adu")
    for name in non_negative:
        value = getattr(config, name)
        _check(value >= 0, f"{name} must be ≥ 0, got {value}")
    _check(config.aspect_max >= 1, f"aspect_max must be ≥ 1, got {config.aspect_max}")
    _check(config.background_gradient <= 2,
           f"background_gradient must be between 0 and 2, got {config.background_gradient}")
    _check(config.background_gradient >= 0,
           f"background_gradient must be between 0 and 2, got {config.background_gradient}")
    _check(config.background_photons + config.read_noise**2 > 0,
           "background_photons and read_noise are both 0: the noise, and so the SNR, is "
           "undefined")
    _check(config.offset_adu < UINT16_MAX,
           f"offset_adu must be below {UINT16_MAX}, got {config.offset_adu}")
    _check(config.packing_fraction <= MAX_PACKING_FRACTION,
           f"nuclei would fill {config.packing_fraction:.0%} of the tissue (at most "
           f"{MAX_PACKING_FRACTION:.0%} allowed): lower n_cells/density or radius_mean_um")
