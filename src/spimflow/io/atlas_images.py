"""Atlas-space images on disk (density maps, p-value maps): OME-Zarr with the atlas voxel
size and orientation in their metadata, plus an ImageJ TIFF copy for Fiji users."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tifffile

from spimflow.io.atomic import atomic_path
from spimflow.io.omezarr import write_ome_zarr


def write_atlas_map(
    path: str | os.PathLike,
    data: np.ndarray,
    voxel_size: Sequence[float],
    orientation: str,
    name: str,
    attrs: dict | None = None,
) -> None:
    """One (z, y, x) map in atlas space as OME-Zarr (one level, µm scale), atomically; the
    atlas orientation and ``attrs`` go into the group attributes."""
    write_ome_zarr(
        path,
        data,
        voxel_size,
        chunks=tuple(min(64, int(s)) for s in data.shape),
        n_levels=1,
        name=name,
        extra_attrs={"atlas_orientation": orientation, "space": "atlas", **(attrs or {})},
    )


def write_imagej_tiff(path: str | os.PathLike, data: np.ndarray, voxel_size: Sequence[float]) -> None:
    """An ImageJ hyperstack TIFF (ZYX, or ZYXC for RGB uint8) with the voxel size in µm, atomically."""
    vz, vy, vx = (float(v) for v in voxel_size)
    rgb = data.ndim == 4 and data.shape[-1] == 3
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            data,
            imagej=True,
            resolution=(1.0 / vx, 1.0 / vy),
            photometric="rgb" if rgb else "minisblack",
            metadata={"spacing": vz, "unit": "um", "axes": "ZYXS" if rgb else "ZYX"},
        )
