"""Quality control of detection, like ClearMap's ``cells_check.tif``.

- :func:`qc_planes` / :func:`render_plane`: a few z planes of the signal (max over a
  thin slab, contrast-stretched) with a circle at every cell near the plane
  (kept cells in one colour, cells removed by the threshold in another);
- :func:`sphere_tiles`: a label image with one sphere per cell (label = row + 1 of
  ``cells.parquet``), produced tile by tile so memory is bounded by a tile and tiles
  without cells are never written.

Pure numpy + Pillow (a scikit-image dependency).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

KEPT_RGB = (255, 60, 60)
REMOVED_RGB = (60, 160, 255)


def slab_halfwidth(voxel_size: Sequence[float], radius_um: float = 6.0) -> int:
    """Planes on each side of a QC plane in its max projection (about half a cell radius)."""
    return max(0, int(round(radius_um / 2 / voxel_size[0])))


def circle_reach(voxel_size: Sequence[float], radius_um: float = 6.0) -> int:
    """Planes from the QC plane (beyond the projected slab) at which a cell centre still shows."""
    return max(1, int(np.ceil(radius_um / voxel_size[0])))


def qc_planes(cells: pd.DataFrame, nz: int, n: int = 4, halfwidth: int = 0) -> list[int]:
    """Up to ``n`` distinct z planes: the ones with most cells within ``halfwidth``, spread over z.

    With no cells, evenly spaced planes.
    """
    if nz <= 0:
        return []
    n = min(n, nz)
    if not len(cells):
        return sorted({int(round(v)) for v in np.linspace(0, nz - 1, n + 2)[1:-1]}) or [nz // 2]
    counts = np.bincount(np.clip(np.rint(cells["z"].to_numpy()).astype(int), 0, nz - 1), minlength=nz)
    k = 2 * halfwidth + 1
    near = np.convolve(counts, np.ones(k), mode="same")
    # one plane per equal-width z range, the busiest within it
    edges = np.linspace(0, nz, n + 1).astype(int)
    planes = [int(a + np.argmax(near[a:b])) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    return sorted(set(planes))


def stretch(image: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """uint8 grey levels between two percentiles."""
    image = np.asarray(image, np.float64)
    lo, hi = np.percentile(image, [low, high]) if image.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    return (np.clip((image - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def render_plane(
    slab_max: np.ndarray,
    z: int,
    kept: pd.DataFrame,
    removed: pd.DataFrame,
    halfwidth: int,
    voxel_size: Sequence[float],
    max_side: int = 900,
):
    """RGB Pillow image of one plane (the max over its slab) with circles at the cells near it
    (centre within ``halfwidth`` planes of ``z``).

    Pixels are square in µm (y and x scaled by their voxel sizes); the image is shrunk
    so its longer side is at most ``max_side`` pixels. Circle radius: the cell's
    equivalent-sphere radius (from volume_um3), at least 4 pixels.
    """
    from PIL import Image, ImageDraw

    ny, nx = slab_max.shape
    scale_y = voxel_size[1]
    scale_x = voxel_size[2]
    um_h, um_w = ny * scale_y, nx * scale_x
    px_per_um = min(max_side / max(um_h, um_w), 1.0 / min(scale_y, scale_x) * 2)
    h, w = max(1, int(round(um_h * px_per_um))), max(1, int(round(um_w * px_per_um)))
    img = Image.fromarray(stretch(slab_max)).resize((w, h), Image.BILINEAR).convert("RGB")
    draw = ImageDraw.Draw(img)
    for table, colour in ((removed, REMOVED_RGB), (kept, KEPT_RGB)):
        near = table[np.abs(table["z"].to_numpy() - z) <= halfwidth + 0.5] if len(table) else table
        for _, c in near.iterrows():
            r_um = (3 * float(c.get("volume_um3", 0.0) or 0.0) / (4 * np.pi)) ** (1 / 3)
            r = max(4.0, r_um * px_per_um)
            cy, cx = (c["y"] + 0.5) * scale_y * px_per_um, (c["x"] + 0.5) * scale_x * px_per_um
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=1)
    draw.text((4, 2), f"z = {z}", fill=(255, 255, 0))
    return img


def montage(images: list, columns: int = 2, pad: int = 4):
    """Images side by side, ``columns`` per row, on black."""
    from PIL import Image

    if not images:
        return Image.new("RGB", (64, 64))
    rows = -(-len(images) // columns)
    w = max(i.width for i in images)
    h = max(i.height for i in images)
    out = Image.new("RGB", (columns * w + (columns + 1) * pad, rows * h + (rows + 1) * pad))
    for k, im in enumerate(images):
        r, c = divmod(k, columns)
        out.paste(im, (pad + c * (w + pad), pad + r * (h + pad)))
    return out


def sphere_radii_vox(cells: pd.DataFrame, voxel_size: Sequence[float]) -> np.ndarray:
    """Per cell and axis, the equivalent-sphere radius (from volume_um3; at least half a voxel) in voxels."""
    vol = cells["volume_um3"].to_numpy(dtype=float) if "volume_um3" in cells else np.zeros(len(cells))
    r_um = np.cbrt(3 * np.nan_to_num(vol) / (4 * np.pi))
    r_um = np.maximum(r_um, 0.5 * max(voxel_size))
    return r_um[:, None] / np.asarray(voxel_size, float)[None, :]


def sphere_tiles(
    cells: pd.DataFrame, shape: Sequence[int], voxel_size: Sequence[float], tile: Sequence[int]
) -> Iterator[tuple[tuple[slice, slice, slice], np.ndarray]]:
    """(region, uint32 labels) for every tile of the grid ``tile`` that a cell sphere touches.

    Label of cell i (row i of ``cells``) is i + 1; where spheres overlap, the later row wins.
    """
    if not len(cells):
        return
    shape = np.asarray(shape, int)
    tile = np.asarray(tile, int)
    centre = cells[["z", "y", "x"]].to_numpy(dtype=float)
    rad = sphere_radii_vox(cells, voxel_size)
    lo = np.clip(np.floor(centre - rad).astype(int), 0, shape - 1)
    hi = np.clip(np.ceil(centre + rad).astype(int), 0, shape - 1)
    by_tile: dict[tuple[int, int, int], list[int]] = {}
    for i in range(len(cells)):
        t0 = lo[i] // tile
        t1 = hi[i] // tile
        for a in range(t0[0], t1[0] + 1):
            for b in range(t0[1], t1[1] + 1):
                for c in range(t0[2], t1[2] + 1):
                    by_tile.setdefault((a, b, c), []).append(i)
    for key in sorted(by_tile):
        start = np.asarray(key) * tile
        stop = np.minimum(start + tile, shape)
        labels = np.zeros(tuple(stop - start), np.uint32)
        for i in by_tile[key]:
            a = np.maximum(lo[i], start)
            b = np.minimum(hi[i] + 1, stop)
            if np.any(b <= a):
                continue
            axes = [((np.arange(a[d], b[d]) - centre[i, d]) / rad[i, d]) ** 2 for d in range(3)]
            inside = axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :] <= 1.0
            sub = labels[
                a[0] - start[0] : b[0] - start[0], a[1] - start[1] : b[1] - start[1], a[2] - start[2] : b[2] - start[2]
            ]
            sub[inside] = i + 1
        yield tuple(slice(int(s), int(e)) for s, e in zip(start, stop)), labels
