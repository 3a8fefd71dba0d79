"""labloop: from 3D time-lapses of nuclei to calibrated lineages and a tissue model."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("labloop")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

from labloop.errors import InputError
from labloop.lineage import Lineage

__all__ = ["InputError", "Lineage", "__version__"]
