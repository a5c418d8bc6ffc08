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


@nb.njit(**_NJ)
def local_max_candidates(f, thr):
    """Voxels with f >= thr and no strictly greater 26-neighbour inside the array, (n, 3) int64."""
    nz, ny, nx = f.shape
    cap = 1024
    out = np.empty((cap, 3), np.int64)
    n = 0
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                v = f[z, y, x]
                if not (v >= thr):
                    continue
                if x > 0 and f[z, y, x - 1] > v:
                    continue
                if x < nx - 1 and f[z, y, x + 1] > v:
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
def parent_codes(f, thr):
    """Steepest-ascent neighbour code (see :func:`_parent`) of every voxel with f > thr.

    int8 (z, y, x) array: 0..25 index into :func:`_neighbour_offsets`, -1 for a root
    (no brighter neighbour, nor an equal one earlier in (z, y, x) order), -2 outside
    the mask. Branch-free over rows so the inner loop vectorises; out-of-array
    neighbours are skipped, exactly as :func:`_parent` does.
    """
    nz, ny, nx = f.shape
    nbr = _neighbour_offsets()
    par = np.empty((nz, ny, nx), np.int8)
    bv = np.empty(nx, np.float32)
    best = np.empty(nx, np.int8)
    for z in range(nz):
        for y in range(ny):
            v = f[z, y]
            for x in range(nx):
                bv[x] = v[x]
                best[x] = -1
            for e in range(26):
                zz = z + nbr[e, 0]
                yy = y + nbr[e, 1]
                if zz < 0 or zz >= nz or yy < 0 or yy >= ny:
                    continue
                dx = nbr[e, 2]
                lo = max(0, -dx)
                hi = nx - max(0, dx)
                if hi <= lo:
                    continue
                w = f[zz, yy, lo + dx:hi + dx]
                vs = v[lo:hi]
                bvs = bv[lo:hi]
                bs = best[lo:hi]
                ee = np.int8(e)
                if e < 13:
                    for i in range(hi - lo):
                        wi = w[i]
                        c = (wi > bvs[i]) | ((wi == vs[i]) & (bs[i] == -1))
                        bvs[i] = wi if c else bvs[i]
                        bs[i] = ee if c else bs[i]
                else:
                    for i in range(hi - lo):
                        wi = w[i]
                        c = wi > bvs[i]
                        bvs[i] = wi if c else bvs[i]
                        bs[i] = ee if c else bs[i]
            out = par[z, y]
            for x in range(nx):
                out[x] = best[x] if v[x] > thr else np.int8(-2)
    return par


@nb.njit(**_NJ)
def cell_shapes(f, par, seeds, owned, red_src, red_tgt, rz, ry, rx, vz, vy, vx, radius_um,
                raw, bg, dog, bz, by, bx, do_shape):
    """Watershed shape and measurements of the cells ``seeds[owned]``.

    Shape of cell c (seed voxel p): the mask voxels x (``par`` > -2, see
    :func:`parent_codes`) whose steepest-ascent path stays inside the ball of
    ``radius_um`` (ellipsoid in µm, within the box |x - p| <= (rz, ry, rx)) and ends
    at p. A path that ends at a rejected maximum continues from the voxel that
    rejected it (``red_src`` -> ``red_tgt``, sorted by source), so basins of suppressed
    maxima join the maximum that suppressed them, as in a flooding watershed. This is
    the "drop of water" watershed: it depends only on data inside the box (+1 voxel),
    so it is the same in every block holding the box, and shapes never overlap.
    Peak intensities: max of raw/bg/dog over the box |d| <= (bz, by, bx) at p.
    Returns size, sums (raw, bg, dog) over the shape (ball voxels in raster order), peaks.
    """
    nz, ny, nx = f.shape
    m = owned.shape[0]
    size = np.zeros(m, np.int64)
    sums = np.zeros((m, 3), np.float64)
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
                    mr = max(mr, np.float64(raw[z, y, x]))
                    mb = max(mb, np.float64(bg[z, y, x]))
                    md = max(md, np.float64(dog[z, y, x]))
        peaks[k, 0] = mr
        peaks[k, 1] = mb
        peaks[k, 2] = md
    if not do_shape or m == 0:
        return size, sums, peaks

    P = par.ravel()
    R = raw.ravel()
    B = bg.ravel()
    D = dog.ravel()
    nbr = _neighbour_offsets()
    off = np.empty(26, np.int64)
    # local box around the seed, padded by one voxel (never in the ball) so a step
    # out of the ball always lands on a local voxel
    lz, ly, lx = 2 * rz + 3, 2 * ry + 3, 2 * rx + 3
    loff = np.empty(26, np.int64)
    for e in range(26):
        off[e] = (nbr[e, 0] * ny + nbr[e, 1]) * nx + nbr[e, 2]
        loff[e] = (nbr[e, 0] * ly + nbr[e, 1]) * lx + nbr[e, 2]
    # the ball: local flags and the list of its voxels in raster order
    nl = lz * ly * lx
    inball = np.zeros(nl, np.uint8)
    bl = np.empty((nl, 3), np.int64)
    nb_ = 0
    r2 = radius_um * radius_um
    for az in range(lz):
        for ay in range(ly):
            for ax in range(lx):
                if az == 0 or ay == 0 or ax == 0 or az == lz - 1 or ay == ly - 1 or ax == lx - 1:
                    continue
                dz = (az - 1 - rz) * vz
                dy = (ay - 1 - ry) * vy
                dx = (ax - 1 - rx) * vx
                if dz * dz + dy * dy + dx * dx <= r2:
                    inball[(az * ly + ay) * lx + ax] = 1
                    bl[nb_, 0] = az - 1 - rz
                    bl[nb_, 1] = ay - 1 - ry
                    bl[nb_, 2] = ax - 1 - rx
                    nb_ += 1
    stamp = np.full(nl, -1, np.int64)   # cell whose walk last resolved this voxel
    res = np.zeros(nl, np.uint8)        # 1: belongs to that cell
    pg = np.empty(nl + 1, np.int64)     # current path (global, local indices)
    pl = np.empty(nl + 1, np.int64)
    nred = red_src.shape[0]
    skey = np.empty(nred, np.int64)
    for i in range(nred):
        skey[i] = (red_src[i, 0] * ny + red_src[i, 1]) * nx + red_src[i, 2]
    lc = ((rz + 1) * ly + (ry + 1)) * lx + (rx + 1)

    for k in range(m):
        c = owned[k]
        pz, py, px = seeds[c, 0], seeds[c, 1], seeds[c, 2]
        gc = (pz * ny + py) * nx + px
        if P[gc] == -2:
            continue
        stamp[lc] = k
        res[lc] = 1
        inside = (pz - rz >= 0 and py - ry >= 0 and px - rx >= 0 and
                  pz + rz < nz and py + ry < ny and px + rx < nx)
        for b in range(nb_):
            z = pz + bl[b, 0]
            y = py + bl[b, 1]
            x = px + bl[b, 2]
            if not inside and (z < 0 or z >= nz or y < 0 or y >= ny or x < 0 or x >= nx):
                continue
            gi = (z * ny + y) * nx + x
            if P[gi] == -2:
                continue
            li = ((bl[b, 0] + rz + 1) * ly + (bl[b, 1] + ry + 1)) * lx + (bl[b, 2] + rx + 1)
            # walk up until a voxel resolved for this cell, the seed, or out of the ball
            n = 0
            cg = gi
            cl = li
            mine = 0
            while True:
                if stamp[cl] == k:
                    mine = res[cl]
                    break
                pg[n] = cg
                pl[n] = cl
                n += 1
                code = P[cg]
                if code >= 0:
                    cg = cg + off[code]
                    cl = cl + loff[code]
                    if not inball[cl]:
                        break
                    continue
                # a root other than the seed: follow its redirect, if any
                j = np.searchsorted(skey, cg)
                if j < nred and skey[j] == cg:
                    tz = red_tgt[j, 0] - pz + rz + 1
                    ty = red_tgt[j, 1] - py + ry + 1
                    tx = red_tgt[j, 2] - px + rx + 1
                    if tz < 0 or tz >= lz or ty < 0 or ty >= ly or tx < 0 or tx >= lx:
                        break
                    cl = (tz * ly + ty) * lx + tx
                    if not inball[cl]:
                        break
                    cg = (red_tgt[j, 0] * ny + red_tgt[j, 1]) * nx + red_tgt[j, 2]
                    continue
                break
            for t in range(n):
                stamp[pl[t]] = k
                res[pl[t]] = mine
            if mine:
                size[k] += 1
                sums[k, 0] += R[gi]
                sums[k, 1] += B[gi]
                sums[k, 2] += D[gi]
    return size, sums, peaks
