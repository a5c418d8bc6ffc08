"""Rule ``density_maps``: ``cells/cells_atlas.parquet`` → ``maps/<name>.ome.zarr`` (+ ``.tif``):
the cell density map in atlas space, per hemisphere and per region subset when configured."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spimflow.atlas import load_atlas
from spimflow.config import AtlasConfig
from spimflow.errors import ConfigError
from spimflow.io.atlas_images import write_atlas_map, write_imagej_tiff
from spimflow.params.analysis import VoxelizeParams
from spimflow.steps.voxelize import count_outside, isolate_regions, voxelize

log = logging.getLogger(__name__)

ATLAS_POINT_COLUMNS = ["az", "ay", "ax"]


def density_maps(cells: pd.DataFrame, atlas, params: VoxelizeParams) -> dict[str, np.ndarray]:
    """Every configured map by name: ``density``, optionally ``density_left``/``density_right``
    and ``density_<subset>`` (the whole-brain map masked to the subset's regions)."""
    points = cells[ATLAS_POINT_COLUMNS].to_numpy(np.float64)
    weights = cells[params.weight].to_numpy(np.float64) if params.weight else None

    def density(rows: np.ndarray | None = None) -> np.ndarray:
        pts, w = (points, weights) if rows is None else (points[rows], None if weights is None else weights[rows])
        return voxelize(pts, atlas.shape, atlas.voxel_size, params.method, params.size_um, w)

    maps = {"density": density()}
    if params.per_hemisphere:
        side = cells["hemisphere"].to_numpy()
        maps["density_left"] = density(side == "left")
        maps["density_right"] = density(side == "right")
    for name, refs in params.regions.items():
        try:
            maps[f"density_{name}"] = isolate_regions(maps["density"], atlas.annotation, atlas.ontology, refs)
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"steps.voxelize.regions.{name}: {exc}") from None
    return maps


def run(smk: Any) -> None:
    params = VoxelizeParams.model_validate(dict(smk.params.voxelize))
    atlas = load_atlas(AtlasConfig.model_validate(dict(smk.params.atlas)))
    cells = pd.read_parquet(smk.input.cells)
    outside = count_outside(cells[ATLAS_POINT_COLUMNS].to_numpy(np.float64), atlas.shape)
    maps = density_maps(cells, atlas, params)
    attrs = {
        "method": params.method,
        "size_um": params.size_um,
        "weight": params.weight,
        "cells": len(cells),
        "cells_outside_atlas": outside,
        "atlas": atlas.name,
        "unit": f"{params.weight or 'cells'} within the {params.method} kernel",
    }
    tiffs = {Path(p).name.removesuffix(".tif"): p for p in smk.output.tiffs}
    for path in smk.output.maps:
        name = Path(path).name.removesuffix(".ome.zarr")
        data = maps[name].astype(np.float32, copy=False)
        write_atlas_map(path, data, atlas.voxel_size, atlas.orientation, name, attrs)
        if name in tiffs:
            write_imagej_tiff(tiffs[name], data, atlas.voxel_size)
        log.info("%s: sum %.6g, max %.6g", name, float(data.sum(dtype=np.float64)), float(data.max()))
    log.info("%d cells, %d outside the atlas grid (not in any map)", len(cells), outside)
