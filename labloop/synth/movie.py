"""Simulated time-lapse movies: rendering with a camera, and the whole experiment.

:func:`render_movie` turns nucleus positions (from :mod:`labloop.synth.cells` or
any simulator) into a noisy uint16 movie; :func:`simulate_movie` runs both the
cell simulation and the rendering from one :class:`SynthConfig` and returns the
image with its ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from labloop.lineage import Lineage
from labloop.synth.camera import background_photons, expose, photons_per_brightness
from labloop.synth.cells import restrict_to_fov, simulate_cells
from labloop.synth.config import RngLike, SynthConfig, make_rng
from labloop.synth.render import centre_signal, check_movie_grid, render_nuclei


def render_movie(nodes: Lineage | pd.DataFrame, shape: Sequence[int],
                 voxel_size_um: Sequence[float], config: SynthConfig | None = None,
                 rng: RngLike = None) -> np.ndarray:
    """Render nuclei into a noisy fluorescence movie.

    Nuclei are soft-edged ellipsoids blurred by a Gaussian PSF
    (:func:`~labloop.synth.render.render_nuclei`), scaled to photons so that the
    movie has the requested SNR (defined in :mod:`labloop.synth.camera`), added to
    a background with an optional ramp, and exposed with Poisson shot noise and
    Gaussian read noise.

    Parameters
    ----------
    nodes
        A :class:`~labloop.lineage.Lineage` or node table with ``t, z, y, x``
        (frames, µm) and optional shape and brightness columns, e.g. from
        :func:`~labloop.synth.cells.simulate_cells`.
    shape
        Movie shape ``(T, Z, Y, X)``; ``Z = 1`` for 2D.
    voxel_size_um
        Voxel size ``(z, y, x)`` in µm.
    config
        Imaging settings (``snr``, ``background_photons``, ``read_noise``,
        ``background_gradient``, ``psf_sigma_um``, ``edge_width_um``,
        ``gain_adu_per_photon``, ``offset_adu``); default :class:`SynthConfig` ``()``.
        Its geometry fields are not used.
    rng
        Generator or seed of the noise and background ramp; ``None`` uses
        ``config.seed``.

    Returns
    -------
    ndarray of uint16, shape ``(T, Z, Y, X)``

    Examples
    --------
    >>> nodes = pd.DataFrame({"t": [0], "z": [0.0], "y": [8.0], "x": [8.0]})
    >>> render_movie(nodes, (1, 1, 32, 32), (1.0, 0.5, 0.5), rng=0).shape
    (1, 1, 32, 32)
    """
    config = SynthConfig() if config is None else config
    shape, voxel = check_movie_grid(shape, voxel_size_um)
    rng = make_rng(rng, config.seed)
    clean = render_nuclei(nodes, shape, voxel, config)
    scale = photons_per_brightness(centre_signal(clean, nodes, voxel), config)
    background = background_photons(shape[1:], voxel, config, rng)
    image = np.empty(shape, dtype=np.uint16)
    for t in range(shape[0]):
        image[t] = expose(background + scale * clean[t], config, rng)
    return image


@dataclass(frozen=True, eq=False)
class SyntheticMovie:
    """A simulated time-lapse with its ground truth.

    Attributes
    ----------
    image
        uint16 array ``(T, Z, Y, X)``.
    voxel_size_um
        Voxel size ``(z, y, x)`` in µm.
    frame_interval_h
        Time between frames in hours.
    truth
        True lineage of the nuclei whose centre is in the image (positions in µm),
        with ``frame_interval_h`` set; see :func:`~labloop.synth.cells.simulate_cells`.
    config
        The settings that produced it (rerunning them gives the same movie).
    """

    image: np.ndarray
    voxel_size_um: tuple[float, float, float]
    frame_interval_h: float
    truth: Lineage
    config: SynthConfig


def simulate_movie(config: SynthConfig | None = None) -> SyntheticMovie:
    """Simulate cells and render them: a movie with ground truth, deterministic for a seed.

    The seed ``config.seed`` is split into independent streams for the cell
    simulation and for the camera, so the same seed gives a byte-identical image
    and identical truth.

    Parameters
    ----------
    config
        All settings; default :class:`SynthConfig` ``()`` (20 frames of
        32 × 128 × 128 voxels of 2 × 0.5 × 0.5 µm, 50 nuclei, SNR 4).

    Returns
    -------
    SyntheticMovie

    Examples
    --------
    >>> movie = simulate_movie(SynthConfig(frames=2, shape=(1, 64, 64), n_cells=8))
    >>> movie.image.shape, movie.image.dtype
    ((2, 1, 64, 64), dtype('uint16'))
    """
    config = SynthConfig() if config is None else config
    cells_seed, camera_seed = np.random.SeedSequence(config.seed).spawn(2)
    cells = simulate_cells(config, np.random.default_rng(cells_seed), include_margin=True)
    image = render_movie(cells, (config.frames, *config.shape), config.voxel_size_um, config,
                         np.random.default_rng(camera_seed))
    truth = restrict_to_fov(cells)
    return SyntheticMovie(image=image, voxel_size_um=config.voxel_size_um,
                          frame_interval_h=config.frame_interval_h, truth=truth, config=config)
