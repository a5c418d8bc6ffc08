"""Group statistics for cohorts of brains (ClearMap's ``Analysis.Statistics``).

Two groups of brains, ``a`` (the control, listed first) and ``b``, are compared

* voxel by voxel on stacks of density maps (:func:`voxel_group_stats`, drawn with
  :func:`colour_pvalue_map`), and
* region by region on a long table of per-sample region values
  (:func:`region_group_stats`),

with Welch's t-test (default), Student's t-test, the Mann–Whitney U test or a permutation
test, and corrected for multiple testing with Benjamini–Hochberg (:func:`bh_adjust`) and
Storey's q-values (:func:`storey_qvalues`). User documentation: ``docs/statistics.md``.

Conventions

* Every difference, statistic and sign is **b − a**: ``t > 0``, ``p_signed > 0``,
  ``fold_change > 1`` and ``cohens_d > 0`` all mean "higher in group b than in the control".
* Standard deviations use ``ddof=1``; each group needs at least two samples.
* A voxel or region whose two groups both have zero variance gets ``p = 1`` (the test is
  undefined there; ClearMap likewise replaces undefined p-values by 1). Its statistic is
  0 when the two constant values are equal and ±inf when they differ.
* All arithmetic is float64. Voxel maps are processed in z slabs of bounded size, so memory
  is the output maps plus one slab, never a float64 copy of the input stacks.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from scipy import special
from scipy.interpolate import make_smoothing_spline
from scipy.optimize import brentq
from scipy.stats import rankdata

TESTS = ("welch", "ttest", "mannwhitney", "permutation")
"""Accepted values of ``test``."""

DEFAULT_LAMBDAS = tuple(round(0.05 * i, 2) for i in range(1, 20))
"""λ grid of the π0 estimator: 0.05, 0.10, …, 0.95 (the qvalue R package's default)."""

MIN_TESTS_PI0 = 100
"""Fewer p-values than this: π0 = 1 (q = BH), like ClearMap's ``estimate_q_values``."""

DEFAULT_PERMUTATIONS = 10_000
"""Relabellings used by ``test="permutation"`` when ``permutations`` is 0."""

ANNOTATION_COLUMNS = ("acronym", "region_acronym", "name", "region_name")
"""Descriptive columns copied (first value per region) from the input table when present."""

_PERM_RTOL = 1e-9  # relabellings whose statistic is within this relative slack count as ">= observed"
_PERM_BATCH = 2048  # relabellings evaluated at once


# -- multiple testing --------------------------------------------------------------------------


def bh_adjust(p: Any) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (R's ``p.adjust(p, "BH")``).

    ``p_bh[i] = min(1, min_{j: p_j >= p_i} m * p_j / rank_j)`` where ``m`` is the number of
    finite p-values and ranks are 1-based in ascending order. Reject at FDR level α every
    hypothesis with ``p_bh <= α``.

    Parameters
    ----------
    p : array_like of float, any shape
        p-values in [0, 1]. NaNs are allowed: they stay NaN and do not count in ``m``.

    Returns
    -------
    p_bh : ndarray of float64, same shape as ``p``
        Adjusted p-values: monotone in ``p``, never below ``p``, capped at 1.

    Examples
    --------
    >>> bh_adjust([0.01, 0.04, 0.03, np.nan, 0.5]).round(4).tolist()
    [0.04, 0.0533, 0.0533, nan, 0.5]
    """
    p = np.asarray(p)
    flat = p.reshape(-1)
    nan = np.isnan(flat)
    has_nan = bool(nan.any())
    finite = np.flatnonzero(~nan) if has_nan else None
    del nan
    vals = flat[finite].astype(np.float64) if has_nan else flat.astype(np.float64)  # always a copy
    m = vals.size
    if m and (vals.min() < 0 or vals.max() > 1):
        raise ValueError("p-values must lie in [0, 1]")
    order = np.argsort(vals)  # tied p-values get equal adjusted values, so the sort need not be stable
    adj = vals[order]
    adj *= m / np.arange(1, m + 1, dtype=np.float64)
    np.minimum.accumulate(adj[::-1], out=adj[::-1])
    np.minimum(adj, 1.0, out=adj)
    vals[order] = adj
    del order, adj
    if not has_nan:
        return vals.reshape(p.shape)
    out = np.full(p.shape, np.nan, dtype=np.float64)
    out.reshape(-1)[finite] = vals
    return out


def _lambda_fractions(p_sorted: np.ndarray, lambdas: np.ndarray) -> np.ndarray:
    """π0(λ) = #{p >= λ} / (m (1 − λ)) for sorted finite p."""
    m = p_sorted.size
    n_above = m - np.searchsorted(p_sorted, lambdas, side="left")
    return n_above / (m * (1.0 - lambdas))


def _smoothing_spline_df(x: np.ndarray, y: np.ndarray, df: float) -> np.ndarray:
    """Fitted values at ``x`` of the cubic smoothing spline with ``df`` effective degrees of
    freedom (trace of the smoother matrix), like R's ``smooth.spline(x, y, df=df)``."""
    eye = np.eye(x.size)

    def excess(log_lam: float) -> float:
        return float(np.trace(make_smoothing_spline(x, eye, lam=10.0**log_lam)(x))) - df

    lo, hi = -12.0, 6.0  # trace -> n for lam -> 0 and -> 2 (a straight line) for lam -> inf
    if not excess(lo) > 0 > excess(hi):
        raise ValueError(f"cannot reach {df} degrees of freedom with {x.size} points")
    log_lam = brentq(excess, lo, hi, xtol=1e-12, rtol=1e-14, maxiter=500)
    return make_smoothing_spline(x, y, lam=10.0**log_lam)(x)


def estimate_pi0(
    p: Any,
    lambdas: float | Sequence[float] = DEFAULT_LAMBDAS,
    method: str = "smoother",
    smooth_df: float = 3.0,
    min_tests: int = MIN_TESTS_PI0,
) -> float:
    """Proportion of true null hypotheses π0 (Storey & Tibshirani 2003; qvalue's ``pi0est``).

    For each λ, ``π0(λ) = #{p >= λ} / (m (1 − λ))`` (``m`` = number of non-NaN p-values).

    * one λ (a float): ``π0 = π0(λ)`` (Storey 2002's fixed-λ estimator, e.g. λ = 0.5);
    * ``method="smoother"`` (default): a cubic smoothing spline with ``smooth_df`` degrees of
      freedom through (λ, π0(λ)), evaluated at the largest λ — qvalue's default;
    * ``method="bootstrap"``: qvalue's closed-form bootstrap choice of λ (the π0(λ) minimising
      ``W/(m²(1−λ)²)·(1−W/m) + (π0(λ) − q10)²``, ``W = #{p >= λ}``, ``q10`` the 10 % quantile
      of the π0(λ)).

    The estimate is clipped to at most 1. It is 1 without estimation when there are fewer
    than ``min_tests`` p-values (ClearMap's rule: the π0(λ) curve is too noisy). When the
    largest p-value is below the largest λ, or the estimate is not positive (qvalue stops
    with an error in both cases), π0 = 1 with a warning.

    Parameters
    ----------
    p : array_like of float
        p-values in [0, 1], NaNs ignored.
    lambdas : float or sequence of float
        λ grid in [0, 1); at least 5 values for the smoother and bootstrap methods.
    method : {"smoother", "bootstrap"}
        Ignored for a single λ.
    smooth_df : float
        Degrees of freedom of the smoother (qvalue's ``smooth.df``).
    min_tests : int
        Below this many p-values π0 = 1 (0: always estimate, as qvalue does).

    Returns
    -------
    pi0 : float
        In (0, 1].

    Examples
    --------
    >>> estimate_pi0(np.linspace(0.0, 1.0, 1001), lambdas=0.5)
    1.0
    """
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    p = np.sort(p[~np.isnan(p)])
    if p.size and (p[0] < 0 or p[-1] > 1):
        raise ValueError("p-values must lie in [0, 1]")
    lam = np.sort(np.atleast_1d(np.asarray(lambdas, dtype=np.float64)))
    if lam.min() < 0 or lam.max() >= 1:
        raise ValueError("lambdas must lie in [0, 1)")
    if p.size == 0 or p.size < min_tests:
        return 1.0
    if p[-1] < lam[-1]:
        warnings.warn(
            f"largest p-value {p[-1]:.3g} < largest lambda {lam[-1]:.3g}: using pi0 = 1", RuntimeWarning, stacklevel=2
        )
        return 1.0
    pi0_lam = _lambda_fractions(p, lam)
    if lam.size == 1:
        pi0 = float(pi0_lam[0])
    elif lam.size < 5:
        raise ValueError("give one lambda or at least 5")
    elif method == "smoother":
        pi0 = float(_smoothing_spline_df(lam, pi0_lam, smooth_df)[-1])
    elif method == "bootstrap":
        w = p.size * pi0_lam * (1.0 - lam)  # #{p >= lambda}
        m = p.size
        mse = w / (m**2 * (1.0 - lam) ** 2) * (1.0 - w / m) + (pi0_lam - np.quantile(pi0_lam, 0.1)) ** 2
        pi0 = float(pi0_lam[mse == mse.min()].min())
    else:
        raise ValueError(f"unknown pi0 method {method!r}: use 'smoother' or 'bootstrap'")
    if not pi0 > 0:
        warnings.warn(
            f"estimated pi0 = {pi0:.3g} <= 0 (too few large p-values for the lambda range); using pi0 = 1",
            RuntimeWarning,
            stacklevel=2,
        )
        return 1.0
    return min(pi0, 1.0)


def storey_qvalues(
    p: Any,
    lambdas: float | Sequence[float] = DEFAULT_LAMBDAS,
    *,
    pi0_method: str = "smoother",
    smooth_df: float = 3.0,
    pi0: float | None = None,
    min_tests: int = MIN_TESTS_PI0,
) -> tuple[np.ndarray, float]:
    """Storey–Tibshirani (2003) q-values, as the qvalue R package computes them.

    ``q = π0 · p_bh``: the Benjamini–Hochberg adjusted p-values (:func:`bh_adjust`) scaled by
    the estimated proportion of true nulls π0 (:func:`estimate_pi0`; default: qvalue's cubic
    spline smoother with 3 degrees of freedom over λ = 0.05, 0.10, …, 0.95; π0 = 1 below
    ``min_tests`` p-values). With π0 = 1, q equals ``p_bh``.

    Parameters
    ----------
    p : array_like of float, any shape
        p-values in [0, 1]; NaNs stay NaN and are not counted.
    lambdas : float or sequence of float
        λ grid of the π0 estimator; a single float selects the fixed-λ estimator.
    pi0_method : {"smoother", "bootstrap"}
        π0 estimator for a λ grid (see :func:`estimate_pi0`).
    smooth_df : float
        Degrees of freedom of the smoother.
    min_tests : int
        Fewer non-NaN p-values than this: π0 = 1 (0: always estimate, as qvalue does).
    pi0 : float, optional
        Use this π0 instead of estimating it.

    Returns
    -------
    q : ndarray of float64, same shape as ``p``
    pi0 : float

    Examples
    --------
    >>> q, pi0 = storey_qvalues([0.001, 0.01, 0.2, 0.8], pi0=0.5)
    >>> q.round(4).tolist(), pi0
    ([0.002, 0.01, 0.1333, 0.4], 0.5)
    """
    p = np.asarray(p, dtype=np.float64)
    if pi0 is None:
        pi0 = estimate_pi0(p, lambdas, pi0_method, smooth_df, min_tests)
    elif not 0 < pi0 <= 1:
        raise ValueError("pi0 must lie in (0, 1]")
    return pi0 * bh_adjust(p), float(pi0)


# -- two-sample kernels on (n_samples, k) matrices -----------------------------------------------


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and ddof=1 variance along axis 0; exactly (x[0], 0) where a column is constant."""
    mean = x.mean(axis=0)
    dev = x - mean
    var = np.einsum("ij,ij->j", dev, dev) / (x.shape[0] - 1)
    const = x.min(axis=0) == x.max(axis=0)
    if const.any():
        mean[const] = x[0, const]
        var[const] = 0.0
    return mean, var


def _ttest(mean_a, var_a, n_a, mean_b, var_b, n_b, welch: bool) -> tuple[np.ndarray, np.ndarray]:
    """t (b − a) and two-sided p; p = 1 where both variances are zero."""
    diff = mean_b - mean_a
    with np.errstate(divide="ignore", invalid="ignore"):
        if welch:
            va, vb = var_a / n_a, var_b / n_b
            se2 = va + vb
            df = se2 * se2 / (va * va / (n_a - 1) + vb * vb / (n_b - 1))
        else:
            df = float(n_a + n_b - 2)
            se2 = ((n_a - 1) * var_a + (n_b - 1) * var_b) / df * (1.0 / n_a + 1.0 / n_b)
        t = diff / np.sqrt(se2)
        p = 2.0 * special.stdtr(df, -np.abs(t))
    undefined = se2 == 0
    if np.any(undefined):
        t = np.where(undefined, np.where(diff == 0, 0.0, np.copysign(np.inf, diff)), t)
        p = np.where(undefined, 1.0, p)
    return t, np.minimum(p, 1.0)


@lru_cache(maxsize=32)
def _mwu_exact_sf(n1: int, n2: int) -> np.ndarray:
    """P(U >= u), u = 0..n1*n2, of the Mann–Whitney U null distribution without ties.

    Counts come from the Gaussian binomial recurrence G(m, n) = G(m−1, n) + q^m G(m, n−1)
    (the largest value belongs to the second group and beats all m of the first, or not).
    """
    size = n1 * n2 + 1
    row = [np.zeros(size) for _ in range(n2 + 1)]  # G(0, n) = 1
    for g in row:
        g[0] = 1.0
    for m in range(1, n1 + 1):
        new = [np.zeros(size)]
        new[0][0] = 1.0  # G(m, 0) = 1
        for n in range(1, n2 + 1):
            g = row[n].copy()
            g[m:] += new[n - 1][: size - m]
            new.append(g)
        row = new
    pmf = row[n2] / row[n2].sum()
    return np.cumsum(pmf[::-1])[::-1]


def _mannwhitney(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """U of group b and the two-sided p of ``scipy.stats.mannwhitneyu(b, a)`` column by column
    (method "auto" decided per column: exact when a group has <= 8 samples and the column has
    no ties, else the normal approximation with tie and continuity corrections)."""
    n_a, n_b = a.shape[0], b.shape[0]
    k = a.shape[1]
    u_b = np.zeros(k)
    for i in range(n_b):
        for j in range(n_a):
            u_b += b[i] > a[j]
            u_b += 0.5 * (b[i] == a[j])
    x = np.concatenate([a, b], axis=0)
    n = n_a + n_b
    cnt = np.ones((n, k))  # size of the tie group of every value
    for i in range(n):
        for j in range(i + 1, n):
            eq = x[i] == x[j]
            cnt[i] += eq
            cnt[j] += eq
    tie_term = (cnt * cnt - 1.0).sum(axis=0)  # = sum over tie groups of t^3 - t
    ties = cnt.max(axis=0) > 1
    u = np.maximum(u_b, n_a * n_b - u_b)
    mu = n_a * n_b / 2.0
    s = np.sqrt(np.maximum(n_a * n_b / 12.0 * ((n + 1) - tie_term / (n * (n - 1))), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (u - mu - 0.5) / s
    p = 2.0 * special.ndtr(-z)
    p[s == 0] = 1.0  # every value tied
    if min(n_a, n_b) <= 8:
        exact = ~ties
        if exact.any():
            sf = _mwu_exact_sf(min(n_a, n_b), max(n_a, n_b))
            p[exact] = 2.0 * sf[np.rint(u[exact]).astype(np.int64)]
    return u_b, np.clip(p, 0.0, 1.0)


def _two_sample(a: np.ndarray, b: np.ndarray, test: str) -> dict[str, np.ndarray]:
    """Group moments, statistic (b vs a) and two-sided p for every column of (n, k) float64 arrays."""
    n_a, n_b = a.shape[0], b.shape[0]
    mean_a, var_a = _moments(a)
    mean_b, var_b = _moments(b)
    if test in ("welch", "ttest"):
        stat, p = _ttest(mean_a, var_a, n_a, mean_b, var_b, n_b, welch=test == "welch")
    elif test == "mannwhitney":
        stat, p = _mannwhitney(a, b)
    else:
        raise ValueError(f"unknown test {test!r}: use one of {TESTS}")
    return {
        "mean_a": mean_a,
        "std_a": np.sqrt(var_a),
        "mean_b": mean_b,
        "std_b": np.sqrt(var_b),
        "statistic": stat,
        "p": p,
    }


def _signed(p: np.ndarray, diff: np.ndarray) -> np.ndarray:
    """p carrying the sign of ``diff`` (mean_b − mean_a); ``diff == 0`` counts as positive."""
    return np.where(diff < 0, -p, p)


def _check_test(test: str, n_a: int, n_b: int) -> None:
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}: use one of {TESTS}")
    if n_a < 2 or n_b < 2:
        raise ValueError(f"each group needs at least 2 samples (got {n_a} and {n_b})")


# -- voxel level -------------------------------------------------------------------------------


@dataclass
class VoxelStats:
    """Maps (z, y, x) of :func:`voxel_group_stats`; NaN outside the mask.

    ``statistic`` is Welch's or Student's t (b − a) or, for Mann–Whitney, the U statistic of
    group b (``> n_a n_b / 2`` when b ranks higher). ``p_signed`` is ``p`` with the sign of
    ``mean_b − mean_a`` (+ when equal). ``p_bh`` is Benjamini–Hochberg over the mask.
    """

    mean_a: np.ndarray
    std_a: np.ndarray
    mean_b: np.ndarray
    std_b: np.ndarray
    statistic: np.ndarray
    p: np.ndarray
    p_signed: np.ndarray
    p_bh: np.ndarray
    test: str = "welch"
    n_a: int = 0
    n_b: int = 0

    MAPS = ("mean_a", "std_a", "mean_b", "std_b", "statistic", "p", "p_signed", "p_bh")

    def as_dict(self) -> dict[str, np.ndarray]:
        """The maps by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in self.MAPS}


def _n_samples(group: Any) -> int:
    return len(group) if isinstance(group, (list, tuple)) else int(np.shape(group)[0])


def _volume_shape(group: Any) -> tuple[int, ...]:
    return tuple(np.shape(group[0]))


def _read_slab(group: Any, z0: int, z1: int) -> np.ndarray:
    """(n, dz, y, x) float64 slab of a stack or of a sequence of (z, y, x) volumes."""
    if isinstance(group, (list, tuple)):
        return np.stack([np.asarray(g[z0:z1], dtype=np.float64) for g in group])
    return np.asarray(group[:, z0:z1], dtype=np.float64)


def voxel_group_stats(
    group_a: Any,
    group_b: Any,
    test: str = "welch",
    mask: Any = None,
    *,
    dtype: Any = np.float32,
    slab_mib: float = 256.0,
) -> VoxelStats:
    """Voxel-wise comparison of two groups of density maps (ClearMap's ``t_test_voxelization``).

    Parameters
    ----------
    group_a, group_b : array_like (n, z, y, x) or sequence of (z, y, x) arrays
        Density maps of the control group (a) and of the other group (b), all on the same
        grid. Anything sliceable along z works (numpy arrays, memmaps, zarr arrays); only
        one z slab is read and converted to float64 at a time.
    test : {"welch", "ttest", "mannwhitney"}
        Welch's unequal-variance t-test, Student's equal-variance t-test, or the two-sided
        Mann–Whitney U test (same p as ``scipy.stats.mannwhitneyu`` called on each voxel:
        exact when a group has <= 8 samples and the voxel has no ties, else asymptotic with
        tie and continuity corrections).
    mask : array_like (z, y, x), optional
        Voxels to test (nonzero = inside, e.g. ``annotation > 0``). Every map is NaN outside
        it, and BH counts only the voxels inside. Default: every voxel.
    dtype : numpy dtype
        dtype of the returned maps (float32 halves their memory; use float64 for full
        precision). Computation is float64 regardless.
    slab_mib : float
        Working-memory budget per z slab; the slab has at least one plane.

    Returns
    -------
    VoxelStats
        ``mean_a, std_a, mean_b, std_b`` (std with ddof=1), ``statistic``, ``p``,
        ``p_signed`` and ``p_bh`` maps. Voxels whose two groups both have zero variance
        (e.g. all zero) get p = 1 for the t-tests.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(10, 1, (3, 2, 4, 4)).astype(np.float32)
    >>> b = a + np.float32(5)                  # every voxel raised in group b
    >>> r = voxel_group_stats(a, b, "welch")
    >>> r.p.shape, r.p.dtype.name, bool((r.statistic > 0).all()), bool((r.p_signed > 0).all())
    ((2, 4, 4), 'float32', True, True)
    """
    n_a, n_b = _n_samples(group_a), _n_samples(group_b)
    if test == "permutation":
        raise ValueError("voxel_group_stats supports 'welch', 'ttest' and 'mannwhitney'")
    _check_test(test, n_a, n_b)
    shape = _volume_shape(group_a)
    if _volume_shape(group_b) != shape or len(shape) != 3:
        raise ValueError(f"groups must hold (z, y, x) volumes of one shape, got {shape} and {_volume_shape(group_b)}")
    if mask is not None:
        mask = np.asarray(mask).astype(bool, copy=False)
        if mask.shape != shape:
            raise ValueError(f"mask shape {mask.shape} != volume shape {shape}")
    dtype = np.dtype(dtype)
    maps = {name: np.full(shape, np.nan, dtype=dtype) for name in VoxelStats.MAPS}
    plane = shape[1] * shape[2]
    per_voxel = (4 * (n_a + n_b) + 16) * 8  # float64 slab, its masked copy and kernel temporaries
    dz = max(1, int(slab_mib * 2**20 // (per_voxel * max(plane, 1))))
    for z0 in range(0, shape[0], dz):
        z1 = min(z0 + dz, shape[0])
        inside = None if mask is None else mask[z0:z1]
        if inside is not None and not inside.any():
            continue
        a, b = _read_slab(group_a, z0, z1), _read_slab(group_b, z0, z1)
        if inside is None:
            a, b = a.reshape(n_a, -1), b.reshape(n_b, -1)
        else:
            a, b = a[:, inside], b[:, inside]
        res = _two_sample(a, b, test)
        res["p_signed"] = _signed(res["p"], res["mean_b"] - res["mean_a"])
        for name, values in res.items():
            if inside is None:
                maps[name][z0:z1] = values.reshape(z1 - z0, shape[1], shape[2])
            else:
                maps[name][z0:z1][inside] = values
        del a, b, res
    if mask is None:  # BH over the tested voxels only
        maps["p_bh"][...] = bh_adjust(maps["p"])
    elif mask.any():
        maps["p_bh"][mask] = bh_adjust(maps["p"][mask])
    return VoxelStats(**maps, test=test, n_a=n_a, n_b=n_b)


def colour_pvalue_map(
    p: Any,
    sign: Any = None,
    cutoff: float = 0.05,
    positive: Sequence[float] = (1.0, 0.0, 0.0),
    negative: Sequence[float] = (0.0, 1.0, 0.0),
    *,
    scale: str = "log",
    p_saturate: float = 1e-4,
) -> np.ndarray:
    """RGB picture of a p-value map (ClearMap's ``color_p_values``).

    Voxels with ``p < cutoff`` get the ``positive`` colour where the effect is positive
    (b > a) and the ``negative`` colour where it is negative, times an intensity in (0, 1];
    all other voxels (and NaN) are black.

    Parameters
    ----------
    p : array_like (z, y, x)
        ``p_signed`` (sign = direction) when ``sign`` is None, else unsigned p-values.
    sign : array_like (z, y, x), optional
        Direction of the effect (e.g. ``mean_b - mean_a`` or ``t``); < 0 is negative.
    cutoff : float
        Significance threshold (strict ``p < cutoff``).
    positive, negative : 3 floats in [0, 1]
        RGB colours; defaults: red for increases in group b, green for decreases.
    scale : {"log", "linear"}
        ``"log"``: intensity ``min(1, log10(p) / log10(p_saturate))``, i.e. proportional to
        −log10 p and saturating at ``p_saturate``. ``"linear"``: ClearMap's
        ``(cutoff − p) / cutoff``.
    p_saturate : float
        p-value (and below) drawn at full intensity with ``scale="log"``.

    Returns
    -------
    rgb : ndarray of uint8, shape p.shape + (3,)
        ``round(255 · intensity · colour)``.

    Examples
    --------
    >>> rgb = colour_pvalue_map(np.array([1e-4, -1e-4, 0.5, np.nan]))
    >>> rgb.tolist()
    [[255, 0, 0], [0, 255, 0], [0, 0, 0], [0, 0, 0]]
    """
    p = np.asarray(p, dtype=np.float64)
    if sign is None:
        neg = np.signbit(p)
        p = np.abs(p)
    else:
        neg = np.asarray(sign) < 0
        if neg.shape != p.shape:
            raise ValueError(f"sign shape {neg.shape} != p shape {p.shape}")
    significant = p < cutoff  # False for NaN
    with np.errstate(divide="ignore", invalid="ignore"):
        if scale == "log":
            if not 0 < p_saturate < cutoff:
                raise ValueError("p_saturate must lie in (0, cutoff)")
            intensity = np.log10(p) / math.log10(p_saturate)
        elif scale == "linear":
            intensity = (cutoff - p) / cutoff
        else:
            raise ValueError(f"unknown scale {scale!r}: use 'log' or 'linear'")
    intensity = np.where(significant, np.clip(intensity, 0.0, 1.0), 0.0)
    pos_c, neg_c = np.asarray(positive, dtype=np.float64), np.asarray(negative, dtype=np.float64)
    if pos_c.shape != (3,) or neg_c.shape != (3,):
        raise ValueError("colours must be 3 floats (RGB in [0, 1])")
    colour = np.where(neg[..., None], neg_c, pos_c)
    return np.rint(255.0 * np.clip(intensity[..., None] * colour, 0.0, 1.0)).astype(np.uint8)


# -- region level ------------------------------------------------------------------------------


def _group_order(groups: Mapping[Any, Any]) -> tuple[Any, Any]:
    names = list(dict.fromkeys(groups.values()))
    if len(names) != 2:
        raise ValueError(f"groups must name exactly two groups, got {names}")
    return names[0], names[1]


def _permutation_p(
    a: np.ndarray, b: np.ndarray, test: str, permutations: int, seed: int
) -> tuple[np.ndarray, int, bool]:
    """Two-sided permutation p-value per column: every relabelling of the pooled samples into
    groups of n_a and n_b when there are at most ``permutations`` of them (p = share of
    relabellings at least as extreme, the observed one included), else ``permutations``
    random relabellings (p = (1 + #as extreme) / (1 + permutations))."""
    n_a, n_b = a.shape[0], b.shape[0]
    n = n_a + n_b
    x = np.concatenate([a, b], axis=0)
    if test == "mannwhitney":
        x = rankdata(x, axis=0)  # midranks; the statistic is |rank sum of b - its mean|
    x = x - x.mean(axis=0)  # centring keeps the one-pass variances below accurate
    x2 = x * x
    tot, tot2 = x.sum(axis=0), x2.sum(axis=0)

    def extremeness(g: np.ndarray) -> np.ndarray:  # g: (P, n) indicator of group b
        s_b, ss_b = g @ x, g @ x2
        if test == "mannwhitney":
            return np.abs(s_b)  # ranks are centred: |R_b - n_b (n + 1) / 2|
        m_b, m_a = s_b / n_b, (tot - s_b) / n_a
        if test == "permutation":
            return np.abs(m_b - m_a)
        v_b = np.maximum(ss_b - s_b * m_b, 0.0) / (n_b - 1)
        v_a = np.maximum((tot2 - ss_b) - (tot - s_b) * m_a, 0.0) / (n_a - 1)
        if test == "welch":
            se2 = v_a / n_a + v_b / n_b
        else:
            se2 = ((n_a - 1) * v_a + (n_b - 1) * v_b) / (n - 2) * (1.0 / n_a + 1.0 / n_b)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.nan_to_num(np.abs(m_b - m_a) / np.sqrt(se2), nan=0.0, posinf=np.inf)

    observed = np.zeros((1, n))
    observed[0, n_a:] = 1.0
    threshold = extremeness(observed)[0] * (1.0 - _PERM_RTOL)
    count = np.zeros(x.shape[1])
    n_relabel = math.comb(n, n_b)
    exact = n_relabel <= permutations
    if exact:
        combos = itertools.combinations(range(n), n_b)
        total = n_relabel
    else:
        rng = np.random.default_rng(seed)
        total = permutations
    done = 0
    while done < total:
        size = min(_PERM_BATCH, total - done)
        g = np.zeros((size, n))
        if exact:
            idx = np.array(list(itertools.islice(combos, size)))
        else:
            idx = rng.permuted(np.tile(np.arange(n), (size, 1)), axis=1)[:, :n_b]
        np.put_along_axis(g, idx, 1.0, axis=1)
        count += (extremeness(g) >= threshold).sum(axis=0)
        done += size
    p = count / total if exact else (count + 1.0) / (total + 1.0)
    return np.minimum(p, 1.0), total, exact


def region_group_stats(
    table: pd.DataFrame,
    groups: Mapping[Any, Any],
    value: str = "density_per_mm3",
    test: str = "welch",
    permutations: int = 0,
    seed: int = 0,
    *,
    region_cols: str | Sequence[str] | None = None,
    fill_value: float | None = 0.0,
    lambdas: float | Sequence[float] = DEFAULT_LAMBDAS,
    pi0_method: str = "smoother",
    pi0_min_tests: int = MIN_TESTS_PI0,
) -> pd.DataFrame:
    """Region-wise comparison of two groups of brains (ClearMap's region t-tests, with more).

    Parameters
    ----------
    table : DataFrame, long format
        One row per sample and region: a ``sample`` column, the region key column(s) and the
        ``value`` column (e.g. each sample's region table stacked with its sample name).
    groups : mapping sample -> group name
        Exactly two group names; the group named first (in mapping order) is the control
        ``a``, the other is ``b``. Samples of the table missing from ``groups`` are ignored.
    value : str
        Column compared (``density_per_mm3``, ``count``, …).
    test : {"welch", "ttest", "mannwhitney", "permutation"}
        ``"permutation"``: two-sided permutation test of the difference of means.
    permutations : int
        0: the parametric/asymptotic p of ``test`` (``"permutation"`` then uses 10 000).
        > 0: the p-value comes from relabelling the samples, for any ``test`` (its
        statistic: |t|, |U − n_a n_b/2| or |mean_b − mean_a|): all C(n_a + n_b, n_a)
        relabellings when there are at most ``permutations`` of them (exact; e.g. 20 for
        3 + 3), else ``permutations`` random ones with ``p = (1 + #≥) / (1 + permutations)``.
    seed : int
        Seed of the random relabellings.
    region_cols : str or sequence of str, optional
        Region key; default ``region_id`` plus ``hemisphere`` when the table has it.
    fill_value : float or None
        Value of a (sample, region) row absent from the table (default 0: no row, no cells);
        None raises instead.
    lambdas, pi0_method, pi0_min_tests
        π0 estimator of the q-values (``lambdas``, ``pi0_method``, ``min_tests`` of
        :func:`storey_qvalues`).

    Returns
    -------
    DataFrame, one row per region (sorted by the key)
        The key columns, any of ``acronym, region_acronym, name, region_name`` present in
        ``table``, then ``n_a, n_b, mean_a, std_a, mean_b, std_b, fold_change,
        log2_fold_change, cohens_d, statistic, p, p_signed, p_bh, q``. ``attrs`` records
        ``group_a, group_b, test, value, permutations, exact, pi0``.

        ``fold_change = mean_b / mean_a`` (NaN when both means are 0, +inf when only
        mean_a is 0); ``log2_fold_change`` is its log2 (−inf when mean_b is 0).
        ``cohens_d = (mean_b − mean_a) / pooled sd`` (0 when both groups are constant and
        equal, ±inf when constant and different). ``statistic``: t (b − a), U of group b, or
        ``mean_b − mean_a`` for ``test="permutation"``. Regions whose values are all equal
        (e.g. all 0) get p = 1 with every test. ``p_bh`` and ``q`` are over all regions
        of the output.

    Examples
    --------
    >>> t = pd.DataFrame({"sample": ["c1", "c2", "c3", "k1", "k2", "k3"],
    ...                   "region_id": 1, "count": [10, 11, 12, 20, 21, 22]})
    >>> g = {"c1": "ctrl", "c2": "ctrl", "c3": "ctrl", "k1": "ko", "k2": "ko", "k3": "ko"}
    >>> r = region_group_stats(t, g, value="count", test="permutation")
    >>> r[["region_id", "fold_change", "statistic", "p"]].to_dict("records")
    [{'region_id': 1, 'fold_change': 1.9090909090909092, 'statistic': 10.0, 'p': 0.1}]
    """
    group_a, group_b = _group_order(groups)
    samples_a = [s for s, g in groups.items() if g == group_a]
    samples_b = [s for s, g in groups.items() if g == group_b]
    n_a, n_b = len(samples_a), len(samples_b)
    _check_test(test, n_a, n_b)
    if permutations < 0:
        raise ValueError("permutations must be >= 0")
    if test == "permutation" and permutations == 0:
        permutations = DEFAULT_PERMUTATIONS
    if region_cols is None:
        region_cols = ["region_id"] + (["hemisphere"] if "hemisphere" in table.columns else [])
    keys = [region_cols] if isinstance(region_cols, str) else list(region_cols)
    missing_cols = [c for c in ["sample", value, *keys] if c not in table.columns]
    if missing_cols:
        raise ValueError(f"table lacks column(s) {missing_cols}")
    absent = [s for s in samples_a + samples_b if s not in set(table["sample"])]
    if absent:
        raise ValueError(f"samples {absent} of groups are not in the table")
    rows = table[table["sample"].isin(samples_a + samples_b)]
    if rows[value].isna().any():
        raise ValueError(f"column {value!r} has NaN values")
    if rows.duplicated(["sample", *keys]).any():
        raise ValueError(f"table has more than one row per sample and region {keys}")
    wide = rows.set_index([*keys, "sample"])[value].astype(np.float64).unstack("sample")
    wide = wide.reindex(columns=samples_a + samples_b).sort_index()
    if wide.isna().to_numpy().any():
        if fill_value is None:
            raise ValueError("some samples have no row for some regions (pass fill_value)")
        wide = wide.fillna(fill_value)
    x = wide.to_numpy(dtype=np.float64).T  # (n_samples, n_regions)
    a, b = x[:n_a], x[n_a:]

    res = _two_sample(a, b, "welch" if test == "permutation" else test)
    diff = res["mean_b"] - res["mean_a"]
    exact = False
    n_perm = 0
    if test == "permutation":
        res["statistic"] = diff
    if permutations > 0:
        res["p"], n_perm, exact = _permutation_p(a, b, test, permutations, seed)

    out = wide.index.to_frame(index=False)
    present = [c for c in ANNOTATION_COLUMNS if c in rows.columns and c not in keys]
    if present:
        annot = rows.drop_duplicates(keys)[[*keys, *present]]
        out = out.merge(annot, on=keys, how="left")
    with np.errstate(divide="ignore", invalid="ignore"):
        fold = res["mean_b"] / res["mean_a"]
        log2_fold = np.log2(fold)
        pooled = np.sqrt(((n_a - 1) * res["std_a"] ** 2 + (n_b - 1) * res["std_b"] ** 2) / (n_a + n_b - 2))
        d = diff / pooled
    d = np.where(pooled == 0, np.where(diff == 0, 0.0, np.copysign(np.inf, diff)), d)
    q, pi0 = storey_qvalues(res["p"], lambdas, pi0_method=pi0_method, min_tests=pi0_min_tests)
    columns = {
        "n_a": n_a,
        "n_b": n_b,
        "mean_a": res["mean_a"],
        "std_a": res["std_a"],
        "mean_b": res["mean_b"],
        "std_b": res["std_b"],
        "fold_change": fold,
        "log2_fold_change": log2_fold,
        "cohens_d": d,
        "statistic": res["statistic"],
        "p": res["p"],
        "p_signed": _signed(res["p"], diff),
        "p_bh": bh_adjust(res["p"]),
        "q": q,
    }
    for name, col in columns.items():
        out[name] = col
    out.attrs.update(
        {
            "group_a": group_a,
            "group_b": group_b,
            "test": test,
            "value": value,
            "permutations": n_perm,
            "exact": exact,
            "pi0": pi0,
        }
    )
    return out
