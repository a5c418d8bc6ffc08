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
    """Half-width of scipy's truncated Gaussian kernel (0 when not filtering)."""
    return int(TRUNCATE * sigma + 0.5) if sigma > 0 else 0


def smooth_axis(a: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """Gaussian filter along one axis (edges: nearest value), a no-op for sigma 0."""
    if sigma <= 0 or a.shape[axis] == 0:
        return a
    return ndimage.gaussian_filter1d(a, sigma, axis=axis, mode="nearest", truncate=TRUNCATE)


def interp_axis(a: np.ndarray, coords: np.ndarray, axis: int, order: str = "linear", offset: int = 0) -> np.ndarray:
    """Evaluate ``a`` along ``axis`` at fractional positions ``coords`` (voxel centres at
    integers; ``a`` starts at raw index ``offset``). Positions are clamped to the data."""
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
    """The (m, n) matrix of "Gaussian filter (edges: nearest), then interpolate at ``coords``"
    along one axis of length ``n``: ``W @ a`` equals ``interp_axis(smooth_axis(a, sigma), coords)``
    (scipy's truncated, normalised kernel), but costs only m·n instead of filtering every row."""
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
    """Raw planes [lo, hi) whose values determine filtered+interpolated values at ``coords``."""
    r = gaussian_radius(sigma)
    lo = int(np.floor(coords.min())) - r - 1
    hi = int(np.floor(coords.max())) + r + 3
    return max(lo, 0), min(hi, n)


def iter_resampled_slabs(
    raw, grid: ResampleGrid, params: ResampleParams, read_planes: int = 16
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(q, slab)``: resampled values for an array of indices ``q`` along the *raw*
    plane axis (sample axis 0), in sample-axis order (q, m_y, m_x).

    ``raw`` is anything sliceable as ``raw[z0:z1]`` (zarr array, numpy array). Reduced planes
    are cached across chunks so each raw plane is read and filtered once.
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
    """Resample a raw (z, y, x) image to the atlas-oriented grid; returns float32 ``grid.shape``.

    Streams over raw planes: peak memory ≈ (chunk span + filter halo) reduced planes +
    ``read_planes`` raw planes + the (small) output.
    """
    out_s = np.empty(grid.shape_in_sample_axes, np.float32)
    for q, vals in iter_resampled_slabs(raw, grid, params):
        out_s[q] = vals
    return np.ascontiguousarray(np.transpose(out_s, grid.orientation.perm))


def resampled_to_raw_planes(
    resampled: np.ndarray, grid: ResampleGrid, z0: int, z1: int, order: str = "linear"
) -> np.ndarray:
    """Map an image on the resampled grid back onto raw planes [z0, z1) (no filtering):
    raw voxel ``s`` takes the value at ``grid.sample_to_resampled(s)``. Use ``order='nearest'``
    for labels (e.g. an annotation shown over raw data)."""
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
