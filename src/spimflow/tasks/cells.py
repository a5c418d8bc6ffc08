"""Rules after detection (``params.action`` picks one):

- ``threshold``: ``cells/cells_raw.parquet`` → ``cells/cells.parquet`` + ``cells/cells.csv``
  (rows whose measured columns fall in the configured ranges);
- ``qc``: ``cells/qc_cells.png`` (a few planes with the detections) and
  ``cells/qc_overlay.ome.zarr`` (a label image of one sphere per kept cell, for napari).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spimflow.io.atomic import atomic_path
from spimflow.io.omezarr import create_ome_zarr, open_ome_zarr
from spimflow.io.tables import write_table
from spimflow.params.detect import ThresholdParams
from spimflow.steps.detect import threshold_cells
from spimflow.steps.detect.qc import (
    circle_reach,
    montage,
    qc_planes,
    render_plane,
    slab_halfwidth,
    sphere_tiles,
)

log = logging.getLogger(__name__)


def threshold(smk: Any) -> None:
    params = ThresholdParams.model_validate(dict(smk.params.threshold))
    raw = pd.read_parquet(smk.input.cells)
    cells = threshold_cells(raw, params.ranges)
    log.info("threshold %s: kept %d of %d cells", params.ranges, len(cells), len(raw))
    write_table(cells, smk.output.parquet)
    write_table(cells, smk.output.csv)


def qc(smk: Any) -> None:
    kept = pd.read_parquet(smk.input.cells)
    raw = pd.read_parquet(smk.input.cells_raw)
    removed = raw.merge(kept[["z", "y", "x"]], on=["z", "y", "x"], how="left", indicator=True)
    removed = removed[removed["_merge"] == "left_only"].drop(columns="_merge")
    img = open_ome_zarr(smk.input.signal)
    vs = img.voxel_size
    k = slab_halfwidth(vs)
    pictures = []
    for z in qc_planes(raw, img.shape[0], n=4, halfwidth=k):
        slab = np.asarray(img.array[max(0, z - k) : z + k + 1]).max(axis=0)
        pictures.append(render_plane(slab, z, kept, removed, k + circle_reach(vs), vs))
    with atomic_path(smk.output.png) as tmp:
        montage(pictures).save(tmp, format="PNG")

    chunks = tuple(int(c) for c in img.array.chunks)
    with atomic_path(smk.output.overlay) as tmp:
        labels = create_ome_zarr(
            tmp,
            img.shape,
            np.uint32,
            vs,
            chunks=chunks,
            n_levels=1,
            name="cells",
            extra_attrs={"labels_of": str(Path(smk.input.cells).name), "label": "row + 1 of cells.parquet"},
        )
        n = 0
        for region, tile in sphere_tiles(kept, img.shape, vs, chunks):
            labels[region] = tile
            n += 1
    log.info("QC: %d planes, overlay with %d cells in %d tiles", len(pictures), len(kept), n)


ACTIONS = {"threshold": threshold, "qc": qc}


def run(smk: Any) -> None:
    ACTIONS[smk.params.action](smk)
