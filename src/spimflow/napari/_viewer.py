"""``spimflow view``: a napari viewer on a results folder (raw or atlas space)."""

from __future__ import annotations

from pathlib import Path

import napari

from spimflow.errors import InputFileError
from spimflow.napari._layers import LayerData, atlas_space_layers
from spimflow.napari._reader import reader_for


def layers_for(path: Path, space: str = "raw") -> list[LayerData]:
    """The layers ``spimflow view`` shows for ``path`` in ``space`` ('raw' or 'atlas')."""
    if space == "atlas":
        return atlas_space_layers(path)
    reader = reader_for(path)
    if reader is None:
        raise InputFileError(
            f"{path}: not a spimflow results folder or file (expected results/<sample>, a "
            "cohort folder, an .ome.zarr, a cell table, a .cdb or a Cell Counter .xml)"
        )
    return reader(path)


def add_layers(viewer: napari.Viewer, layers: list[LayerData]) -> list:
    """Add layer data tuples to a viewer; returns the layers."""
    added = []
    for data, kwargs, kind in layers:
        added.append(getattr(viewer, f"add_{kind}")(data, **kwargs))
    return added


def open_viewer(path: str | Path, space: str = "raw", show: bool = True) -> napari.Viewer:
    """A viewer with everything of ``path`` in ``space``, 3D-sliced at the middle plane."""
    path = Path(path)
    layers = layers_for(path, space)
    viewer = napari.Viewer(title=f"spimflow: {path}", show=show)
    add_layers(viewer, layers)
    return viewer


def view(path: str | Path, space: str = "raw", screenshot: str | None = None) -> int:
    """Open the viewer (and run napari's event loop), or save a screenshot and exit."""
    viewer = open_viewer(path, space, show=screenshot is None)
    if screenshot:
        viewer.screenshot(screenshot, canvas_only=False)
        viewer.close()
        return 0
    napari.run()
    return 0
