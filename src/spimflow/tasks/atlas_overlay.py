"""Rule ``atlas_overlay``: the atlas regions on the raw signal's own grid (pooled so its
voxels are at most half an atlas voxel) → ``registration/annotation_in_raw.ome.zarr``.

Each overlay voxel gets the label of the atlas voxel its centre maps to through the exact
registration chain, as every cell gets its ``region_id``; so looking a point up in the
overlay (e.g. in napari) agrees with the cell tables. Written plane slab by plane slab:
memory scales with a slab, never with the volume.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from spimflow.atlas import load_atlas
from spimflow.config import AtlasConfig
from spimflow.io.atomic import atomic_path
from spimflow.io.omezarr import create_ome_zarr, open_ome_zarr
from spimflow.steps.cells_atlas import OVERLAY_SLAB_VOXELS, overlay_centres, overlay_factor, regions_at_raw
from spimflow.transforms import SampleAtlasTransform

log = logging.getLogger(__name__)


def run(smk: Any) -> None:
    atlas = load_atlas(AtlasConfig.model_validate(dict(smk.params.atlas)))
    transform = SampleAtlasTransform.load(Path(smk.input.registration).parent)
    raw = open_ome_zarr(smk.input.signal)
    factor = overlay_factor(raw.voxel_size, atlas.voxel_size)
    shape = tuple(-(-n // f) for n, f in zip(raw.shape, factor))
    voxel = tuple(v * f for v, f in zip(raw.voxel_size, factor))
    offset_um = [v * (f - 1) / 2.0 for v, f in zip(raw.voxel_size, factor)]
    step = max(1, OVERLAY_SLAB_VOXELS // max(1, shape[1] * shape[2]))
    attrs = {
        "factor": list(factor),
        "translation_um": offset_um,
        "space": "raw",
        "labels_of": "atlas",
        "channel": "signal",
        "atlas_orientation": atlas.orientation,
    }
    with atomic_path(smk.output.zarr) as tmp:
        out = create_ome_zarr(
            tmp,
            shape,
            np.uint32,
            voxel,
            chunks=(16, 256, 256),
            n_levels=1,
            name="atlas regions on the raw grid",
            extra_attrs=attrs,
        )
        for z0 in range(0, shape[0], step):
            z1 = min(shape[0], z0 + step)
            labels = regions_at_raw(overlay_centres(shape, factor, (z0, z1)), transform, atlas)
            out[z0:z1] = labels.reshape((z1 - z0,) + shape[1:]).astype(np.uint32)
    log.info("overlay %s (factor %s, voxel %s µm) of raw %s", shape, factor, voxel, raw.shape)
