"""labloop: from 3D time-lapses of nuclei to calibrated lineages and a tissue model.

The stable Python API (see DESIGN.md): :func:`detect`, :func:`track`,
:func:`measure`, :func:`evaluate`, :func:`open_experiment` and the
:class:`Lineage` type. The step functions share their names with the modules
that hold them; importing them here makes ``labloop.track`` the function.
``labloop.detect`` (which loads torch, a few seconds) is imported on first use
and is a module that can be called like the function.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("labloop")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

from labloop.errors import InputError
from labloop.evaluate import evaluate
from labloop.io.store import open_experiment
from labloop.lineage import Lineage
from labloop.measure import measure
from labloop.track import sample_lineages, track, track_store

#: names imported on first use, and their modules
_LAZY = {"detect": "labloop.detect", "detect_store": "labloop.detect",
         "train_detector": "labloop.detect"}

__all__ = ["InputError", "Lineage", "__version__", "evaluate", "measure", "open_experiment",
           "sample_lineages", "track", "track_store", *_LAZY]


def __getattr__(name: str) -> Any:
    if name == "detect":
        return import_module("labloop.detect")  # a callable module: labloop.detect(image, ...)
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'labloop' has no attribute {name!r}")
