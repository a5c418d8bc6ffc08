"""Numba kernels of the per-voxel filters (float32, C-contiguous (z, y, x) arrays).

Exactness across blocks: every output voxel is computed by the same sequence of
float32 operations on the same neighbourhood values whatever the block it lies in
(fixed tap order, no fast-math reassociation), and array edges are handled by
clamping indices ("nearest"), so a block that touches the volume edge reproduces the
whole-volume result there. Only voxels within the filter radius of an internal block
edge differ; the block overlap covers them.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_NJ = dict(cache=True, nogil=True)


# -- running min / max (van Herk / Gil-Werman), O(1) per voxel -----------------------


@nb.njit(**_NJ)
def _running_rows(p, out, r, use_max, g, h):
    """Min (or max) over rows [j-r, j+r] of the 2D array ``p`` (clamped edges), for every column.

    van Herk/Gil-Werman: prefix (g) and suffix (h) extrema inside segments of 2r+1
    padded rows; each output row is min(h[j], g[j+2r]). The inner loop runs along the
    contiguous x axis, so it vectorises.
    """
    ny, nx = p.shape
    if r == 0:
        for j in range(ny):
            for x in range(nx):
                out[j, x] = p[j, x]
        return
    w = 2 * r + 1
    n = ny + 2 * r
    for i in range(n):
        src = p[min(max(i - r, 0), ny - 1)]
        gi = g[i]
        if i % w == 0:
            for x in range(nx):
                gi[x] = src[x]
        else:
            gp = g[i - 1]
            if use_max:
                for x in range(nx):
                    gi[x] = max(gp[x], src[x])
            else:
                for x in range(nx):
                    gi[x] = min(gp[x], src[x])
    for i in range(n - 1, -1, -1):
        src = p[min(max(i - r, 0), ny - 1)]
        hi = h[i]
        if i % w == w - 1 or i == n - 1:
            for x in range(nx):
                hi[x] = src[x]
        else:
            hn = h[i + 1]
            if use_max:
                for x in range(nx):
                    hi[x] = max(hn[x], src[x])
            else:
                for x in range(nx):
                    hi[x] = min(hn[x], src[x])
    for j in range(ny):
        a = h[j]
        b = g[j + 2 * r]
        o = out[j]
        if use_max:
            for x in range(nx):
                o[x] = max(a[x], b[x])
        else:
            for x in range(nx):
                o[x] = min(a[x], b[x])


@nb.njit(**_NJ)
def _running_x(p, out, r, use_max, b1, b2):
    """Min (or max) over [x-r, x+r] along each row of the 2D array ``p`` (clamped edges).

    Sparse-table doubling: M_2L[i] = op(M_L[i], M_L[i+L]) until 2L > 2r+1, then
    out[x] = op(M_L[x], M_L[x+2r+1-L]). log2(2r+1)+1 vectorised passes per row.
    """
    ny, nx = p.shape
    w = 2 * r + 1
    n = nx + 2 * r
    for y in range(ny):
        row = p[y]
        for i in range(r):
            b1[i] = row[0]
            b1[nx + r + i] = row[nx - 1]
        b1[r : r + nx] = row
        length = 1
        src = b1
        dst = b2
        while 2 * length <= w:
            m = n - 2 * length + 1
            s0 = src[:m]
            s1 = src[length : length + m]
            dd = dst[:m]
            if use_max:
                for i in range(m):
                    dd[i] = max(s0[i], s1[i])
            else:
                for i in range(m):
                    dd[i] = min(s0[i], s1[i])
            src, dst = dst, src
            length *= 2
        o = out[y]
        s0 = src[:nx]
        s1 = src[w - length : w - length + nx]
        if use_max:
            for x in range(nx):
                o[x] = max(s0[x], s1[x])
        else:
            for x in range(nx):
                o[x] = min(s0[x], s1[x])


@nb.njit(**_NJ)
def tophat_box(src, dst, ry, rx):
    """dst = src - opening(src) with a (2ry+1) x (2rx+1) rectangle, plane by plane (z untouched).

    ``dst`` may not alias ``src``. Opening = dilation(erosion), both separable for a
    rectangle: erode y, erode x, dilate x, dilate y. Exact (min/max only).
    """
    nz, ny, nx = src.shape
    g = np.empty((ny + 2 * ry + 1, nx), np.float32)
    h = np.empty((ny + 2 * ry + 1, nx), np.float32)
    a = np.empty((ny, nx), np.float32)
    c = np.empty((ny, nx), np.float32)
    b1 = np.empty(nx + 2 * rx, np.float32)
    b2 = np.empty(nx + 2 * rx, np.float32)
    for z in range(nz):
        p = src[z]
        _running_rows(p, a, ry, False, g, h)
        _running_x(a, c, rx, False, b1, b2)
        _running_x(c, a, rx, True, b1, b2)
        d = dst[z]
        _running_rows(a, d, ry, True, g, h)
        for y in range(ny):
            dr = d[y]
            pr = p[y]
            for x in range(nx):
                dr[x] = pr[x] - dr[x]


@nb.njit(**_NJ)
def _x_run(row, out, r, use_max, b1, b2):
    """Min (max) over [x-r, x+r] of one row (clamped edges) by sparse-table doubling."""
    nx = row.shape[0]
    w = 2 * r + 1
    n = nx + 2 * r
    for i in range(r):
        b1[i] = row[0]
        b1[nx + r + i] = row[nx - 1]
    for x in range(nx):
        b1[r + x] = row[x]
    length = 1
    src = b1
    dst = b2
    while 2 * length <= w:
        m = n - 2 * length + 1
        s0 = src[:m]
        s1 = src[length : length + m]
        dd = dst[:m]
        if use_max:
            for i in range(m):
                dd[i] = max(s0[i], s1[i])
        else:
            for i in range(m):
                dd[i] = min(s0[i], s1[i])
        src, dst = dst, src
        length *= 2
    s0 = src[:nx]
    s1 = src[w - length : w - length + nx]
    if use_max:
        for x in range(nx):
            out[x] = max(s0[x], s1[x])
    else:
        for x in range(nx):
            out[x] = min(s0[x], s1[x])


@nb.njit(**_NJ)
def tophat_ring(src, dst, ry, rx):
    """Same result as :func:`tophat_box`, streaming rows through rings of 2ry+1 rows.

    Per plane: E = x-erosion of each row; F[j] = min of E over rows j-ry..j+ry;
    G = x-dilation of F; out[j] = p[j] - max of G over rows j-ry..j+ry. The rings stay
    in cache; the y passes are direct (2ry operations per voxel), so this wins for
    small ry and tophat_box (van Herk/Gil-Werman along y) for large ry.
    """
    nz, ny, nx = src.shape
    L = 2 * ry + 1
    dt = src.dtype  # min/max are exact in the input type (uint16: 16 lanes)
    E = np.empty((L, nx), dt)  # x-eroded rows, ring by row index
    G = np.empty((L, nx), dt)  # x-dilated rows of the y-eroded image, ring
    f = np.empty(nx, dt)
    b1 = np.empty(nx + 2 * rx, dt)
    b2 = np.empty(nx + 2 * rx, dt)
    for z in range(nz):
        p = src[z]
        d = dst[z]
        e_next = 0
        for j in range(ny + ry):
            if j < ny:
                # E rows up to j + ry
                top = min(j + ry, ny - 1)
                while e_next <= top:
                    _x_run(p[e_next], E[e_next % L], rx, False, b1, b2)
                    e_next += 1
                # F[j] = min over E rows j-ry..j+ry (clamped)
                e0 = E[min(max(j - ry, 0), ny - 1) % L]
                for x in range(nx):
                    f[x] = e0[x]
                for k in range(-ry + 1, ry + 1):
                    ek = E[min(max(j + k, 0), ny - 1) % L]
                    for x in range(nx):
                        f[x] = min(f[x], ek[x])
                _x_run(f, G[j % L], rx, True, b1, b2)
            jo = j - ry  # output row: needs G rows jo-ry..jo+ry (clamped), all computed
            if jo >= 0:
                g0 = G[min(max(jo - ry, 0), ny - 1) % L]
                dr = d[jo]
                for x in range(nx):
                    dr[x] = g0[x]
                for k in range(-ry + 1, ry + 1):
                    gk = G[min(max(jo + k, 0), ny - 1) % L]
                    for x in range(nx):
                        dr[x] = max(dr[x], gk[x])
                pr = p[jo]
                for x in range(nx):
                    dr[x] = np.float32(pr[x]) - dr[x]


@nb.njit(**_NJ)
def to_float32(src, dst):
    """dst[...] = float32(src), element by element (3-D, any real dtype)."""
    nz, ny, nx = src.shape
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                dst[z, y, x] = np.float32(src[z, y, x])


# -- difference of Gaussians --------------------------------------------------------------
# Half kernels [w0, w1, ..., wr]: output = w0*c + sum_k wk*(a_-k + a_+k), accumulated in
# that order for every voxel.


@nb.njit(**_NJ)
def _row_x(src_row, buf, acc, w):
    """acc = symmetric convolution of ``src_row`` with half kernel ``w`` (clamped edges)."""
    nx = src_row.shape[0]
    r = w.shape[0] - 1
    for i in range(r):
        buf[i] = src_row[0]
        buf[nx + r + i] = src_row[nx - 1]
    buf[r : r + nx] = src_row
    c = buf[r : r + nx]
    w0 = w[0]
    for x in range(nx):
        acc[x] = w0 * c[x]
    for k in range(1, r + 1):
        wk = w[k]
        lo = buf[r - k : r - k + nx]
        hi = buf[r + k : r + k + nx]
        for x in range(nx):
            acc[x] += wk * (lo[x] + hi[x])


@nb.njit(**_NJ)
def dog_fused(src, out, kiz, kiy, kix, koz, koy, kox, strip):
    """out = G_inner * src - G_outer * src, in strips of ``strip`` rows, one z plane at a time.

    Same arithmetic per voxel as conv_z -> conv_y -> conv_x for each Gaussian (taps
    accumulated centre first, then k = 1..r), but both Gaussians share the input
    loads, the intermediates stay in strip/row buffers, and a strip's z window of input
    rows stays in cache from one plane to the next.
    """
    nz, ny, nx = src.shape
    ri = kiz.shape[0] - 1
    ro = koz.shape[0] - 1
    ryi = kiy.shape[0] - 1
    ryo = koy.shape[0] - 1
    hy = max(ryi, ryo)
    nb_rows = min(strip + 2 * hy, ny)
    ai = np.empty((nb_rows, nx), np.float32)
    ao = np.empty((nb_rows, nx), np.float32)
    rowi = np.empty(nx, np.float32)
    rowo = np.empty(nx, np.float32)
    r = max(kix.shape[0], kox.shape[0])
    buf = np.empty(nx + 2 * r, np.float32)
    acci = np.empty(nx, np.float32)
    acco = np.empty(nx, np.float32)
    for y0 in range(0, ny, strip):
        y1 = min(y0 + strip, ny)
        ya = max(y0 - hy, 0)
        yb = min(y1 + hy, ny)
        for z in range(nz):
            for y in range(ya, yb):
                di = ai[y - ya]
                do = ao[y - ya]
                c = src[z, y]
                wi0 = kiz[0]
                wo0 = koz[0]
                for x in range(nx):
                    di[x] = wi0 * c[x]
                    do[x] = wo0 * c[x]
                for k in range(1, max(ri, ro) + 1):
                    a = src[max(z - k, 0), y]
                    b = src[min(z + k, nz - 1), y]
                    if k <= ri and k <= ro:
                        wi = kiz[k]
                        wo = koz[k]
                        for x in range(nx):
                            s = a[x] + b[x]
                            di[x] += wi * s
                            do[x] += wo * s
                    elif k <= ro:
                        wo = koz[k]
                        for x in range(nx):
                            do[x] += wo * (a[x] + b[x])
                    else:
                        wi = kiz[k]
                        for x in range(nx):
                            di[x] += wi * (a[x] + b[x])
            for y in range(y0, y1):
                for plane, w, row in ((ai, kiy, rowi), (ao, koy, rowo)):
                    ry = w.shape[0] - 1
                    c = plane[y - ya]
                    w0 = w[0]
                    for x in range(nx):
                        row[x] = w0 * c[x]
                    for k in range(1, ry + 1):
                        a = plane[max(y - k, 0) - ya]
                        b = plane[min(y + k, ny - 1) - ya]
                        wk = w[k]
                        for x in range(nx):
                            row[x] += wk * (a[x] + b[x])
                _row_x(rowi, buf, acci, kix)
                _row_x(rowo, buf, acco, kox)
                d = out[z, y]
                for x in range(nx):
                    d[x] = acci[x] - acco[x]
