"""The detector network and its safe (pickle-free) file format.

The network is a MONAI :class:`~monai.networks.nets.UNet` that maps a normalised
volume, resampled to the model's working voxel size, to a heatmap peaked at
nucleus centres. The first level pools only in ``y, x`` (strides
``(1, 2, 2)``) because the working voxels are twice as long along ``z`` as in
``y, x``; deeper levels pool isotropically.

A model file is one ``.safetensors`` file: the tensors are the network's state
dict; the header metadata holds, as JSON under the key ``labloop_detector``, the
architecture, the working voxel size, the heatmap and normalisation settings,
the score calibration and a record of the training. Loading goes through
:func:`safetensors.torch.load_file` only, so a model file cannot run code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labloop.detect.calibration import BorderAwareCalibration
from labloop.errors import InputError

#: Metadata key of the JSON header inside a model file.
METADATA_KEY = "labloop_detector"
#: Version of the metadata layout; bumped when it changes incompatibly.
FORMAT_VERSION = 1
#: The shipped model, relative to the repository root.
DEFAULT_MODEL_NAME = "nucleus_unet.safetensors"


@dataclass(frozen=True)
class ModelSpec:
    """Architecture and the fixed pre/post-processing a set of weights was trained with.

    Parameters
    ----------
    channels
        Feature channels per U-Net level.
    strides
        Down-sampling factors ``(z, y, x)`` between levels; the first pools only
        in ``y, x`` to make the anisotropic working voxels roughly isotropic.
    num_res_units
        Residual units per level (MONAI ``UNet``).
    norm
        Normalisation layer. Batch norm (a fixed affine map at inference) keeps
        the output independent of how a volume is tiled; instance norm would not.
    working_voxel_um
        Voxel size ``(z, y, x)`` in µm that every frame is resampled to.
    planar_depth
        A 2D frame (``Z = 1``) is repeated this many times along ``z`` so the 3D
        network sees a column; the heatmap is averaged over the central planes.
    """

    channels: tuple[int, ...] = (16, 32, 64, 128)
    strides: tuple[tuple[int, int, int], ...] = ((1, 2, 2), (2, 2, 2), (2, 2, 2))
    num_res_units: int = 1
    norm: str = "batch"
    working_voxel_um: tuple[float, float, float] = (2.0, 1.0, 1.0)
    planar_depth: int = 16

    @property
    def size_multiple(self) -> tuple[int, int, int]:
        """Each working-volume side must be a multiple of this (product of the strides)."""
        total = np.prod(np.asarray(self.strides, dtype=np.int64), axis=0)
        return (int(total[0]), int(total[1]), int(total[2]))

    @staticmethod
    def from_dict(values: dict[str, Any]) -> ModelSpec:
        """Rebuild from :func:`dataclasses.asdict` output (lists become tuples)."""
        return ModelSpec(
            channels=tuple(int(c) for c in values["channels"]),
            strides=tuple(tuple(int(s) for s in level) for level in values["strides"]),  # type: ignore[misc]
            num_res_units=int(values["num_res_units"]),
            norm=str(values["norm"]),
            working_voxel_um=tuple(float(v) for v in values["working_voxel_um"]),  # type: ignore[arg-type]
            planar_depth=int(values["planar_depth"]),
        )


def build_network(spec: ModelSpec) -> torch.nn.Module:
    """A freshly initialised network for ``spec`` (one input, one output channel)."""
    from monai.networks.nets import UNet

    return UNet(spatial_dims=3, in_channels=1, out_channels=1, channels=spec.channels,
                strides=spec.strides, num_res_units=spec.num_res_units, norm=spec.norm)


@dataclass(eq=False)
class DetectorModel:
    """A trained detector: network weights plus everything needed to use them.

    Attributes
    ----------
    network
        The U-Net (in eval mode after loading).
    spec
        Architecture and working voxel size.
    calibration
        Maps peak height (and whether the peak is on the frame's outermost voxel
        layer) to the probability that the peak is a true nucleus.
    heatmap
        The heatmap-target settings used in training (as a dict, for the record).
    training
        A record of how the weights were made (data, command, seed, time, metrics).
    source
        File the model was read from, for messages.
    """

    network: torch.nn.Module
    spec: ModelSpec
    calibration: BorderAwareCalibration = field(default_factory=BorderAwareCalibration.identity)
    heatmap: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    source: str = "<memory>"

    @property
    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return int(sum(p.numel() for p in self.network.parameters()))

    def metadata(self) -> dict[str, Any]:
        """The JSON header stored in the model file."""
        return {
            "format_version": FORMAT_VERSION,
            "spec": asdict(self.spec),
            "calibration": self.calibration.to_dict(),
            "heatmap": self.heatmap,
            "training": self.training,
        }

    def save(self, path: str | Path) -> Path:
        """Write the weights and metadata as one ``.safetensors`` file (atomically).

        Parameters
        ----------
        path
            Destination file, conventionally ``*.safetensors``.
        """
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        tmp = path.with_name(path.name + ".tmp")
        save_file(state, str(tmp), metadata={METADATA_KEY: json.dumps(self.metadata())})
        tmp.replace(path)
        return path


def default_model_path() -> Path:
    """Path of the shipped model, ``models/nucleus_unet.safetensors`` in the repository."""
    return Path(__file__).resolve().parents[2] / "models" / DEFAULT_MODEL_NAME


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON header of a model file, without loading the weights.

    Raises
    ------
    InputError
        If the file is missing, not a safetensors file, or not a labloop detector.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError("no such model file", path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except Exception as error:
        raise InputError(f"not a readable safetensors model ({type(error).__name__}); the file "
                         "may be corrupt or truncated", path) from error
    if METADATA_KEY not in header:
        raise InputError("not a labloop detector model (no 'labloop_detector' metadata)", path)
    try:
        metadata = json.loads(header[METADATA_KEY])
    except json.JSONDecodeError as error:
        raise InputError("the model's metadata is not valid JSON", path) from error
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(f"model format version {version} is not supported (expected "
                         f"{FORMAT_VERSION})", path)
    return dict(metadata)


def load_model(path: str | Path | None = None) -> DetectorModel:
    """Load a detector from a ``.safetensors`` file (no pickle, no code execution).

    Parameters
    ----------
    path
        Model file; ``None`` loads the shipped model (:func:`default_model_path`).

    Returns
    -------
    DetectorModel
        In eval mode, on the CPU.

    Raises
    ------
    InputError
        If the file is missing, corrupt, not a labloop detector or does not match
        its declared architecture.

    Examples
    --------
    >>> model = load_model()  # doctest: +SKIP
    >>> model.spec.working_voxel_um  # doctest: +SKIP
    (2.0, 1.0, 1.0)
    """
    path = default_model_path() if path is None else Path(path)
    resolved = path.resolve()
    if not resolved.is_file():
        raise InputError("no such model file", path)
    stat = resolved.stat()
    return _load_cached(str(resolved), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int, size: int) -> DetectorModel:
    from safetensors.torch import load_file

    metadata = read_metadata(path)
    try:
        spec = ModelSpec.from_dict(metadata["spec"])
        calibration = BorderAwareCalibration.from_dict(metadata["calibration"])
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"the model's metadata is incomplete ({error})", path) from error
    try:
        state = load_file(path)
    except Exception as error:
        raise InputError(f"the model's weights cannot be read ({type(error).__name__}); the "
                         "file may be corrupt or truncated", path) from error
    network = build_network(spec)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0][:200]
        raise InputError(f"the weights do not match the declared architecture ({first})",
                         path) from error
    network.eval()
    return DetectorModel(network=network, spec=spec, calibration=calibration,
                         heatmap=dict(metadata.get("heatmap", {})),
                         training=dict(metadata.get("training", {})), source=path)
