"""Finding a store's layers in a viewer and refreshing them from the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari
from napari.layers import Layer

from labloop.io.store import open_experiment
from labloop_napari._layers import KINDS, META_KEY, store_layers


def grid(viewer: napari.Viewer) -> Any:
    """The viewer's grid (``viewer.canvas.grid`` since napari 0.9, ``viewer.grid`` before)."""
    return viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid


def camera(viewer: napari.Viewer) -> Any:
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    return viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera


def layer_store(layer: Layer) -> tuple[Path, str] | None:
    """``(store, kind)`` of a labloop layer, ``None`` for any other layer."""
    info = layer.metadata.get(META_KEY)
    if not isinstance(info, dict) or "store" not in info:
        return None
    return Path(info["store"]), str(info.get("kind", ""))


def current_store(viewer: napari.Viewer) -> Path | None:
    """The store of the active layer, else of the top-most labloop layer."""
    active = viewer.layers.selection.active
    if active is not None and layer_store(active) is not None:
        return layer_store(active)[0]  # type: ignore[index]
    for layer in reversed(viewer.layers):
        info = layer_store(layer)
        if info is not None:
            return info[0]
    return None


def find_layer(viewer: napari.Viewer, store: Path, kind: str) -> Layer | None:
    """The layer showing ``kind`` of ``store``, if the viewer has it."""
    for layer in viewer.layers:
        if layer_store(layer) == (Path(store).resolve(), kind):
            return layer
    return None


def refresh_layers(viewer: napari.Viewer, store: Path, kinds: tuple[str, ...]) -> list[Layer]:
    """Re-read layers of the given kinds from the store and put them in the viewer.

    A layer already there is replaced in place (keeping its position and
    visibility); a new one goes above the store's layers of lower kinds.
    """
    store = Path(store).resolve()
    updated = []
    for data, kwargs, layer_type in store_layers(open_experiment(store), kinds):
        kind = kwargs["metadata"][META_KEY]["kind"]
        new = Layer.create(data, kwargs, layer_type)
        old = find_layer(viewer, store, kind)
        if old is not None:
            index = viewer.layers.index(old)
            new.visible = old.visible
            viewer.layers.remove(old)
        else:
            below = [viewer.layers.index(layer) for layer in viewer.layers
                     if (info := layer_store(layer)) is not None and info[0] == store
                     and info[1] in KINDS and KINDS.index(info[1]) < KINDS.index(kind)]
            index = max(below) + 1 if below else len(viewer.layers)
        viewer.layers.insert(index, new)
        updated.append(new)
    return updated
