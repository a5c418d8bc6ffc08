"""Each detection step against ground truth the test builds itself (or an independent reference)."""

import numpy as np
import pandas as pd
import pytest
import scipy.ndimage as ndi
from skimage.measure import label, regionprops
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from spimflow.errors import ConfigError
from spimflow.params.detect import DetectParams, DogParams, IlluminationParams
from spimflow.steps.detect import (
    CELL_COLUMNS,
    IlluminationField,
    detect_cells,
    dog_filter,
    empty_cells,
    estimate_illumination,
    find_maxima,
    profile_illumination,
    remove_background,
    threshold_cells,
)
from spimflow.steps.detect.filters import gaussian_half_kernel

RNG = np.random.default_rng(1)


def params(**changes) -> DetectParams:
    """DetectParams with dotted-key overrides, e.g. params(**{"dog.enabled": False})."""
    p = DetectParams()
    for key, value in changes.items():
        obj = p
        *path, last = key.split(".")
        for k in path:
            obj = getattr(obj, k)
        setattr(obj, last, value)
    return p


def all_filters_off(**changes) -> DetectParams:
    base = {"background.enabled": False, "dog.enabled": False, "refine.enabled": False}
    base.update(changes)
    return params(**base)


def ball(shape, centre, radius_vox, peak, falloff=0.0):
    """A cone-like ball: peak at the centre, decreasing linearly by ``falloff`` per voxel."""
    zz, yy, xx = np.indices(shape)
    d = np.sqrt((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2)
    return np.where(d <= radius_vox, peak - falloff * d, 0.0), d


# -- filters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size_um,vox",
    [
        ((30.0, 30.0), (3.0, 4.0, 4.0)),
        ((12.0, 25.0), (10.0, 5.0, 5.0)),
        ((1.0, 1.0), (1.0, 1.0, 1.0)),
        ((80.0, 80.0), (1.0, 2.0, 2.0)),
    ],
)
def test_background_is_an_exact_top_hat(size_um, vox):
    img = RNG.random((5, 37, 29)).astype(np.float32) * 1000
    p = params(**{"background.size_um": size_um}).background
    out = remove_background(img, vox, p)
    ry, rx = (max(0, int(np.floor((s / v - 1) / 2 + 0.5))) for s, v in zip(size_um, vox[1:]))
    ref = img - ndi.grey_opening(img, size=(1, 2 * ry + 1, 2 * rx + 1), mode="nearest")
    assert np.array_equal(out, ref)  # min/max only: bit-exact


def test_background_removes_a_smooth_background_and_keeps_cells():
    vox = (4.0, 2.0, 2.0)
    zz, yy, xx = np.indices((9, 80, 80)).astype(np.float32)
    bg = 200 + 2.0 * xx + 1.0 * yy  # a ramp
    cell, _ = ball((9, 80, 80), (4, 40, 40), 3, 500.0)
    out = remove_background((bg + cell).astype(np.float32), vox, params().background)
    assert abs(out[4, 40, 40] - 500) < 0.05 * 500  # the cell keeps its height
    far = out[:, :20, :20]
    assert np.abs(far).max() < 2 * 2.0 * 15  # the ramp is removed up to the box slope


def test_dog_matches_scipy_gaussians():
    vox = (4.0, 2.0, 2.0)
    img = ndi.gaussian_filter(RNG.random((20, 40, 44)), 1.0).astype(np.float32) * 1000
    p = DogParams(sigma_inner_um=3.0, sigma_outer_um=6.0, truncate=3.0)
    out = dog_filter(img, vox, p)
    ref = np.zeros(img.shape)
    for sigma, sign in ((p.sigma_inner_um, 1), (p.sigma_outer_um, -1)):
        g = img.astype(np.float64)
        for axis, v in enumerate(vox):
            w = gaussian_half_kernel(sigma / v, p.truncate).astype(np.float64)
            g = ndi.correlate1d(g, np.concatenate([w[:0:-1], w]), axis=axis, mode="nearest")
        ref += sign * g
    assert np.abs(out - ref).max() < 1e-4 * np.abs(img).max()
    # and the kernels are sampled Gaussians: same as scipy's own with the same radius
    r = len(gaussian_half_kernel(1.5, 3.0)) - 1
    impulse = np.zeros(41)
    impulse[20] = 1
    sp = ndi.gaussian_filter1d(impulse, 1.5, radius=r)
    w = gaussian_half_kernel(1.5, 3.0)
    assert np.allclose(sp[20 : 20 + r + 1], w, atol=1e-7)


def test_dog_of_a_flat_image_is_zero_and_of_a_blob_peaks_at_its_centre():
    vox = (3.0, 2.0, 2.0)
    flat = np.full((12, 30, 30), 321.0, np.float32)
    assert np.abs(dog_filter(flat, vox, DogParams())).max() < 1e-3
    zz, yy, xx = np.indices((21, 41, 41))
    c = (10, 20, 21)
    blob = 1000 * np.exp(-(((zz - c[0]) * 3) ** 2 + ((yy - c[1]) * 2) ** 2 + ((xx - c[2]) * 2) ** 2) / (2 * 5.0**2))
    d = dog_filter(blob.astype(np.float32), vox, DogParams())
    assert np.unravel_index(np.argmax(d), d.shape) == c


def test_illumination_estimate_flattens_a_gradient_and_a_profile_divides_exactly(tmp_path):
    import tifffile

    vox = (5.0, 5.0, 5.0)
    shape = (4, 120, 160)
    field = (1.0 - 0.6 * np.arange(shape[2]) / (shape[2] - 1))[None, None, :] * np.ones(shape)
    img = (1000 * field).astype(np.float32)
    p = IlluminationParams(enabled=True, sigma_um=100.0)
    est = estimate_illumination(lambda a, b: img[a:b], shape, vox, p)
    corrected = img * est.gain((0, 4), (0, 120), (0, 160))
    inner = corrected[:, 20:-20, 20:-20]  # away from the edge, where smoothing flattens the ramp
    assert inner.max() / inner.min() < 1.08
    # profile: the field itself, one image for every plane
    tifffile.imwrite(tmp_path / "flat.tif", field[0].astype(np.float32))
    prof = profile_illumination(tmp_path / "flat.tif", shape[1:], p)
    out = img * prof.gain((0, 4), (0, 120), (0, 160))
    assert np.allclose(out, 1000, rtol=1e-5)
    # a block gets exactly the values of the whole volume
    whole = est.gain((0, 4), (0, 120), (0, 160))
    assert np.array_equal(est.gain((1, 3), (17, 90), (33, 151)), whole[1:3, 17:90, 33:151])
    with pytest.raises(Exception, match="expected the signal's in-plane shape"):
        profile_illumination(tmp_path / "flat.tif", (10, 10), p)


def test_illumination_field_roundtrip(tmp_path):
    f = IlluminationField(RNG.random((3, 5, 6)).astype(np.float32) + 0.1, (7, 7), 0.2)
    f.save(tmp_path / "f.npz")
    g = IlluminationField.load(tmp_path / "f.npz")
    assert np.array_equal(f.field, g.field) and g.factor == (7, 7) and g.floor == 0.2


# -- maxima ----------------------------------------------------------------------------


def test_plateau_gives_one_centre_at_its_centroid():
    f = np.zeros((9, 15, 15), np.float32)
    f[3:6, 5:8, 6:10] = 100.0  # a 3 x 3 x 4 plateau
    f[4, 12, 3] = 50.0  # and a single-voxel maximum
    for refine in (True, False):
        mx = find_maxima(f, (1.0, 1.0, 1.0), params(**{"maxima.threshold": 10.0, "refine.enabled": refine}))
        centres = np.sort(mx.peaks + mx.deltas, axis=0)
        assert len(mx.peaks) == 2
        expected = np.sort(np.array([[4, 6, 7.5], [4, 12, 3]]), axis=0)
        assert np.allclose(centres, expected)


def test_maxima_threshold_and_h_max_match_skimage():
    img = ndi.gaussian_filter(RNG.random((16, 48, 48)), 1.5).astype(np.float32)
    img = (img - img.min()) / (img.max() - img.min()) * 1000
    vox = (1.0, 1.0, 1.0)
    # regional maxima above a threshold: brute force
    mx = find_maxima(img, vox, params(**{"maxima.threshold": 300.0, "maxima.radius_um": 60.0}))
    brute = (img == ndi.maximum_filter(img, size=3, mode="constant", cval=-np.inf)) & (img >= 300)
    assert sorted(map(tuple, mx.peaks)) == sorted(map(tuple, np.argwhere(brute)))
    # h-maxima: skimage's h_maxima marks the top of every maximum of dynamic >= h
    for h in (20.0, 80.0):
        mx = find_maxima(img, vox, params(**{"maxima.threshold": 0.0, "maxima.h_max": h, "maxima.radius_um": 60.0}))
        ref = label(h_maxima(img.astype(np.float64), h), connectivity=3)
        tops = sorted(tuple(int(round(c)) for c in r.centroid) for r in regionprops(ref))
        assert sorted(map(tuple, mx.peaks)) == tops


def test_h_max_suppresses_a_shoulder_but_keeps_two_real_cells():
    zz, yy, xx = np.indices((11, 40, 40)).astype(float)

    def g(c, s, a):
        return a * np.exp(-((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) / (2 * s * s))

    img = (g((5, 20, 14), 2.5, 1000) + g((5, 20, 22), 1.2, 150) + g((5, 20, 32), 2.5, 900)).astype(np.float32)
    vox = (1.0, 1.0, 1.0)
    plain = find_maxima(img, vox, params(**{"maxima.threshold": 50.0}))
    hmax = find_maxima(img, vox, params(**{"maxima.threshold": 50.0, "maxima.h_max": 200.0}))
    assert len(plain.peaks) == 3 and len(hmax.peaks) == 2
    assert sorted(p[2] for p in hmax.peaks) == [14, 32]
    # the suppressed shoulder's basin joins the cell that suppressed it: no mask voxel is lost
    for h in (None, 200.0):
        p = all_filters_off(
            **{"maxima.threshold": 50.0, "maxima.h_max": h, "shape.threshold": 20.0, "shape.max_radius_um": 15.0}
        )
        cells = detect_cells(img, vox, p)
        assert cells["size"].sum() == (img > 20).sum()


def test_refinement_finds_sub_voxel_centres_of_gaussian_blobs():
    zz, yy, xx = np.indices((15, 31, 31)).astype(float)
    true = (7.3, 15.45, 14.8)
    vox = (3.0, 2.0, 2.0)
    s = 5.0
    img = 1000 * np.exp(
        -(((zz - true[0]) * vox[0]) ** 2 + ((yy - true[1]) * vox[1]) ** 2 + ((xx - true[2]) * vox[2]) ** 2)
        / (2 * s * s)
    )
    mx = find_maxima(img.astype(np.float32), vox, all_filters_off(**{"refine.enabled": True, "maxima.threshold": 10.0}))
    assert len(mx.peaks) == 1
    assert np.allclose(mx.peaks[0] + mx.deltas[0], true, atol=1e-3)  # exact for a Gaussian
    # and after the DoG, within a tenth of a voxel
    p = params(**{"background.enabled": False, "maxima.threshold": 10.0})
    cells = detect_cells(img.astype(np.float32), vox, p)
    assert len(cells) == 1
    assert np.allclose(cells[["z", "y", "x"]].to_numpy()[0], true, atol=0.1)


# -- shapes and measurements ----------------------------------------------------------------


def test_shape_size_and_intensities_of_an_isolated_cell_are_exact():
    shape = (15, 31, 33)
    raw, d = ball(shape, (7, 15, 16), 5.0, 1000.0, falloff=100.0)
    raw = raw + 50.0  # background 50, cone from 1000 at the centre to 500 at radius 5
    vox = (2.0, 1.0, 1.0)
    p = all_filters_off(
        **{
            "maxima.threshold": 100.0,
            "shape.threshold": 100.0,
            "shape.max_radius_um": 20.0,
            "measure.box_um": (2.0, 3.0, 3.0),
        }
    )
    cells = detect_cells(raw.astype(np.float32), vox, p)
    assert len(cells) == 1
    inside = raw > 100
    c = cells.iloc[0]
    assert (c.z, c.y, c.x) == (7, 15, 16)
    assert c["size"] == inside.sum()
    assert c.volume_um3 == inside.sum() * 2.0
    assert np.isclose(c.mean_raw, raw[inside].mean())
    assert c.intensity_raw == raw.max()
    # max_radius_um limits the shape to an ellipsoid in µm
    p.shape.max_radius_um = 3.0
    c2 = detect_cells(raw.astype(np.float32), vox, p).iloc[0]
    zz, yy, xx = np.indices(shape)
    within = ((zz - 7) * 2.0) ** 2 + (yy - 15) ** 2 + (xx - 16) ** 2 <= 9.0
    assert c2["size"] == (inside & within).sum()


def test_shapes_agree_with_a_flooding_watershed():
    """Isolated and touching blobs: sizes equal skimage's seeded watershed (26-connected) within a few %."""
    vox = (1.0, 1.0, 1.0)
    zz, yy, xx = np.indices((21, 50, 60)).astype(float)
    centres = [(10, 12, 12), (10, 30, 40), (10, 30, 47.5), (6, 38, 14)]  # one touching pair
    img = np.zeros(zz.shape)
    for c in centres:
        img += 1000 * np.exp(-((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) / (2 * 3.0**2))
    img = img.astype(np.float32)
    p = all_filters_off(**{"maxima.threshold": 100.0, "shape.threshold": 100.0, "shape.max_radius_um": 30.0})
    cells = detect_cells(img, vox, p)
    assert len(cells) == 4
    markers = np.zeros(img.shape, np.int32)
    peaks = np.rint(cells[["z", "y", "x"]].to_numpy()).astype(int)
    for i, (z, y, x) in enumerate(peaks):
        markers[z, y, x] = i + 1
    ws = watershed(-img, markers, mask=img > 100, connectivity=3)
    ref = np.bincount(ws.ravel(), minlength=5)[1:]
    assert np.all(np.abs(cells["size"].to_numpy() - ref) <= 0.03 * ref)
    assert cells["size"].sum() == (img > 100).sum()  # every mask voxel belongs to exactly one cell


def test_switched_off_steps_pass_their_input_through():
    img, _ = ball((9, 21, 21), (4, 10, 10), 3.0, 800.0, falloff=50.0)
    img = (img + 100).astype(np.float32)
    p = all_filters_off(**{"maxima.threshold": 200.0, "shape.threshold": 200.0})
    c = detect_cells(img, (1.0, 1.0, 1.0), p).iloc[0]
    assert c.intensity_raw == c.intensity_bg == c.intensity_dog == 900.0
    p.shape.enabled = False
    c = detect_cells(img, (1.0, 1.0, 1.0), p).iloc[0]
    assert c["size"] == 0 and np.isnan(c.mean_raw)


# -- tables ----------------------------------------------------------------------------------


def test_no_cells_and_empty_volumes_give_empty_tables_with_the_right_columns():
    for vol in (np.full((10, 30, 30), 120, np.uint16), np.zeros((0, 5, 5), np.uint16)):
        cells = detect_cells(vol, (4.0, 2.0, 2.0))
        assert list(cells.columns) == list(CELL_COLUMNS) and len(cells) == 0
        assert dict(cells.dtypes.astype(str)) == CELL_COLUMNS
    assert dict(empty_cells().dtypes.astype(str)) == CELL_COLUMNS


def test_threshold_keeps_rows_inside_every_range():
    cells = pd.DataFrame(
        {"z": [0.0, 1, 2, 3], "y": 0.0, "x": 0.0, "size": [5, 50, 500, 5000], "intensity_raw": [10.0, 300, np.nan, 900]}
    )
    out = threshold_cells(cells, {"size": (20, 1000), "intensity_raw": (None, 1000)})
    assert out["z"].tolist() == [1.0]  # NaN never passes
    assert len(threshold_cells(cells, {})) == 4
    with pytest.raises(ConfigError, match=r"steps.threshold.ranges.brightness: no such cell column"):
        threshold_cells(cells, {"brightness": (1, None)})
