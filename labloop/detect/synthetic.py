"""Synthetic training volumes: :mod:`labloop.synth` nuclei under broad augmentation.

Every volume is drawn from its own seed, so a pool of volumes is reproducible and
independent of how many worker processes generated it. The augmentation spans
what the detector should handle:

- SNR log-uniform in ``snr`` (about 1 to 10 and a bit beyond),
- nucleus radius, shape (aspect) and brightness spread,
- density from a few isolated nuclei to touching nuclei (packing fraction up to
  0.45, and recently divided daughter pairs),
- input voxel size in ``y, x`` and anisotropy (``z`` voxel / ``y, x`` voxel) 1–5,
- optical blur (PSF widths), background level, read noise, linear background
  gradients, camera gain and offset, and an intensity gamma,
- 2D frames (``Z = 1``) and empty volumes.

Each volume is rendered at its input voxel size, then resampled and normalised
exactly as at inference (:mod:`labloop.detect.resample`); the target heatmap is
rendered on the same working grid from *all* simulated nuclei, including those
just outside the field of view whose light reaches it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from labloop.detect.heatmap import HeatmapSettings, centre_heatmap
from labloop.detect.resample import Normalisation, WorkingGrid, to_working

#: Volume of a sphere of unit radius (3D packing) and area of a unit disc (2D).
UNIT_BALL = 4.0 / 3.0 * math.pi
UNIT_DISC = math.pi


@dataclass(frozen=True)
class AugmentSettings:
    """Ranges of the randomised simulation settings (uniform unless noted).

    Parameters
    ----------
    snr
        Signal-to-noise ratio range, drawn log-uniformly.
    radius_um
        Mean nucleus radius (µm). Down to 1.5 µm: young daughters in crowded
        tissue (and late embryos) have nuclei well below 2.5 µm.
    radius_cv
        Radius standard deviation relative to the mean.
    aspect_max
        Largest axis ratio of the ellipsoidal nuclei.
    brightness_sigma
        Spread (log standard deviation) of nucleus brightness.
    packing_fraction
        Fraction of the volume (area in 2D) filled by nuclei: density from sparse
        to touching.
    voxel_yx_um
        Input voxel size in ``y, x`` (µm).
    anisotropy
        Input ``z`` voxel / ``y, x`` voxel, drawn log-uniformly.
    min_voxel_z_um
        Smallest input ``z`` voxel (µm; keeps rendering fast).
    psf_sigma_yx_um, psf_sigma_z_um
        Gaussian PSF widths (µm): the blur augmentation.
    background_photons
        Mean background (photons per voxel), drawn log-uniformly.
    read_noise
        Camera read noise (electrons rms).
    background_gradient
        Relative amplitude of the background ramp.
    gain_adu_per_photon, offset_adu
        Camera gain and offset.
    gamma
        Exponent applied to the image above the camera offset, drawn log-uniformly.
    max_frames
        Frames simulated before the one used (1 to this); later frames contain
        recent divisions, i.e. close daughter pairs.
    planar_fraction
        Fraction of 2D volumes.
    empty_fraction
        Fraction of volumes without nuclei.
    extent_um
        Physical size ``(z, y, x)`` of a volume (µm).
    """

    snr: tuple[float, float] = (0.8, 12.0)
    radius_um: tuple[float, float] = (1.5, 5.0)
    radius_cv: tuple[float, float] = (0.05, 0.2)
    aspect_max: tuple[float, float] = (1.0, 1.8)
    brightness_sigma: tuple[float, float] = (0.05, 0.4)
    packing_fraction: tuple[float, float] = (0.02, 0.45)
    voxel_yx_um: tuple[float, float] = (0.3, 1.2)
    anisotropy: tuple[float, float] = (1.0, 5.0)
    min_voxel_z_um: float = 0.6
    psf_sigma_yx_um: tuple[float, float] = (0.15, 0.7)
    psf_sigma_z_um: tuple[float, float] = (0.4, 2.0)
    background_photons: tuple[float, float] = (2.0, 50.0)
    read_noise: tuple[float, float] = (0.5, 5.0)
    background_gradient: tuple[float, float] = (0.0, 1.5)
    gain_adu_per_photon: tuple[float, float] = (0.5, 4.0)
    offset_adu: tuple[float, float] = (0.0, 500.0)
    gamma: tuple[float, float] = (0.67, 1.5)
    max_frames: int = 3
    planar_fraction: float = 0.12
    empty_fraction: float = 0.04
    extent_um: tuple[float, float, float] = (48.0, 96.0, 96.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(eq=False)
class Sample:
    """One training volume on the working grid.

    Attributes
    ----------
    image
        ``(Z, Y, X)`` float16 in noise units (``Z = 1`` for 2D).
    heat
        ``(Z, Y, X)`` float16 target heatmap.
    truth_um
        ``(N, 3)`` centres (µm) of the nuclei whose centre is in the volume.
    grid
        The working grid (for mapping peaks back to µm).
    match_radius_um
        Matching radius for scoring (half the mean nucleus diameter).
    info
        The randomised settings (for logging and per-condition metrics).
    """

    image: np.ndarray
    heat: np.ndarray
    truth_um: np.ndarray
    grid: WorkingGrid
    match_radius_um: float
    info: dict[str, Any]


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def draw_config(seed: int, augment: AugmentSettings) -> tuple[Any, float, int]:
    """Draw randomised :class:`~labloop.synth.SynthConfig` settings for one volume.

    Returns
    -------
    config, gamma, frame
        The simulation settings, the intensity gamma and the frame to use.
    """
    from labloop.synth import SynthConfig

    rng = np.random.default_rng(seed)
    planar = rng.random() < augment.planar_fraction
    radius = _uniform(rng, augment.radius_um)
    voxel_yx = _uniform(rng, augment.voxel_yx_um)
    voxel_z = max(voxel_yx * _log_uniform(rng, augment.anisotropy), augment.min_voxel_z_um)
    voxel = (1.0 if planar else voxel_z, voxel_yx, voxel_yx)
    extent = augment.extent_um
    shape = (1 if planar else max(1, round(extent[0] / voxel_z)),
             max(8, round(extent[1] / voxel_yx)), max(8, round(extent[2] / voxel_yx)))
    packing = 0.0 if rng.random() < augment.empty_fraction else _uniform(
        rng, augment.packing_fraction)
    unit = UNIT_DISC * radius**2 if planar else UNIT_BALL * radius**3
    frames = int(rng.integers(1, augment.max_frames + 1))
    config = SynthConfig(
        frames=frames, shape=shape, voxel_size_um=voxel, seed=int(rng.integers(2**31)),
        density=packing * 1000.0 / unit, radius_mean_um=radius,
        radius_std_um=radius * _uniform(rng, augment.radius_cv),
        aspect_max=_uniform(rng, augment.aspect_max),
        brightness_sigma=_uniform(rng, augment.brightness_sigma),
        snr=_log_uniform(rng, augment.snr),
        background_photons=_log_uniform(rng, augment.background_photons),
        read_noise=_uniform(rng, augment.read_noise),
        background_gradient=_uniform(rng, augment.background_gradient),
        psf_sigma_um=(_uniform(rng, augment.psf_sigma_z_um),
                      *(2 * [_uniform(rng, augment.psf_sigma_yx_um)])),
        gain_adu_per_photon=_uniform(rng, augment.gain_adu_per_photon),
        offset_adu=_uniform(rng, augment.offset_adu),
    )
    return config, _log_uniform(rng, augment.gamma), frames - 1


def apply_gamma(image: np.ndarray, offset: float, gamma: float) -> np.ndarray:
    """``offset + (max − offset) · ((x − offset)⁺ / (max − offset))^γ`` as float32."""
    values = np.maximum(image.astype(np.float32) - offset, 0.0)
    top = float(values.max())
    if top <= 0 or gamma == 1.0:
        return values + offset
    return (top * (values / top) ** gamma + offset).astype(np.float32)


def make_sample(seed: int, augment: AugmentSettings, working_voxel_um: tuple[float, float, float],
                heatmap: HeatmapSettings) -> Sample:
    """Simulate, render, augment, resample and normalise one training volume.

    Parameters
    ----------
    seed
        Seed of every random draw for this volume.
    augment
        Ranges of the randomised settings.
    working_voxel_um
        The model's working voxel size ``(z, y, x)`` (µm).
    heatmap
        Target heatmap settings.
    """
    from labloop.synth import render_movie, simulate_cells

    config, gamma, frame = draw_config(seed, augment)
    cells_seed, camera_seed = np.random.SeedSequence(config.seed).spawn(2)
    cells = simulate_cells(config, np.random.default_rng(cells_seed), include_margin=True).nodes
    nodes = cells[cells["t"] == frame].copy()
    nodes["t"] = 0
    raw = render_movie(nodes, (1, *config.shape), config.voxel_size_um, config,
                       np.random.default_rng(camera_seed))[0]
    raw = apply_gamma(raw, config.offset_adu, gamma)
    grid = WorkingGrid.for_frame(raw.shape, config.voxel_size_um, working_voxel_um)
    volume = to_working(raw, grid)
    norm = Normalisation.estimate(volume)
    image = (norm.apply(volume) if norm is not None else volume * 0).numpy()
    positions = nodes[["z", "y", "x"]].to_numpy(dtype=np.float64)
    heat = centre_heatmap(positions, nodes["radius_um"].to_numpy(), grid, heatmap)
    inside = nodes["in_fov"].to_numpy(dtype=bool)
    info = {"seed": seed, "snr": config.snr, "radius_um": config.radius_mean_um,
            "packing": config.packing_fraction, "planar": config.is_2d,
            "voxel_size_um": list(config.voxel_size_um), "gamma": gamma,
            "n_nuclei": int(inside.sum())}
    return Sample(image.astype(np.float16), heat.astype(np.float16), positions[inside], grid,
                  config.radius_mean_um, info)
