"""Exact point transforms: our vectorised evaluation of elastix transforms against
transformix itself, Newton inversion, the full raw ↔ atlas chain, and agreement with
label warping (one convention for points and images)."""

import time
import tracemalloc

import numpy as np
import pytest

from spimflow.errors import InputFileError
from spimflow.geometry import ResampleGrid
from spimflow.orientation import Orientation
from spimflow.params.register import ElastixStage
from spimflow.steps.elastix import register, stage_map, transformix_points, warp
from spimflow.steps.warp import warp_to_fixed
from spimflow.transforms import (
    ElastixChain,
    SampleAtlasTransform,
    read_parameter_file,
    transform_from_map,
    xyz_um_to_zyx_voxels,
    zyx_voxels_to_xyz_um,
)

VS = (25.0, 25.0, 25.0)
SHAPE = (20, 16, 18)  # fixed grid (z, y, x) used by the hand-made maps


def base_map(kind, n_params, params, **extra):
    """A complete elastix TransformParameters map as elastix writes it (fixed grid SHAPE)."""
    m = {
        "Transform": [kind],
        "NumberOfParameters": [str(n_params)],
        "TransformParameters": [repr(float(v)) for v in params],
        "InitialTransformParameterFileName": ["NoInitialTransform"],
        "HowToCombineTransforms": ["Compose"],
        "FixedImageDimension": ["3"],
        "MovingImageDimension": ["3"],
        "FixedInternalImagePixelType": ["float"],
        "MovingInternalImagePixelType": ["float"],
        "Size": [str(s) for s in SHAPE[::-1]],
        "Index": ["0", "0", "0"],
        "Spacing": [str(v) for v in VS],
        "Origin": ["0", "0", "0"],
        "Direction": ["1", "0", "0", "0", "1", "0", "0", "0", "1"],
        "UseDirectionCosines": ["true"],
        "ResampleInterpolator": ["FinalBSplineInterpolator"],
        "FinalBSplineInterpolationOrder": ["1"],
        "Resampler": ["DefaultResampler"],
        "DefaultPixelValue": ["0"],
        "ResultImagePixelType": ["float"],
    }
    m.update({k: [str(x) for x in v] for k, v in extra.items()})
    return m


def affine_map(rng):
    A = np.eye(3) + rng.normal(0, 0.08, (3, 3))
    t = rng.normal(0, 20, 3)
    return base_map("AffineTransform", 12, [*A.ravel(), *t], CenterOfRotationPoint=[212.5, 187.5, 237.5])


def bspline_map(rng, amplitude=15.0):
    # x, y, z control points; the valid region covers the fixed domain (and the affine's
    # image of it) with a wide margin, as elastix's grids do
    size = np.array([12, 12, 13])
    spacing = np.array([90.0, 80.0, 75.0])
    origin = -spacing * 3.3
    coef = rng.normal(0, amplitude, 3 * size.prod())
    return base_map(
        "BSplineTransform",
        coef.size,
        coef,
        GridSize=size,
        GridIndex=[0, 0, 0],
        GridSpacing=spacing,
        GridOrigin=origin,
        GridDirection=[1, 0, 0, 0, 1, 0, 0, 0, 1],
        BSplineTransformSplineOrder=[3],
        UseCyclicTransform=["false"],
    )


def random_xyz(rng, n, margin=100.0):
    ext = (np.array(SHAPE[::-1]) - 1) * np.array(VS)
    return rng.uniform(-margin, ext + margin, (n, 3))


@pytest.mark.slow  # elastix (the itk import alone takes ~10 s)
@pytest.mark.parametrize(
    "kind", ["affine", "euler", "euler_zyx", "similarity", "translation", "bspline", "affine+bspline"]
)
def test_chain_matches_transformix(kind):
    rng = np.random.default_rng(sum(map(ord, kind)))
    if kind == "affine":
        maps = [affine_map(rng)]
    elif kind.startswith("euler"):
        maps = [
            base_map(
                "EulerTransform",
                6,
                [0.2, -0.3, 0.4, 10, -20, 5],
                CenterOfRotationPoint=[200, 150, 220],
                ComputeZYX=["true" if kind.endswith("zyx") else "false"],
            )
        ]
    elif kind == "similarity":
        maps = [
            base_map(
                "SimilarityTransform", 7, [0.1, -0.2, 0.15, 10, -20, 5, 1.1], CenterOfRotationPoint=[200, 150, 220]
            )
        ]
    elif kind == "translation":
        maps = [base_map("TranslationTransform", 3, [10.5, -20.25, 5.0])]
    elif kind == "bspline":
        maps = [bspline_map(rng)]
    else:
        maps = [affine_map(rng), bspline_map(rng)]
    pts = random_xyz(rng, 300)
    ours = ElastixChain.from_maps(maps).apply(pts)
    theirs = transformix_points(pts, maps)
    np.testing.assert_allclose(ours, theirs, atol=2e-5 * np.abs(theirs).max() + 1e-4)
    if "bspline" in kind:  # the test must be sensitive: the B-spline moves points a lot
        without = ElastixChain.from_maps(maps[:-1]).apply(pts) if len(maps) > 1 else pts
        assert np.abs(theirs - without).max() > 10


def test_parameter_files_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    chain = ElastixChain.from_maps([affine_map(rng), bspline_map(rng)])
    names = chain.write(tmp_path, "t")
    assert names == ["t.0.txt", "t.1.txt"]
    assert read_parameter_file(tmp_path / "t.1.txt")["InitialTransformParameterFileName"] == ["t.0.txt"]
    back = ElastixChain.from_files(tmp_path / n for n in names)
    pts = random_xyz(rng, 50)
    np.testing.assert_allclose(back.apply(pts), chain.apply(pts), atol=1e-9)


def test_unsupported_transform_names_the_fix():
    with pytest.raises(InputFileError, match="not supported.*AffineTransform"):
        transform_from_map(base_map("SplineKernelTransform", 3, [0, 0, 0]))


def test_jacobian_matches_finite_differences():
    rng = np.random.default_rng(11)
    chain = ElastixChain.from_maps([affine_map(rng), bspline_map(rng)])
    p = random_xyz(rng, 40, margin=0)
    J = chain.jacobian(p)
    h = 1e-3
    num = np.stack([(chain.apply(p + h * e) - chain.apply(p - h * e)) / (2 * h) for e in np.eye(3)], axis=2)
    np.testing.assert_allclose(J, num, atol=1e-6)


def test_newton_inverse_round_trip():
    rng = np.random.default_rng(12)
    chain = ElastixChain.from_maps([affine_map(rng), bspline_map(rng, amplitude=10.0)])
    p = random_xyz(rng, 5000, margin=0)
    q = chain.apply(p)
    back, err = chain.inverse_apply(q, tol=1e-4)
    assert err.max() < 1e-4
    np.testing.assert_allclose(back, p, atol=1e-3)  # µm: far below 1e-3 voxel of 25 µm


def full_chain(rng, correction=True):
    grids = {
        "autofluorescence": ResampleGrid((44, 90, 70), (10.0, 5.0, 5.0), Orientation.from_codes("ipl", "asr"), VS),
        "signal": ResampleGrid((44, 90, 70), (10.0, 5.0, 5.0), Orientation.from_codes("ipl", "asr"), VS),
    }
    atlas = ElastixChain.from_maps([affine_map(rng), bspline_map(rng, amplitude=10.0)])
    corr = {}
    if correction:
        A = np.eye(3) + rng.normal(0, 0.02, (3, 3))
        corr["signal"] = ElastixChain.from_maps(
            [base_map("AffineTransform", 12, [*A.ravel(), 3.0, -2.0, 4.0], CenterOfRotationPoint=[200, 150, 220])]
        )
    return SampleAtlasTransform(VS, (24, 20, 22), grids, atlas, corr)


def test_full_chain_composition_by_hand():
    """sample_to_atlas = atlas chain ∘ inverse(correction) ∘ resample grid, composed here by hand."""
    rng = np.random.default_rng(13)
    T = full_chain(rng)
    raw = rng.uniform(0, 40, (500, 3))
    grid = T.grids["signal"]
    r = grid.sample_to_resampled(raw)
    p_sig = zyx_voxels_to_xyz_um(r, VS)
    C = T.correction["signal"].transforms[0]
    p_af = np.linalg.solve(C.matrix, (p_sig - C.offset).T).T
    expected = xyz_um_to_zyx_voxels(T.atlas_chain.apply(p_af), VS)
    np.testing.assert_allclose(T.sample_to_atlas(raw, "signal"), expected, atol=1e-9)
    # autofluorescence skips the correction
    np.testing.assert_allclose(
        T.sample_to_atlas(raw, "autofluorescence"), xyz_um_to_zyx_voxels(T.atlas_chain.apply(p_sig), VS), atol=1e-9
    )


@pytest.mark.parametrize("channel", ["signal", "autofluorescence"])
def test_full_chain_round_trip_and_chunking(channel, tmp_path):
    rng = np.random.default_rng(14)
    T = full_chain(rng)
    T.save(tmp_path, {"note": "test"})
    L = SampleAtlasTransform.load(tmp_path)
    L.chunk = 777  # many chunks, uneven last one
    raw = np.column_stack([rng.uniform(0, n - 1, 5000) for n in T.grids[channel].raw_shape])
    a = L.sample_to_atlas(raw, channel)
    np.testing.assert_allclose(a, T.sample_to_atlas(raw, channel), atol=1e-9)
    back = L.atlas_to_sample(a, channel)
    err = np.linalg.norm(back - raw, axis=1)
    assert np.nanmax(err) < 1e-3 and not np.isnan(err).any()


def test_million_points_bounded_memory():
    rng = np.random.default_rng(15)
    T = full_chain(rng)
    T.chunk = 100_000
    raw = np.column_stack([rng.uniform(0, n - 1, 1_000_000) for n in T.grids["signal"].raw_shape])
    tracemalloc.start()
    t0 = time.perf_counter()
    out = T.sample_to_atlas(raw, "signal")
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert out.shape == raw.shape and np.isfinite(out).all()
    # output 24 MB; working memory must scale with the chunk, not with 1e6 points
    assert peak < 24e6 + 150e6, f"peak {peak / 1e6:.0f} MB"
    print(f"1e6 points sample->atlas in {seconds:.1f} s, peak {peak / 1e6:.0f} MB")


# -- with a real elastix registration ----------------------------------------------------------


def blobs(shape, centres, radii, values, background=0.1):
    idx = np.indices(shape).astype(float)
    img = np.full(shape, background, np.float32)
    lab = np.zeros(shape, np.int64)
    for k, (c, r, v) in enumerate(zip(centres, radii, values), 1):
        inside = (((idx - np.array(c)[:, None, None, None]) / np.array(r)[:, None, None, None]) ** 2).sum(0) < 1
        img[inside] = v
        lab[inside] = 1_000_000_000 + k  # ids far beyond float32's exact integers
    return lab, img


@pytest.fixture(scope="module")
def small_registration():
    from scipy import ndimage

    lab, ref = blobs(
        (28, 24, 26), [(14, 12, 13), (10, 9, 9), (18, 14, 17)], [(11, 9, 10), (4, 4, 3), (4, 3, 5)], [0.5, 1.0, 0.8]
    )
    ref = ndimage.gaussian_filter(ref, 1.0)
    # sample: the atlas under a known affine (sample voxel s shows atlas voxel A s + t)
    A = np.array([[1.05, 0.03, 0.0], [0.0, 0.94, 0.04], [0.02, 0.0, 1.02]])
    t = np.array([-1.0, 1.5, 0.5])
    shape = (30, 26, 28)
    s = np.indices(shape).reshape(3, -1).T.astype(float)
    sample = ndimage.map_coordinates(ref, (s @ A.T + t).T, order=1).reshape(shape)
    ncc_stage = dict(resolutions=2, spatial_samples=2000, metric="AdvancedNormalizedCorrelation")
    maps = [
        stage_map("affine", ElastixStage(iterations=200, **ncc_stage)),
        stage_map("bspline", ElastixStage(iterations=100, **ncc_stage), 150.0),
    ]
    reg = register(sample, ref, VS, maps, threads=2)
    return lab, ref, sample, reg, (A, t)


def test_registered_chain_matches_transformix_and_truth(small_registration):
    lab, ref, sample, reg, (A, t) = small_registration
    chain = ElastixChain.from_maps(reg.transform_maps)
    rng = np.random.default_rng(16)
    s = rng.uniform(3, 24, (200, 3))
    p = zyx_voxels_to_xyz_um(s, VS)
    np.testing.assert_allclose(chain.apply(p), transformix_points(p, reg.transform_maps), atol=1e-3)
    err = np.linalg.norm(xyz_um_to_zyx_voxels(chain.apply(p), VS) - (s @ A.T + t), axis=1)
    assert err.mean() < 0.5, err.mean()


def test_points_and_label_warp_share_one_convention(small_registration):
    """A point at a sample voxel centre maps (sample_to_atlas, nearest voxel) to exactly
    the label transformix puts at that voxel when warping the annotation."""
    lab, ref, sample, reg, _ = small_registration
    warped = warp(lab, VS, reg.transform_maps, labels=True)
    assert warped.dtype == lab.dtype and set(np.unique(warped)) <= set(np.unique(lab))
    grid = ResampleGrid(sample.shape, VS, Orientation(), VS)
    T = SampleAtlasTransform(VS, lab.shape, {"autofluorescence": grid}, ElastixChain.from_maps(reg.transform_maps))
    vox = np.indices(sample.shape).reshape(3, -1).T
    a = T.sample_to_atlas(vox, "autofluorescence")
    k = np.floor(a + 0.5).astype(int)  # ITK rounds half up
    inside = np.all((k >= 0) & (k < np.array(lab.shape)), axis=1)
    from_points = np.zeros(len(vox), lab.dtype)
    from_points[inside] = lab[tuple(k[inside].T)]
    agree = from_points == warped.ravel()
    assert agree.mean() > 0.999, f"{(~agree).sum()} voxels disagree"
    assert (warped > 0).sum() > 0.15 * warped.size  # the brain blob fills ~24 %


def test_own_warp_matches_transformix(small_registration):
    """The register step warps the annotation and the reference itself
    (spimflow.steps.warp, ~10x faster): the labels transformix's nearest neighbour gives,
    and the intensities of its linear interpolation."""
    lab, ref, sample, reg, _ = small_registration
    own_lab, own_ref = warp_to_fixed([lab, ref], [True, False], sample.shape, VS, reg.transform_maps)
    agree = own_lab == warp(lab, VS, reg.transform_maps, labels=True)
    assert agree.mean() > 0.999, f"{(~agree).sum()} voxels disagree"
    # intensities agree wherever the moving position is not in the outer half voxel of the
    # volume, where transformix's order-1 B-spline interpolator mirrors and ITK's linear one
    # (and ours) clamps
    vox = np.indices(sample.shape).reshape(3, -1).T
    c = xyz_um_to_zyx_voxels(ElastixChain.from_maps(reg.transform_maps).apply(zyx_voxels_to_xyz_um(vox, VS)), VS)
    interior = np.all((c >= 0) & (c <= np.array(ref.shape) - 1), axis=1).reshape(sample.shape)
    assert interior.mean() > 0.6  # the sample grid is larger than the atlas
    theirs = warp(ref, VS, reg.transform_maps)
    np.testing.assert_allclose(own_ref[interior], theirs[interior], atol=1e-4 * ref.max())
    np.testing.assert_array_equal(reg.warped_moving, own_ref)  # register() warps its result the same way


@pytest.mark.slow  # elastix (the itk import alone takes ~10 s)
@pytest.mark.shared
def test_real_allen_labels_survive_warping(shared_data):
    """The real CCF 2017 annotation (ids up to 614454277, beyond float32's exact integers)
    warped by transformix through an affine + B-spline chain: every output voxel carries a
    real atlas id, the one our point transform finds at that voxel."""
    from spimflow.atlas import read_volume

    ann = read_volume(shared_data / "allen_ccf_2017_25um" / "ABA_25um_2017_annotation.tif.lzma")
    block = np.ascontiguousarray(ann[50:70, 364:380, 127:145])  # 24 regions, 38 % with ids > 2^24
    assert block.max() > 2**24 and len(np.unique(block)) > 10
    rng = np.random.default_rng(21)
    A = np.eye(3) + rng.normal(0, 0.02, (3, 3))
    maps = [
        base_map("AffineTransform", 12, [*A.ravel(), 5.0, -4.0, 3.0], CenterOfRotationPoint=[200, 180, 230]),
        bspline_map(rng, amplitude=6.0),
    ]
    warped = warp(block, VS, maps, labels=True)
    assert set(np.unique(warped)) <= set(np.unique(block)) | {0}
    grid = ResampleGrid(SHAPE, VS, Orientation(), VS)
    T = SampleAtlasTransform(VS, block.shape, {"autofluorescence": grid}, ElastixChain.from_maps(maps))
    a = T.sample_to_atlas(np.indices(SHAPE).reshape(3, -1).T, "autofluorescence")
    k = np.floor(a + 0.5).astype(int)
    inside = np.all((k >= 0) & (k < np.array(block.shape)), axis=1)
    expected = np.zeros(len(a), block.dtype)
    expected[inside] = block[tuple(k[inside].T)]
    agree = expected == warped.ravel()
    assert agree.mean() > 0.999, f"{(~agree).sum()} of {agree.size} voxels disagree"
    assert (warped > 2**24).any()


def test_channel_correction_direction(small_registration):
    """Signal shows the autofluorescence's anatomy shifted by d voxels: a cell at signal voxel
    x + d sits where the autofluorescence shows x, so both must land on the same atlas point."""
    from scipy import ndimage

    lab, ref, sample, reg, _ = small_registration
    d = np.array([1.5, -1.0, 2.0])
    signal = ndimage.shift(sample, d, order=1) * 3.0 + 0.2  # other intensities, same anatomy, shifted
    corr = register(
        sample,
        signal,
        VS,
        [
            stage_map(
                "affine",
                ElastixStage(
                    resolutions=2, iterations=200, spatial_samples=2000, metric="AdvancedNormalizedCorrelation"
                ),
            )
        ],
    )
    grid = ResampleGrid(sample.shape, VS, Orientation(), VS)
    T = SampleAtlasTransform(
        VS,
        lab.shape,
        {"autofluorescence": grid, "signal": grid},
        ElastixChain.from_maps(reg.transform_maps),
        {"signal": ElastixChain.from_maps(corr.transform_maps)},
    )
    x = np.random.default_rng(22).uniform(8, 18, (100, 3))
    via_signal = T.sample_to_atlas(x + d, "signal")
    via_af = T.sample_to_atlas(x, "autofluorescence")
    err = np.linalg.norm(via_signal - via_af, axis=1)
    assert err.mean() < 0.2, err.mean()
    # without the correction the same cells would be off by about |d|
    assert np.linalg.norm(T.sample_to_atlas(x + d, "autofluorescence") - via_af, axis=1).mean() > 1.5
    np.testing.assert_allclose(T.atlas_to_sample(via_signal, "signal"), x + d, atol=1e-3)
