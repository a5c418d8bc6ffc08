"""Resample a channel to the atlas voxel size and orientation, streaming plane by plane.

The coordinate chain (see ``docs/registration.md``) is fixed:

* raw sample voxel ``s`` (z, y, x of the sample's own axes)
* → oriented voxel ``o = orientation.apply_to_points(s, raw_shape)``
* → physical ``p = o * oriented_voxel_size`` (µm from the centre of voxel 0)
* → resampled voxel ``r = p / atlas_voxel_size``.

Voxel centres sit at integer indices, so resampled voxel ``r`` sits exactly where
raw voxel ``s(r)`` sits. The image resampling evaluates the (optionally Gaussian
pre-filtered) raw image at exactly those positions with linear (or nearest)
interpolation, and :meth:`ResampleGrid.sample_to_resampled` moves points with the
same mapping, so images and points never disagree.

Because the mapping is a per-axis scale plus a permutation and flips, the
resampling is separable: each raw plane is filtered and interpolated in-plane to
the (small) target grid, then the reduced planes are filtered and interpolated
along the raw plane axis. Only the raw planes needed for a chunk of output planes
are read, so memory scales with ``chunk_planes`` and the plane size, never with the
raw volume.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import ndimage

from spimflow.geometry import ResampleGrid
from spimflow.params.resample import ResampleParams

TRUNCATE = 4.0  # Gaussian support in sigmas (scipy's default)


# -- separable 1-D building blocks ------------------------------------------------------


def gaussian_radius(sigma: float) -> int:
    """Half-width of scipy's truncated Gaussian kernel (0 when not filtering).

    Parameters
    ----------
    sigma : float
        Sigma, voxels; <= 0 means no filtering.

    Returns
    -------
    int
        Half-width, voxels.

    Examples
    --------
    >>> gaussian_radius(1.5), gaussian_radius(0.0)
    (6, 0)
    """
    return int(TRUNCATE * sigma + 0.5) if sigma > 0 else 0


def smooth_axis(a: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """Gaussian-filter along one axis (edges: nearest value); a no-op for sigma 0.

    Parameters
    ----------
    a : ndarray
        Array to filter.
    sigma : float
        Sigma, voxels.
    axis : int
        Axis to filter.

    Returns
    -------
    ndarray
        Filtered array (``a`` itself when sigma <= 0).

    Examples
    --------
    >>> smooth_axis(np.array([0.0, 0.0, 1.0, 0.0, 0.0]), 1.0, axis=0).round(3).tolist()
    [0.054, 0.242, 0.399, 0.242, 0.054]
    """
    if sigma <= 0 or a.shape[axis] == 0:
        return a
    return ndimage.gaussian_filter1d(a, sigma, axis=axis, mode="nearest", truncate=TRUNCATE)


def interp_axis(a: np.ndarray, coords: np.ndarray, axis: int, order: str = "linear", offset: int = 0) -> np.ndarray:
    """Evaluate ``a`` along one axis at fractional positions (voxel centres at integers).

    Positions are clamped to the data.

    Parameters
    ----------
    a : ndarray
        Array to sample.
    coords : ndarray of float
        Positions along ``axis``, raw voxel indices.
    axis : int
        Axis to sample.
    order : {'linear', 'nearest'}, optional
        Interpolation.
    offset : int, optional
        Raw index of ``a``'s first element along ``axis``.

    Returns
    -------
    ndarray
        ``a`` with ``axis`` replaced by ``len(coords)`` samples.

    Examples
    --------
    >>> a = np.array([0.0, 1.0, 2.0, 3.0])
    >>> interp_axis(a, np.array([0.5, 2.25, 5.0]), axis=0).tolist()
    [0.5, 2.25, 3.0]
    >>> interp_axis(a, np.array([0.4, 2.6]), axis=0, order="nearest").tolist()
    [0.0, 3.0]
    """
    n = a.shape[axis]
    c = np.asarray(coords, np.float64) - offset
    if order == "nearest" or n == 1:
        idx = np.clip(np.floor(c + 0.5).astype(np.intp), 0, n - 1)
        return np.take(a, idx, axis=axis)
    c = np.clip(c, 0.0, n - 1.0)
    i0 = np.minimum(np.floor(c).astype(np.intp), n - 2)
    w = (c - i0).astype(np.float32)
    shape = [1] * a.ndim
    shape[axis] = len(c)
    w = w.reshape(shape)
    return np.take(a, i0, axis=axis) * (1 - w) + np.take(a, i0 + 1, axis=axis) * w


def axis_operator(n: int, coords: np.ndarray, sigma: float, order: str = "linear") -> np.ndarray:
    """Build the matrix of "Gaussian filter (edges: nearest), then interpolate at ``coords``" along one axis.

    ``W @ a`` equals ``interp_axis(smooth_axis(a, sigma), coords)`` (scipy's truncated,
    normalised kernel), but costs only m·n instead of filtering every row.

    Parameters
    ----------
    n : int
        Length of the axis, voxels.
    coords : ndarray of float
        The m positions to sample, voxel indices.
    sigma : float
        Gaussian sigma, voxels (0: no filtering).
    order : {'linear', 'nearest'}, optional
        Interpolation.

    Returns
    -------
    (m, n) ndarray of float32

    Examples
    --------
    >>> axis_operator(4, np.array([0.5, 2.25]), sigma=0.0).tolist()
    [[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.75, 0.25]]
    >>> a = np.array([0.0, 0.0, 1.0, 0.0, 0.0])
    >>> W = axis_operator(5, np.array([2.0]), sigma=1.0)
    >>> np.allclose(W @ a, interp_axis(smooth_axis(a, 1.0, 0), np.array([2.0]), 0))
    True
    """
    c = np.clip(np.asarray(coords, np.float64), 0.0, n - 1.0)
    m = len(c)
    if order == "nearest" or n == 1:
        rows = [(np.clip(np.floor(c + 0.5).astype(np.intp), 0, n - 1), np.ones(m))]
    else:
        i0 = np.minimum(np.floor(c).astype(np.intp), n - 2)
        w = c - i0
        rows = [(i0, 1.0 - w), (i0 + 1, w)]
    r = gaussian_radius(sigma)
    offsets = np.arange(-r, r + 1)
    kernel = np.exp(-0.5 * offsets**2 / sigma**2) if r else np.ones(1)
    kernel /= kernel.sum()
    W = np.zeros((m, n), np.float64)
    out_idx = np.repeat(np.arange(m), len(offsets))
    for centre, weight in rows:
        cols = np.clip(centre[:, None] + offsets[None, :], 0, n - 1).ravel()
        np.add.at(W, (out_idx, cols), (weight[:, None] * kernel[None, :]).ravel())
    return W.astype(np.float32)


def _in_plane_operators(grid: ResampleGrid, params: ResampleParams) -> tuple[np.ndarray, np.ndarray]:
    sig = grid.antialias_sigmas() if params.antialias else (0.0, 0.0, 0.0)
    return tuple(
        axis_operator(grid.raw_shape[a], grid.sample_coordinates(a), sig[a], params.interpolation) for a in (1, 2)
    )


def _reduce_planes(planes: np.ndarray, ops: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Raw planes (k, Y, X) → filtered and interpolated in-plane to (k, m_y, m_x), float32."""
    wy, wx = ops
    a = planes.astype(np.float32, copy=False)
    return np.matmul(np.matmul(wy, a), wx.T)


# -- streaming resampling ---------------------------------------------------------------


def plane_range(coords: np.ndarray, sigma: float, n: int) -> tuple[int, int]:
    """Find the raw planes [lo, hi) whose values determine the filtered and interpolated values at ``coords``.

    Parameters
    ----------
    coords : ndarray of float
        Positions along the plane axis, raw voxel indices.
    sigma : float
        Gaussian sigma along that axis, voxels.
    n : int
        Number of raw planes.

    Returns
    -------
    (int, int)
        Half-open plane range, clipped to [0, n).

    Examples
    --------
    >>> plane_range(np.array([10.0, 12.5]), sigma=1.0, n=100)
    (5, 19)
    """
    r = gaussian_radius(sigma)
    lo = int(np.floor(coords.min())) - r - 1
    hi = int(np.floor(coords.max())) + r + 3
    return max(lo, 0), min(hi, n)


def iter_resampled_slabs(
    raw, grid: ResampleGrid, params: ResampleParams, read_planes: int = 16
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Resample a raw image chunk by chunk of output planes.

    Reduced planes are cached across chunks so each raw plane is read and filtered once.

    Parameters
    ----------
    raw : array_like
        Raw image (z, y, x), anything sliceable as ``raw[z0:z1]`` (zarr array, numpy array).
    grid : ResampleGrid
        Raw and resampled grids.
    params : ResampleParams
        Resampling parameters (antialias, interpolation, ``chunk_planes``).
    read_planes : int, optional
        Raw planes read at a time.

    Yields
    ------
    q : ndarray of int
        Resampled indices along the axis that raw plane axis (sample axis 0) becomes.
    slab : ndarray of float32
        Resampled values in sample-axis order, shape (len(q), m_y, m_x).

    Raises
    ------
    ValueError
        If ``raw``'s shape differs from ``grid.raw_shape``.

    Examples
    --------
    >>> from spimflow.geometry import ResampleGrid
    >>> from spimflow.params.resample import ResampleParams
    >>> grid = ResampleGrid.for_channel((8, 8, 8), (1.0, 1.0, 1.0), "asr", (2.0, 2.0, 2.0), "asr")
    >>> raw = np.zeros((8, 8, 8), np.float32)
    >>> [(q.tolist(), slab.shape) for q, slab in iter_resampled_slabs(raw, grid, ResampleParams(chunk_planes=2))]
    [([0, 1], (2, 4, 4)), ([2, 3], (2, 4, 4))]
    """
    if tuple(raw.shape) != tuple(grid.raw_shape):
        raise ValueError(f"raw image shape {tuple(raw.shape)} differs from the grid's {grid.raw_shape}")
    n0 = grid.raw_shape[0]
    sigma0 = grid.antialias_sigmas()[0] if params.antialias else 0.0
    c0 = grid.sample_coordinates(0)
    ops = _in_plane_operators(grid, params)
    order = np.argsort(c0, kind="stable")  # process raw planes front to back
    cache_lo, cache = 0, np.zeros((0, *grid.shape_in_sample_axes[1:]), np.float32)
    for k in range(0, len(order), params.chunk_planes):
        q = order[k : k + params.chunk_planes]
        lo, hi = plane_range(c0[q], sigma0, n0)  # monotone in k: lo, hi never decrease
        cache_hi = cache_lo + len(cache)
        parts = [cache[lo - cache_lo :]] if lo < cache_hi else []
        for z in range(max(lo, cache_hi) if parts else lo, hi, read_planes):
            parts.append(_reduce_planes(np.asarray(raw[z : min(z + read_planes, hi)]), ops))
        cache_lo, cache = lo, np.concatenate(parts, axis=0)
        wz = axis_operator(len(cache), c0[q] - lo, sigma0, params.interpolation)
        yield q, np.tensordot(wz, cache, axes=(1, 0))


def resample_image(raw, grid: ResampleGrid, params: ResampleParams) -> np.ndarray:
    """Resample a raw (z, y, x) image to the atlas-oriented grid.

    Streams over raw planes: peak memory ≈ (chunk span + filter halo) reduced planes +
    ``read_planes`` raw planes + the (small) output.

    Parameters
    ----------
    raw : array_like
        Raw image (z, y, x), sample axes; anything sliceable as ``raw[z0:z1]``.
    grid : ResampleGrid
        Raw and resampled grids.
    params : ResampleParams
        Resampling parameters.

    Returns
    -------
    ndarray of float32
        Resampled image, shape ``grid.shape`` (atlas axes).

    Raises
    ------
    ValueError
        If ``raw``'s shape differs from ``grid.raw_shape``.

    Examples
    --------
    Halving the resolution without anti-aliasing samples every second voxel:

    >>> from spimflow.geometry import ResampleGrid
    >>> from spimflow.params.resample import ResampleParams
    >>> grid = ResampleGrid.for_channel((8, 8, 8), (1.0, 1.0, 1.0), "asr", (2.0, 2.0, 2.0), "asr")
    >>> raw = np.arange(512, dtype=np.float32).reshape(8, 8, 8)
    >>> out = resample_image(raw, grid, ResampleParams(antialias=False))
    >>> out.shape, out[0, 0].tolist(), float(out[1, 1, 1]) == float(raw[2, 2, 2])
    ((4, 4, 4), [0.0, 2.0, 4.0, 6.0], True)
    """
    out_s = np.empty(grid.shape_in_sample_axes, np.float32)
    for q, vals in iter_resampled_slabs(raw, grid, params):
        out_s[q] = vals
    return np.ascontiguousarray(np.transpose(out_s, grid.orientation.perm))


def resampled_to_raw_planes(
    resampled: np.ndarray, grid: ResampleGrid, z0: int, z1: int, order: str = "linear"
) -> np.ndarray:
    """Map an image on the resampled grid back onto raw planes [z0, z1) (no filtering).

    Raw voxel ``s`` takes the value at ``grid.sample_to_resampled(s)``.

    Parameters
    ----------
    resampled : ndarray
        Image on the resampled grid, shape ``grid.shape`` (atlas axes).
    grid : ResampleGrid
        Raw and resampled grids.
    z0, z1 : int
        Raw plane range (sample axis 0).
    order : {'linear', 'nearest'}, optional
        Interpolation; use 'nearest' for labels (e.g. an annotation shown over raw data).

    Returns
    -------
    ndarray
        Shape (z1 - z0, raw y, raw x), sample axes.

    Raises
    ------
    ValueError
        If ``resampled``'s shape differs from ``grid.shape``.

    Examples
    --------
    >>> from spimflow.geometry import ResampleGrid
    >>> grid = ResampleGrid.for_channel((8, 8, 8), (1.0, 1.0, 1.0), "asr", (2.0, 2.0, 2.0), "asr")
    >>> resampled = np.arange(64, dtype=np.float32).reshape(4, 4, 4)
    >>> back = resampled_to_raw_planes(resampled, grid, 0, 3)
    >>> back.shape, back[0, 0, :4].tolist()
    ((3, 8, 8), [0.0, 0.5, 1.0, 1.5])
    """
    if tuple(resampled.shape) != tuple(grid.shape):
        raise ValueError(f"resampled image shape {tuple(resampled.shape)} differs from the grid's {grid.shape}")
    inv = np.argsort(grid.orientation.perm)
    a = np.transpose(resampled, inv)  # sample-axis order, still flipped per sample_coordinates
    for j in (0, 1, 2):
        i = grid.orientation.perm.index(j)
        n = grid.raw_shape[j]
        s = np.arange(z0, z1) if j == 0 else np.arange(n)
        o = (n - 1 - s) if grid.orientation.flip[i] else s
        a = interp_axis(a, o / grid.scale[i], j, order)
    return a
