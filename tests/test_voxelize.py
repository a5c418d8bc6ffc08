"""Density maps (``spimflow.steps.voxelize``) against references built here.

The references are brute force on small grids, written independently of the module: a
Python loop over the cells stamping every voxel of the grid, with the sphere test done in
exact integer arithmetic (voxel and kernel sizes are whole micrometres), so voxels exactly
on the surface are decided without rounding.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from spimflow.atlas import Ontology, Region
from spimflow.steps.voxelize import count_outside, isolate_regions, region_ids, region_mask, voxelize

# ---------------------------------------------------------------------------------------------
# Brute-force references (float64)
# ---------------------------------------------------------------------------------------------


def cell_voxels(points, shape):
    """Nearest voxel = floor(p + 0.5) per axis; keep the cells inside the grid."""
    pts = np.asarray(points, dtype=float).reshape(-1, 3)
    idx = np.floor(pts + 0.5)
    keep = np.all((idx >= 0) & (idx < np.array(shape)), axis=1)
    return idx[keep].astype(int), keep


def reference(points, shape, vox, method, size=None, weights=None):
    """Stamp every cell on the whole grid (slow, exact)."""
    idx, keep = cell_voxels(points, shape)
    w = np.ones(len(keep)) if weights is None else np.asarray(weights, dtype=float)
    w = w[keep]
    grid = np.indices(shape)
    vox = np.asarray(vox, dtype=np.int64)
    out = np.zeros(shape)
    if method == "pixel":
        np.add.at(out, tuple(idx.T), w)
        return out
    size = np.broadcast_to(np.asarray(size), (3,))
    for c, wc in zip(idx, w, strict=True):
        d_um = (grid - c[:, None, None, None]) * vox[:, None, None, None]  # int64 µm
        if method == "sphere":
            s = size.astype(np.int64)
            prod = int(np.prod(s)) ** 2
            q = sum(d_um[i] ** 2 * (prod // int(s[i]) ** 2) for i in range(3))  # exact integers
            out += wc * (q <= prod)
        elif method == "rectangle":
            s = size.astype(np.int64)
            out += wc * np.all(np.abs(d_um) <= s[:, None, None, None], axis=0)
        elif method == "gaussian":
            s = size.astype(float)[:, None, None, None]
            g = np.exp(-(d_um**2) / (2 * s**2)).prod(axis=0)
            out += wc * g * np.all(np.abs(d_um) <= 3 * s, axis=0)
    return out


def lattice_points_in_ball(r: int) -> int:
    return sum(1 for a, b, c in itertools.product(range(-r, r + 1), repeat=3) if a * a + b * b + c * c <= r * r)


def random_points(rng, shape, n, margin=2.0):
    """Uniform points, some beyond the grid edges (margin voxels on each side)."""
    return rng.uniform(-margin, np.array(shape) - 1 + margin, size=(n, 3))


SHAPE = (12, 14, 16)
ANISO_VOX = (50, 20, 25)  # µm, (z, y, x)
ANISO_SIZE = (100, 70, 60)  # radii 2, 3.5, 2.4 voxels: lattice points exactly on the surface along z


# ---------------------------------------------------------------------------------------------
# Sphere
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("r", [1, 3, 15])
def test_single_cell_sphere_has_the_lattice_points_of_the_ball(r):
    shape = (2 * r + 3,) * 3
    m = voxelize(np.array([[r + 1, r + 1, r + 1.3]]), shape, (25.0, 25.0, 25.0), "sphere", 25.0 * r)
    assert m.dtype == np.float32
    assert set(np.unique(m)) == {0.0, 1.0}
    assert m.sum() == lattice_points_in_ball(r)
    assert {1: 7, 3: 123}.get(r, m.sum()) == m.sum()  # known values of the lattice count
    assert m[r + 1, r + 1, 1] == 1 and m[r + 1, r + 1, 0] == 0 and m[0, r + 1, r + 1] == 0


@pytest.mark.parametrize("vox, size", [(0.1, 0.3), (0.1, 0.1 * 3), (30.0, 90 * (1 + 1e-12)), (30.0, 90 * (1 - 8e-10))])
def test_radius_a_whole_number_of_voxels_up_to_rounding(vox, size):
    m = voxelize(np.array([[4.0, 4.0, 4.0]]), (9, 9, 9), (vox, vox, vox), "sphere", size)
    assert m.sum() == lattice_points_in_ball(3)
    box = voxelize(np.array([[4.0, 4.0, 4.0]]), (9, 9, 9), (vox, vox, vox), "rectangle", size)
    assert box.sum() == 7**3


def test_default_size_is_375um_so_15_voxels_at_25um():
    m = voxelize(np.array([[16.0, 16.0, 16.0]]), (33, 33, 33), (25.0, 25.0, 25.0))
    assert m.sum() == lattice_points_in_ball(15)


def test_sphere_random_points_anisotropic_equal_brute_force():
    rng = np.random.default_rng(1)
    pts = random_points(rng, SHAPE, 60)
    got = voxelize(pts, SHAPE, ANISO_VOX, "sphere", ANISO_SIZE)
    np.testing.assert_array_equal(got, reference(pts, SHAPE, ANISO_VOX, "sphere", ANISO_SIZE))


def test_two_overlapping_cells_add():
    vox = (25.0, 25.0, 25.0)
    a, b = np.array([[5.0, 5.0, 5.0]]), np.array([[5.0, 6.0, 7.0]])
    both = voxelize(np.vstack([a, b]), (11, 11, 11), vox, "sphere", 75.0)
    np.testing.assert_array_equal(
        both, voxelize(a, (11, 11, 11), vox, "sphere", 75.0) + voxelize(b, (11, 11, 11), vox, "sphere", 75.0)
    )
    assert both.max() == 2 and both[5, 5, 5] == 2 and both[5, 5, 2] == 1


def test_cells_in_the_same_voxel_count_separately():
    pts = np.array([[3.0, 3.0, 3.0], [3.2, 2.9, 3.4], [3.0, 3.0, 3.0]])
    m = voxelize(pts, (7, 7, 7), (10.0, 10.0, 10.0), "sphere", 20.0)
    assert m[3, 3, 3] == 3 and m.sum() == 3 * lattice_points_in_ball(2)


def test_sphere_at_the_grid_corner_is_clipped():
    m = voxelize(np.array([[0.0, 0.0, 0.0]]), (8, 8, 8), (25.0, 25.0, 25.0), "sphere", 75.0)
    octant = sum(1 for a, b, c in itertools.product(range(4), repeat=3) if a * a + b * b + c * c <= 9)
    assert m.sum() == octant
    np.testing.assert_array_equal(m, reference([[0, 0, 0]], (8, 8, 8), (25, 25, 25), "sphere", 75))


def test_sphere_larger_than_the_grid():
    pts = np.array([[1.0, 2.0, 0.0]])
    m = voxelize(pts, (3, 4, 5), (10.0, 10.0, 10.0), "sphere", 200.0)
    np.testing.assert_array_equal(m, np.ones((3, 4, 5)))


def test_weighted_sphere_equals_brute_force_and_is_exactly_zero_elsewhere():
    rng = np.random.default_rng(2)
    pts = random_points(rng, SHAPE, 40, margin=0.0)
    pts[:, 2] = np.minimum(pts[:, 2], 6.0)  # leave the high-x end of the grid empty
    w = rng.uniform(0.1, 3.0, len(pts))
    got = voxelize(pts, SHAPE, ANISO_VOX, "sphere", ANISO_SIZE, weights=w)
    ref = reference(pts, SHAPE, ANISO_VOX, "sphere", ANISO_SIZE, w)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=0)
    assert np.array_equal(got == 0, ref == 0)  # no +w-w residue where no cell reaches
    assert (ref == 0).any()


def test_integer_weights_are_exact():
    rng = np.random.default_rng(3)
    pts = random_points(rng, SHAPE, 50)
    counts = voxelize(pts, SHAPE, ANISO_VOX, "sphere", ANISO_SIZE)
    np.testing.assert_array_equal(voxelize(pts, SHAPE, ANISO_VOX, "sphere", ANISO_SIZE, np.full(50, 2)), 2 * counts)
    signed = np.where(np.arange(50) % 2, 1.0, -1.0)
    np.testing.assert_array_equal(
        voxelize(pts, SHAPE, ANISO_VOX, "sphere", ANISO_SIZE, signed),
        reference(pts, SHAPE, ANISO_VOX, "sphere", ANISO_SIZE, signed),
    )


# ---------------------------------------------------------------------------------------------
# Rectangle, gaussian, pixel
# ---------------------------------------------------------------------------------------------


def test_rectangle_random_points_equal_brute_force():
    rng = np.random.default_rng(4)
    pts = random_points(rng, SHAPE, 60)
    got = voxelize(pts, SHAPE, ANISO_VOX, "rectangle", ANISO_SIZE)
    np.testing.assert_array_equal(got, reference(pts, SHAPE, ANISO_VOX, "rectangle", ANISO_SIZE))
    w = rng.uniform(0.1, 3.0, len(pts))
    np.testing.assert_allclose(
        voxelize(pts, SHAPE, ANISO_VOX, "rectangle", ANISO_SIZE, w),
        reference(pts, SHAPE, ANISO_VOX, "rectangle", ANISO_SIZE, w),
        rtol=1e-6,
        atol=1e-6,
    )


def test_rectangle_smaller_than_a_voxel_is_the_pixel_map():
    rng = np.random.default_rng(5)
    pts = random_points(rng, SHAPE, 80)
    np.testing.assert_array_equal(
        voxelize(pts, SHAPE, (25, 25, 25), "rectangle", 10.0), voxelize(pts, SHAPE, (25, 25, 25), "pixel")
    )


def test_gaussian_random_points_close_to_brute_force():
    rng = np.random.default_rng(6)
    pts = random_points(rng, SHAPE, 50)
    sigma = (40, 15, 20)  # truncation 3 sigma = 120, 45, 60 µm = 2.4, 2.25, 2.4 voxels
    got = voxelize(pts, SHAPE, ANISO_VOX, "gaussian", sigma)
    ref = reference(pts, SHAPE, ANISO_VOX, "gaussian", sigma)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    w = rng.uniform(0.1, 3.0, len(pts))
    np.testing.assert_allclose(
        voxelize(pts, SHAPE, ANISO_VOX, "gaussian", sigma, w),
        reference(pts, SHAPE, ANISO_VOX, "gaussian", sigma, w),
        rtol=1e-5,
        atol=1e-6,
    )


def test_gaussian_is_peak_normalised_and_cut_at_3_sigma():
    m = voxelize(np.array([[5.0, 5.0, 5.0]]), (11, 11, 11), (10.0, 10.0, 10.0), "gaussian", 10.0, np.array([2.0]))
    assert m[5, 5, 5] == pytest.approx(2.0, rel=1e-6)
    assert m[5, 5, 8] == pytest.approx(2 * np.exp(-4.5), rel=1e-6)  # 3 sigma: still in
    assert m[5, 5, 9] == 0 and m[5, 5, 1] == 0  # beyond: exactly 0
    assert m[6, 7, 4] == pytest.approx(2 * np.exp(-(1 + 4 + 1) / 2), rel=1e-6)
    np.testing.assert_allclose(m, m[::-1, ::-1, ::-1], rtol=1e-6)  # symmetric


def test_pixel_counts_and_weights():
    rng = np.random.default_rng(7)
    pts = np.vstack([random_points(rng, SHAPE, 200), [[0.4, 0.4, 0.4]] * 3])
    got = voxelize(pts, SHAPE, (25, 25, 25), "pixel")
    np.testing.assert_array_equal(got, reference(pts, SHAPE, (25, 25, 25), "pixel"))
    assert got[0, 0, 0] >= 3
    w = rng.normal(size=len(pts))
    np.testing.assert_allclose(
        voxelize(pts, SHAPE, (25, 25, 25), "pixel", weights=w),
        reference(pts, SHAPE, (25, 25, 25), "pixel", weights=w),
        rtol=1e-6,
        atol=1e-6,
    )


@pytest.mark.parametrize("method", ["sphere", "rectangle", "gaussian", "pixel"])
def test_total_without_edges_is_cells_times_kernel(method):
    """Cells far from the edges: the map's total is (sum of weights) x (kernel total)."""
    rng = np.random.default_rng(8)
    pts = rng.uniform(9, 11, size=(30, 3))  # kernels reach 9, 6, 4 voxels: all inside
    w = rng.uniform(0.5, 1.5, 30)
    single = voxelize(np.array([[10.0, 10.0, 10.0]]), (21, 21, 21), (20, 25, 30), method, (60, 50, 45))
    got = voxelize(pts, (21, 21, 21), (20, 25, 30), method, (60, 50, 45), w)
    assert got.sum(dtype=np.float64) == pytest.approx(w.sum() * single.sum(dtype=np.float64), rel=1e-5)


# ---------------------------------------------------------------------------------------------
# Rounding, outside points, validation
# ---------------------------------------------------------------------------------------------


def test_nearest_voxel_rounds_half_up_and_outside_points_are_dropped_and_counted():
    pts = np.array(
        [
            [0.0, 0.0, -0.5],  # floor(0.0) = 0: inside
            [0.0, 0.0, -0.51],  # -1: outside
            [0.0, 0.0, 2.5],  # 3: inside (half up)
            [0.0, 0.0, 3.5],  # 4: outside
            [0.0, np.nan, 1.0],  # NaN: outside
            [-3.0, 0.0, 1.0],
            [0.0, 1.49, 1.0],  # y 1: inside
        ]
    )
    shape = (1, 2, 4)
    m = voxelize(pts, shape, (25, 25, 25), "pixel")
    expected = np.zeros(shape)
    expected[0, 0, 0] = expected[0, 0, 3] = expected[0, 1, 1] = 1
    np.testing.assert_array_equal(m, expected)
    assert count_outside(pts, shape) == 4
    assert count_outside(np.empty((0, 3)), shape) == 0


@pytest.mark.parametrize("method", ["sphere", "rectangle", "gaussian", "pixel"])
def test_no_points_or_all_outside_give_zeros(method):
    for pts in (np.empty((0, 3)), np.array([[-5.0, 1.0, 1.0], [1.0, 1.0, 99.0]])):
        m = voxelize(pts, (4, 5, 6), (25, 25, 25), method, 50.0)
        assert m.shape == (4, 5, 6) and m.dtype == np.float32 and not m.any()


def test_dropped_weights_follow_their_points():
    pts = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 50.0], [2.0, 2.0, 2.0]])
    m = voxelize(pts, (4, 4, 4), (25, 25, 25), "pixel", weights=[1.5, 100.0, 2.5])
    assert m.sum() == 4.0 and m[1, 1, 1] == 1.5 and m[2, 2, 2] == 2.5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="cube"), "method"),
        (dict(size_um=0.0), "size_um"),
        (dict(size_um=(1.0, 2.0)), "size_um"),
        (dict(weights=np.ones(3)), "weights"),
        (dict(weights=np.array([1.0, np.nan])), "finite"),
        (dict(voxel_size_um=(25.0, 0.0, 25.0)), "voxel_size_um"),
        (dict(shape=(4, 4)), "shape"),
        (dict(points=np.ones((2, 2))), "points"),
    ],
)
def test_invalid_arguments_raise_value_error(kwargs, match):
    args = dict(
        points=np.ones((2, 3)),
        shape=(4, 4, 4),
        voxel_size_um=(25.0, 25.0, 25.0),
        method="sphere",
        size_um=50.0,
        weights=None,
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        voxelize(**args)


def test_pixel_ignores_size():
    m = voxelize(np.array([[1.0, 1.0, 1.0]]), (3, 3, 3), (25, 25, 25), "pixel", size_um=-1)
    assert m.sum() == 1 and m[1, 1, 1] == 1


# ---------------------------------------------------------------------------------------------
# Regions
# ---------------------------------------------------------------------------------------------
#   997 root
#   ├── 1 A  ── 11 A1 ── 614454277 A1a (a large Allen-style id)
#   │        └─ 12 A2
#   └── 2 B  ── 21 B1


@pytest.fixture
def onto() -> Ontology:
    return Ontology(
        [
            Region(997, "root", "root", None),
            Region(1, "A", "Area A", 997),
            Region(11, "A1", "A one", 1),
            Region(614454277, "A1a", "A one a", 11),
            Region(12, "A2", "A two", 1),
            Region(2, "B", "Area B", 997),
            Region(21, "B1", "B one", 2),
        ],
        source="tiny",
    )


ANNOTATION = np.array([[[0, 997, 1, 11], [614454277, 12, 2, 21], [5, 11, 21, 1]]], dtype=np.uint32)


def test_region_mask_includes_all_descendants(onto):
    expect_a = np.isin(ANNOTATION, [1, 11, 12, 614454277])
    np.testing.assert_array_equal(region_mask(ANNOTATION, onto, "A"), expect_a)
    np.testing.assert_array_equal(region_mask(ANNOTATION, onto, 1), expect_a)
    np.testing.assert_array_equal(region_mask(ANNOTATION, onto, np.int64(1)), expect_a)
    np.testing.assert_array_equal(region_mask(ANNOTATION, onto, "A1"), np.isin(ANNOTATION, [11, 614454277]))
    np.testing.assert_array_equal(region_mask(ANNOTATION, onto, ["A2", 2]), np.isin(ANNOTATION, [12, 2, 21]))
    np.testing.assert_array_equal(region_mask(ANNOTATION, onto, "root"), np.isin(ANNOTATION, onto.ids))
    assert region_mask(ANNOTATION.astype(np.int64), onto, "B").sum() == 3
    assert region_ids(onto, ["A1", 11]).tolist() == [11, 614454277]


def test_isolate_regions(onto):
    density = np.arange(ANNOTATION.size, dtype=np.float32).reshape(ANNOTATION.shape) + 1
    out = isolate_regions(density, ANNOTATION, onto, ["B"])
    assert out.dtype == np.float32 and out is not density
    np.testing.assert_array_equal(out, np.where(np.isin(ANNOTATION, [2, 21]), density, 0))
    out = isolate_regions(density, ANNOTATION, onto, "A1", fill=np.nan)
    np.testing.assert_array_equal(np.isnan(out), ~np.isin(ANNOTATION, [11, 614454277]))
    assert density.min() == 1  # input untouched
    with pytest.raises(ValueError, match="shape"):
        isolate_regions(density[:, :2], ANNOTATION, onto, "A")


@pytest.mark.parametrize("bad", ["C", "a", 3, 5, [1, "nope"], 1.0])
def test_unknown_region_raises_value_error_naming_it(onto, bad):
    name = bad[-1] if isinstance(bad, list) else bad
    with pytest.raises(ValueError, match=repr(name).replace(".", r"\.")):
        region_mask(ANNOTATION, onto, bad)


def test_density_of_a_region_from_a_subset_of_cells(onto):
    """End to end: map, isolate, and per-hemisphere maps by passing a subset of points."""
    pts = np.array([[0.0, 0.0, 2.0], [0.0, 1.0, 3.0], [0.0, 2.0, 0.0]])
    hemisphere = np.array(["left", "right", "left"])
    left = voxelize(pts[hemisphere == "left"], ANNOTATION.shape, (25, 25, 25), "pixel")
    assert left.sum() == 2
    in_a = isolate_regions(left, ANNOTATION, onto, "A")
    assert in_a.sum() == 1 and in_a[0, 0, 2] == 1
