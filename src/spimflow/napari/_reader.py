"""npe2 reader: a results folder, a cohort folder, or any single spimflow file → layers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from spimflow.annotate import read_cellcounter
from spimflow.errors import SpimflowError
from spimflow.napari._layers import (
    LayerData,
    annotation_layer,
    atlas_space_layers,
    cell_layers,
    image_layer,
    labels_layer,
    ontology_of,
    points_layer,
    raw_space_layers,
    region_colours,
    results_dir_of,
    sample_config,
)
from spimflow.napari._project import project_layers

CELL_TABLES = {
    "cells.parquet",
    "cells.csv",
    "cells_atlas.parquet",
    "cells_atlas.csv",
    "cells_curated.parquet",
    "cells_curated.csv",
}


def _table(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def read_results_folder(path: Path) -> list[LayerData]:
    return raw_space_layers(path)


def read_cohort_folder(path: Path) -> list[LayerData]:
    return atlas_space_layers(path)


def read_zarr(path: Path) -> list[LayerData]:
    """One OME-Zarr: the annotation over the raw data, a label image, or an image."""
    results = results_dir_of(path)
    if results is not None and path.name in ("annotation_in_raw.ome.zarr", "annotation_in_sample.ome.zarr"):
        layer = annotation_layer(results, sample_config(results))
        if layer is not None:
            return [layer]
    if path.name == "qc_overlay.ome.zarr":
        return [labels_layer(path, "detected shapes", opacity=0.5)]
    return [image_layer(path)]


def read_cell_table(path: Path) -> list[LayerData]:
    """A cell table: inside a results folder exactly the folder's cell layer(s), else Points
    in voxels (z, y, x columns) with unit scale."""
    results = results_dir_of(path)
    if results is not None:
        cfg = sample_config(results)
        if path.name in CELL_TABLES:
            cells = _table(path)
            colour = region_colours(cells, ontology_of(results, cfg))
            return [
                points_layer(
                    cells,
                    cfg.channels.signal.voxel_size,
                    "cells",
                    colour,
                    metadata={"spimflow_role": "cells", "spimflow_path": str(path)},
                )
            ]
        if path.stem == "cells_raw":
            layers = cell_layers(results, cfg)
            return [layer for layer in layers if layer[1]["name"] == "rejected cells"] or layers
    cells = _table(path)
    if not {"z", "y", "x"} <= set(cells.columns):
        return []
    return [points_layer(cells, (1.0, 1.0, 1.0), path.stem, metadata={"spimflow_path": str(path)})]


def read_cell_counter(path: Path) -> list[LayerData]:
    """Fiji Cell Counter XML: one Points layer per counter type."""
    markers = read_cellcounter(path)
    layers = []
    for counter, group in markers.groupby("type", sort=True):
        layers.append(
            points_layer(
                group.reset_index(drop=True),
                (1.0, 1.0, 1.0),
                f"{path.stem}: {counter}",
                metadata={"spimflow_path": str(path), "counter": str(counter)},
            )
        )
    return layers


def reader_for(path: Path) -> Callable[[Path], list[LayerData]] | None:
    """The function that reads ``path``, or None when it is not a spimflow file."""
    if path.is_dir():
        if (path / "config.resolved.yaml").is_file():
            return read_results_folder
        if (path / "voxels").is_dir() or (path / "maps").is_dir() and not (path / "raw").is_dir():
            return read_cohort_folder
        if path.name.endswith(".zarr"):
            return read_zarr
        return None
    suffix = path.suffix.lower()
    if suffix == ".cdb":
        return project_layers
    if suffix == ".xml":
        return read_cell_counter
    if suffix in (".parquet", ".csv"):
        return read_cell_table
    return None


def get_reader(path: str | list[str]):
    """npe2 reader contribution: a function returning layer data, or None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    reader = reader_for(Path(path))
    if reader is None:
        return None

    def read(p):
        try:
            return reader(Path(p[0] if isinstance(p, list) else p))
        except SpimflowError as exc:  # a clear message in napari's notification, not a traceback
            raise ValueError(str(exc)) from None

    return read
