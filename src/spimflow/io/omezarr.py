"""OME-Zarr (NGFF 0.5, zarr v3) images with a few pyramid levels for viewing.

Layout of an image written here::

    <name>.ome.zarr/            zarr v3 group, attrs["ome"]["multiscales"]
        0/                     full resolution, (z, y, x), chunked in z-slabs
        1/ 2/ ...              2x mean-pooled levels (y, x always; z when not coarser)

Level 0 is what every computation reads; the other levels only serve viewers.
Building the pyramid streams over z-slabs so memory stays bounded by a slab.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from spimflow.errors import InputFileError
from spimflow.io.atomic import atomic_path

NGFF_VERSION = "0.5"
DEFAULT_CHUNKS = (16, 256, 256)


@dataclass(frozen=True)
class Level:
    shape: tuple[int, int, int]
    factor: tuple[int, int, int]  # cumulative downsampling factor relative to level 0


def pyramid_plan(
    shape: Sequence[int], voxel_size: Sequence[float], n_levels: int = 4, min_size: int = 32
) -> list[Level]:
    """Levels to write: halve y and x (and z while it is not the coarsest axis)."""
    levels = [Level(tuple(int(s) for s in shape), (1, 1, 1))]
    while len(levels) < n_levels:
        prev = levels[-1]
        if min(prev.shape[1:]) < 2 * min_size:
            break
        size_z = voxel_size[0] * prev.factor[0]
        size_xy = min(voxel_size[1] * prev.factor[1], voxel_size[2] * prev.factor[2])
        fz = 2 if (size_z < 2 * size_xy and prev.shape[0] >= 2 * min_size) else 1
        factor = (prev.factor[0] * fz, prev.factor[1] * 2, prev.factor[2] * 2)
        new_shape = (-(-prev.shape[0] // fz), -(-prev.shape[1] // 2), -(-prev.shape[2] // 2))
        levels.append(Level(new_shape, factor))
    return levels


def _multiscales_attr(levels: list[Level], voxel_size: Sequence[float], name: str) -> dict:
    datasets = []
    for i, lev in enumerate(levels):
        scale = [float(voxel_size[a]) * lev.factor[a] for a in range(3)]
        # pooled voxel centres sit half a (new) voxel minus half an old voxel further in
        translation = [float(voxel_size[a]) * (lev.factor[a] - 1) / 2 for a in range(3)]
        datasets.append(
            {
                "path": str(i),
                "coordinateTransformations": [
                    {"type": "scale", "scale": scale},
                    {"type": "translation", "translation": translation},
                ],
            }
        )
    return {
        "version": NGFF_VERSION,
        "multiscales": [
            {
                "name": name,
                "axes": [
                    {"name": "z", "type": "space", "unit": "micrometer"},
                    {"name": "y", "type": "space", "unit": "micrometer"},
                    {"name": "x", "type": "space", "unit": "micrometer"},
                ],
                "datasets": datasets,
            }
        ],
    }


def _chunks_for(shape: Sequence[int], chunks: Sequence[int]) -> tuple[int, ...]:
    return tuple(max(1, min(int(c), int(s))) for c, s in zip(chunks, shape))


def create_ome_zarr(
    path: str | Path,
    shape: Sequence[int],
    dtype,
    voxel_size: Sequence[float],
    chunks: Sequence[int] = DEFAULT_CHUNKS,
    n_levels: int = 4,
    name: str = "image",
    extra_attrs: dict | None = None,
) -> zarr.Array:
    """Create an empty multiscale image and return its level-0 array for writing.

    Call :func:`build_pyramid` once level 0 is filled.
    """
    if any(v <= 0 for v in voxel_size):
        raise ValueError(f"voxel_size must be positive, got {tuple(voxel_size)}")
    levels = pyramid_plan(shape, voxel_size, n_levels)
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    for i, lev in enumerate(levels):
        group.create_array(str(i), shape=lev.shape, dtype=dtype, chunks=_chunks_for(lev.shape, chunks), fill_value=0)
    attrs = {"ome": _multiscales_attr(levels, voxel_size, name)}
    if extra_attrs:
        attrs["spimflow"] = extra_attrs
    group.attrs.update(attrs)
    return group["0"]


def _pool(block: np.ndarray, factor: Sequence[int]) -> np.ndarray:
    """Mean-pool by ``factor`` (edge voxels are averaged over what exists)."""
    out = block.astype(np.float32)
    for axis, f in enumerate(factor):
        if f == 1:
            continue
        n = out.shape[axis]
        pad = (-n) % f
        if pad:
            edge = np.take(out, [-1], axis=axis)
            out = np.concatenate([out] + [edge] * pad, axis=axis)
        new_shape = out.shape[:axis] + (out.shape[axis] // f, f) + out.shape[axis + 1 :]
        out = out.reshape(new_shape).mean(axis=axis + 1)
    return out


def build_pyramid(path: str | Path, slab: int = 32) -> None:
    """Fill levels 1.. from the level above, streaming over z-slabs."""
    group = zarr.open_group(str(path), mode="r+")
    datasets = group.attrs["ome"]["multiscales"][0]["datasets"]
    for i in range(1, len(datasets)):
        src, dst = group[str(i - 1)], group[str(i)]
        rel = tuple(int(round(src.shape[a] / dst.shape[a])) if dst.shape[a] else 1 for a in range(3))
        step = max(rel[0], (slab // rel[0]) * rel[0])
        # float32 temporaries are made for `sub` planes at a time (not the whole slab), so
        # peak memory is about one slab in the image dtype plus its pooled output
        sub = rel[0] * max(1, 4 // rel[0])
        for z0 in range(0, src.shape[0], step):
            block = np.asarray(src[z0 : z0 + step])
            pooled = np.empty((-(-block.shape[0] // rel[0]),) + tuple(dst.shape[1:]), dst.dtype)
            for s0 in range(0, block.shape[0], sub):
                part = _pool(block[s0 : s0 + sub], rel)
                if np.issubdtype(dst.dtype, np.integer):
                    part = np.rint(part)
                pooled[s0 // rel[0] : s0 // rel[0] + part.shape[0]] = part.astype(dst.dtype)
            d0 = z0 // rel[0]
            dst[d0 : d0 + pooled.shape[0]] = pooled


@dataclass
class OmeImage:
    """A multiscale image opened for reading: level-0 array plus its voxel size (µm)."""

    path: Path
    array: zarr.Array
    voxel_size: tuple[float, float, float]
    attrs: dict

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)

    def level(self, i: int) -> zarr.Array:
        return zarr.open_group(str(self.path), mode="r")[str(i)]


def open_ome_zarr(path: str | Path) -> OmeImage:
    """Open an OME-Zarr image written by spimflow (or any NGFF 0.4/0.5 3D image)."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such OME-Zarr image")
    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
        ome = attrs.get("ome", attrs)  # NGFF 0.5 nests under "ome"; 0.4 does not
        ms = ome["multiscales"][0]
    except Exception as exc:  # noqa: BLE001 - any failure means not a usable image
        raise InputFileError(f"{path}: not an OME-Zarr image with 'multiscales' metadata ({exc})") from exc
    ds0 = ms["datasets"][0]
    scale = next(t["scale"] for t in ds0["coordinateTransformations"] if t["type"] == "scale")
    arr = group[ds0["path"]]
    if arr.ndim != 3:
        raise InputFileError(f"{path}: expected a 3D (z, y, x) image, found {arr.ndim} dimensions")
    return OmeImage(path, arr, tuple(float(s) for s in scale[-3:]), attrs)


def write_ome_zarr(
    path: str | Path,
    data: np.ndarray,
    voxel_size: Sequence[float],
    chunks: Sequence[int] = DEFAULT_CHUNKS,
    n_levels: int = 4,
    name: str = "image",
    extra_attrs: dict | None = None,
) -> None:
    """Write a whole in-memory array atomically (for small, atlas-resolution images)."""
    with atomic_path(path) as tmp:
        arr = create_ome_zarr(tmp, data.shape, data.dtype, voxel_size, chunks, n_levels, name, extra_attrs)
        arr[...] = data
        build_pyramid(tmp)
