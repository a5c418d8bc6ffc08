"""Synthetic iDISCO+-like volumes with known cells (for tests and benchmarks).

Background: a dim level with a multiplicative illumination gradient along x, a smooth
autofluorescence texture, Poisson (shot) noise; cells: Gaussian blobs of varying size
and brightness, some in touching pairs. Truth positions are (z, y, x) voxel indices
of the blob centres (continuous, voxel centres at integers).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter


def _place_centres(rng, shape_um, n, min_dist, pair_fraction, pair_dist):
    """Random centres (µm) at least ``min_dist`` apart, except the partners of touching pairs."""
    pts: list[np.ndarray] = []
    partner: list[bool] = []
    tries = 0
    cell = min_dist
    grid: dict[tuple, list[int]] = {}

    def free(p, exclude=-1):
        key = tuple((p // cell).astype(int))
        for dz in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    for j in grid.get((key[0] + dz, key[1] + dy, key[2] + dx), []):
                        if j != exclude and np.linalg.norm(pts[j] - p) < min_dist:
                            return False
        return True

    def add(p, is_partner):
        grid.setdefault(tuple((p // cell).astype(int)), []).append(len(pts))
        pts.append(p)
        partner.append(is_partner)

    margin = np.array([2.0, 2.0, 2.0])
    while len(pts) < n and tries < 50 * n:
        tries += 1
        p = margin + rng.random(3) * (shape_um - 2 * margin)
        if not free(p):
            continue
        if rng.random() < pair_fraction and len(pts) + 1 < n:
            d = rng.normal(size=3)
            d /= np.linalg.norm(d)
            q = p + d * rng.uniform(*pair_dist)
            if np.all(q > margin) and np.all(q < shape_um - margin) and free(q):
                add(p, False)
                add(q, True)
                continue
        add(p, False)
    return np.array(pts).reshape(-1, 3), np.array(partner, bool)


def make_synthetic_cells(
    shape: Sequence[int],
    voxel_size: Sequence[float] = (4.0, 2.0, 2.0),
    *,
    density_per_mm3: float = 40000.0,
    sigma_um: tuple[float, float] = (4.0, 6.0),
    amplitude: tuple[float, float] = (800.0, 3000.0),
    background: float = 150.0,
    gradient: float = 0.5,
    texture: float = 60.0,
    pair_fraction: float = 0.1,
    pair_distance_um: tuple[float, float] | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Make a synthetic iDISCO+-like volume with known cells.

    Cells are at least 3.5 σ_max apart except touching pairs (centres 2.8-3.5 σ_max apart,
    or ``pair_distance_um``).

    Parameters
    ----------
    shape : sequence of int
        Volume shape (z, y, x), voxels.
    voxel_size : sequence of float, optional
        Voxel size (z, y, x), µm.
    density_per_mm3 : float, optional
        Cells per mm³.
    sigma_um : (float, float), optional
        Range of the cells' Gaussian sigma, µm.
    amplitude : (float, float), optional
        Range of the cells' peak brightness (before the illumination gradient), counts.
    background : float, optional
        Mean background level, counts.
    gradient : float, optional
        Relative illumination falls linearly from 1 to 1 - ``gradient`` along x
        (multiplies cells and background).
    texture : float, optional
        Amplitude of smooth (σ 15 µm) autofluorescence, counts.
    pair_fraction : float, optional
        Probability that a cell gets a touching partner.
    pair_distance_um : (float, float), optional
        Range of the centre distance of touching pairs, µm; default 2.8-3.5 σ_max.
        Other cells stay 3.5 σ_max apart (from every cell) and at least as far as the
        pairs' largest distance.
    seed : int, optional
        Random seed; the output is deterministic for a given seed.

    Returns
    -------
    volume : ndarray of uint16
        The image (z, y, x), with Poisson noise.
    truth : pandas.DataFrame
        One row per cell: ``z``, ``y``, ``x`` (voxels, continuous), ``sigma_um``,
        ``amplitude`` (after the illumination gradient) and ``pair`` (True for the
        second cell of a touching pair).

    Examples
    --------
    >>> volume, truth = make_synthetic_cells((20, 60, 60), seed=1)
    >>> volume.dtype.name, volume.shape, len(truth)
    ('uint16', (20, 60, 60), 46)
    >>> list(truth.columns)
    ['z', 'y', 'x', 'sigma_um', 'amplitude', 'pair']
    """
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    vs = np.asarray(voxel_size, float)
    shape_um = (np.asarray(shape) - 1) * vs
    volume_mm3 = np.prod(np.asarray(shape) * vs) / 1e9
    n = int(round(density_per_mm3 * volume_mm3))
    smax = sigma_um[1]
    pair_dist = pair_distance_um or (2.8 * smax, 3.5 * smax)
    centres_um, pair = _place_centres(rng, shape_um, n, max(3.5 * smax, pair_dist[1]), pair_fraction, pair_dist)
    n = len(centres_um)
    sig = rng.uniform(*sigma_um, size=n)
    amp = rng.uniform(*amplitude, size=n)

    img = np.zeros(shape, np.float32)
    # autofluorescence texture: smooth noise, computed on a coarse grid and upsampled
    if texture > 0:
        coarse = tuple(max(2, int(np.ceil(s * v / 10.0))) for s, v in zip(shape, vs))
        tex = gaussian_filter(rng.normal(size=coarse), 1.5)
        tex /= tex.std() + 1e-12
        from scipy.ndimage import zoom

        tex = zoom(tex, [s / c for s, c in zip(shape, coarse)], order=1)[: shape[0], : shape[1], : shape[2]]
        img += np.float32(background) + np.float32(texture) * np.maximum(tex, -2.0).astype(np.float32)
    else:
        img += np.float32(background)
    for c, s, a in zip(centres_um, sig, amp):
        r = np.ceil(4 * s / vs).astype(int)
        cv = c / vs
        lo = np.maximum(np.floor(cv).astype(int) - r, 0)
        hi = np.minimum(np.floor(cv).astype(int) + r + 1, shape)
        axes = [((np.arange(lo[a], hi[a]) - cv[a]) * vs[a]) ** 2 for a in range(3)]
        d2 = axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :]
        img[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] += (a * np.exp(-d2 / (2 * s * s))).astype(np.float32)
    illum = (1.0 - gradient * np.arange(shape[2]) / max(shape[2] - 1, 1)).astype(np.float32)
    img *= illum[None, None, :]
    noisy = rng.poisson(np.maximum(img, 0)).astype(np.float64)
    vol = np.clip(noisy, 0, 65535).astype(np.uint16)
    cv = centres_um / vs
    truth = pd.DataFrame(
        {
            "z": cv[:, 0],
            "y": cv[:, 1],
            "x": cv[:, 2],
            "sigma_um": sig,
            "amplitude": amp * illum[np.clip(np.rint(cv[:, 2]).astype(int), 0, shape[2] - 1)],
            "pair": pair,
        }
    )
    return vol, truth
