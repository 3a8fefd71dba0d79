"""The embedded sample experiment used by the demo, the tests and the napari sample.

``sample_data/sample.zarr`` in the source tree is made by :func:`make_sample_store`
with :data:`SAMPLE_CONFIG` (``python -m labloop.sample_data``). Where labloop is
installed without its source tree, :func:`sample_store_path` simulates the same
store once into a cache folder instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from labloop.io.images import as_image
from labloop.io.store import Experiment, create_experiment
from labloop.synth import SynthConfig, simulate_movie

#: the settings of the embedded sample: a small proliferating cluster, 3D, anisotropic
SAMPLE_CONFIG = SynthConfig(
    frames=24,
    shape=(24, 112, 112),
    voxel_size_um=(2.0, 0.5, 0.5),
    frame_interval_h=0.5,
    n_cells=30,
    cycle_mean_h=9.0,
    snr=6.0,
    seed=2026,
)
SAMPLE_NAME = "sample.zarr"
SOURCE_SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / SAMPLE_NAME


def make_sample_store(path: str | Path, overwrite: bool = False) -> Experiment:
    """Simulate :data:`SAMPLE_CONFIG` and write it as an experiment store at ``path``."""
    from dataclasses import asdict

    movie = simulate_movie(SAMPLE_CONFIG)
    image = as_image(movie.image, movie.voxel_size_um, movie.frame_interval_h)
    return create_experiment(path, image, truth=movie.truth, params=asdict(SAMPLE_CONFIG),
                             overwrite=overwrite)


def sample_store_path() -> Path:
    """Path of the sample store: the embedded one, or a simulated copy in a cache folder."""
    if (SOURCE_SAMPLE / "zarr.json").exists():
        return SOURCE_SAMPLE
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "labloop"
    cached = cache / SAMPLE_NAME
    if not (cached / "zarr.json").exists():
        make_sample_store(cached, overwrite=True)
    return cached


if __name__ == "__main__":
    store = make_sample_store(SOURCE_SAMPLE, overwrite=True)
    truth = store.read_truth()
    print(f"wrote {store.path}: {store.image.shape}, {truth.n_nodes} nuclei, "
          f"{truth.n_divisions} divisions")
