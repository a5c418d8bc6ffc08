"""Warping atlas volumes onto the sample grid without itk (spimflow.steps.warp): every
voxel must carry exactly what the point transform finds there (labels: nearest voxel;
intensities: trilinear with ITK's edge rules), whatever path (fused kernel, generic
chain, threads, voxel sizes) computes it."""

import numpy as np
import pytest
from scipy import ndimage
from test_transforms import SHAPE, VS, affine_map, base_map, bspline_map

import spimflow.steps.warp as warp_module
from spimflow.steps.warp import warp_to_fixed
from spimflow.transforms import ElastixChain, xyz_um_to_zyx_voxels, zyx_voxels_to_xyz_um

MOVING_SHAPE = (26, 22, 24)


def moving_volumes(rng):
    labels = rng.integers(1, 2**32 - 1, MOVING_SHAPE, dtype=np.uint32)  # ids beyond float32's exact integers
    labels[rng.random(MOVING_SHAPE) < 0.2] = 0
    image = ndimage.gaussian_filter(rng.random(MOVING_SHAPE), 1.0).astype(np.float32)
    return labels, image


def by_points(maps, labels, image, fixed_shape=SHAPE, voxel_size=VS, moving_voxel_size=VS):
    """The truth from the point transform: each fixed voxel centre through ElastixChain.apply,
    then the nearest moving voxel (ITK rounds half up) and scipy's trilinear interpolation."""
    vox = np.indices(fixed_shape).reshape(3, -1).T
    a = xyz_um_to_zyx_voxels(
        ElastixChain.from_maps(maps).apply(zyx_voxels_to_xyz_um(vox, voxel_size)), moving_voxel_size
    )
    k = np.floor(a + 0.5).astype(int)
    inside = np.all((k >= 0) & (k < np.array(labels.shape)), axis=1)
    lab = np.zeros(len(a), labels.dtype)
    lab[inside] = labels[tuple(k[inside].T)]
    img = np.where(inside, ndimage.map_coordinates(image, a.T, order=1, mode="nearest"), 0.0)
    return lab.reshape(fixed_shape), img.reshape(fixed_shape)


def check(maps, labels, image, fixed_shape=SHAPE, moving_voxel_size=VS, threads=1):
    lab, img = warp_to_fixed([labels, image], [True, False], fixed_shape, VS, maps, moving_voxel_size, threads)
    exp_lab, exp_img = by_points(maps, labels, image, fixed_shape, VS, moving_voxel_size)
    assert lab.dtype == labels.dtype and img.dtype == np.float32
    np.testing.assert_array_equal(lab, exp_lab)
    np.testing.assert_allclose(img, exp_img, atol=1e-5)
    assert (lab > 0).mean() > 0.2  # the test would be vacuous if the volume fell outside
    return lab, img


def test_affine_and_bspline_match_the_point_transform():
    rng = np.random.default_rng(41)
    labels, image = moving_volumes(rng)
    maps = [affine_map(rng), bspline_map(rng, amplitude=15.0)]
    assert warp_module._fused_plan(ElastixChain.from_maps(maps), MOVING_SHAPE, np.array(VS)) is not None
    lab, img = check(maps, labels, image)
    lab2, img2 = warp_to_fixed([labels, image], [True, False], SHAPE, VS, maps, threads=3)
    np.testing.assert_array_equal(lab2, lab)
    np.testing.assert_array_equal(img2, img)


def test_generic_path_for_other_chains():
    """Chains the fused kernel does not take (``Add``, a linear map after the B-spline) go
    through ElastixChain.apply, with the same result."""
    rng = np.random.default_rng(42)
    labels, image = moving_volumes(rng)
    add = bspline_map(rng, amplitude=10.0)
    add["HowToCombineTransforms"] = ["Add"]
    assert warp_module._fused_plan(ElastixChain.from_maps([affine_map(rng), add]), MOVING_SHAPE, np.array(VS)) is None
    check([affine_map(rng), add], labels, image, threads=2)
    after = [affine_map(rng), bspline_map(rng, amplitude=10.0), affine_map(rng)]
    assert warp_module._fused_plan(ElastixChain.from_maps(after), MOVING_SHAPE, np.array(VS)) is None
    check(after, labels, image)


def test_points_the_bspline_brings_back_inside_are_not_skipped():
    """The affine puts the fixed grid 30 µm or more beyond the moving volume along x; a
    constant -300 µm B-spline displacement brings two thirds of it back. The kernel's
    shortcut (skip points the B-spline cannot bring back inside) must not skip these."""
    rng = np.random.default_rng(43)
    labels, image = moving_volumes(rng)
    extent_x = (MOVING_SHAPE[2] - 1) * VS[2]
    shift = base_map("TranslationTransform", 3, [extent_x + 30.0, 0.0, 0.0])
    bs = bspline_map(rng, amplitude=0.0)
    n = len(bs["TransformParameters"]) // 3
    bs["TransformParameters"] = ["-300.0"] * n + ["0.0"] * (2 * n)  # x component first
    bs["GridOrigin"] = [str(extent_x + 30.0 - 180.0), "-300", "-300"]  # valid region covers the shifted grid
    check([shift, bs], labels, image)
    without = warp_to_fixed([labels], [True], SHAPE, VS, [shift])[0]
    assert not without.any()  # the affine alone leaves nothing inside


@pytest.mark.parametrize("moving_voxel_size", [(50.0, 25.0, 25.0), (25.0, 30.0, 20.0)])
def test_anisotropic_moving_voxels(moving_voxel_size):
    rng = np.random.default_rng(44)
    labels, image = moving_volumes(rng)
    maps = [affine_map(rng), bspline_map(rng, amplitude=10.0)]
    check(maps, labels, image, moving_voxel_size=moving_voxel_size, fixed_shape=(14, 16, 18))


def test_bad_arguments():
    rng = np.random.default_rng(45)
    labels, image = moving_volumes(rng)
    with pytest.raises(ValueError, match="one labels flag per volume"):
        warp_to_fixed([labels, image], [True], SHAPE, VS, [affine_map(rng)])
    with pytest.raises(ValueError, match="differ in shape"):
        warp_to_fixed([labels, image[:-1]], [True, False], SHAPE, VS, [affine_map(rng)])
