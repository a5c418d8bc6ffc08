"""Warp atlas volumes onto the sample grid through the registration's own point transform.

Every voxel centre of the fixed (resampled sample) grid is mapped to the atlas by
:class:`spimflow.transforms.ElastixChain` (the exact evaluation of the elastix
transform maps that also moves the cells), and the atlas volumes are read there: labels
by nearest neighbour, intensities by trilinear interpolation, with ITK's conventions
(nearest = ``floor(c + 0.5)``; a point is inside when ``-0.5 <= c < n - 0.5`` along every
axis, else it gets 0). So a warped label is, by construction, the label the point
transform finds for that voxel, and the result matches transformix's.

The transform is evaluated once for all volumes, in slabs of planes (bounded memory)
spread over ``threads`` threads (the numba kernels release the GIL). No itk is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numba as nb
import numpy as np

from spimflow.transforms import BSplineTransform, ElastixChain, MatrixTransform, ParameterMap

__all__ = ["warp_to_fixed"]

SLAB_POINTS = 250_000  # points per slab: ~6 MB of float64 coordinates per slab and thread


@nb.njit(cache=True, nogil=True)
def _nearest(vol, c, out):
    """out[p] = vol at the nearest voxel of continuous index c[p] (z, y, x); 0 outside."""
    nz, ny, nx = vol.shape
    for p in range(c.shape[0]):
        z = np.floor(c[p, 0] + 0.5)
        y = np.floor(c[p, 1] + 0.5)
        x = np.floor(c[p, 2] + 0.5)
        if 0 <= z < nz and 0 <= y < ny and 0 <= x < nx:
            out[p] = vol[int(z), int(y), int(x)]
        else:
            out[p] = 0


@nb.njit(cache=True, nogil=True)
def _linear(vol, c, out):
    """out[p] = trilinear interpolation of vol at continuous index c[p] (z, y, x), neighbours
    clamped to the volume as ITK does; 0 outside [-0.5, n - 0.5)."""
    nz, ny, nx = vol.shape
    for p in range(c.shape[0]):
        z, y, x = c[p, 0], c[p, 1], c[p, 2]
        if not (-0.5 <= z < nz - 0.5 and -0.5 <= y < ny - 0.5 and -0.5 <= x < nx - 0.5):
            out[p] = 0.0
            continue
        fz, fy, fx = np.floor(z), np.floor(y), np.floor(x)
        dz, dy, dx = z - fz, y - fy, x - fx
        z0, y0, x0 = int(fz), int(fy), int(fx)
        z1, y1, x1 = min(z0 + 1, nz - 1), min(y0 + 1, ny - 1), min(x0 + 1, nx - 1)
        z0, y0, x0 = max(z0, 0), max(y0, 0), max(x0, 0)
        v = (
            (1 - dz) * ((1 - dy) * ((1 - dx) * vol[z0, y0, x0] + dx * vol[z0, y0, x1]))
            + (1 - dz) * (dy * ((1 - dx) * vol[z0, y1, x0] + dx * vol[z0, y1, x1]))
            + dz * ((1 - dy) * ((1 - dx) * vol[z1, y0, x0] + dx * vol[z1, y0, x1]))
            + dz * (dy * ((1 - dx) * vol[z1, y1, x0] + dx * vol[z1, y1, x1]))
        )
        out[p] = v


@nb.njit(cache=True, nogil=True)
def _grid_to_moving(z0, z1, ny, nx, fs, m0, b0, bs, origin, dinv, spacing, size, coef, bound, inv_ms, out):
    """Continuous moving voxel index (z, y, x) of every fixed voxel of planes z0..z1 under
    p ↦ B(m0 p + b0) (B the cubic B-spline if ``bs``, else identity), as
    :meth:`spimflow.transforms.ElastixChain.apply` computes it. Points whose affine image
    lies outside ``bound`` (moving extent grown by the largest B-spline coefficient, so
    nothing can move them back inside) get index -1e9 (outside) without the B-spline."""
    w = np.empty((3, 4))
    q = np.empty(3)
    ci = np.empty(3)
    p = 0
    for z in range(z0, z1):
        for y in range(ny):
            for x in range(nx):
                px, py, pz = x * fs[0], y * fs[1], z * fs[2]
                for r in range(3):
                    q[r] = m0[r, 0] * px + m0[r, 1] * py + m0[r, 2] * pz + b0[r]
                if not (
                    bound[0, 0] <= q[0] <= bound[1, 0]
                    and bound[0, 1] <= q[1] <= bound[1, 1]
                    and bound[0, 2] <= q[2] <= bound[1, 2]
                ):
                    out[p, 0] = -1e9
                    out[p, 1] = -1e9
                    out[p, 2] = -1e9
                    p += 1
                    continue
                if bs:
                    inside = True
                    for a in range(3):
                        ci[a] = (
                            dinv[a, 0] * (q[0] - origin[0])
                            + dinv[a, 1] * (q[1] - origin[1])
                            + dinv[a, 2] * (q[2] - origin[2])
                        ) / spacing[a]
                        if not (ci[a] >= 1.0 and ci[a] < size[a] - 2.0):
                            inside = False
                    if inside:
                        sx = int(np.floor(ci[0])) - 1
                        sy = int(np.floor(ci[1])) - 1
                        sz = int(np.floor(ci[2])) - 1
                        for a in range(3):
                            f = ci[a] - np.floor(ci[a])
                            f2 = f * f
                            f3 = f2 * f
                            w[a, 0] = (1.0 - f) ** 3 / 6.0
                            w[a, 1] = (4.0 - 6.0 * f2 + 3.0 * f3) / 6.0
                            w[a, 2] = (1.0 + 3.0 * f + 3.0 * f2 - 3.0 * f3) / 6.0
                            w[a, 3] = f3 / 6.0
                        d0 = 0.0
                        d1 = 0.0
                        d2 = 0.0
                        for k in range(4):
                            for j in range(4):
                                wzy = w[2, k] * w[1, j]
                                for i in range(4):
                                    wv = wzy * w[0, i]
                                    d0 += wv * coef[0, sz + k, sy + j, sx + i]
                                    d1 += wv * coef[1, sz + k, sy + j, sx + i]
                                    d2 += wv * coef[2, sz + k, sy + j, sx + i]
                        q[0] += d0
                        q[1] += d1
                        q[2] += d2
                out[p, 0] = q[2] * inv_ms[0]
                out[p, 1] = q[1] * inv_ms[1]
                out[p, 2] = q[0] * inv_ms[2]
                p += 1


def _fused_plan(chain: ElastixChain, moving_shape, moving_zyx: np.ndarray):
    """Arguments of :func:`_grid_to_moving` when the chain is linear maps followed by at
    most one B-spline, all composed (elastix's default); None otherwise."""
    ts, how = chain.transforms, chain.combine
    if any(c != "Compose" for c in how[1:]):
        return None
    m, b = np.eye(3), np.zeros(3)
    k = 0
    while k < len(ts) and isinstance(ts[k], MatrixTransform):
        m, b = ts[k].matrix @ m, ts[k].matrix @ b + ts[k].offset
        k += 1
    rest = ts[k:]
    if len(rest) > 1 or (rest and not isinstance(rest[0], BSplineTransform)):
        return None
    lo = -0.5 * moving_zyx[::-1]
    hi = (np.asarray(moving_shape, float)[::-1] - 0.5) * moving_zyx[::-1]
    if rest:
        bsp = rest[0]
        reach = np.abs(bsp.coef).reshape(3, -1).max(axis=1) + 1e-6 if bsp.coef.size else np.zeros(3)
        bspline = (
            True,
            np.asarray(bsp.origin, float),
            np.ascontiguousarray(np.linalg.inv(bsp.direction)),
            np.asarray(bsp.spacing, float),
            np.asarray(bsp.size, np.int64),
            np.ascontiguousarray(bsp.coef, dtype=np.float64),
        )
    else:
        reach = np.zeros(3)
        bspline = (False, np.zeros(3), np.eye(3), np.ones(3), np.full(3, 4, np.int64), np.zeros((3, 1, 1, 1)))
    bound = np.array([lo - reach - 1.0, hi + reach + 1.0])
    return np.ascontiguousarray(m), b, *bspline, bound


def warp_to_fixed(
    volumes: Sequence[np.ndarray],
    labels: Sequence[bool],
    fixed_shape: Sequence[int],
    voxel_size: Sequence[float],
    transform: ElastixChain | Sequence[ParameterMap],
    moving_voxel_size: Sequence[float] | None = None,
    threads: int = 1,
) -> list[np.ndarray]:
    """Pull moving (atlas) volumes onto the fixed (sample) grid through an elastix transform.

    Both grids have origin 0 and identity direction, as :func:`spimflow.steps.elastix.register`
    sets them: fixed voxel (z, y, x) sits at physical (x, y, z) × ``voxel_size`` (µm), and the
    transform maps fixed physical points to moving physical points.

    Parameters
    ----------
    volumes : sequence of ndarray
        Moving volumes (z, y, x), all of one shape.
    labels : sequence of bool
        Per volume: nearest neighbour (labels, any dtype, exact) or trilinear (float32 out).
    fixed_shape : sequence of int
        Shape (z, y, x) of the fixed grid.
    voxel_size : sequence of float
        Fixed voxel size (z, y, x), µm (also the moving one unless ``moving_voxel_size``).
    transform : ElastixChain or sequence of mapping
        The transform, or its elastix transform parameter maps.
    moving_voxel_size : sequence of float, optional
        Moving voxel size (z, y, x), µm.
    threads : int, optional
        Threads to use.

    Returns
    -------
    list of ndarray
        One array of ``fixed_shape`` per volume: labels keep their dtype, 0 outside the
        moving volume; intensities are float32, 0 outside.

    Raises
    ------
    ValueError
        If the volumes differ in shape or ``labels`` does not match them.

    Examples
    --------
    A shift by one voxel (25 µm) along x:

    >>> shift = {"Transform": ["TranslationTransform"], "TransformParameters": ["25", "0", "0"]}
    >>> lab = np.arange(8, dtype=np.uint32).reshape(2, 2, 2)
    >>> [w] = warp_to_fixed([lab], [True], (2, 2, 2), (25.0, 25.0, 25.0), [shift])
    >>> w[..., 0].tolist(), w[..., 1].tolist()
    ([[1, 3], [5, 7]], [[0, 0], [0, 0]])
    """
    chain = transform if isinstance(transform, ElastixChain) else ElastixChain.from_maps(transform)
    if len(volumes) != len(labels):
        raise ValueError("warp_to_fixed: one labels flag per volume")
    if len({v.shape for v in volumes}) > 1:
        raise ValueError(f"warp_to_fixed: volumes differ in shape: {[v.shape for v in volumes]}")
    nz, ny, nx = (int(n) for n in fixed_shape)
    fixed_xyz = np.asarray(voxel_size, float)[::-1]
    moving_zyx = np.asarray(moving_voxel_size if moving_voxel_size is not None else voxel_size, float)
    sources = [v if lab else np.ascontiguousarray(v, dtype=np.float32) for v, lab in zip(volumes, labels)]
    outs = [np.empty((nz, ny, nx), v.dtype if lab else np.float32) for v, lab in zip(volumes, labels)]
    step = max(1, SLAB_POINTS // max(1, ny * nx))
    plan = _fused_plan(chain, volumes[0].shape, moving_zyx) if volumes else None
    if plan is None:  # a chain of another shape: the generic (vectorised, slower) evaluation
        yy, xx = np.meshgrid(np.arange(ny, dtype=float), np.arange(nx, dtype=float), indexing="ij")
        plane_xyz = np.stack([xx.ravel(), yy.ravel(), np.zeros(yy.size)], axis=1) * fixed_xyz

    def slab(z0: int) -> None:
        z1 = min(z0 + step, nz)
        if plan is None:
            pts = np.concatenate([plane_xyz + [0.0, 0.0, z * fixed_xyz[2]] for z in range(z0, z1)])
            idx = np.ascontiguousarray(chain.apply(pts)[:, ::-1] / moving_zyx)  # continuous moving voxel (z, y, x)
        else:
            idx = np.empty(((z1 - z0) * ny * nx, 3))
            _grid_to_moving(z0, z1, ny, nx, fixed_xyz, *plan, 1.0 / moving_zyx, idx)
        for src, out, lab in zip(sources, outs, labels):
            flat = out[z0:z1].reshape(-1)
            (_nearest if lab else _linear)(src, idx, flat)

    starts = range(0, nz, step)
    if threads > 1 and len(starts) > 1:
        with ThreadPoolExecutor(max_workers=int(threads)) as pool:
            list(pool.map(slab, starts))
    else:
        for z0 in starts:
            slab(z0)
    return outs
