"""Rule ``resample``: ``raw/<channel>.ome.zarr`` → ``resampled/<channel>.ome.zarr`` (atlas
voxel size and orientation), streamed over raw planes."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from spimflow.config import AtlasConfig, Channel
from spimflow.io.omezarr import open_ome_zarr, write_ome_zarr
from spimflow.orientation import Orientation
from spimflow.params.resample import ResampleParams
from spimflow.steps.resample import ResampleGrid, resample_image

log = logging.getLogger(__name__)


def atlas_geometry(atlas_cfg: AtlasConfig, base: str | Path = ".") -> tuple[tuple[float, float, float], str, tuple[int, int, int]]:
    """(voxel size, orientation code, shape) of the configured atlas (after any hemisphere crop)."""
    from spimflow.atlas import load_atlas

    atlas = load_atlas(atlas_cfg, base)
    return tuple(atlas.voxel_size), atlas.orientation, atlas.shape


def channel_grid(channel: Channel, raw_shape, atlas_voxel_size, atlas_code: str) -> ResampleGrid:
    """The resampling grid of one channel: its raw shape and voxel size, its configured
    orientation resolved against the atlas, and the atlas voxel size."""
    orient = Orientation.resolve(channel.orientation, atlas_code)
    return ResampleGrid(tuple(int(s) for s in raw_shape), tuple(channel.voxel_size), orient, tuple(atlas_voxel_size))


def run(smk: Any) -> None:
    name = str(smk.wildcards.channel)
    channel = Channel.model_validate(dict(smk.params.channel))
    atlas_cfg = AtlasConfig.model_validate(dict(smk.params.atlas))
    params = ResampleParams.model_validate(dict(smk.params.resample))
    voxel_size, code, _ = atlas_geometry(atlas_cfg)
    raw = open_ome_zarr(smk.input.raw)
    grid = channel_grid(channel, raw.shape, voxel_size, code)
    log.info("%s: raw %s at %s µm, orientation %s -> resampled %s at %s µm (atlas '%s')", name, raw.shape,
             channel.voxel_size, list(grid.orientation.to_clearmap()), grid.shape, voxel_size, code)
    t0 = time.perf_counter()
    out = resample_image(raw.array, grid, params)
    write_ome_zarr(smk.output[0], out, voxel_size, chunks=(64, 64, 64), n_levels=1, name=f"{name} resampled",
                   extra_attrs={"channel": name, "resample": grid.to_dict(), "atlas_orientation": code})
    log.info("%s: resampled in %.1f s", name, time.perf_counter() - t0)
