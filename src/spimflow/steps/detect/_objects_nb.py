"""Numba kernels of the object steps: maxima, centres, shapes and measurements.

Locality (what makes block results identical to a whole-volume run): every result
for a maximum at voxel p is a function of the data inside a fixed box around p
(the maxima window, or the watershed domain), explored in an order that depends only
on relative positions (fixed neighbour order, seeds sorted by (z, y, x), FIFO ties).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

_NJ = dict(cache=True, nogil=True)
_CHUNK = 32  # x-run length of the mask pre-check in the per-voxel passes


@nb.njit(**_NJ)
def local_max_candidates(f, thr):
    """Voxels with f >= thr and no strictly greater 26-neighbour inside the array, (n, 3) int64.

    Rows are scanned in runs of 32 voxels; a run whose maximum is below thr is skipped
    after one vectorised max.
    """
    nz, ny, nx = f.shape
    cap = 1024
    out = np.empty((cap, 3), np.int64)
    n = 0
    for z in range(nz):
        for y in range(ny):
            row = f[z, y]
            for x0 in range(0, nx, _CHUNK):
                x1 = min(x0 + _CHUNK, nx)
                top = row[x0]
                for x in range(x0 + 1, x1):
                    top = max(top, row[x])
                if not (top >= thr):
                    continue
                for x in range(x0, x1):
                    v = row[x]
                    if not (v >= thr):
                        continue
                    if x > 0 and row[x - 1] > v:
                        continue
                    if x < nx - 1 and row[x + 1] > v:
                        continue
                    ok = True
                    for dz in range(-1, 2):
                        zz = z + dz
                        if zz < 0 or zz >= nz:
                            continue
                        for dy in range(-1, 2):
                            yy = y + dy
                            if yy < 0 or yy >= ny:
                                continue
                            for dx in range(-1, 2):
                                xx = x + dx
                                if xx < 0 or xx >= nx:
                                    continue
                                if f[zz, yy, xx] > v:
                                    ok = False
                                    break
                            if not ok:
                                break
                        if not ok:
                            break
                    if not ok:
                        continue
                    if n == cap:
                        bigger = np.empty((cap * 2, 3), np.int64)
                        bigger[:n] = out[:n]
                        out = bigger
                        cap *= 2
                    out[n, 0] = z
                    out[n, 1] = y
                    out[n, 2] = x
                    n += 1
    return out[:n].copy()


@nb.njit(**_NJ)
def _lex_less(az, ay, ax, bz, by, bx):
    if az != bz:
        return az < bz
    if ay != by:
        return ay < by
    return ax < bx


@nb.njit(**_NJ)
def maxima_regions(f, cands, h, wz, wy, wx):
    """Which candidates are maxima, and the centroid of each maximum's region.

    For candidate p with value v, the region is the 26-connected set of voxels with
    value >= v - h (h = 0: the plateau, value == v) reached from p inside the window
    |d| <= (wz, wy, wx). p is kept when the region holds no voxel brighter than v and
    no voxel equal to v that comes before p in (z, y, x) order: each plateau or
    h-dome yields exactly one maximum, represented by its first brightest voxel.
    A rejected candidate records the voxel that rejected it (brighter, or equal and
    first) as its redirect target; shapes follow it so its basin joins that maximum.
    Returns (keep bool[n], centroid - p float64[n, 3], region size int64[n], target int64[n, 3]);
    offsets relative to p keep the arithmetic independent of where the block starts.
    """
    nz, ny, nx = f.shape
    n = cands.shape[0]
    keep = np.zeros(n, np.bool_)
    cen = np.zeros((n, 3), np.float64)
    npts = np.zeros(n, np.int64)
    target = np.full((n, 3), -1, np.int64)
    bz, by, bx = 2 * wz + 1, 2 * wy + 1, 2 * wx + 1
    mark = np.zeros((bz, by, bx), np.uint8)
    cap = bz * by * bx
    qz = np.empty(cap, np.int64)
    qy = np.empty(cap, np.int64)
    qx = np.empty(cap, np.int64)
    for i in range(n):
        pz, py, px = cands[i, 0], cands[i, 1], cands[i, 2]
        v = np.float64(f[pz, py, px])
        base = v - h
        head = 0
        tail = 0
        qz[0] = pz
        qy[0] = py
        qx[0] = px
        tail = 1
        mark[wz, wy, wx] = 1
        ok = True
        sz = 0.0
        sy = 0.0
        sx = 0.0
        while head < tail and ok:
            z, y, x = qz[head], qy[head], qx[head]
            head += 1
            sz += z - pz
            sy += y - py
            sx += x - px
            for dz in range(-1, 2):
                zz = z + dz
                if zz < 0 or zz >= nz or abs(zz - pz) > wz:
                    continue
                for dy in range(-1, 2):
                    yy = y + dy
                    if yy < 0 or yy >= ny or abs(yy - py) > wy:
                        continue
                    for dx in range(-1, 2):
                        xx = x + dx
                        if xx < 0 or xx >= nx or abs(xx - px) > wx:
                            continue
                        mz, my, mx = zz - pz + wz, yy - py + wy, xx - px + wx
                        if mark[mz, my, mx]:
                            continue
                        val = np.float64(f[zz, yy, xx])
                        if val > v or (val == v and _lex_less(zz, yy, xx, pz, py, px)):
                            ok = False
                            target[i, 0] = zz
                            target[i, 1] = yy
                            target[i, 2] = xx
                            break
                        if val >= base:
                            mark[mz, my, mx] = 1
                            qz[tail] = zz
                            qy[tail] = yy
                            qx[tail] = xx
                            tail += 1
                    if not ok:
                        break
                if not ok:
                    break
        for j in range(tail):
            mark[qz[j] - pz + wz, qy[j] - py + wy, qx[j] - px + wx] = 0
        if ok:
            keep[i] = True
            cen[i, 0] = sz / tail
            cen[i, 1] = sy / tail
            cen[i, 2] = sx / tail
            npts[i] = tail
    return keep, cen, npts, target


@nb.njit(**_NJ)
def _fit3(fm, f0, fp):
    """Sub-voxel offset of a peak from 3 samples: Gaussian fit (log) when all > 0, else parabola."""
    if fm > 0 and f0 > 0 and fp > 0:
        a = math.log(fm)
        b = math.log(f0)
        c = math.log(fp)
    else:
        a = fm
        b = f0
        c = fp
    den = a - 2.0 * b + c
    if not (den < 0):
        return 0.0
    off = 0.5 * (a - c) / den
    if off > 0.5:
        off = 0.5
    elif off < -0.5:
        off = -0.5
    return off


@nb.njit(**_NJ)
def refine_peaks(f, peaks):
    """3-point fit along each axis at each peak voxel: (n, 3) float64 offsets in [-0.5, 0.5].

    No fit (offset 0) along an axis where the peak is on the array's first or last voxel.
    """
    nz, ny, nx = f.shape
    n = peaks.shape[0]
    out = np.zeros((n, 3), np.float64)
    for i in range(n):
        z, y, x = peaks[i, 0], peaks[i, 1], peaks[i, 2]
        f0 = np.float64(f[z, y, x])
        if 0 < z < nz - 1:
            out[i, 0] = _fit3(np.float64(f[z - 1, y, x]), f0, np.float64(f[z + 1, y, x]))
        if 0 < y < ny - 1:
            out[i, 1] = _fit3(np.float64(f[z, y - 1, x]), f0, np.float64(f[z, y + 1, x]))
        if 0 < x < nx - 1:
            out[i, 2] = _fit3(np.float64(f[z, y, x - 1]), f0, np.float64(f[z, y, x + 1]))
    return out


# -- watershed shapes by steepest ascent ----------------------------------------------------


@nb.njit(**_NJ)
def _neighbour_offsets():
    """The 26 neighbour offsets in (dz, dy, dx) lexicographic order: the first 13 precede the centre."""
    out = np.empty((26, 3), np.int64)
    k = 0
    for dz in range(-1, 2):
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                if dz == 0 and dy == 0 and dx == 0:
                    continue
                out[k, 0] = dz
                out[k, 1] = dy
                out[k, 2] = dx
                k += 1
    return out


@nb.njit(**_NJ)
def _parent(f, nbr, z, y, x):
    """Steepest-ascent neighbour code of voxel (z, y, x), or -1 for a root.

    The brightest of the 26 neighbours (first in offset order among equals) if it is
    brighter than the voxel, or equally bright and before it in (z, y, x) order.
    """
    nz, ny, nx = f.shape
    v = f[z, y, x]
    best = -1
    bv = v
    for e in range(26):
        zz = z + nbr[e, 0]
        yy = y + nbr[e, 1]
        xx = x + nbr[e, 2]
        if zz < 0 or zz >= nz or yy < 0 or yy >= ny or xx < 0 or xx >= nx:
            continue
        w = f[zz, yy, xx]
        if w > bv or (w == v and best == -1 and e < 13):
            bv = w
            best = e
    return best


@nb.njit(**_NJ)
def cell_shapes(
    dog,
    thr,
    seeds,
    owned,
    red_src,
    red_tgt,
    rz,
    ry,
    rx,
    vz,
    vy,
    vx,
    radius_um,
    raw,
    bg,
    oz,
    oy,
    ox,
    bz,
    by,
    bx,
    do_shape,
):
    """Watershed shape and measurements of the cells ``seeds[owned]``.

    Shape of cell c (seed voxel p): the voxels x with dog > thr whose steepest-ascent
    path (see :func:`_parent`) stays inside the ball of ``radius_um`` (ellipsoid in µm,
    within the box |x - p| <= (rz, ry, rx)) and ends at p. A path that ends at a
    rejected maximum continues from the voxel that rejected it (``red_src`` ->
    ``red_tgt``, sorted by source), so basins of suppressed maxima join the maximum that
    suppressed them, as in a flooding watershed. This is the "drop of water"
    watershed: it depends only on data inside the box (+1 voxel), so it is the same in
    every block holding the box, and shapes of different cells never overlap.
    Each cell's box is first copied into a small buffer (out-of-array voxels = -inf,
    which _parent never picks), so the walk runs in cache.
    Peak intensities: max of raw/bg/dog over the box |d| <= (bz, by, bx) at p.
    ``raw`` and ``bg`` may be larger arrays: their voxel (z+oz, y+oy, x+ox) is ``dog``'s (z, y, x).
    Returns size, sums (raw, bg, dog, z - pz, y - py, x - px) over the shape (ball voxels
    in raster order; the last three give the shape's centroid relative to the seed), peaks.
    """
    nz, ny, nx = dog.shape
    m = owned.shape[0]
    size = np.zeros(m, np.int64)
    sums = np.zeros((m, 6), np.float64)
    peaks = np.zeros((m, 3), np.float64)
    for k in range(m):
        s = owned[k]
        pz, py, px = seeds[s, 0], seeds[s, 1], seeds[s, 2]
        mr = -np.inf
        mb = -np.inf
        md = -np.inf
        for z in range(max(pz - bz, 0), min(pz + bz + 1, nz)):
            for y in range(max(py - by, 0), min(py + by + 1, ny)):
                for x in range(max(px - bx, 0), min(px + bx + 1, nx)):
                    mr = max(mr, np.float64(raw[z + oz, y + oy, x + ox]))
                    mb = max(mb, np.float64(bg[z + oz, y + oy, x + ox]))
                    md = max(md, np.float64(dog[z, y, x]))
        peaks[k, 0] = mr
        peaks[k, 1] = mb
        peaks[k, 2] = md
    if not do_shape or m == 0:
        return size, sums, peaks

    nbr = _neighbour_offsets()
    # local box around the seed, padded by one voxel (never in the ball) so every
    # ball voxel has its 26 neighbours in the buffer
    lz, ly, lx = 2 * rz + 3, 2 * ry + 3, 2 * rx + 3
    nl = lz * ly * lx
    loff = np.empty(26, np.int64)
    for e in range(26):
        loff[e] = (nbr[e, 0] * ly + nbr[e, 1]) * lx + nbr[e, 2]
    inball = np.zeros(nl, np.uint8)
    bl = np.empty(nl, np.int64)  # local indices of the ball voxels, raster order
    nb_ = 0
    r2 = radius_um * radius_um
    for az in range(1, lz - 1):
        for ay in range(1, ly - 1):
            for ax in range(1, lx - 1):
                dz = (az - 1 - rz) * vz
                dy = (ay - 1 - ry) * vy
                dx = (ax - 1 - rx) * vx
                if dz * dz + dy * dy + dx * dx <= r2:
                    li = (az * ly + ay) * lx + ax
                    inball[li] = 1
                    bl[nb_] = li
                    nb_ += 1
    loc = np.empty(nl, np.float32)
    code = np.empty(nl, np.int8)
    cstamp = np.full(nl, -1, np.int64)  # cell for which code[] was computed
    stamp = np.full(nl, -1, np.int64)  # cell whose walk resolved this voxel
    res = np.zeros(nl, np.uint8)  # 1: belongs to that cell
    pl = np.empty(nl + 1, np.int64)  # current path (local indices)
    nred = red_src.shape[0]
    skey = np.empty(nred, np.int64)
    for i in range(nred):
        skey[i] = (red_src[i, 0] * ny + red_src[i, 1]) * nx + red_src[i, 2]
    lc = ((rz + 1) * ly + (ry + 1)) * lx + (rx + 1)
    ninf = np.float32(-np.inf)

    for k in range(m):
        c = owned[k]
        pz, py, px = seeds[c, 0], seeds[c, 1], seeds[c, 2]
        if not (dog[pz, py, px] > thr):
            continue
        z0, y0, x0 = pz - rz - 1, py - ry - 1, px - rx - 1  # volume index of local (0, 0, 0)
        # gather the box (independent loads: the memory system overlaps them)
        for az in range(lz):
            z = z0 + az
            for ay in range(ly):
                y = y0 + ay
                base = (az * ly + ay) * lx
                if z < 0 or z >= nz or y < 0 or y >= ny:
                    for ax in range(lx):
                        loc[base + ax] = ninf
                    continue
                row = dog[z, y]
                for ax in range(lx):
                    x = x0 + ax
                    loc[base + ax] = row[x] if 0 <= x < nx else ninf
        stamp[lc] = k
        res[lc] = 1
        for b in range(nb_):
            li = bl[b]
            if not (loc[li] > thr):
                continue
            # walk up until a voxel resolved for this cell, the seed, or out of the ball
            n = 0
            cl = li
            mine = 0
            while True:
                if stamp[cl] == k:
                    mine = res[cl]
                    break
                pl[n] = cl
                n += 1
                if cstamp[cl] != k:
                    v = loc[cl]
                    best = -1
                    if v > thr:
                        # branch-free arg-max (see _parent): earlier offsets win ties; an
                        # equal neighbour qualifies only if it precedes the voxel (e < 13)
                        bv = v
                        for e in range(13):
                            w = loc[cl + loff[e]]
                            t = (w > bv) | ((w == v) & (best == -1))
                            bv = w if t else bv
                            best = e if t else best
                        for e in range(13, 26):
                            w = loc[cl + loff[e]]
                            t = w > bv
                            bv = w if t else bv
                            best = e if t else best
                    else:
                        best = -2
                    code[cl] = best
                    cstamp[cl] = k
                cd = code[cl]
                if cd >= 0:
                    cl = cl + loff[cd]
                    if not inball[cl]:
                        break
                    continue
                if cd == -2:
                    break
                # a root other than the seed: follow its redirect, if any
                az = cl // (ly * lx)
                ay = (cl // lx) % ly
                ax = cl % lx
                gi = ((z0 + az) * ny + (y0 + ay)) * nx + (x0 + ax)
                j = np.searchsorted(skey, gi)
                if j < nred and skey[j] == gi:
                    tz = red_tgt[j, 0] - z0
                    ty = red_tgt[j, 1] - y0
                    tx = red_tgt[j, 2] - x0
                    if tz < 1 or tz >= lz - 1 or ty < 1 or ty >= ly - 1 or tx < 1 or tx >= lx - 1:
                        break
                    cl = (tz * ly + ty) * lx + tx
                    if not inball[cl]:
                        break
                    continue
                break
            for t in range(n):
                stamp[pl[t]] = k
                res[pl[t]] = mine
            if mine:
                az = li // (ly * lx)
                ay = (li // lx) % ly
                ax = li % lx
                z, y, x = z0 + az, y0 + ay, x0 + ax
                size[k] += 1
                sums[k, 0] += raw[z + oz, y + oy, x + ox]
                sums[k, 1] += bg[z + oz, y + oy, x + ox]
                sums[k, 2] += loc[li]
                sums[k, 3] += z - pz
                sums[k, 4] += y - py
                sums[k, 5] += x - px
    return size, sums, peaks
