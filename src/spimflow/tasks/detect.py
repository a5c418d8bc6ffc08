"""Rules of the detection stage (``params.action`` picks one):

- ``plan``: the block grid of ``raw/signal.ome.zarr`` → ``cells/blocks/plan.json``
  (the checkpoint; fails here on an empty volume or a grid the filters do not fit);
- ``illumination``: the flat-field for illumination correction → ``cells/blocks/illumination.npz``;
- ``batch``: detect the blocks of one batch → ``cells/blocks/batch_<i>.parquet``;
- ``gather``: all batches → ``cells/cells_raw.parquet`` (sorted by z, y, x).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spimflow.blocks import BlockPlan, concat_cells, detect_blocks, make_plan
from spimflow.errors import InputFileError
from spimflow.io.atomic import atomic_path
from spimflow.io.omezarr import open_ome_zarr
from spimflow.io.tables import write_table
from spimflow.params.detect import DetectParams, IlluminationParams
from spimflow.steps.detect import (
    IlluminationField,
    estimate_illumination,
    profile_illumination,
)

log = logging.getLogger(__name__)


def _params(smk: Any) -> DetectParams:
    return DetectParams.model_validate(dict(smk.params.detect))


def check_not_empty(image, path) -> None:
    """Raise InputFileError when the volume has no voxels or only zeros (reads until the first non-zero slab)."""
    shape = tuple(image.shape)
    if any(s == 0 for s in shape):
        raise InputFileError(f"{path}: the signal volume is empty (shape {shape}); expected an image with voxels")
    arr = image.array
    if getattr(arr, "nchunks_initialized", None) == 0:  # zarr: nothing was ever written
        raise InputFileError(
            f"{path}: the signal volume holds only zeros (no chunk was ever written); check the ingest source and crop"
        )
    step = max(1, int(arr.chunks[0]))
    for z0 in range(0, shape[0], step):
        if np.any(np.asarray(arr[z0 : z0 + step])):
            return
    raise InputFileError(f"{path}: the signal volume holds only zeros; check the ingest source and crop")


def plan(smk: Any) -> None:
    params = _params(smk)
    img = open_ome_zarr(smk.input.signal)
    check_not_empty(img, smk.input.signal)
    p = make_plan(img.shape, img.voxel_size, params, int(getattr(smk.resources, "parallel_jobs", 1)))
    p.extra = {"signal": str(smk.input.signal), "illumination": bool(smk.params.illumination_enabled)}
    log.info(
        "volume %s, voxel size %s µm: %d blocks of core %s + overlap %s, %d batches of <= %d blocks",
        img.shape,
        img.voxel_size,
        len(p.blocks),
        p.size,
        p.overlap,
        len(p.batches),
        max(len(b) for b in p.batches),
    )
    p.save(smk.output[0])


def illumination(smk: Any) -> None:
    params = IlluminationParams.model_validate(dict(smk.params.illumination))
    img = open_ome_zarr(smk.input.signal)
    if params.mode == "profile":
        field = profile_illumination(params.profile, img.shape[1:], params)
    else:
        field = estimate_illumination(
            lambda a, b: img.array[a:b], img.shape, img.voxel_size, params, slab=max(1, int(img.array.chunks[0]))
        )
    log.info(
        "illumination field %s (%s), coarse factor %s, min %.3f",
        field.field.shape,
        params.mode,
        field.factor,
        float(field.field.min()),
    )
    with atomic_path(smk.output[0]) as tmp:
        field.save(tmp)


def batch(smk: Any) -> None:
    params = _params(smk)
    p = BlockPlan.load(smk.input.plan)
    i = int(smk.wildcards.batch)
    if not 0 <= i < len(p.batches):
        raise InputFileError(f"{smk.input.plan}: no batch {i} (the plan has {len(p.batches)})")
    field = IlluminationField.load(smk.input.illumination) if "illumination" in smk.input.keys() else None
    ids = p.batches[i]
    cells = detect_blocks(smk.input.signal, p, params, ids, illumination=field)
    log.info("batch %d: blocks %s -> %d cells", i, ids, len(cells))
    write_table(cells, smk.output[0])


def gather(smk: Any) -> None:
    tables = [pd.read_parquet(f) for f in smk.input.batches]
    cells = concat_cells(tables)
    if len(cells) and cells.duplicated(["z", "y", "x"]).any():
        raise InputFileError(f"{Path(smk.output[0]).parent}: duplicate cell centres across batches")
    log.info("%d cells from %d batches", len(cells), len(tables))
    write_table(cells, smk.output[0])


ACTIONS = {"plan": plan, "illumination": illumination, "batch": batch, "gather": gather}


def run(smk: Any) -> None:
    ACTIONS[smk.params.action](smk)
