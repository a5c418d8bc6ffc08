"""Numba kernels of the touching-cell split (see :mod:`spimflow.steps.detect.split`).

Locality, as in :mod:`._objects_nb`: everything computed for a cell with peak voxel p
reads only the filtered image, its local maxima and the rejected maxima's redirects
within a fixed box around p (:func:`spimflow.steps.detect.split.split_margin`). Positions are integer offsets
from p or from a maximum's peak voxel plus its sub-voxel offset (never absolute
floats), regions are explored in an order that depends only on those offsets, and
sums over maxima run in (z, y, x) order of their peaks, so the results are the same
floats in every block that holds that box.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from spimflow.steps.detect._objects_nb import _neighbour_offsets

_NJ = dict(cache=True, nogil=True)


@nb.njit(**_NJ)
def _gather(dog, pz, py, px, hz, hy, hx, loc):
    """Copy the box |d| <= (hz + 1, hy + 1, hx + 1) around p into ``loc`` (flat, raster order); -inf outside ``dog``."""
    nz, ny, nx = dog.shape
    lz, ly, lx = 2 * hz + 3, 2 * hy + 3, 2 * hx + 3
    z0, y0, x0 = pz - hz - 1, py - hy - 1, px - hx - 1
    ninf = np.float32(-np.inf)
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


@nb.njit(**_NJ)
def _owner(loc, li, lc, thr, wid, ly, lx, z0, y0, x0, ny, nx, inball, loff, skey, red_tgt, memo, pl):
    """1 if the steepest ascent from local voxel ``li`` ends at the seed (local ``lc``) inside the ball, else 0.

    ``loc``: the box gathered by :func:`_gather` (local voxel (0, 0, 0) is volume voxel
    (z0, y0, x0) of ``dog``). The ascent, ties and redirects of rejected maxima are
    those of :func:`._objects_nb.cell_shapes`; a path leaving the ball (``inball``) or
    reaching a voxel <= ``thr`` or another root fails. ``memo`` holds
    ``wid * 4 + result + 1`` for every voxel resolved during pass ``wid``, so each
    voxel is walked once per pass.
    """
    nred = skey.shape[0]
    lz = loc.shape[0] // (ly * lx)
    n = 0
    cl = li
    result = 0
    while True:
        s = memo[cl]
        if s // 4 == wid:
            result = s % 4 - 1
            break
        pl[n] = cl
        n += 1
        if cl == lc:
            result = 1
            break
        v = loc[cl]
        if not (v > thr):
            result = 0
            break
        # branch-free arg-max as in cell_shapes: earlier offsets win ties; an equal
        # neighbour qualifies only if it precedes the voxel (e < 13)
        best = -1
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
        if best >= 0:
            cl = cl + loff[best]
        else:
            az = cl // (ly * lx)
            ay = (cl // lx) % ly
            ax = cl % lx
            gi = ((z0 + az) * ny + (y0 + ay)) * nx + (x0 + ax)
            j = np.searchsorted(skey, gi)
            if not (j < nred and skey[j] == gi):
                result = 0
                break
            tz = red_tgt[j, 0] - z0
            ty = red_tgt[j, 1] - y0
            tx = red_tgt[j, 2] - x0
            if tz < 1 or tz >= lz - 1 or ty < 1 or ty >= ly - 1 or tx < 1 or tx >= lx - 1:
                result = 0
                break
            cl = (tz * ly + ty) * lx + tx
        if not inball[cl]:
            result = 0
            break
    for t in range(n):
        memo[pl[t]] = wid * 4 + result + 1
    return result


@nb.njit(**_NJ)
def _owner_direct(dog, z, y, x, pz, py, px, thr, wid, hz, hy, hx, ly, lx, inball, nbr, skey, red_tgt, memo, pl):
    """:func:`_owner` reading ``dog`` directly (bounds-checked) instead of a gathered box.

    The box is |d| <= (hz + 1, hy + 1, hx + 1) around p, local strides (ly, lx).
    """
    nz, ny, nx = dog.shape
    nred = skey.shape[0]
    n = 0
    cz, cy, cx = z, y, x
    result = 0
    while True:
        cl = ((cz - pz + hz + 1) * ly + (cy - py + hy + 1)) * lx + (cx - px + hx + 1)
        s = memo[cl]
        if s // 4 == wid:
            result = s % 4 - 1
            break
        pl[n] = cl
        n += 1
        if cz == pz and cy == py and cx == px:
            result = 1
            break
        v = dog[cz, cy, cx]
        if not (v > thr):
            result = 0
            break
        best = -1
        bv = v
        for e in range(26):
            zz = cz + nbr[e, 0]
            yy = cy + nbr[e, 1]
            xx = cx + nbr[e, 2]
            if zz < 0 or zz >= nz or yy < 0 or yy >= ny or xx < 0 or xx >= nx:
                continue
            w = dog[zz, yy, xx]
            if w > bv or (w == v and best == -1 and e < 13):
                bv = w
                best = e
        if best >= 0:
            tz, ty, tx = cz + nbr[best, 0], cy + nbr[best, 1], cx + nbr[best, 2]
        else:
            gi = (cz * ny + cy) * nx + cx
            j = np.searchsorted(skey, gi)
            if not (j < nred and skey[j] == gi):
                result = 0
                break
            tz, ty, tx = red_tgt[j, 0], red_tgt[j, 1], red_tgt[j, 2]
        if abs(tz - pz) > hz or abs(ty - py) > hy or abs(tx - px) > hx:
            result = 0
            break
        if not inball[((tz - pz + hz + 1) * ly + (ty - py + hy + 1)) * lx + (tx - px + hx + 1)]:
            result = 0
            break
        cz, cy, cx = tz, ty, tx
    for t in range(n):
        memo[pl[t]] = wid * 4 + result + 1
    return result


@nb.njit(**_NJ)
def _region(loc, lc, thr, wid, ly, lx, z0, y0, x0, ny, nx, inball, loff, skey, red_tgt, memo, seen, pl, out):
    """Local indices of the seed's watershed-basin voxels with value > ``thr`` inside the ball, in ``out``.

    Breadth-first from the seed (local ``lc``) over 26-neighbours in fixed order, so the
    result and its order depend only on the image around the seed. The basin part
    above any level is connected (an ascent only climbs), so this finds all of it.
    Returns the count.
    """
    if not (loc[lc] > thr):
        return 0
    out[0] = lc
    seen[lc] = wid
    n = 1
    head = 0
    while head < n:
        cur = out[head]
        head += 1
        for e in range(26):
            li = cur + loff[e]
            if seen[li] == wid or not inball[li]:
                continue
            seen[li] = wid
            if not (loc[li] > thr):
                continue
            if _owner(loc, li, lc, thr, wid, ly, lx, z0, y0, x0, ny, nx, inball, loff, skey, red_tgt, memo, pl):
                out[n] = li
                n += 1
    return n


@nb.njit(**_NJ)
def _box_max(a, z, y, x, bz, by, bx, oz, oy, ox, nz, ny, nx):
    """Max of ``a`` over the box |d| <= (bz, by, bx) at (z, y, x) (clipped to [0, n)), read at +(oz, oy, ox)."""
    m = -np.inf
    for zz in range(max(z - bz, 0), min(z + bz + 1, nz)):
        for yy in range(max(y - by, 0), min(y + by + 1, ny)):
            for xx in range(max(x - bx, 0), min(x + bx + 1, nx)):
                m = max(m, np.float64(a[zz + oz, yy + oy, xx + ox]))
    return m


@nb.njit(**_NJ)
def _prof(tab, a, u, u0, step):
    """Linear interpolation of the sampled 1-D profile ``tab[a]`` (first sample at u0, spacing step) at u."""
    f = (u - u0) / step
    j = int(np.floor(f))
    if j < 0 or j >= tab.shape[1] - 1:
        return 0.0
    w = f - j
    return tab[a, j] * (1.0 - w) + tab[a, j + 1] * w


@nb.njit(**_NJ)
def _model(pi, po, u0, step, dz, dy, dx):
    """Single-cell model at offset (dz, dy, dx) voxels from its centre: product of inner minus outer profiles."""
    a = _prof(pi, 0, dz, u0, step) * _prof(pi, 1, dy, u0, step) * _prof(pi, 2, dx, u0, step)
    b = _prof(po, 0, dz, u0, step) * _prof(po, 1, dy, u0, step) * _prof(po, 2, dx, u0, step)
    return a - b


@nb.njit(**_NJ)
def _fit3(fm, f0, fp):
    """Sub-voxel offset of a peak from 3 samples (as :func:`._objects_nb._fit3`)."""
    if fm > 0 and f0 > 0 and fp > 0:
        a = np.log(fm)
        b = np.log(f0)
        c = np.log(fp)
    else:
        a = fm
        b = f0
        c = fp
    den = a - 2.0 * b + c
    if not (den < 0):
        return 0.0
    off = 0.5 * (a - c) / den
    return min(max(off, -0.5), 0.5)


@nb.njit(**_NJ)
def _residual(dog, z, y, x, near, nn, seeds, deltas, amp, vz, vy, vx, t2, pi, po, u0, step):
    """dog at (z, y, x) minus the models of the listed maxima whose centre is within sqrt(t2) µm; -inf outside.

    ``near[:nn]`` indexes ``seeds`` / ``deltas`` / ``amp`` in increasing order (the
    maxima's (z, y, x) order), so the sum is the same float whichever cell asks.
    """
    nz, ny, nx = dog.shape
    if z < 0 or z >= nz or y < 0 or y >= ny or x < 0 or x >= nx:
        return -np.inf
    r = np.float64(dog[z, y, x])
    for t in range(nn):
        j = near[t]
        dz = (z - seeds[j, 0]) - deltas[j, 0]
        dy = (y - seeds[j, 1]) - deltas[j, 1]
        dx = (x - seeds[j, 2]) - deltas[j, 2]
        a = dz * vz
        b = dy * vy
        c = dx * vx
        if a * a + b * b + c * c > t2:
            continue
        r -= amp[j] * _model(pi, po, u0, step, dz, dy, dx)
    return r


@nb.njit(**_NJ)
def _without(dog, z, y, x, skip, near, nn, seeds, deltas, amp, vz, vy, vx, t2, pi, po, u0, step):
    """:func:`_residual` without the model of maximum ``skip``."""
    nz, ny, nx = dog.shape
    if z < 0 or z >= nz or y < 0 or y >= ny or x < 0 or x >= nx:
        return -np.inf
    r = np.float64(dog[z, y, x])
    for t in range(nn):
        j = near[t]
        if j == skip:
            continue
        dz = (z - seeds[j, 0]) - deltas[j, 0]
        dy = (y - seeds[j, 1]) - deltas[j, 1]
        dx = (x - seeds[j, 2]) - deltas[j, 2]
        a = dz * vz
        b = dy * vy
        c = dx * vx
        if a * a + b * b + c * c > t2:
            continue
        r -= amp[j] * _model(pi, po, u0, step, dz, dy, dx)
    return r


@nb.njit(**_NJ)
def _insertion_sort(a, n):
    """Sort a[:n] in place (short lists)."""
    for i in range(1, n):
        v = a[i]
        j = i - 1
        while j >= 0 and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


@nb.njit(**_NJ)
def _ball(hz, hy, hx, vz, vy, vx, radius_um):
    """Neighbour offsets, ball mask and seed index of the box |d| <= (hz + 1, hy + 1, hx + 1), flat raster order."""
    nbr = _neighbour_offsets()
    lz, ly, lx = 2 * hz + 3, 2 * hy + 3, 2 * hx + 3
    loff = np.empty(26, np.int64)
    for e in range(26):
        loff[e] = (nbr[e, 0] * ly + nbr[e, 1]) * lx + nbr[e, 2]
    inball = np.zeros(lz * ly * lx, np.uint8)  # never on the outer ring: every ball voxel has its 26 neighbours
    r2 = radius_um * radius_um
    for az in range(-hz, hz + 1):
        for ay in range(-hy, hy + 1):
            for ax in range(-hx, hx + 1):
                a = az * vz
                b = ay * vy
                c = ax * vx
                if a * a + b * b + c * c <= r2:
                    inball[((az + hz + 1) * ly + (ay + hy + 1)) * lx + (ax + hx + 1)] = 1
    lc = ((hz + 1) * ly + (hy + 1)) * lx + (hx + 1)
    return nbr, loff, inball, lc


@nb.njit(**_NJ)
def _keys(points, ny, nx):
    """Raster keys (z * ny + y) * nx + x of (n, 3) voxel indices."""
    out = np.empty(points.shape[0], np.int64)
    for i in range(points.shape[0]):
        out[i] = (points[i, 0] * ny + points[i, 1]) * nx + points[i, 2]
    return out


@nb.njit(**_NJ)
def find_partners(
    dog,
    thr,
    seeds,
    deltas,
    owned,
    red_src,
    red_tgt,
    hz,
    hy,
    hx,
    vz,
    vy,
    vx,
    radius_um,
    model_um,
    min_ratio,
    min_value,
    min_sep_um,
    excl_um,
    pi,
    po,
    u0,
    step,
):
    """Look for a second cell hidden in the watershed basin of each cell ``seeds[owned]``.

    Single-cell model: amp times the filtered image of one cell of the expected size
    centred at c, the product of per-axis profiles ``pi`` (inner Gaussian) minus ``po``
    (outer), sampled every ``step`` voxels from ``u0`` (1 at the centre; see
    :func:`spimflow.steps.detect.split.single_cell_profiles`). Every local maximum j
    (``seeds[j]``: all candidates, kept or not, in (z, y, x) order; centre ``seeds[j]
    + deltas[j]``) has amp_j = its value / model at its peak. The *residual* at voxel
    x: the filtered value minus the models of every local maximum centred within
    ``model_um`` of x, the same number whichever cell computes it.

    Cell k (peak p = ``seeds[owned[k]]``, value v_p, centre c_p). Candidates: the voxels
    of its watershed basin (the steepest-ascent watershed of
    :func:`._objects_nb.cell_shapes`, same ties and redirects ``red_src`` ->
    ``red_tgt``) within ``radius_um`` of p, with value > t = max(thr, min_value,
    min_ratio * v_p), at least ``min_sep_um`` - half a voxel diagonal from c_p and
    farther than ``excl_um`` from every other local maximum's centre. The partner's
    peak q: the candidate with the largest residual that is a maximum of the residual
    over its 26 neighbours (an equal earlier neighbour in (z, y, x) order wins) and
    whose residual is >= t; its centre: q plus a 3-point fit of the residual along each
    axis. The cell is split when that centre is ``min_sep_um`` or more from c_p and
    ``excl_um`` or more from every other local maximum, and the residual at q is still
    >= t when the parent's model is re-centred on the image minus its neighbours'
    models (else the "partner" is the parent's own cell, pulled off centre by a
    neighbour). A voxel is a maximum of the residual for at most one cell (basins do
    not overlap), so a hidden cell is split off at most once.

    Returns
    -------
    score : float64[m]
        Residual at the partner's peak / v_p (0 when no candidate qualified).
    split : bool[m]
    peak : int64[m, 3]
        The partner's peak voxel q minus p.
    centre : float64[m, 2, 3]
        Model centres of the parent (c_p) and the partner minus p, voxels.
    amp : float64[m, 2]
        Model amplitudes of the parent and the partner (residual at q / model at q).
    Rows of unsplit cells hold zeros apart from ``score``.
    """
    nz, ny, nx = dog.shape
    m = owned.shape[0]
    score = np.zeros(m, np.float64)
    split = np.zeros(m, np.bool_)
    peak = np.zeros((m, 3), np.int64)
    centre = np.zeros((m, 2, 3), np.float64)
    amps = np.zeros((m, 2), np.float64)
    if m == 0:
        return score, split, peak, centre, amps

    nbr, loff, inball, lc = _ball(hz, hy, hx, vz, vy, vx, radius_um)
    ly, lx = 2 * hy + 3, 2 * hx + 3
    nl = inball.shape[0]
    # candidate peaks lie min_sep_um - half a voxel diagonal from the centre (their fitted centre, which moves
    # by half a voxel at most per axis, must be min_sep_um away), so the ball voxels that can be one lie
    # min_sep_um - a voxel diagonal from p (raster order)
    diag = np.sqrt(vz * vz + vy * vy + vx * vx)
    near2 = max(min_sep_um - 0.5 * diag, 0.0) ** 2
    shell2 = max(min_sep_um - diag, 0.0) ** 2
    shell = np.empty((nl, 3), np.int64)
    nsh = 0
    for az in range(-hz, hz + 1):
        for ay in range(-hy, hy + 1):
            for ax in range(-hx, hx + 1):
                a = az * vz
                b = ay * vy
                c = ax * vx
                d2 = a * a + b * b + c * c
                if inball[((az + hz + 1) * ly + (ay + hy + 1)) * lx + (ax + hx + 1)] and d2 >= shell2:
                    shell[nsh, 0] = az
                    shell[nsh, 1] = ay
                    shell[nsh, 2] = ax
                    nsh += 1
    memo = np.full(nl, -1, np.int64)
    pl = np.empty(nl + 1, np.int64)
    cidx = np.empty(nl, np.int64)
    cres = np.empty(nl, np.float64)
    skey = _keys(red_src, ny, nx)
    t2 = model_um * model_um
    sep2 = min_sep_um * min_sep_um
    ex2 = excl_um * excl_um

    # every local maximum's model amplitude
    ns_ = seeds.shape[0]
    amp = np.zeros(ns_, np.float64)
    for j in range(ns_):
        t0 = _model(pi, po, u0, step, -deltas[j, 0], -deltas[j, 1], -deltas[j, 2])
        if t0 > 0:
            amp[j] = np.float64(dog[seeds[j, 0], seeds[j, 1], seeds[j, 2]]) / t0
    # bins of the maxima, so a cell lists those it can involve: centres within radius + one voxel + model of p
    reach = radius_um + diag + model_um
    reach2 = reach * reach
    gz = int(np.ceil(reach / vz)) + 1
    gy = int(np.ceil(reach / vy)) + 1
    gx = int(np.ceil(reach / vx)) + 1
    nbz = nz // gz + 1
    nby = ny // gy + 1
    nbx = nx // gx + 1
    # counting sort of the maxima by bin (stable: seed order within a bin)
    nbins = nbz * nby * nbx
    start = np.zeros(nbins + 1, np.int64)
    bkey = np.empty(ns_, np.int64)
    for j in range(ns_):
        bkey[j] = ((seeds[j, 0] // gz) * nby + seeds[j, 1] // gy) * nbx + seeds[j, 2] // gx
        start[bkey[j] + 1] += 1
    for b in range(nbins):
        start[b + 1] += start[b]
    fill = start[:nbins].copy()
    border = np.empty(ns_, np.int64)
    for j in range(ns_):
        border[fill[bkey[j]]] = j
        fill[bkey[j]] += 1
    near = np.empty(ns_, np.int64)
    ck = np.zeros(3)
    cp = np.zeros(3)
    qo = np.zeros(3, np.int64)
    six = np.empty(6)
    eight = np.empty(8)

    for k in range(m):
        c = owned[k]
        pz, py, px = seeds[c, 0], seeds[c, 1], seeds[c, 2]
        vp = dog[pz, py, px]
        if not (vp > thr):
            continue
        tcand = max(np.float32(thr), np.float32(min_value), np.float32(min_ratio) * vp)
        # candidates, in raster order
        nc = 0
        nn = -1
        for i in range(nsh):
            oz_, oy_, ox_ = shell[i, 0], shell[i, 1], shell[i, 2]
            z, y, x = pz + oz_, py + oy_, px + ox_
            if z < 0 or z >= nz or y < 0 or y >= ny or x < 0 or x >= nx:
                continue
            if not (dog[z, y, x] > tcand):
                continue
            a0 = (oz_ - deltas[c, 0]) * vz
            a1 = (oy_ - deltas[c, 1]) * vy
            a2 = (ox_ - deltas[c, 2]) * vx
            if a0 * a0 + a1 * a1 + a2 * a2 < near2:
                continue
            if nn < 0:  # the maxima near p, in (z, y, x) order (listed once, when first needed)
                nn = 0
                qz, qy, qx = pz // gz, py // gy, px // gx
                for dz in range(-1, 2):
                    for dy in range(-1, 2):
                        for dx in range(-1, 2):
                            zz, yy, xx = qz + dz, qy + dy, qx + dx
                            if zz < 0 or zz >= nbz or yy < 0 or yy >= nby or xx < 0 or xx >= nbx:
                                continue
                            key = (zz * nby + yy) * nbx + xx
                            for t in range(start[key], start[key + 1]):
                                j = border[t]
                                a0 = ((seeds[j, 0] - pz) + deltas[j, 0]) * vz
                                a1 = ((seeds[j, 1] - py) + deltas[j, 1]) * vy
                                a2 = ((seeds[j, 2] - px) + deltas[j, 2]) * vx
                                if a0 * a0 + a1 * a1 + a2 * a2 <= reach2:
                                    near[nn] = j
                                    nn += 1
                _insertion_sort(near, nn)
            # within excl_um of another local maximum: that cell, not a hidden one
            clash = False
            for t in range(nn):
                j = near[t]
                if j == c:
                    continue
                a0 = ((seeds[j, 0] - z) + deltas[j, 0]) * vz
                a1 = ((seeds[j, 1] - y) + deltas[j, 1]) * vy
                a2 = ((seeds[j, 2] - x) + deltas[j, 2]) * vx
                if a0 * a0 + a1 * a1 + a2 * a2 < ex2:
                    clash = True
                    break
            if clash:
                continue
            if _owner_direct(
                dog, z, y, x, pz, py, px, tcand, k, hz, hy, hx, ly, lx, inball, nbr, skey, red_tgt, memo, pl
            ):
                cidx[nc] = i
                nc += 1
        if nc == 0:
            continue
        # the partner: the candidate with the largest residual that is a maximum of the residual
        for t in range(nc):
            i = cidx[t]
            cres[t] = _residual(
                dog,
                pz + shell[i, 0],
                py + shell[i, 1],
                px + shell[i, 2],
                near,
                nn,
                seeds,
                deltas,
                amp,
                vz,
                vy,
                vx,
                t2,
                pi,
                po,
                u0,
                step,
            )
        best = -np.inf
        bi = -1
        for _ in range(nc):
            # the largest residual left (the first in raster order among equals)
            tb = -1
            ri = -np.inf
            for t in range(nc):
                if cres[t] > ri:
                    ri = cres[t]
                    tb = t
            if tb < 0 or not (ri >= tcand):
                break
            cres[tb] = -np.inf
            i = cidx[tb]
            z, y, x = pz + shell[i, 0], py + shell[i, 1], px + shell[i, 2]
            ismax = True
            for e in range(26):
                w = _residual(
                    dog,
                    z + nbr[e, 0],
                    y + nbr[e, 1],
                    x + nbr[e, 2],
                    near,
                    nn,
                    seeds,
                    deltas,
                    amp,
                    vz,
                    vy,
                    vx,
                    t2,
                    pi,
                    po,
                    u0,
                    step,
                )
                if w > ri or (w == ri and e < 13):
                    ismax = False
                    break
            if ismax:
                best = ri
                bi = i
                break
        if bi < 0:
            continue
        score[k] = best / vp
        for a in range(3):
            qo[a] = shell[bi, a]
        z, y, x = pz + qo[0], py + qo[1], px + qo[2]
        for e in range(6):  # the residual one voxel before and after q along each axis
            a = e // 2
            sgn = 2 * (e % 2) - 1
            six[e] = _residual(
                dog,
                z + sgn * (a == 0),
                y + sgn * (a == 1),
                x + sgn * (a == 2),
                near,
                nn,
                seeds,
                deltas,
                amp,
                vz,
                vy,
                vx,
                t2,
                pi,
                po,
                u0,
                step,
            )
        for a in range(3):
            rm, rp = six[2 * a], six[2 * a + 1]
            ck[a] = qo[a] + (_fit3(rm, best, rp) if (rm > -np.inf and rp > -np.inf) else 0.0)
        mq = _model(pi, po, u0, step, qo[0] - ck[0], qo[1] - ck[1], qo[2] - ck[2])
        if not (mq > 0):
            continue
        a0 = (ck[0] - deltas[c, 0]) * vz
        a1 = (ck[1] - deltas[c, 1]) * vy
        a2 = (ck[2] - deltas[c, 2]) * vx
        if a0 * a0 + a1 * a1 + a2 * a2 < sep2:
            continue
        # the parent re-centred on the image minus its neighbours' models must still leave the partner: else
        # the partner is the parent's own cell, pulled off centre by a neighbour
        for e in range(8):  # p, the voxels before and after p along each axis, q
            if e < 7:
                a = (e - 1) // 2
                sgn = 2 * ((e - 1) % 2) - 1 if e > 0 else 0
                gz_, gy_, gx_ = pz + sgn * (a == 0), py + sgn * (a == 1), px + sgn * (a == 2)
            else:
                gz_, gy_, gx_ = z, y, x
            eight[e] = _without(dog, gz_, gy_, gx_, c, near, nn, seeds, deltas, amp, vz, vy, vx, t2, pi, po, u0, step)
        g0 = eight[0]
        for a in range(3):
            gm, gp = eight[1 + 2 * a], eight[2 + 2 * a]
            cp[a] = _fit3(gm, g0, gp) if (gm > -np.inf and gp > -np.inf) else 0.0
        m0 = _model(pi, po, u0, step, -cp[0], -cp[1], -cp[2])
        if not (g0 > 0 and m0 > 0):
            continue
        rq = eight[7] - g0 / m0 * _model(pi, po, u0, step, qo[0] - cp[0], qo[1] - cp[1], qo[2] - cp[2])
        if not (rq >= tcand):
            continue
        # no other local maximum centred near the partner: it would be that cell
        clash = False
        for t in range(nn):
            j = near[t]
            if j == c:
                continue
            a0 = (((seeds[j, 0] - pz) + deltas[j, 0]) - ck[0]) * vz
            a1 = (((seeds[j, 1] - py) + deltas[j, 1]) - ck[1]) * vy
            a2 = (((seeds[j, 2] - px) + deltas[j, 2]) - ck[2]) * vx
            if a0 * a0 + a1 * a1 + a2 * a2 < ex2:
                clash = True
                break
        if clash:
            continue
        split[k] = True
        for a in range(3):
            peak[k, a] = qo[a]
            centre[k, 0, a] = deltas[c, a]
            centre[k, 1, a] = ck[a]
        amps[k, 0] = amp[c]
        amps[k, 1] = best / mq
    return score, split, peak, centre, amps


@nb.njit(**_NJ)
def measure_halves(
    dog,
    thr,
    seeds,
    owned,
    red_src,
    red_tgt,
    hz,
    hy,
    hx,
    vz,
    vy,
    vx,
    radius_um,
    shape_radius_um,
    centre,
    amps,
    pi,
    po,
    u0,
    step,
    raw,
    bg,
    oz,
    oy,
    ox,
    bz,
    by,
    bx,
):
    """Shapes and measurements of the two halves of the cells ``seeds[owned]`` that :func:`find_partners` split.

    Each half's shape: the voxels of the cell's watershed basin (value > ``thr``, within
    ``radius_um`` of its peak p) that its model (``amps`` x model at ``centre``, offsets
    from p) explains better than the other's (ties: the parent), within
    ``shape_radius_um`` of its own centre. ``raw`` and ``bg`` may be larger arrays:
    their voxel (z+oz, y+oy, x+ox) is ``dog``'s (z, y, x).

    Returns
    -------
    centroid : float64[m, 2, 3]
        Centroid of each half's shape minus p, voxels (NaN when the half is empty).
    size : int64[m, 2]
        Shape voxels per half.
    sums : float64[m, 2, 3]
        Sums of raw, bg, filtered over each half's shape voxels.
    peaks : float64[m, 2, 3]
        Max of raw, bg, filtered over the box |d| <= (bz, by, bx) at each centre
        rounded to the nearest voxel.
    """
    nz, ny, nx = dog.shape
    m = owned.shape[0]
    centroid = np.zeros((m, 2, 3), np.float64)
    size = np.zeros((m, 2), np.int64)
    sums = np.zeros((m, 2, 3), np.float64)
    peaks = np.zeros((m, 2, 3), np.float64)
    if m == 0:
        return centroid, size, sums, peaks
    nbr, loff, inball, lc = _ball(hz, hy, hx, vz, vy, vx, radius_um)
    ly, lx = 2 * hy + 3, 2 * hx + 3
    nl = inball.shape[0]
    loc = np.empty(nl, np.float32)
    memo = np.full(nl, -1, np.int64)
    seen = np.full(nl, -1, np.int64)
    pl = np.empty(nl + 1, np.int64)
    reg = np.empty(nl, np.int64)
    skey = _keys(red_src, ny, nx)
    s2 = shape_radius_um * shape_radius_um
    for k in range(m):
        c = owned[k]
        pz, py, px = seeds[c, 0], seeds[c, 1], seeds[c, 2]
        z0, y0, x0 = pz - hz - 1, py - hy - 1, px - hx - 1
        _gather(dog, pz, py, px, hz, hy, hx, loc)
        ns = _region(
            loc, lc, np.float32(thr), k, ly, lx, z0, y0, x0, ny, nx, inball, loff, skey, red_tgt, memo, seen, pl, reg
        )
        for i in range(ns):
            li = reg[i]
            iz, iy, ix = li // (ly * lx) - hz - 1, (li // lx) % ly - hy - 1, li % lx - hx - 1
            mp = amps[k, 0] * _model(pi, po, u0, step, iz - centre[k, 0, 0], iy - centre[k, 0, 1], ix - centre[k, 0, 2])
            mk = amps[k, 1] * _model(pi, po, u0, step, iz - centre[k, 1, 0], iy - centre[k, 1, 1], ix - centre[k, 1, 2])
            h = 1 if mk > mp else 0
            d0 = (iz - centre[k, h, 0]) * vz
            d1 = (iy - centre[k, h, 1]) * vy
            d2 = (ix - centre[k, h, 2]) * vx
            if d0 * d0 + d1 * d1 + d2 * d2 > s2:
                continue
            z, y, x = pz + iz, py + iy, px + ix
            size[k, h] += 1
            sums[k, h, 0] += raw[z + oz, y + oy, x + ox]
            sums[k, h, 1] += bg[z + oz, y + oy, x + ox]
            sums[k, h, 2] += loc[li]
            centroid[k, h, 0] += iz
            centroid[k, h, 1] += iy
            centroid[k, h, 2] += ix
        for h in range(2):
            for a in range(3):
                centroid[k, h, a] = centroid[k, h, a] / size[k, h] if size[k, h] > 0 else np.nan
            cz = pz + int(np.floor(centre[k, h, 0] + 0.5))
            cy = py + int(np.floor(centre[k, h, 1] + 0.5))
            cx = px + int(np.floor(centre[k, h, 2] + 0.5))
            peaks[k, h, 0] = _box_max(raw, cz, cy, cx, bz, by, bx, oz, oy, ox, nz, ny, nx)
            peaks[k, h, 1] = _box_max(bg, cz, cy, cx, bz, by, bx, oz, oy, ox, nz, ny, nx)
            peaks[k, h, 2] = _box_max(dog, cz, cy, cx, bz, by, bx, 0, 0, 0, nz, ny, nx)
    return centroid, size, sums, peaks
