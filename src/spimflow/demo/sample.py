"""The synthetic demo brain: autofluorescence and signal planes derived from the demo atlas.

Every voxel of the sample is pulled from the atlas through the true transform
(:mod:`spimflow.demo.truth`), one raw plane at a time, so memory stays bounded by a
plane. Cells are placed in sample space with densities set per atlas region.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from spimflow.demo.atlas import ATLAS_ORIENTATION, ATLAS_VOXEL_UM, DemoAtlas
from spimflow.demo.truth import oriented_um_to_atlas_um, random_transform
from spimflow.geometry import ResampleGrid
from spimflow.orientation import Orientation

SAMPLE_ORIENTATION = "ipl"
CAMERA_OFFSET = 100.0
READ_NOISE = 6.0


@dataclass(frozen=True)
class Preset:
    voxel_size_um: tuple[float, float, float]  # raw sample (z, y, x)
    cell_sigma_um: tuple[float, float]  # range of blob sigma
    amplitude: tuple[float, float]  # range of peak amplitude above background
    min_distance_um: float
    density_scale: float  # multiplies the atlas' per-region densities


PRESETS = {
    "small": Preset((10.0, 5.0, 5.0), (4.5, 6.0), (800.0, 3000.0), 18.0, 1.0),
    "large": Preset((5.0, 2.5, 2.5), (4.5, 6.0), (800.0, 3000.0), 18.0, 2.0),
}


def raw_plane_points(grid: ResampleGrid, z: int, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
    """Raw voxel coordinates (n, 3) of the voxels of raw plane z (optionally a window), row-major (y, x)."""
    _, ny, nx = grid.raw_shape
    yy, xx = np.meshgrid(np.arange(ny)[rows], np.arange(nx)[cols], indexing="ij")
    return np.stack([np.full(yy.size, z, float), yy.ravel(), xx.ravel()], axis=1)


def raw_to_oriented_um(grid: ResampleGrid, raw: np.ndarray) -> np.ndarray:
    """Raw voxels → oriented sample position in µm, through the pipeline's own resampling grid."""
    return grid.sample_to_resampled(raw) * np.asarray(grid.target_voxel_size)


def sample_geometry(atlas_shape, preset: Preset) -> ResampleGrid:
    """The sample field of view (the atlas box, seen in the sample's own axes and voxels) as
    the resampling grid the workflow will use for it."""
    orient = Orientation.from_codes(SAMPLE_ORIENTATION, ATLAS_ORIENTATION)
    oriented_vs = orient.oriented_values(preset.voxel_size_um)
    extent = [(n - 1) * ATLAS_VOXEL_UM for n in atlas_shape]
    oriented_shape = [int(round(e / v)) + 1 for e, v in zip(extent, oriented_vs)]
    raw_shape = [0, 0, 0]
    for i, j in enumerate(orient.perm):
        raw_shape[j] = oriented_shape[i]
    return ResampleGrid(tuple(raw_shape), tuple(preset.voxel_size_um), orient, (ATLAS_VOXEL_UM,) * 3)


def make_transform(geom: ResampleGrid, atlas_shape, rng: np.random.Generator) -> dict:
    c_sample = [(n - 1) * v / 2 for n, v in zip(geom.oriented_shape, geom.oriented_voxel_size)]
    c_atlas = [(n - 1) * ATLAS_VOXEL_UM / 2 for n in atlas_shape]
    return random_transform(rng, c_sample, c_atlas)


def pull_atlas(volume: np.ndarray, atlas_vox: np.ndarray, order: int) -> np.ndarray:
    """Sample an atlas volume at (n, 3) atlas voxel coordinates (0 outside)."""
    return ndimage.map_coordinates(volume, atlas_vox.T, order=order, mode="constant", cval=0, prefilter=False)


def illumination(geom: ResampleGrid) -> np.ndarray:
    """Smooth in-plane flat-field (y, x): ±20 % across raw x and a 10 % vignette in y."""
    _, ny, nx = geom.raw_shape
    gx = 1.0 + 0.2 * np.linspace(-1, 1, nx)
    gy = 1.0 - 0.1 * np.linspace(-1, 1, ny) ** 2
    return gy[:, None] * gx[None, :]


def place_cells(
    geom: ResampleGrid, atlas: DemoAtlas, tf: dict, preset: Preset, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Cells uniformly proposed in the sample, kept with probability density(region)/max,
    never closer than ``min_distance_um``; returns raw positions, atlas positions, regions."""
    dens = {k: v * preset.density_scale for k, v in atlas.leaf_density_per_mm3.items()}
    max_density = max(dens.values())
    lut = np.zeros(int(atlas.annotation.max()) + 1)
    for lid, d in dens.items():
        lut[lid] = d / max_density
    extent_um = np.asarray(geom.raw_shape, float) * np.asarray(geom.raw_voxel_size)
    n_prop = rng.poisson(max_density * np.prod(extent_um) * 1e-9)
    raw = rng.uniform(0, 1, (n_prop, 3)) * (np.asarray(geom.raw_shape) - 1)
    atlas_vox = oriented_um_to_atlas_um(raw_to_oriented_um(geom, raw), tf) / ATLAS_VOXEL_UM
    region = pull_atlas(atlas.annotation, atlas_vox, order=0).astype(np.int64)
    keep = rng.uniform(size=n_prop) < lut[region]
    raw, atlas_vox, region = raw[keep], atlas_vox[keep], region[keep]
    accepted = _thin_by_distance(raw * np.asarray(geom.raw_voxel_size), preset.min_distance_um)
    raw, atlas_vox, region = raw[accepted], atlas_vox[accepted], region[accepted]
    n = len(raw)
    return {
        "raw": raw,
        "atlas": atlas_vox,
        "region": region,
        "hemisphere": pull_atlas(atlas.hemispheres, atlas_vox, order=0).astype(np.int64),
        "sigma_um": rng.uniform(*preset.cell_sigma_um, n),
        "amplitude": rng.uniform(*preset.amplitude, n),
    }


def _thin_by_distance(points_um: np.ndarray, min_dist: float) -> np.ndarray:
    """Greedy in order: keep a point unless a kept one is closer than min_dist (grid hash)."""
    kept: list[int] = []
    grid: dict[tuple[int, int, int], list[int]] = {}
    cells = np.floor(points_um / min_dist).astype(int)
    for i, (p, c) in enumerate(zip(points_um, cells)):
        near = False
        for dz in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    for j in grid.get((c[0] + dz, c[1] + dy, c[2] + dx), ()):
                        if np.sum((points_um[j] - p) ** 2) < min_dist**2:
                            near = True
                            break
                    if near:
                        break
                if near:
                    break
            if near:
                break
        if not near:
            kept.append(i)
            grid.setdefault(tuple(c), []).append(i)
    return np.asarray(kept, dtype=int)


def render_cells_plane(
    z: int, cells: dict[str, np.ndarray], geom: ResampleGrid, rows: slice = slice(None), cols: slice = slice(None)
) -> np.ndarray:
    """Sum of the Gaussian blobs of all cells on raw plane z (float, (y, x)), optionally a window of it."""
    _, ny, nx = geom.raw_shape
    ys, xs = np.arange(ny)[rows], np.arange(nx)[cols]
    vs = np.asarray(geom.raw_voxel_size)
    out = np.zeros((len(ys), len(xs)))
    if not len(ys) or not len(xs):
        return out
    sig_vox = cells["sigma_um"][:, None] / vs[None, :]
    near = np.nonzero(np.abs(cells["raw"][:, 0] - z) <= 3.5 * sig_vox[:, 0])[0]
    for i in near:
        cz, cy, cx = cells["raw"][i]
        sz, sy, sx = sig_vox[i]
        y0, y1 = max(ys[0], int(cy - 3.5 * sy)), min(ys[-1] + 1, int(cy + 3.5 * sy) + 2)
        x0, x1 = max(xs[0], int(cx - 3.5 * sx)), min(xs[-1] + 1, int(cx + 3.5 * sx) + 2)
        if y1 <= y0 or x1 <= x0:
            continue
        gy = np.exp(-0.5 * ((np.arange(y0, y1) - cy) / sy) ** 2)
        gx = np.exp(-0.5 * ((np.arange(x0, x1) - cx) / sx) ** 2)
        gz = np.exp(-0.5 * ((z - cz) / sz) ** 2)
        oy, ox = y0 - ys[0], x0 - xs[0]
        out[oy : oy + y1 - y0, ox : ox + x1 - x0] += cells["amplitude"][i] * gz * gy[:, None] * gx[None, :]
    return out


def render_planes(
    z: int,
    atlas: DemoAtlas,
    tf: dict,
    geom: ResampleGrid,
    cells: dict,
    flat: np.ndarray,
    seed: int,
    rows: slice = slice(None),
    cols: slice = slice(None),
) -> tuple[np.ndarray, np.ndarray]:
    """(autofluorescence, signal) uint16 planes for raw plane z: atlas reference pulled
    through T, the flat-field, cell blobs, photon (Poisson) and read noise. ``rows`` and
    ``cols`` (unit-step slices) render a window only (same image, other noise draws)."""
    rng = np.random.default_rng([seed, z, 7])
    _, ny, nx = geom.raw_shape
    wy, wx = len(np.arange(ny)[rows]), len(np.arange(nx)[cols])
    points = raw_plane_points(geom, z, rows, cols)
    atlas_vox = oriented_um_to_atlas_um(raw_to_oriented_um(geom, points), tf) / ATLAS_VOXEL_UM
    tissue = pull_atlas(atlas.reference.astype(np.float32), atlas_vox, order=1).reshape(wy, wx)
    window = flat[rows, cols]
    auto = tissue * window
    signal = (0.1 * tissue + render_cells_plane(z, cells, geom, rows, cols)) * window
    planes = []
    for image in (auto, signal):
        noisy = rng.poisson(np.maximum(image, 0)) + CAMERA_OFFSET + rng.normal(0, READ_NOISE, image.shape)
        planes.append(np.clip(np.rint(noisy), 0, 65535).astype(np.uint16))
    return planes[0], planes[1]


def annotation_in_resampled(atlas: DemoAtlas, tf: dict, geom: ResampleGrid) -> np.ndarray:
    """The true atlas annotation pulled into resampled sample space (nearest neighbour)."""
    shape = geom.shape
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    atlas_vox = oriented_um_to_atlas_um(grid * ATLAS_VOXEL_UM, tf) / ATLAS_VOXEL_UM
    return pull_atlas(atlas.annotation, atlas_vox, order=0).reshape(shape).astype(np.uint32)
