"""The block grid, and detection that does not depend on it (block size, processes, source)."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from spimflow.blocks import (
    BlockPlan,
    batch_ids,
    block_memory_mb,
    check_detect_config,
    detect_blocks,
    detect_volume,
    grid_blocks,
    make_plan,
    sort_cells,
)
from spimflow.errors import ConfigError, InputFileError
from spimflow.io.omezarr import write_ome_zarr
from spimflow.params.detect import DetectParams
from spimflow.steps.detect import detect_cells, required_overlap
from spimflow.steps.detect.synthetic import make_synthetic_cells

DEMO_VOX = (10.0, 5.0, 5.0)  # the demo's anisotropic voxels
FINE_VOX = (3.0, 4.0, 4.0)  # a ClearMap-like light-sheet resolution


@pytest.fixture(scope="module")
def volumes():
    return {
        DEMO_VOX: make_synthetic_cells((40, 150, 170), DEMO_VOX, density_per_mm3=20000, seed=3)[0],
        FINE_VOX: make_synthetic_cells((70, 110, 120), FINE_VOX, density_per_mm3=20000, seed=4)[0],
    }


def with_blocks(p: DetectParams, size, overlap=None) -> DetectParams:
    q = p.model_copy(deep=True)
    q.blocks.size = size
    q.blocks.overlap = overlap
    return q


# -- the grid ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,size,overlap",
    [
        ((40, 150, 170), (32, 64, 64), (7, 18, 18)),
        ((5, 7, 9), (5, 7, 9), (3, 3, 3)),
        ((100, 33, 1), (16, 16, 16), (0, 4, 4)),
    ],
)
def test_cores_tile_the_volume_and_reads_add_the_clipped_overlap(shape, size, overlap):
    blocks = grid_blocks(shape, size, overlap)
    owner = np.zeros(shape, int)
    for b in blocks:
        sl = tuple(slice(a, c) for a, c in b.core)
        owner[sl] += 1
        for a in range(3):
            assert b.read[a][0] == max(0, b.core[a][0] - overlap[a])
            assert b.read[a][1] == min(shape[a], b.core[a][1] + overlap[a])
    assert np.all(owner == 1)  # every voxel in exactly one core
    assert [b.id for b in blocks] == list(range(len(blocks)))
    # the grid splits all three axes
    assert len({b.index[2] for b in blocks}) == -(-shape[2] // size[2])


def test_batches_partition_the_blocks_and_the_plan_roundtrips(tmp_path):
    assert batch_ids(7, 3) == [[0, 1, 2], [3, 4, 5], [6]]
    plan = make_plan((40, 150, 170), DEMO_VOX, with_blocks(DetectParams(), (32, 64, 64)))
    assert sorted(i for b in plan.batches for i in b) == list(range(len(plan.blocks)))
    plan.save(tmp_path / "plan.json")
    again = BlockPlan.load(tmp_path / "plan.json")
    assert again == plan
    assert plan.overlap == required_overlap(DEMO_VOX, DetectParams())
    assert block_memory_mb(plan) > 500


def test_bad_grids_and_filters_are_reported_before_any_block_runs():
    # overlap given explicitly but too small for the filters / cell radius
    p = with_blocks(DetectParams(), (64, 256, 256), (1, 1, 1))
    with pytest.raises(ConfigError, match=r"steps.detect.blocks.overlap: \[1, 1, 1\] is too small"):
        make_plan((100, 300, 300), DEMO_VOX, p)
    # block smaller than the (automatic) overlap
    p = with_blocks(DetectParams(), (4, 256, 256))
    with pytest.raises(ConfigError, match=r"steps.detect.blocks.size: \[4, 256, 256\] is smaller than the overlap"):
        make_plan((100, 300, 300), DEMO_VOX, p)
    # a background filter wider than the block
    p = with_blocks(DetectParams(), (64, 256, 256), (40, 200, 200))
    p.background.size_um = (2000.0, 30.0)
    msgs = check_detect_config(p, DEMO_VOX)
    assert any("steps.detect.background.size_um" in m and "larger than the block size 256" in m for m in msgs)
    # block smaller than overlap in the config model itself
    with pytest.raises(Exception, match="smaller than the overlap"):
        DetectParams.model_validate({"blocks": {"size": [8, 8, 8], "overlap": [9, 1, 1]}})
    # an empty volume
    with pytest.raises(InputFileError, match="empty"):
        make_plan((0, 10, 10), DEMO_VOX, DetectParams())


# -- exact block independence -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("vox", [DEMO_VOX, FINE_VOX])
@pytest.mark.parametrize("h_max", [None, 100.0])
def test_same_cells_for_any_block_size_and_process_count(volumes, vox, h_max):
    vol = volumes[vox]
    p = DetectParams()
    p.maxima.h_max = h_max
    ref = sort_cells(detect_cells(vol, vox, p)).drop(columns="block")
    assert len(ref) > 300
    for size, processes in ((32, 1), (32, 2), (64, 1), (128, 1)):
        cells = detect_volume(vol, vox, with_blocks(p, (size, size, size)), processes=processes)
        if size == 32:
            assert cells.block.nunique() > 20
        got = cells.drop(columns="block")
        assert len(got) == len(ref)
        assert np.abs(got[["z", "y", "x"]].to_numpy() - ref[["z", "y", "x"]].to_numpy()).max() <= 1e-6
        assert np.array_equal(got["size"], ref["size"])
        assert got.equals(ref)  # in fact bit-identical, every column


def test_a_too_small_overlap_would_change_the_result(volumes):
    """The independence test has teeth: with no overlap the cells change."""
    vol = volumes[DEMO_VOX]
    p = DetectParams()
    ref = sort_cells(detect_cells(vol, DEMO_VOX, p)).drop(columns="block")
    blocks = grid_blocks(vol.shape, (16, 32, 32), (0, 0, 0))
    plan = BlockPlan(vol.shape, DEMO_VOX, (16, 32, 32), (0, 0, 0), blocks, batch_ids(len(blocks), 4))
    got = detect_blocks(vol, plan, p).drop(columns="block")
    assert not got.equals(ref)


def test_centroid_centres_are_block_independent_too(volumes):
    """refine.center: centroid. A cell belongs to the block holding its shape's centroid, which can be
    another block than its peak's: the overlap covers that reach, and some cells do cross."""
    vol = volumes[FINE_VOX]
    p = DetectParams.model_validate({"refine": {"center": "centroid"}})
    ref = sort_cells(detect_cells(vol, FINE_VOX, p)).drop(columns="block")
    peak = sort_cells(detect_cells(vol, FINE_VOX, DetectParams())).drop(columns="block")
    assert len(ref) == len(peak) > 300
    _, pair = cKDTree(peak[["z", "y", "x"]].to_numpy()).query(ref[["z", "y", "x"]].to_numpy())
    assert len(set(pair)) == len(pair)  # the same cells, centred differently
    at_peak, at_centroid = peak[["z", "y", "x"]].to_numpy()[pair], ref[["z", "y", "x"]].to_numpy()
    assert np.abs(at_peak - at_centroid).max() > 0.5
    # the overlap peak centres need is too small for centroids
    small = with_blocks(p, (32, 48, 48), required_overlap(FINE_VOX, DetectParams()))
    assert any("blocks.overlap" in m for m in check_detect_config(small, FINE_VOX))
    crossing = 0
    for size in ((26, 28, 28), (32, 40, 40), (48, 64, 64)):  # >= the overlap (the split needs (26, 27, 27))
        got = detect_volume(vol, FINE_VOX, with_blocks(p, size)).drop(columns="block")
        assert got.equals(ref)
        block_of = lambda c: np.floor(np.floor(c + 0.5) / np.asarray(size))  # noqa: E731, B023
        crossing += int(np.any(block_of(at_peak) != block_of(at_centroid), axis=1).sum())
    assert crossing > 0


def test_blocks_read_from_an_ome_zarr_give_the_in_memory_result(volumes, tmp_path):
    vol = volumes[DEMO_VOX]
    write_ome_zarr(tmp_path / "signal.ome.zarr", vol, DEMO_VOX, chunks=(8, 64, 64), n_levels=1)
    p = with_blocks(DetectParams(), (32, 64, 64))
    a = detect_volume(tmp_path / "signal.ome.zarr", DEMO_VOX, p, processes=2)
    b = detect_volume(vol, DEMO_VOX, p)
    assert a.equals(b)


def test_illumination_correction_is_block_independent_too(volumes):
    from spimflow.steps.detect import estimate_illumination

    vol = volumes[DEMO_VOX]
    p = DetectParams()
    p.illumination.enabled = True
    p.illumination.sigma_um = 150.0
    field = estimate_illumination(lambda a, b: vol[a:b], vol.shape, DEMO_VOX, p.illumination)
    assert field.field.shape[0] == vol.shape[0]  # one field per plane
    ref = sort_cells(detect_cells(vol, DEMO_VOX, p, illumination=field)).drop(columns="block")
    plain = sort_cells(detect_cells(vol, DEMO_VOX, DetectParams())).drop(columns="block")
    assert not ref.equals(plain)  # the correction changes intensities
    for size in (32, 64):
        got = detect_volume(vol, DEMO_VOX, with_blocks(p, (size, size, size)), illumination=field)
        assert got.drop(columns="block").equals(ref)


def test_small_volumes_get_at_least_as_many_batch_jobs_as_cores():
    p = with_blocks(DetectParams(), (32, 128, 128))
    p.blocks.batch = 8
    shape = (60, 200, 120)  # 2 x 2 x 1 = 4 blocks
    assert len(make_plan(shape, DEMO_VOX, p).batches) == 1
    two = make_plan(shape, DEMO_VOX, p, parallel_jobs=2)
    assert [len(b) for b in two.batches] == [2, 2]
    assert sorted(i for b in make_plan(shape, DEMO_VOX, p, parallel_jobs=16).batches for i in b) == [0, 1, 2, 3]
    assert len(make_plan(shape, DEMO_VOX, p, parallel_jobs=16).batches) == 4
    big = make_plan((200, 1000, 1000), DEMO_VOX, p, parallel_jobs=2)
    assert max(len(b) for b in big.batches) == 8  # enough blocks: the configured batch holds
