"""Group statistics (spimflow.steps.stats) against scipy and direct implementations."""

import itertools
import math
import tracemalloc

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage, stats
from scipy.optimize import brentq

from spimflow.steps import stats as S
from spimflow.steps.stats import (
    bh_adjust,
    colour_pvalue_map,
    estimate_pi0,
    region_group_stats,
    storey_qvalues,
    voxel_group_stats,
)

RTOL = 1e-10

# scipy's reference calls warn on constant groups; spimflow's functions do not emit this warning
pytestmark = pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")


def rel_err(x, ref):
    x, ref = np.asarray(x, float), np.asarray(ref, float)
    assert np.array_equal(np.isnan(x), np.isnan(ref))
    ok = ~np.isnan(ref)
    return float(np.max(np.abs(x[ok] - ref[ok]) / np.maximum(np.abs(ref[ok]), 1e-300), initial=0.0))


# -- direct reference implementations ------------------------------------------------------------


def bh_loop(p):
    """p_bh_i = min(1, min over sorted positions k with p_(k) >= p_i of m p_(k) / k)."""
    s = sorted(x for x in p if not math.isnan(x))
    m = len(s)
    out = []
    for x in p:
        if math.isnan(x):
            out.append(math.nan)
            continue
        best = 1.0
        for k in range(1, m + 1):
            if s[k - 1] >= x:
                best = min(best, m * s[k - 1] / k)
        out.append(best)
    return np.array(out)


def qvalue_r(p, pi0):
    """qvalue's formula: pi0 * pmin(1, cummin(p[o] * m / i))[ro], o = order(p, decreasing)."""
    p = np.asarray(p, float)
    m = p.size
    o = np.argsort(-p, kind="stable")
    i = np.arange(m, 0, -1)
    q = np.empty(m)
    run = math.inf
    for rank, idx in zip(i, o, strict=True):
        run = min(run, p[idx] * m / rank)
        q[idx] = min(1.0, run)
    return pi0 * q


def pi0_lambda_loop(p, lambdas):
    m = len(p)
    return np.array([sum(1 for x in p if x >= lam) / (m * (1 - lam)) for lam in lambdas])


def reinsch_smoother(x, y, df):
    """Natural cubic smoothing spline in Reinsch form (Green & Silverman 1994, ch. 2):
    g = (I + lam K)^-1 y with K = Q R^-1 Q^T; lam set so that trace((I + lam K)^-1) = df."""
    n = len(x)
    h = np.diff(x)
    Q = np.zeros((n, n - 2))
    R = np.zeros((n - 2, n - 2))
    for j in range(1, n - 1):
        c = j - 1
        Q[j - 1, c] = 1 / h[j - 1]
        Q[j, c] = -1 / h[j - 1] - 1 / h[j]
        Q[j + 1, c] = 1 / h[j]
        R[c, c] = (h[j - 1] + h[j]) / 3
        if c + 1 < n - 2:
            R[c, c + 1] = R[c + 1, c] = h[j] / 6
    K = Q @ np.linalg.solve(R, Q.T)
    eye = np.eye(n)
    log_lam = brentq(lambda lg: np.trace(np.linalg.inv(eye + 10**lg * K)) - df, -12, 6, xtol=1e-13)
    return np.linalg.solve(eye + 10**log_lam * K, y)


def pi0_smoother_ref(p, lambdas=S.DEFAULT_LAMBDAS, df=3.0):
    lam = np.array(lambdas)
    return min(1.0, reinsch_smoother(lam, pi0_lambda_loop(p, lam), df)[-1])


def pi0_bootstrap_ref(p, lambdas=S.DEFAULT_LAMBDAS):
    m = len(p)
    lam = np.array(lambdas)
    pi0 = pi0_lambda_loop(p, lam)
    minpi0 = np.quantile(pi0, 0.1)
    best, best_mse = None, math.inf
    for k, lm in enumerate(lam):
        w = sum(1 for x in p if x >= lm)
        mse = w / (m**2 * (1 - lm) ** 2) * (1 - w / m) + (pi0[k] - minpi0) ** 2
        if mse < best_mse or (mse == best_mse and pi0[k] < best):
            best, best_mse = pi0[k], mse
    return min(best, 1.0)


def pvalue_mixture(rng, m, pi0):
    n_null = int(round(m * pi0))
    return np.concatenate([rng.uniform(size=n_null), rng.beta(0.2, 6.0, size=m - n_null)])


# -- multiple testing ------------------------------------------------------------------------------


def test_bh_matches_direct_definition_with_ties_and_nans():
    rng = np.random.default_rng(0)
    p = np.round(rng.uniform(size=300) ** 2, 3)  # rounding makes ties
    p[[5, 50, 120]] = np.nan
    p[7] = 0.0
    p[8] = 1.0
    ref = bh_loop(p.tolist())
    got = bh_adjust(p)
    assert rel_err(got, ref) < 1e-14
    # same result as if the NaNs were absent: they do not count in m
    assert rel_err(got[~np.isnan(p)], bh_adjust(p[~np.isnan(p)])) == 0
    fin = ~np.isnan(p)
    order = np.argsort(p[fin])
    assert np.all(np.diff(got[fin][order]) >= 0) and np.all(got[fin] >= p[fin]) and got[fin].max() <= 1


def test_bh_matches_scipy_false_discovery_control():
    if not hasattr(stats, "false_discovery_control"):
        pytest.skip("scipy without false_discovery_control")
    rng = np.random.default_rng(1)
    for p in (rng.uniform(size=1000), pvalue_mixture(rng, 2000, 0.7), rng.uniform(size=(20, 30)) ** 3):
        assert rel_err(bh_adjust(p), stats.false_discovery_control(p.ravel()).reshape(p.shape)) < 1e-14


def test_bh_edge_cases():
    assert bh_adjust([]).shape == (0,)
    assert np.isnan(bh_adjust([np.nan, np.nan])).all()
    assert bh_adjust([0.2, 0.2, 0.2]).tolist() == [0.2, 0.2, 0.2]
    with pytest.raises(ValueError):
        bh_adjust([0.5, 1.5])


@pytest.mark.parametrize("case", ["null", "mixture", "strong"])
def test_storey_smoother_matches_independent_reinsch_spline(case):
    rng = np.random.default_rng({"null": 2, "mixture": 3, "strong": 4}[case])
    p = {
        "null": lambda: rng.uniform(size=3000),
        "mixture": lambda: pvalue_mixture(rng, 3000, 0.8),
        "strong": lambda: pvalue_mixture(rng, 3000, 0.4),
    }[case]()
    ref_pi0 = pi0_smoother_ref(p.tolist())
    q, pi0 = storey_qvalues(p)
    assert abs(pi0 - ref_pi0) < 1e-7
    assert rel_err(q, qvalue_r(p, pi0)) < 1e-13
    truth = {"null": 1.0, "mixture": 0.8, "strong": 0.4}[case]
    assert abs(pi0 - truth) < 0.08, pi0
    if case == "null":
        assert pi0 > 0.95


def test_storey_bootstrap_and_fixed_lambda_match_direct_estimators():
    rng = np.random.default_rng(5)
    for p in (rng.uniform(size=2000), pvalue_mixture(rng, 2000, 0.6)):
        assert estimate_pi0(p, method="bootstrap") == pytest.approx(pi0_bootstrap_ref(p.tolist()), rel=1e-12)
        fixed = min(1.0, np.mean(p >= 0.5) / 0.5)
        q, pi0 = storey_qvalues(p, lambdas=0.5)
        assert pi0 == pytest.approx(fixed, rel=1e-12)
        assert rel_err(q, qvalue_r(p, fixed)) < 1e-13


def test_storey_nans_small_families_and_fallbacks():
    rng = np.random.default_rng(6)
    p = rng.permutation(pvalue_mixture(rng, 500, 0.5))
    p_nan = p.copy()
    p_nan[::50] = np.nan
    q, pi0 = storey_qvalues(p_nan)
    assert np.isnan(q[::50]).all()
    q_ref, pi0_ref = storey_qvalues(p_nan[~np.isnan(p_nan)])
    assert pi0 == pi0_ref and rel_err(q[~np.isnan(p_nan)], q_ref) == 0
    # fewer than min_tests p-values: pi0 = 1, q = BH (ClearMap's rule); min_tests=0 estimates
    assert storey_qvalues(p[:50])[1] == 1.0
    assert rel_err(storey_qvalues(p[:50])[0], bh_adjust(p[:50])) == 0
    assert storey_qvalues(p[:50], min_tests=0)[1] < 1.0
    # all p small: qvalue would stop; we fall back to pi0 = 1 with a warning
    with pytest.warns(RuntimeWarning):
        assert estimate_pi0(rng.uniform(0, 0.5, size=200)) == 1.0
    assert storey_qvalues([0.1, 0.2], pi0=0.5)[0].tolist() == [0.1, 0.1]


# -- voxel level ---------------------------------------------------------------------------------


def scipy_voxelwise(a, b, test):
    """scipy called voxel by voxel (b vs a), as a user would on one voxel."""
    shape = a.shape[1:]
    stat, p = np.empty(shape), np.empty(shape)
    for idx in np.ndindex(shape):
        x, y = a[(slice(None), *idx)], b[(slice(None), *idx)]
        if test == "mannwhitney":
            res = stats.mannwhitneyu(y, x)
        else:
            res = stats.ttest_ind(y, x, equal_var=test == "ttest")
        stat[idx], p[idx] = res.statistic, res.pvalue
    return stat, p


@pytest.mark.parametrize("sizes", [(3, 3), (4, 6), (3, 11), (9, 10)])
@pytest.mark.parametrize("test", ["welch", "ttest", "mannwhitney"])
def test_voxel_stats_match_scipy(test, sizes):
    n_a, n_b = sizes
    rng = np.random.default_rng([S.TESTS.index(test), n_a, n_b])
    a = rng.normal(100, 10, size=(n_a, 5, 6, 7))
    b = rng.normal(108, 15, size=(n_b, 5, 6, 7))
    a[:, 0], b[:, 0] = np.round(a[:, 0] / 10), np.round(b[:, 0] / 10)  # ties: Mann-Whitney goes asymptotic
    r = voxel_group_stats(a, b, test, dtype=np.float64)
    ref_stat, ref_p = scipy_voxelwise(a, b, test)
    assert rel_err(r.p, ref_p) < RTOL
    assert rel_err(r.statistic, ref_stat) < RTOL
    assert rel_err(r.mean_a, a.mean(0)) < 1e-14 and rel_err(r.mean_b, b.mean(0)) < 1e-14
    assert rel_err(r.std_a, a.std(0, ddof=1)) < 1e-12 and rel_err(r.std_b, b.std(0, ddof=1)) < 1e-12
    assert rel_err(r.p_bh, bh_adjust(ref_p)) < RTOL
    sign = np.where(b.mean(0) - a.mean(0) < 0, -1, 1)
    assert rel_err(r.p_signed, sign * ref_p) < RTOL
    if test != "mannwhitney":  # t and mean_b - mean_a agree in sign
        nonzero = r.statistic != 0
        assert np.array_equal(np.sign(r.statistic[nonzero]), np.sign(r.p_signed[nonzero]))


def test_voxel_float32_default_slabs_mask_and_volume_lists():
    rng = np.random.default_rng(7)
    a = rng.gamma(4, 25, size=(3, 9, 10, 11)).astype(np.float32)
    b = rng.gamma(4, 30, size=(4, 9, 10, 11)).astype(np.float32)
    mask = rng.uniform(size=a.shape[1:]) < 0.6
    full = voxel_group_stats(a, b, "welch", mask=mask, dtype=np.float64)
    one_plane = voxel_group_stats(a, b, "welch", mask=mask, dtype=np.float64, slab_mib=1e-9)
    as_lists = voxel_group_stats(list(a), list(b), "welch", mask=mask, dtype=np.float64)
    f32 = voxel_group_stats(a, b, "welch", mask=mask)
    for name in S.VoxelStats.MAPS:
        x = getattr(full, name)
        assert np.isnan(x[~mask]).all() and not np.isnan(x[mask]).any(), name
        np.testing.assert_array_equal(getattr(one_plane, name), x)
        np.testing.assert_array_equal(getattr(as_lists, name), x)
        assert getattr(f32, name).dtype == np.float32
        assert rel_err(getattr(f32, name)[mask], x[mask]) < 1e-6, name
    _, ref_p = scipy_voxelwise(a.astype(np.float64), b.astype(np.float64), "welch")
    assert rel_err(full.p[mask], ref_p[mask]) < RTOL
    assert rel_err(full.p_bh[mask], bh_adjust(ref_p[mask])) < RTOL  # BH counts the mask only


def test_voxel_zero_variance_gets_p_one():
    a = np.zeros((3, 1, 1, 4))
    b = np.zeros((3, 1, 1, 4))
    a[:, 0, 0, 1], b[:, 0, 0, 1] = 2.0, 2.0  # constant and equal
    b[:, 0, 0, 2] = 1.0  # constant and different
    a[:, 0, 0, 3], b[:, 0, 0, 3] = [1.0, 2.0, 3.0], 7.0  # one group constant: a normal test
    for test in ("welch", "ttest"):
        r = voxel_group_stats(a, b, test, dtype=np.float64)
        assert r.p[0, 0, :3].tolist() == [1.0, 1.0, 1.0]
        assert r.statistic[0, 0, :3].tolist() == [0.0, 0.0, np.inf]
        assert r.p[0, 0, 3] == pytest.approx(
            stats.ttest_ind(b[:, 0, 0, 3], a[:, 0, 0, 3], equal_var=test == "ttest").pvalue, rel=RTOL
        )
    r = voxel_group_stats(a, b, "mannwhitney", dtype=np.float64)
    _, ref_p = scipy_voxelwise(a, b, "mannwhitney")
    assert r.p[0, 0, 0] == 1.0 and rel_err(r.p, ref_p) < RTOL


def test_voxel_memory_stays_with_outputs_and_slabs():
    n, shape = 6, (32, 96, 96)
    rng = np.random.default_rng(8)
    a = rng.normal(size=(n, *shape)).astype(np.float32)
    b = rng.normal(size=(n, *shape)).astype(np.float32)
    nvox = int(np.prod(shape))
    tracemalloc.start()
    r = voxel_group_stats(a, b, "welch", slab_mib=4)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    outputs = len(S.VoxelStats.MAPS) * nvox * 4
    float64_stacks = 2 * n * nvox * 8
    assert peak - outputs < 0.5 * float64_stacks, (peak - outputs) / nvox
    assert r.p.shape == shape


def test_null_cohort_false_positive_rate():
    """3 vs 3 brains of smoothed Poisson density maps (counts of cells per voxel with a
    spatially varying rate, summed over 3x3x3 voxels like a box voxelization), no effect."""
    shape = (24, 48, 48)
    zz, yy, xx = np.ogrid[:24, :48, :48]
    mask = ((zz - 11.5) / 11) ** 2 + ((yy - 23.5) / 22) ** 2 + ((xx - 23.5) / 22) ** 2 < 1
    rate = 1 + 3 * np.exp(-((yy - 20) ** 2 + (xx - 28) ** 2) / 300.0) * np.ones(shape)
    hits = tests = 0
    for seed in range(20):
        rng = np.random.default_rng(1000 + seed)
        maps = np.stack(
            [ndimage.uniform_filter(rng.poisson(rate).astype(np.float32), size=3, mode="constant") for _ in range(6)]
        )
        r = voxel_group_stats(maps[:3], maps[3:], "welch", mask=mask)
        hits += int((r.p[mask] < 0.05).sum())
        tests += int(mask.sum())
    fpr = hits / tests
    assert 0.03 <= fpr <= 0.07, fpr


def test_colour_pvalue_map():
    p = np.array([[[0.001, 0.001, 0.2, np.nan], [1e-6, 0.049, 0.05, 0.0]]])
    sign = np.array([[[1.0, -1.0, 1.0, 1.0], [-2.0, 3.0, -1.0, 0.0]]])
    rgb = colour_pvalue_map(p, sign)
    assert rgb.shape == (1, 2, 4, 3) and rgb.dtype == np.uint8
    level = round(255 * 3 / 4)  # -log10(0.001) / 4
    assert rgb[0, 0, 0].tolist() == [level, 0, 0]  # increase: red
    assert rgb[0, 0, 1].tolist() == [0, level, 0]  # decrease: green
    assert rgb[0, 0, 2].tolist() == [0, 0, 0] and rgb[0, 0, 3].tolist() == [0, 0, 0]  # n.s., NaN
    assert rgb[0, 1, 0].tolist() == [0, 255, 0]  # saturated
    assert 0 < rgb[0, 1, 1, 0] < level and rgb[0, 1, 2].tolist() == [0, 0, 0]  # p = cutoff is not < cutoff
    assert rgb[0, 1, 3].tolist() == [255, 0, 0]  # p = 0, no difference -> positive
    np.testing.assert_array_equal(colour_pvalue_map(np.where(sign < 0, -p, p)), rgb)  # p_signed form
    lin = colour_pvalue_map(p, sign, positive=(0, 0, 1), negative=(1, 1, 0), scale="linear")
    assert lin[0, 0, 0].tolist() == [0, 0, round(255 * 0.98)]
    assert lin[0, 0, 1].tolist() == [round(255 * 0.98)] * 2 + [0]


# -- region level --------------------------------------------------------------------------------


def long_table(a, b, regions=None, value="density_per_mm3"):
    """(n_a, R), (n_b, R) -> long table with samples a0.., b0.. and region_id 1..R."""
    rows = []
    regions = list(range(1, a.shape[1] + 1)) if regions is None else regions
    for prefix, x in (("a", a), ("b", b)):
        for i, sample_values in enumerate(x):
            for rid, v in zip(regions, sample_values, strict=True):
                rows.append({"sample": f"{prefix}{i}", "region_id": rid, value: v})
    groups = {f"a{i}": "control" for i in range(len(a))} | {f"b{i}": "treated" for i in range(len(b))}
    return pd.DataFrame(rows), groups


@pytest.mark.parametrize("test", ["welch", "ttest", "mannwhitney"])
def test_region_stats_match_scipy(test):
    rng = np.random.default_rng(9)
    a = rng.lognormal(8, 0.3, size=(4, 40))
    b = rng.lognormal(8.2, 0.4, size=(5, 40))
    a[:, :5] = np.round(a[:, :5] / 1000)  # some ties
    b[:, :5] = np.round(b[:, :5] / 1000)
    table, groups = long_table(a, b)
    table = table.sample(frac=1.0, random_state=1)  # row order must not matter
    r = region_group_stats(table, groups, test=test)
    assert r["region_id"].tolist() == list(range(1, 41))
    assert r.attrs["group_a"] == "control" and r.attrs["group_b"] == "treated"
    ref = [
        stats.mannwhitneyu(b[:, j], a[:, j])
        if test == "mannwhitney"
        else stats.ttest_ind(b[:, j], a[:, j], equal_var=test == "ttest")
        for j in range(40)
    ]
    assert rel_err(r["p"], [x.pvalue for x in ref]) < RTOL
    assert rel_err(r["statistic"], [x.statistic for x in ref]) < RTOL
    assert (r["n_a"] == 4).all() and (r["n_b"] == 5).all()
    assert rel_err(r["mean_a"], a.mean(0)) < 1e-14 and rel_err(r["std_b"], b.std(0, ddof=1)) < 1e-12
    assert rel_err(r["fold_change"], b.mean(0) / a.mean(0)) < 1e-14
    assert rel_err(r["log2_fold_change"], np.log2(b.mean(0) / a.mean(0))) < 1e-12
    pooled = np.sqrt((3 * a.var(0, ddof=1) + 4 * b.var(0, ddof=1)) / 7)
    assert rel_err(r["cohens_d"], (b.mean(0) - a.mean(0)) / pooled) < 1e-12
    assert rel_err(r["p_bh"], bh_loop(r["p"].tolist())) < 1e-14
    assert rel_err(r["q"], r.attrs["pi0"] * r["p_bh"]) == 0 and r.attrs["pi0"] == 1.0  # 40 < 100 tests
    assert rel_err(r["p_signed"], np.where(b.mean(0) < a.mean(0), -1, 1) * r["p"]) == 0


def test_region_degenerate_regions_missing_rows_and_keys():
    a = np.array([[0.0, 5.0, 1.0, 0.0], [0.0, 5.0, 2.0, 0.0], [0.0, 5.0, 3.0, 0.0]])
    b = np.array([[0.0, 5.0, 4.0, 2.0], [0.0, 5.0, 5.0, 2.0], [0.0, 5.0, 6.0, 2.0]])
    table, groups = long_table(a, b)
    table["hemisphere"] = "left"
    table["acronym"] = table["region_id"].map({1: "A", 2: "B", 3: "C", 4: "D"})
    for test in ("welch", "ttest", "mannwhitney", "permutation"):
        r = region_group_stats(table, groups, test=test)
        assert list(r.columns[:3]) == ["region_id", "hemisphere", "acronym"]
        assert r["p"].iloc[0] == 1.0 and r["p"].iloc[1] == 1.0, test  # all zero / all equal
        assert r["cohens_d"].iloc[:2].tolist() == [0.0, 0.0]
    r = region_group_stats(table, groups)
    assert np.isnan(r["fold_change"].iloc[0]) and r["fold_change"].iloc[1] == 1.0
    assert r["fold_change"].iloc[3] == np.inf and r["log2_fold_change"].iloc[3] == np.inf
    assert r["p"].iloc[3] == 1.0 and r["statistic"].iloc[3] == np.inf  # both groups constant, different
    assert r["cohens_d"].iloc[3] == np.inf
    # a missing row is a zero (no cells) by default, or an error
    dropped = table[~((table["sample"] == "b2") & (table["region_id"] == 3))]
    r2 = region_group_stats(dropped, groups)
    assert r2["mean_b"].iloc[2] == pytest.approx((4 + 5 + 0) / 3)
    with pytest.raises(ValueError, match="fill_value"):
        region_group_stats(dropped, groups, fill_value=None)
    with pytest.raises(ValueError, match="exactly two"):
        region_group_stats(table, {**groups, "b2": "third"})
    with pytest.raises(ValueError, match="not in the table"):
        region_group_stats(table, {**groups, "zz": "control"})
    # hemispheres are separate regions by default
    both = pd.concat([table, table.assign(hemisphere="right")])
    assert len(region_group_stats(both, groups)) == 8
    with pytest.raises(ValueError, match="more than one row"):
        region_group_stats(both, groups, region_cols="region_id")


def test_permutation_exact_perfect_separation_3_vs_3():
    table, groups = long_table(np.array([[1.0], [2.0], [3.0]]), np.array([[4.0], [5.0], [6.0]]))
    r = region_group_stats(table, groups, test="permutation")
    assert r.attrs["exact"] and r.attrs["permutations"] == 20
    assert r["p"].iloc[0] == pytest.approx(2 / 20, abs=1e-15)
    assert r["statistic"].iloc[0] == 3.0
    # 6 vs 6 with random relabellings: (1 + #as extreme) / (1 + B), near the exact 2/924
    table, groups = long_table(np.arange(6.0)[:, None], np.arange(6.0, 12.0)[:, None])
    r = region_group_stats(table, groups, test="permutation", permutations=900, seed=3)
    assert not r.attrs["exact"] and r.attrs["permutations"] == 900
    p = r["p"].iloc[0]
    assert p * 901 == pytest.approx(round(p * 901)) and 1 / 901 <= p < 0.012
    assert region_group_stats(table, groups, test="permutation", permutations=900, seed=3)["p"].iloc[0] == p
    exact = region_group_stats(table, groups, test="permutation", permutations=1000)
    assert exact.attrs["exact"] and exact["p"].iloc[0] == pytest.approx(2 / 924, abs=1e-15)


@pytest.mark.parametrize("test", ["permutation", "welch", "ttest", "mannwhitney"])
def test_permutation_p_matches_scipy_permutation_test(test):
    rng = np.random.default_rng(10)
    a = rng.normal(10, 2, size=(4, 12))
    b = rng.normal(11, 3, size=(5, 12))
    a[:, 0], b[:, 0] = np.round(a[:, 0]), np.round(b[:, 0])
    table, groups = long_table(a, b)
    r = region_group_stats(table, groups, test=test, permutations=10_000)
    assert r.attrs["exact"] and r.attrs["permutations"] == math.comb(9, 4)

    def statistic(y, x, axis):
        if test == "permutation":
            return np.abs(y.mean(axis) - x.mean(axis))
        if test == "mannwhitney":
            return np.abs(stats.mannwhitneyu(y, x, axis=axis, method="asymptotic").statistic - 10.0)
        return np.abs(stats.ttest_ind(y, x, axis=axis, equal_var=test == "ttest").statistic)

    ref = [
        stats.permutation_test(
            (b[:, j], a[:, j]),
            statistic,
            permutation_type="independent",
            alternative="greater",
            n_resamples=np.inf,
            vectorized=True,
        ).pvalue
        for j in range(12)
    ]
    assert rel_err(r["p"], ref) < 1e-12


def test_region_cohort_raised_region_found_without_false_calls():
    """8 vs 8 brains, 150 regions x 2 hemispheres of Poisson cell counts with 10 % biological
    variation; one region (left hemisphere) doubled in group b."""
    rng = np.random.default_rng(11)
    n_regions = 150
    volume_mm3 = rng.uniform(0.05, 2.0, size=n_regions)
    density = np.exp(rng.uniform(np.log(2e3), np.log(5e4), size=n_regions))
    volume_mm3[7], density[7] = 1.0, 2e4  # the raised region: ~20 000 cells, noise mostly biological
    false_calls = unchanged = 0
    bh_found = []
    for _ in range(5):
        rows = []
        groups = {}
        for s in range(16):
            group = "wt" if s < 8 else "ko"
            groups[f"s{s}"] = group
            for hemi in ("left", "right"):
                lam = density * rng.lognormal(0, 0.1, size=n_regions)
                if group == "ko" and hemi == "left":
                    lam[7] *= 2.0
                counts = rng.poisson(lam * volume_mm3)
                rows += [
                    {
                        "sample": f"s{s}",
                        "region_id": 100 + j,
                        "hemisphere": hemi,
                        "count": counts[j],
                        "density_per_mm3": counts[j] / volume_mm3[j],
                    }
                    for j in range(n_regions)
                ]
        r = region_group_stats(pd.DataFrame(rows), groups)
        raised = (r["region_id"] == 107) & (r["hemisphere"] == "left")
        assert r.loc[raised, "p_bh"].iloc[0] < 0.05
        bh_found.append(r.loc[raised, "p_bh"].iloc[0])
        assert r.loc[raised, "fold_change"].iloc[0] == pytest.approx(2.0, rel=0.15)
        false_calls += int((r.loc[~raised, "q"] < 0.05).sum())
        unchanged += int((~raised).sum())
    assert false_calls / unchanged <= 0.05
    print(
        f"raised region p_bh {np.round(bh_found, 5).tolist()}, unchanged called at q < 0.05: {false_calls}/{unchanged}"
    )


def test_permutation_enumeration_is_complete():
    """The exact enumeration visits every relabelling once (C(7, 3) = 35 distinct mean differences)."""
    a, b = np.array([[1.0], [2.0], [4.0]]), np.array([[8.0], [16.0], [32.0], [64.0]])
    table, groups = long_table(a, b)
    r = region_group_stats(table, groups, test="permutation")
    x = np.concatenate([a[:, 0], b[:, 0]])
    diffs = [
        abs(np.mean([x[i] for i in c]) - np.mean([x[i] for i in range(7) if i not in c]))
        for c in itertools.combinations(range(7), 4)
    ]
    observed = abs(b.mean() - a.mean())
    assert r["p"].iloc[0] == pytest.approx(sum(d >= observed - 1e-12 for d in diffs) / 35, abs=1e-15)
