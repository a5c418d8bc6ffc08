"""Streaming resampling to the atlas grid: exactness, orientation, points, memory."""

import itertools

import numpy as np
import pytest
from scipy import ndimage

from spimflow.geometry import ResampleGrid
from spimflow.io.omezarr import build_pyramid, create_ome_zarr, open_ome_zarr
from spimflow.orientation import Orientation
from spimflow.params.resample import ResampleParams
from spimflow.steps.resample import resample_image, resampled_to_raw_planes

ALL_48 = [
    Orientation(p, f) for p in itertools.permutations(range(3)) for f in itertools.product([False, True], repeat=3)
]


class CountingArray:
    """A real numpy volume that records which planes each read touches (for memory checks)."""

    def __init__(self, data):
        self.data, self.reads = data, []

    @property
    def shape(self):
        return self.data.shape

    def __getitem__(self, key):
        assert isinstance(key, slice), "reads must be plane ranges raw[z0:z1]"
        self.reads.append((key.start, key.stop))
        return self.data[key]


def reference_resample(raw, grid, antialias=True):
    """Whole-volume reference: Gaussian filter, then trilinear interpolation at the raw
    position of every resampled voxel (scipy, independent of the streaming code)."""
    sig = grid.antialias_sigmas() if antialias else (0, 0, 0)
    f = ndimage.gaussian_filter(raw.astype(np.float64), sig, mode="nearest")
    r = np.indices(grid.shape).reshape(3, -1).T.astype(float)
    s = grid.resampled_to_sample(r)
    return ndimage.map_coordinates(f, s.T, order=1, mode="nearest").reshape(grid.shape)


@pytest.mark.parametrize("code", ["asr", "ipl", "rsa", "pli"])
@pytest.mark.parametrize("chunk", [1, 3, 16])
def test_streaming_equals_whole_volume_reference(code, chunk):
    rng = np.random.default_rng(1)
    raw = rng.random((37, 30, 41)).astype(np.float32)
    grid = ResampleGrid(raw.shape, (10.0, 5.0, 3.0), Orientation.from_codes(code, "asr"), (25.0, 25.0, 25.0))
    out = resample_image(raw, grid, ResampleParams(chunk_planes=chunk))
    assert out.shape == grid.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, reference_resample(raw, grid), atol=1e-5)


@pytest.mark.parametrize("orient", ALL_48, ids=lambda o: f"{o.perm}{''.join('F' if f else '.' for f in o.flip)}")
def test_all_48_resample_then_inverse_returns_input(orient):
    """Equal voxel sizes: resampling is a pure reorientation, and mapping back is exact."""
    raw = np.random.default_rng(2).random((6, 7, 8)).astype(np.float32)
    grid = ResampleGrid(raw.shape, (25.0, 25.0, 25.0), orient, (25.0, 25.0, 25.0))
    out = resample_image(raw, grid, ResampleParams(chunk_planes=2))
    np.testing.assert_array_equal(out, orient.apply_to_array(raw))
    back = resampled_to_raw_planes(out, grid, 0, raw.shape[0])
    np.testing.assert_array_equal(back, raw)


@pytest.mark.parametrize("orient", ALL_48, ids=lambda o: f"{o.perm}{''.join('F' if f else '.' for f in o.flip)}")
def test_all_48_images_and_points_share_one_mapping(orient):
    """Unequal voxel sizes: a linear ramp f(s) is reproduced exactly by linear
    interpolation, so the resampled value at r must equal f(resampled_to_sample(r)); and
    points round-trip sample -> resampled -> sample."""
    shape, vs, target = (9, 13, 11), (10.0, 4.0, 7.0), (25.0, 20.0, 15.0)
    grid = ResampleGrid(shape, vs, orient, target)
    coef = np.array([1.0, 10.0, 100.0])
    raw = np.tensordot(coef, np.indices(shape).astype(np.float64), axes=1).astype(np.float32)
    out = resample_image(raw, grid, ResampleParams(antialias=False, chunk_planes=2))
    r = np.indices(grid.shape).reshape(3, -1).T.astype(float)
    expected = grid.resampled_to_sample(r) @ coef
    np.testing.assert_allclose(out.ravel(), expected, atol=1e-3)
    pts = np.random.default_rng(3).uniform(0, 8, (100, 3))
    np.testing.assert_allclose(grid.resampled_to_sample(grid.sample_to_resampled(pts)), pts, atol=1e-9)
    # and back onto raw planes at the same positions (upsampling, exact for a ramp)
    back = resampled_to_raw_planes(out, grid, 0, shape[0])
    inside = np.all(
        grid.sample_to_resampled(np.indices(shape).reshape(3, -1).T) <= np.array(grid.shape) - 1 + 1e-9, axis=1
    ).reshape(shape)
    np.testing.assert_allclose(back[inside], raw[inside], atol=1e-3)


def test_physical_position_is_preserved():
    """A blob at a known anatomical position lands where the chain says, worked out by
    hand for the demo orientation 'ipl' -> 'asr' (all three axes flipped, z<->y swapped)."""
    shape, vs = (40, 90, 70), (10.0, 5.0, 5.0)
    c = np.array([12.0, 31.0, 50.0])  # raw voxel (z, y, x)
    raw = np.exp(
        -((np.indices(shape) - c[:, None, None, None]) ** 2 * (np.array(vs) ** 2)[:, None, None, None]).sum(0)
        / (2 * 15.0**2)
    )
    grid = ResampleGrid(shape, vs, Orientation.from_codes("ipl", "asr"), (25.0, 25.0, 25.0))
    out = resample_image(raw.astype(np.float32), grid, ResampleParams())
    # atlas z = anterior->posterior = reversed sample y; atlas y = reversed sample z; atlas x reversed x
    expected = np.array([(shape[1] - 1 - c[1]) * 5.0, (shape[0] - 1 - c[0]) * 10.0, (shape[2] - 1 - c[2]) * 5.0]) / 25.0
    np.testing.assert_allclose(grid.sample_to_resampled(c[None])[0], expected, atol=1e-9)
    w = out / out.sum()
    centroid = (np.indices(out.shape).reshape(3, -1) * w.ravel()).sum(1)
    np.testing.assert_allclose(centroid, expected, atol=0.1)


def test_antialias_suppresses_aliasing():
    """A stripe pattern at 2.5 raw voxels per period (above the target Nyquist) must
    average out when downsampling by 5, not alias into a false pattern."""
    shape = (12, 8, 200)
    x = np.arange(shape[2])
    raw = np.broadcast_to(np.cos(2 * np.pi * x / 2.5), shape).astype(np.float32)
    grid = ResampleGrid(shape, (25.0, 25.0, 5.0), Orientation(), (25.0, 25.0, 25.0))
    with_aa = resample_image(raw, grid, ResampleParams(antialias=True))
    without = resample_image(raw, grid, ResampleParams(antialias=False))
    assert np.abs(without).max() > 0.9  # every 5th sample hits the same phase: aliasing
    assert np.abs(with_aa[:, :, 3:-3]).max() < 0.05


def test_streaming_reads_each_plane_once_in_bounded_slabs():
    rng = np.random.default_rng(4)
    data = rng.random((120, 20, 20)).astype(np.float32)
    raw = CountingArray(data)
    grid = ResampleGrid(data.shape, (5.0, 25.0, 25.0), Orientation.from_codes("psr", "asr"), (25.0, 25.0, 25.0))
    resample_image(raw, grid, ResampleParams(chunk_planes=4))
    sizes = [b - a for a, b in raw.reads]
    assert max(sizes) <= 16
    planes = np.concatenate([np.arange(a, b) for a, b in raw.reads])
    assert len(planes) == len(set(planes.tolist())) == data.shape[0]


def test_reads_from_ome_zarr(tmp_path):
    """The task's input: an ingested OME-Zarr, read plane-slab by plane-slab."""
    data = np.random.default_rng(5).integers(0, 4000, (30, 40, 50)).astype(np.uint16)
    arr = create_ome_zarr(tmp_path / "raw.ome.zarr", data.shape, data.dtype, (8.0, 4.0, 4.0), chunks=(4, 40, 50))
    arr[...] = data
    build_pyramid(tmp_path / "raw.ome.zarr")
    img = open_ome_zarr(tmp_path / "raw.ome.zarr")
    grid = ResampleGrid(img.shape, img.voxel_size, Orientation.from_codes("sal", "asr"), (20.0, 20.0, 20.0))
    np.testing.assert_allclose(
        resample_image(img.array, grid, ResampleParams()), reference_resample(data, grid), rtol=1e-5, atol=1e-2
    )


def test_grid_serialises():
    grid = ResampleGrid((5, 6, 7), (1.0, 2.0, 3.0), Orientation.from_codes("lip", "asr"), (25.0, 25.0, 25.0))
    assert ResampleGrid.from_dict(grid.to_dict()) == grid


def test_bad_points_shape_is_rejected():
    grid = ResampleGrid((5, 6, 7), (1.0, 2.0, 3.0), Orientation(), (25.0, 25.0, 25.0))
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        grid.sample_to_resampled(np.zeros((4, 2)))


@pytest.mark.parametrize("order", ["linear", "nearest"])
@pytest.mark.parametrize("sigma", [0.0, 0.8, 3.1])
def test_axis_operator_equals_filter_then_interpolate(order, sigma):
    from spimflow.steps.resample import axis_operator, interp_axis, smooth_axis

    a = np.random.default_rng(6).random((57, 5))
    coords = np.linspace(0, 56, 13) + 0.3 * (order == "linear")
    expected = interp_axis(smooth_axis(a, sigma, 0), np.clip(coords, 0, 56), 0, order)
    np.testing.assert_allclose(axis_operator(57, coords, sigma, order) @ a, expected, atol=1e-6)
