"""Density maps of cells in atlas space (ClearMap's ``voxelize``) and region isolation.

Conventions: arrays are (z, y, x), sizes are micrometres, points are (n, 3) float atlas
voxels (a cell table's ``az, ay, ax``) with voxel centres at integer coordinates.

* Every point is assigned to its nearest voxel with ``floor(p + 0.5)`` (round half *up*),
  the rule of :func:`spimflow.atlas.nearest_voxels` / ``Atlas.region_at``, so a cell lands
  in the voxel whose label gave it its region. Points whose voxel is outside the grid, or
  with a NaN coordinate, are dropped; :func:`count_outside` reports how many.
* Every map is ``float32``. Counts are exact integers (up to 2**24 per voxel); weighted
  sums are accumulated in float64 and rounded once to float32 (box and gaussian maps are
  rounded once per axis pass).
* A cell contributes only inside the grid (nothing is folded back from beyond the edges).

Per-hemisphere maps: pass the subset of points, e.g.
``voxelize(points[cells.hemisphere.to_numpy() == "left"], ...)``.

Algorithms (single-threaded, no Python loop per cell): ``sphere`` sweeps the output one
z plane at a time; every cell within reach adds +w / -w at the two ends of each x-run of
its ellipsoid into a float64 plane buffer that a running sum along x turns into the plane
(work ~ cells x (runs per ellipsoid), memory: the output + one plane). ``rectangle`` and
``gaussian`` are separable: the per-voxel histogram is filtered in place along x, y and z
with small float64 line buffers. ``pixel`` is the histogram.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numba as nb
import numpy as np

from spimflow.atlas.model import nearest_voxels
from spimflow.atlas.ontology import IdTable, Ontology

METHODS = ("sphere", "rectangle", "gaussian", "pixel")
GAUSSIAN_TRUNCATE = 3.0
"""The gaussian kernel is cut at this many sigmas along each axis."""

_TOL = 1e-9  # relative slack: lattice points on a kernel's surface are inside despite rounding
_CHUNK = 1 << 22  # labels per pass in region_mask
_POINT_CHUNK = 1 << 18  # points per pass when finding their voxels
_NJ = dict(cache=True, nogil=True)


# -- public API ------------------------------------------------------------------------------


def voxelize(
    points: np.ndarray,
    shape: Sequence[int],
    voxel_size_um: Sequence[float],
    method: str = "sphere",
    size_um: float | Sequence[float] = 375.0,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Density map of points on a voxel grid (ClearMap's ``voxelize``).

    Parameters
    ----------
    points : (n, 3) array_like of float
        (z, y, x) positions in voxels of the output grid (voxel centres at integers). Each
        point counts in its nearest voxel, ``floor(p + 0.5)``; points outside the grid (or
        NaN) are dropped, see :func:`count_outside`.
    shape : 3 ints
        Output grid shape (z, y, x).
    voxel_size_um : 3 floats
        Voxel size of the grid (z, y, x), µm.
    method : {"sphere", "rectangle", "gaussian", "pixel"}
        ``sphere``: every voxel receives the number (or weight sum) of cells whose voxel
        lies in the ellipsoid of radii ``size_um`` around it: ``sum((d * voxel_size_um /
        size_um) ** 2) <= 1`` with ``d`` the voxel-index offset. ``rectangle``: cells
        within the box ``|d| * voxel_size_um <= size_um`` per axis. ``gaussian``: sum of
        ``w * prod(exp(-(d * voxel_size_um) ** 2 / (2 * size_um ** 2)))``, peak 1 (a single
        cell of weight w gives w in its own voxel), cut at ``|d| * voxel_size_um <= 3 *
        size_um`` per axis (box support). ``pixel``: count per voxel, ``size_um`` ignored.
        Sizes get a relative slack of 1e-9, so a voxel exactly on the surface (e.g. 15
        voxels of 25 µm from a 375 µm sphere's centre) is inside despite float rounding.
    size_um : float or 3 floats
        Sphere radius, rectangle half-width, or gaussian sigma, µm (scalar or (z, y, x));
        must be > 0 (except for ``pixel``).
    weights : (n,) array_like of float, optional
        Finite weight per point: the map holds weighted sums instead of counts.

    Returns
    -------
    numpy.ndarray
        float32 array of ``shape``; exact integers for counts.

    Examples
    --------
    >>> pts = np.array([[2.0, 2.0, 2.4], [9.0, 0.0, 0.0]])   # the second is outside
    >>> m = voxelize(pts, (5, 5, 5), (25.0, 25.0, 25.0), "sphere", 25.0)
    >>> int(m.sum()), m.dtype.name, count_outside(pts, (5, 5, 5))
    (7, 'float32', 1)
    >>> box = voxelize(pts, (5, 5, 5), (25, 25, 25), "rectangle", 25.0)
    >>> float(box.sum()), float(box[1:4, 1:4, 1:4].min())
    (27.0, 1.0)
    """
    shape, vox = _grid(shape, voxel_size_um)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    size = _per_axis(size_um, "size_um") if method != "pixel" else None
    keys, sums = _aggregate(points, shape, weights)
    if method == "sphere":
        return _sphere(keys, sums, shape, _sphere_runs(size, vox))
    out = np.zeros(shape, dtype=np.float32)
    out.reshape(-1)[keys] = sums
    if method == "rectangle":
        _box3(out, *_half_widths(size, vox, 1.0))
    elif method == "gaussian":
        k = [_gauss_half_kernel(s, v) for s, v in zip(size, vox, strict=True)]
        _gauss3(out, *k)
    return out


def count_outside(points: np.ndarray, shape: Sequence[int]) -> int:
    """Number of points :func:`voxelize` drops: nearest voxel outside ``shape``, or NaN.

    Parameters
    ----------
    points : (n, 3) array_like of float
        (z, y, x) positions in voxels.
    shape : 3 ints
        Grid shape.

    Returns
    -------
    int

    Examples
    --------
    >>> count_outside([[0, 0, -0.5], [0, 0, -0.6], [0, 0, 3.49], [0, 0, 3.5]], (1, 1, 4))
    2
    """
    inside = _flat_indices(points, tuple(int(s) for s in shape))[1]
    return int(inside.size - np.count_nonzero(inside))


def region_ids(ontology: Ontology, regions: int | str | Iterable[int | str]) -> np.ndarray:
    """Ids of ``regions`` and all their descendants, sorted.

    Parameters
    ----------
    ontology : spimflow.atlas.Ontology
    regions : int, str, or iterable of them
        Region ids and/or acronyms (exact, case-sensitive).

    Returns
    -------
    numpy.ndarray
        int64 ids.

    Raises
    ------
    ValueError
        For an id or acronym that is not in the ontology (or an ambiguous acronym).

    Examples
    --------
    >>> from spimflow.atlas import Ontology, Region
    >>> onto = Ontology([Region(1, "root", "root", None), Region(2, "A", "a", 1), Region(3, "A1", "a1", 2)])
    >>> region_ids(onto, "A").tolist()
    [2, 3]
    """
    items = [regions] if isinstance(regions, str) or not isinstance(regions, Iterable) else list(regions)
    ids: set[int] = set()
    for item in items:
        ids.update(ontology.descendants(_resolve(ontology, item), include_self=True))
    return np.array(sorted(ids), dtype=np.int64)


def region_mask(annotation: np.ndarray, ontology: Ontology, regions: int | str | Iterable[int | str]) -> np.ndarray:
    """Boolean mask of the voxels labelled with ``regions`` or any of their descendants.

    Parameters
    ----------
    annotation : integer array
        Label volume (any shape).
    ontology : spimflow.atlas.Ontology
    regions : int, str, or iterable of them
        Region ids and/or acronyms; see :func:`region_ids`.

    Returns
    -------
    numpy.ndarray
        bool, shaped like ``annotation``.

    Examples
    --------
    >>> from spimflow.atlas import Ontology, Region
    >>> onto = Ontology([Region(1, "root", "root", None), Region(2, "A", "a", 1), Region(3, "A1", "a1", 2)])
    >>> region_mask(np.array([0, 1, 2, 3]), onto, "A").tolist()
    [False, False, True, True]
    """
    ids = region_ids(ontology, regions)
    table = IdTable(ids, np.ones(ids.size, dtype=bool), dtype=bool)
    labels = np.asarray(annotation)
    flat = labels.reshape(-1)
    mask = np.empty(flat.size, dtype=bool)
    for start in range(0, flat.size, _CHUNK):  # bounded temporaries on whole atlases
        mask[start : start + _CHUNK] = table.apply(flat[start : start + _CHUNK])[1]
    return mask.reshape(labels.shape)


def isolate_regions(
    density: np.ndarray,
    annotation: np.ndarray,
    ontology: Ontology,
    regions: int | str | Iterable[int | str],
    fill: float = 0,
) -> np.ndarray:
    """Copy of ``density`` with every voxel outside ``regions`` (and descendants) set to ``fill``.

    Parameters
    ----------
    density : array
        Map on the annotation's grid.
    annotation : integer array
        Label volume, same shape as ``density``.
    ontology : spimflow.atlas.Ontology
    regions : int, str, or iterable of them
        Region ids and/or acronyms; see :func:`region_ids`.
    fill : scalar
        Value outside the regions (must fit ``density``'s dtype, e.g. NaN needs floats).

    Returns
    -------
    numpy.ndarray
        New array, same dtype as ``density``.

    Examples
    --------
    >>> from spimflow.atlas import Ontology, Region
    >>> onto = Ontology([Region(1, "root", "root", None), Region(2, "A", "a", 1)])
    >>> isolate_regions(np.array([5.0, 6.0, 7.0]), np.array([0, 1, 2]), onto, 2).tolist()
    [0.0, 0.0, 7.0]
    """
    density = np.asarray(density)
    if np.shape(annotation) != density.shape:
        raise ValueError(f"density shape {density.shape} != annotation shape {np.shape(annotation)}")
    out = density.copy()
    out[~region_mask(annotation, ontology, regions)] = fill
    return out


# -- argument handling -----------------------------------------------------------------------


def _grid(shape: Sequence[int], voxel_size_um: Sequence[float]) -> tuple[tuple[int, int, int], np.ndarray]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be 3 positive ints (z, y, x), got {shape}")
    vox = np.asarray(voxel_size_um, dtype=np.float64)
    if vox.shape != (3,) or not np.all(np.isfinite(vox) & (vox > 0)):
        raise ValueError(f"voxel_size_um must be 3 positive numbers (z, y, x), got {voxel_size_um!r}")
    return shape, vox


def _per_axis(value: float | Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    arr = np.full(3, arr) if arr.ndim == 0 else arr
    if arr.shape != (3,) or not np.all(np.isfinite(arr) & (arr > 0)):
        raise ValueError(f"{name} must be > 0 (a number or 3 numbers z, y, x), got {value!r}")
    return arr


def _aggregate(
    points: np.ndarray, shape: tuple[int, int, int], weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the occupied voxels (ascending) and their point counts or float64 weight sums."""
    flat, inside = _flat_indices(points, shape)
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != inside.shape:
            raise ValueError(f"weights must have shape {inside.shape}, got {weights.shape}")
        if not np.all(np.isfinite(weights)):
            raise ValueError("weights must be finite")
    if flat.size == 0:
        return flat, np.empty(0)
    if weights is None:
        flat.sort()  # in place: no extra n-sized arrays
    else:
        order = np.argsort(flat, kind="stable")
        flat, weights = flat[order], weights[inside][order]
        del order
    new = np.empty(flat.size, dtype=bool)
    new[0] = True
    np.not_equal(flat[1:], flat[:-1], out=new[1:])
    first = np.flatnonzero(new)
    del new
    if weights is None:
        sums = np.diff(first, append=flat.size).astype(np.float64)
    else:
        sums = np.add.reduceat(weights, first)
    return flat[first], sums


def _flat_indices(points: np.ndarray, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the nearest voxels of the in-grid points (in input order) and the
    in-grid mask, computed in chunks so the temporaries stay small."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.size == 0:
        pts = pts.reshape(0, 3)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must be an (n, 3) array of (z, y, x) voxels, got shape {pts.shape}")
    flat = np.empty(len(pts), dtype=np.int64)
    inside = np.empty(len(pts), dtype=bool)
    kept = 0
    for start in range(0, len(pts), _POINT_CHUNK):
        stop = start + _POINT_CHUNK
        idx, inside[start:stop] = nearest_voxels(pts[start:stop], shape)
        chunk = np.ravel_multi_index(tuple(idx[inside[start:stop]].T), shape)
        flat[kept : kept + chunk.size] = chunk
        kept += chunk.size
    return flat[:kept], inside


def _resolve(ontology: Ontology, region: int | str) -> int:
    if isinstance(region, str):
        try:
            return ontology.lookup_acronym(region)
        except KeyError as exc:
            raise ValueError(f"region {region!r}: {exc.args[0]}") from None
    if isinstance(region, bool) or not isinstance(region, int | np.integer) or region not in ontology:
        raise ValueError(f"region {region!r} is not a region id or acronym of {ontology.source}")
    return int(region)


# -- kernels' geometry -----------------------------------------------------------------------


def _half_widths(size: np.ndarray, vox: np.ndarray, factor: float) -> tuple[int, int, int]:
    """Largest d per axis with d * vox <= factor * size."""
    h = np.floor(factor * size / vox * (1 + _TOL)).astype(np.int64)
    return int(h[0]), int(h[1]), int(h[2])


def _sphere_runs(size: np.ndarray, vox: np.ndarray) -> np.ndarray:
    """half[dz + rz, dy + ry] = largest |dx| of the ellipsoid on row (dz, dy), -1 if none."""
    rz, ry, _ = _half_widths(size, vox, 1.0)
    a = (np.arange(-rz, rz + 1)[:, None] * vox[0] / size[0]) ** 2
    b = (np.arange(-ry, ry + 1)[None, :] * vox[1] / size[1]) ** 2
    rem = (1 + _TOL) ** 2 - a - b  # distance <= (1 + _TOL) * radius, as in _half_widths
    scale = vox[2] / size[2]
    h = np.floor(np.sqrt(np.maximum(rem, 0.0)) / scale).astype(np.int64)
    h += ((h + 1) * scale) ** 2 <= rem  # settle rounding at the surface with the exact test
    h -= (h * scale) ** 2 > rem
    h[rem < 0] = -1
    return h[(h >= 0).any(axis=1)][:, (h >= 0).any(axis=0)]  # no empty slices at the ends


def _gauss_half_kernel(sigma: float, vox: float) -> np.ndarray:
    """k[j] = exp(-(j vox)^2 / (2 sigma^2)) for j = 0 .. floor(3 sigma / vox)."""
    j = np.arange(int(np.floor(GAUSSIAN_TRUNCATE * sigma / vox * (1 + _TOL))) + 1)
    return np.exp(-((j * vox) ** 2) / (2.0 * sigma**2))


# -- sphere: per-plane difference sweep ------------------------------------------------------


def _sphere(keys, w, shape, half) -> np.ndarray:
    out = np.empty(shape, dtype=np.float32)
    nz, ny, nx = shape
    zstart = np.searchsorted(keys, np.arange(nz + 1) * (ny * nx))
    cz, cy, cx = _unravel32(keys, ny, nx)
    ry = (half.shape[1] - 1) // 2
    valid = half >= 0  # the rows of each dz slice form one interval of dy
    ylo = (np.argmax(valid, axis=1) - ry).astype(np.int64)
    yhi = (half.shape[1] - 1 - np.argmax(valid[:, ::-1], axis=1) - ry).astype(np.int64)
    # float64 running sums are exact for integer sums; otherwise also count the open runs
    exact_zero = not (np.all(w == np.round(w)) and np.abs(w).sum() < 2.0**52)
    diff = np.zeros((ny, nx + 1), dtype=np.float64)
    runs = np.zeros((ny, nx + 1), dtype=np.int32) if exact_zero else None
    _sphere_sweep(cz, cy, cx, w, zstart, half, ylo, yhi, out, diff, runs)
    return out


@nb.njit(**_NJ)
def _unravel32(keys, ny, nx):
    """(z, y, x) int32 arrays of flat indices into a (nz, ny, nx) grid."""
    cz = np.empty(keys.size, dtype=np.int32)
    cy = np.empty(keys.size, dtype=np.int32)
    cx = np.empty(keys.size, dtype=np.int32)
    for i in range(keys.size):
        z, rest = divmod(keys[i], ny * nx)
        cz[i] = z
        cy[i], cx[i] = divmod(rest, nx)
    return cz, cy, cx


@nb.njit(**_NJ)
def _sphere_sweep(cz, cy, cx, w, zstart, half, ylo, yhi, out, diff, runs):
    """For each output plane: +w/-w at both ends of every x-run of every cell in reach,
    then a running sum along x (float64). Unless ``runs`` is None, a count of open runs
    resets the sum to exactly 0 where no cell reaches (no float residue of +w-w). Numba
    compiles the ``runs is None`` case separately, without the counting."""
    nz, ny, nx = out.shape
    rz = (half.shape[0] - 1) // 2
    ry = (half.shape[1] - 1) // 2
    for z in range(nz):
        for c in range(zstart[max(z - rz, 0)], zstart[min(z + rz + 1, nz)]):
            k = z - cz[c] + rz
            row = half[k]
            wc = w[c]
            xc = cx[c]
            yc = cy[c]
            for y in range(max(yc + ylo[k], 0), min(yc + yhi[k] + 1, ny)):
                h = row[y - yc + ry]
                x0 = max(xc - h, 0)
                x1 = min(xc + h + 1, nx)
                diff[y, x0] += wc
                diff[y, x1] -= wc
                if runs is not None:
                    runs[y, x0] += 1
                    runs[y, x1] -= 1
        for y in range(ny):
            if runs is None:
                _close_row(diff[y], out[z, y])
            else:
                _close_row_counted(diff[y], runs[y], out[z, y])


@nb.njit(**_NJ)
def _close_row(d, o):
    """o = cumulative sum of d (float64); d is zeroed for the next plane."""
    acc = 0.0
    for x in range(o.size):
        acc += d[x]
        d[x] = 0.0
        o[x] = acc
    d[o.size] = 0.0


@nb.njit(**_NJ)
def _close_row_counted(d, r, o):
    """As :func:`_close_row`, with the sum reset to exactly 0 where the open-run count r is 0."""
    acc = 0.0
    open_runs = 0
    for x in range(o.size):
        acc += d[x]
        open_runs += r[x]
        d[x] = 0.0
        r[x] = 0
        o[x] = acc if open_runs else 0.0
        if not open_runs:
            acc = 0.0
    d[o.size] = 0.0
    r[o.size] = 0


# -- separable filters, in place -------------------------------------------------------------


@nb.njit(**_NJ)
def _box3(vol, hz, hy, hx):
    """In place: sum over the box |dz| <= hz, |dy| <= hy, |dx| <= hx (zero outside)."""
    nz, ny, nx = vol.shape
    if hx > 0:
        prefix = np.empty(nx + 1)
        for z in range(nz):
            for y in range(ny):
                _box_row(vol[z, y], hx, prefix)
    if hy > 0:
        buf = np.empty((ny + 1, nx))
        for z in range(nz):
            _box_lines(vol[z], hy, buf)
    if hz > 0:
        buf = np.empty((nz + 1, nx))
        for y in range(ny):
            _box_lines(vol[:, y, :], hz, buf)


@nb.njit(**_NJ)
def _box_row(row, h, prefix):
    """In place: row[i] = sum(row[i-h : i+h+1]), by float64 prefix sums."""
    n = row.size
    prefix[0] = 0.0
    for i in range(n):
        prefix[i + 1] = prefix[i] + row[i]
    for i in range(n):
        row[i] = prefix[min(i + h + 1, n)] - prefix[max(i - h, 0)]


@nb.njit(**_NJ)
def _box_lines(a, h, prefix):
    """In place along axis 0 of the 2D view ``a``: a[i] = sum(a[i-h : i+h+1]), by float64 prefix sums."""
    n, m = a.shape
    for x in range(m):
        prefix[0, x] = 0.0
    for i in range(n):
        for x in range(m):
            prefix[i + 1, x] = prefix[i, x] + a[i, x]
    for i in range(n):
        hi = min(i + h + 1, n)
        lo = max(i - h, 0)
        for x in range(m):
            a[i, x] = prefix[hi, x] - prefix[lo, x]


@nb.njit(**_NJ)
def _gauss3(vol, kz, ky, kx):
    """In place: separable correlation with the symmetric kernels k[0], k[1], ... (zero outside)."""
    nz, ny, nx = vol.shape
    if kx.size > 1:
        line = np.zeros(nx + 2 * kx.size)
        for z in range(nz):
            for y in range(ny):
                _scatter_row(vol[z, y], kx, line)
    if ky.size > 1:
        buf = np.empty((ny + 2 * ky.size, nx))
        flags = np.empty(ny + 2 * ky.size, dtype=np.bool_)
        acc = np.empty(nx)
        for z in range(nz):
            _gather_lines(vol[z], ky, buf, flags, acc)
    if kz.size > 1:
        buf = np.empty((nz + 2 * kz.size, nx))
        flags = np.empty(nz + 2 * kz.size, dtype=np.bool_)
        acc = np.empty(nx)
        for y in range(ny):
            _gather_lines(vol[:, y, :], kz, buf, flags, acc)


@nb.njit(**_NJ)
def _scatter_row(row, k, line):
    """Filter one (sparse) row: every nonzero value spreads itself over its 2K+1 neighbours."""
    K = k.size - 1
    for x in range(row.size):
        v = row[x]
        if v != 0.0:
            for j in range(-K, K + 1):
                line[x + K + j] += v * k[abs(j)]
    for x in range(row.size):
        row[x] = line[x + K]
    for x in range(line.size):
        line[x] = 0.0


@nb.njit(**_NJ)
def _gather_lines(a, k, buf, flags, acc):
    """Filter along axis 0 of the 2D view ``a`` (rows contiguous); all-zero rows are skipped."""
    n, m = a.shape
    K = k.size - 1
    for i in range(buf.shape[0]):
        flags[i] = False
        inside = K <= i < K + n
        for x in range(m):
            v = a[i - K, x] if inside else 0.0
            buf[i, x] = v
            if v != 0.0:
                flags[i] = True
    for i in range(n):
        c = i + K
        k0 = k[0] if flags[c] else 0.0
        for x in range(m):
            acc[x] = k0 * buf[c, x]
        for j in range(1, K + 1):
            if flags[c - j] or flags[c + j]:
                kj = k[j]
                lo = buf[c - j]
                up = buf[c + j]
                for x in range(m):
                    acc[x] += kj * (lo[x] + up[x])
        for x in range(m):
            a[i, x] = acc[x]
