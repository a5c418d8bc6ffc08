"""Rule ``resample``: ``raw/<channel>.ome.zarr`` → ``resampled/<channel>.ome.zarr`` (atlas
voxel size and orientation), streamed over raw planes."""

from __future__ import annotations

import logging
import time
from typing import Any

from spimflow.atlas import load_atlas
from spimflow.config import AtlasConfig, Channel
from spimflow.geometry import ResampleGrid
from spimflow.io.omezarr import open_ome_zarr, write_ome_zarr
from spimflow.params.resample import ResampleParams
from spimflow.steps.resample import resample_image

log = logging.getLogger(__name__)


def run(smk: Any) -> None:
    name = str(smk.wildcards.channel)
    channel = Channel.model_validate(dict(smk.params.channel))
    atlas_cfg = AtlasConfig.model_validate(dict(smk.params.atlas))
    params = ResampleParams.model_validate(dict(smk.params.resample))
    atlas = load_atlas(atlas_cfg)
    voxel_size, code = tuple(atlas.voxel_size), atlas.orientation
    raw = open_ome_zarr(smk.input.raw)
    grid = ResampleGrid.for_channel(raw.shape, channel.voxel_size, channel.orientation, voxel_size, code)
    log.info(
        "%s: raw %s at %s µm, orientation %s -> resampled %s at %s µm (atlas '%s')",
        name,
        raw.shape,
        channel.voxel_size,
        list(grid.orientation.to_clearmap()),
        grid.shape,
        voxel_size,
        code,
    )
    t0 = time.perf_counter()
    out = resample_image(raw.array, grid, params)
    write_ome_zarr(
        smk.output[0],
        out,
        voxel_size,
        chunks=(64, 64, 64),
        n_levels=1,
        name=f"{name} resampled",
        extra_attrs={"channel": name, "resample": grid.to_dict(), "atlas_orientation": code},
    )
    log.info("%s: resampled in %.1f s", name, time.perf_counter() - t0)
