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
    """Number of planes on each side of a QC plane in its max projection (about half a cell radius).

    Parameters
    ----------
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    radius_um : float, optional
        Typical cell radius, µm.

    Returns
    -------
    int
        Planes, >= 0.

    Examples
    --------
    >>> slab_halfwidth((4.0, 2.0, 2.0), radius_um=6.0)
    1
    """
    return max(0, int(round(radius_um / 2 / voxel_size[0])))


def circle_reach(voxel_size: Sequence[float], radius_um: float = 6.0) -> int:
    """Number of planes from the QC plane (beyond the projected slab) at which a cell centre still shows.

    Parameters
    ----------
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    radius_um : float, optional
        Typical cell radius, µm.

    Returns
    -------
    int
        Planes, >= 1.

    Examples
    --------
    >>> circle_reach((4.0, 2.0, 2.0), radius_um=6.0)
    2
    """
    return max(1, int(np.ceil(radius_um / voxel_size[0])))


def qc_planes(cells: pd.DataFrame, nz: int, n: int = 4, halfwidth: int = 0) -> list[int]:
    """Choose up to ``n`` distinct z planes for QC: the ones with most cells within ``halfwidth``, spread over z.

    The z range is cut into ``n`` equal parts and the busiest plane of each is taken.

    Parameters
    ----------
    cells : pandas.DataFrame
        Cell table with a ``z`` column (voxels).
    nz : int
        Number of planes in the volume.
    n : int, optional
        Number of planes wanted.
    halfwidth : int, optional
        Cells within this many planes count for a plane.

    Returns
    -------
    list of int
        Sorted plane indices; evenly spaced planes when there are no cells.

    Examples
    --------
    >>> import pandas as pd
    >>> cells = pd.DataFrame({"z": [3.0, 3.0, 8.0, 12.0]})
    >>> qc_planes(cells, nz=16, n=2)
    [3, 8]
    >>> qc_planes(cells.iloc[:0], nz=16, n=3)
    [4, 8, 11]
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
    """Contrast-stretch an image to uint8 grey levels between two percentiles.

    Parameters
    ----------
    image : array_like
        Image of any shape.
    low, high : float, optional
        Percentiles mapped to 0 and 255.

    Returns
    -------
    ndarray of uint8
        Same shape as ``image``.

    Examples
    --------
    >>> stretch(np.array([[0.0, 50.0, 100.0]]), low=0, high=100).tolist()
    [[0, 127, 255]]
    """
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
    """Draw one QC plane (the max over its slab) with circles at the cells near it.

    Pixels are square in µm (y and x scaled by their voxel sizes); the image is shrunk
    so its longer side is at most ``max_side`` pixels. Circle radius: the cell's
    equivalent-sphere radius (from ``volume_um3``), at least 4 pixels.

    Parameters
    ----------
    slab_max : ndarray
        Max projection (y, x) of the slab around plane ``z``.
    z : int
        Plane index (written on the image).
    kept, removed : pandas.DataFrame
        Cells kept / removed by the threshold (columns ``z``, ``y``, ``x``, voxels, and
        optionally ``volume_um3``); those with centre within ``halfwidth`` planes of ``z``
        are drawn, kept in :data:`KEPT_RGB`, removed in :data:`REMOVED_RGB`.
    halfwidth : int
        Planes on each side of ``z``.
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    max_side : int, optional
        Longest side of the image, pixels.

    Returns
    -------
    PIL.Image.Image
        RGB image.

    Examples
    --------
    >>> import pandas as pd
    >>> cells = pd.DataFrame({"z": [3.0], "y": [5.0], "x": [10.0]})
    >>> img = render_plane(np.zeros((10, 20)), 3, cells, cells.iloc[:0], 1, (4.0, 2.0, 2.0))
    >>> img.size, img.mode
    ((40, 20), 'RGB')
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
    """Paste images side by side, ``columns`` per row, on black.

    Parameters
    ----------
    images : list of PIL.Image.Image
        Images; each cell of the grid is as large as the largest image.
    columns : int, optional
        Images per row.
    pad : int, optional
        Black margin between images, pixels.

    Returns
    -------
    PIL.Image.Image
        RGB image (a black 64 × 64 image when ``images`` is empty).

    Examples
    --------
    >>> from PIL import Image
    >>> montage([Image.new("RGB", (40, 20))] * 3, columns=2, pad=4).size
    (92, 52)
    """
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
    """Equivalent-sphere radius of each cell, in voxels per axis.

    Parameters
    ----------
    cells : pandas.DataFrame
        Cell table; ``volume_um3`` (µm³) gives the radius (0 when absent or NaN).
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.

    Returns
    -------
    (n, 3) ndarray of float
        Radius (z, y, x), voxels; at least half the largest voxel size.

    Examples
    --------
    >>> import pandas as pd
    >>> cells = pd.DataFrame({"volume_um3": [4 / 3 * np.pi * 8.0]})  # radius 2 µm
    >>> sphere_radii_vox(cells, (4.0, 2.0, 2.0)).tolist()
    [[0.5, 1.0, 1.0]]
    """
    vol = cells["volume_um3"].to_numpy(dtype=float) if "volume_um3" in cells else np.zeros(len(cells))
    r_um = np.cbrt(3 * np.nan_to_num(vol) / (4 * np.pi))
    r_um = np.maximum(r_um, 0.5 * max(voxel_size))
    return r_um[:, None] / np.asarray(voxel_size, float)[None, :]


def sphere_tiles(
    cells: pd.DataFrame, shape: Sequence[int], voxel_size: Sequence[float], tile: Sequence[int]
) -> Iterator[tuple[tuple[slice, slice, slice], np.ndarray]]:
    """Paint one sphere per cell, tile by tile, for the tiles a cell sphere touches.

    Memory is bounded by a tile; tiles without cells are skipped.

    Parameters
    ----------
    cells : pandas.DataFrame
        Cell table with ``z``, ``y``, ``x`` (voxels) and ``volume_um3`` (see
        :func:`sphere_radii_vox`).
    shape : sequence of int
        Volume shape (z, y, x), voxels.
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    tile : sequence of int
        Tile size (z, y, x), voxels.

    Yields
    ------
    region : tuple of slice
        The tile's (z, y, x) slices of the volume.
    labels : ndarray of uint32
        Labels in the tile: cell i (row i of ``cells``) is i + 1, 0 elsewhere; where
        spheres overlap, the later row wins.

    Examples
    --------
    >>> import pandas as pd
    >>> cells = pd.DataFrame({"z": [5.0], "y": [5.0], "x": [5.0], "volume_um3": [4 / 3 * np.pi * 8.0]})
    >>> tiles = list(sphere_tiles(cells, shape=(10, 10, 10), voxel_size=(4.0, 2.0, 2.0), tile=(8, 8, 8)))
    >>> [(region, int((labels == 1).sum())) for region, labels in tiles]
    [((slice(0, 8, None), slice(0, 8, None), slice(0, 8, None)), 5)]
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
