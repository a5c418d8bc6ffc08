"""Touching cells: pairs 1.5 diameters apart are split, single cells are not, whatever the block grid.

Diameter D = full width at half maximum of the Gaussian blob (2.355 sigma). At the demo's
10 µm z steps the two cells of a pair stacked along z land on neighbouring voxels, so
only the brighter is a regional maximum: without the split the other is missed.
"""

import numpy as np
import pytest

from spimflow.blocks import detect_volume, make_plan, sort_cells
from spimflow.params.detect import DetectParams, ThresholdParams
from spimflow.steps.detect import detect_cells, required_overlap, threshold_cells
from spimflow.steps.detect.evaluate import match_points
from spimflow.steps.detect.synthetic import make_synthetic_cells

SIGMA_UM = (4.5, 5.5)
D_UM = 2.355 * 5.0  # FWHM of the mean cell
MATCH_UM = 0.5 * D_UM
NO_SPLIT = DetectParams.model_validate({"split": {"enabled": False}})
DEMO_VOX = (10.0, 5.0, 5.0)
FINE_VOX = (4.0, 2.0, 2.0)


def crowded(vox, shape, seed):
    """Every cell has a partner 1.5 D away in a random direction (amplitudes 800-3000 each);
    other cells stay 1.63 D away."""
    return make_synthetic_cells(
        shape,
        vox,
        density_per_mm3=30000,
        sigma_um=SIGMA_UM,
        gradient=0.3,
        texture=100,
        background=300,
        pair_fraction=1.0,
        pair_distance_um=(1.5 * D_UM, 1.5 * D_UM),
        seed=seed,
    )


def inside(points, shape):
    """At least one voxel inside the volume: cells centred on the outermost planes are dropped by design."""
    return np.all((points >= 1) & (points <= np.asarray(shape) - 2), axis=1)


def scores(cells, truth, vox, shape):
    """Precision over detections inside, recall over the pair members inside (all of them, and those of pairs
    stacked along z: more than 0.7 of the unit pair vector along z)."""
    t = truth[["z", "y", "x"]].to_numpy()
    d = cells[["z", "y", "x"]].to_numpy()
    m = match_points(d, t, MATCH_UM, vox)
    found = np.zeros(len(t), bool)
    found[m.pairs[:, 1]] = True
    real = np.zeros(len(d), bool)
    real[m.pairs[:, 0]] = True
    second = np.flatnonzero(truth["pair"].to_numpy())
    member = np.zeros(len(t), bool)
    member[second] = member[second - 1] = True
    unit = (t[second] - t[second - 1]) * vox
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    along_z = np.zeros(len(t), bool)
    along_z[second] = along_z[second - 1] = np.abs(unit[:, 0]) > 0.7
    keep = inside(t, shape) & member
    return {
        "precision": real[inside(d, shape)].mean(),
        "recall": found[keep].mean(),
        "recall_z": found[keep & along_z].mean(),
        "n": int(keep.sum()),
        "n_z": int((keep & along_z).sum()),
        "pairs": m.pairs,
    }


@pytest.mark.parametrize("vox,shape", [(DEMO_VOX, (40, 150, 150)), (FINE_VOX, (50, 160, 160))])
def test_pairs_at_one_and_a_half_diameters_are_found(vox, shape):
    vol, truth = crowded(vox, shape, seed=5)
    ranges = ThresholdParams().ranges
    before = scores(threshold_cells(detect_cells(vol, vox, NO_SPLIT), ranges), truth, vox, shape)
    cells = threshold_cells(detect_cells(vol, vox, DetectParams()), ranges)
    after = scores(cells, truth, vox, shape)
    print(
        f"voxels {vox}: {after['n']} pair members ({after['n_z']} along z); without split precision "
        f"{before['precision']:.4f} recall {before['recall']:.4f} (along z {before['recall_z']:.4f}); with split "
        f"precision {after['precision']:.4f} recall {after['recall']:.4f} (along z {after['recall_z']:.4f})"
    )
    assert after["n"] > 300 and after["n_z"] > 80
    assert after["recall"] >= 0.95 and after["recall_z"] >= 0.95
    assert after["precision"] >= before["precision"]
    assert after["recall"] >= before["recall"]
    # the halves are measured: brighter cells have brighter peaks, and both halves have a shape
    pairs = after["pairs"]
    amp = truth["amplitude"].to_numpy()[pairs[:, 1]]
    assert np.corrcoef(amp, cells["intensity_raw"].to_numpy()[pairs[:, 0]])[0, 1] > 0.8
    assert (cells["size"] > 0).all()
    assert (cells["edge"] > 0).all()  # no partner split off on the outermost planes either


@pytest.mark.parametrize("vox,shape", [(DEMO_VOX, (40, 150, 150)), (FINE_VOX, (50, 160, 160))])
def test_single_cells_of_varying_size_are_not_split(vox, shape):
    """Isolated cells 25% smaller to 25% larger than the expected diameter: no cell is split."""
    s = D_UM / 2.355
    vol, truth = make_synthetic_cells(
        shape, vox, density_per_mm3=8000, sigma_um=(0.75 * s, 1.25 * s), pair_fraction=0.0, texture=100, seed=7
    )
    off = detect_cells(vol, vox, NO_SPLIT)
    on = detect_cells(vol, vox, DetectParams())
    print(f"voxels {vox}: {len(truth)} single cells, {len(on) - len(off)} split of {len(off)} detected")
    assert len(off) > 100
    assert len(on) == len(off)  # not one false split


@pytest.mark.parametrize("center", ["peak", "centroid"])
def test_split_cells_are_reported_once_whatever_the_blocks(center):
    vol, _ = crowded(DEMO_VOX, (24, 80, 96), seed=2)
    p = DetectParams.model_validate({"refine": {"center": center}})
    ref = sort_cells(detect_cells(vol, DEMO_VOX, p)).drop(columns="block")
    off = detect_cells(vol, DEMO_VOX, NO_SPLIT.model_copy(update={"refine": p.refine}))
    assert len(ref) > len(off) + 20  # cells were split
    overlap = required_overlap(DEMO_VOX, p)
    outside = 0
    for size in (overlap, (16, 40, 40), (32, 64, 64)):
        q = p.model_copy(deep=True)
        q.blocks.size = size
        cells = detect_volume(vol, DEMO_VOX, q)
        assert cells["block"].nunique() >= 4
        assert cells.drop(columns="block").equals(ref)  # bit-identical, every column
        # a partner is reported by the block owning its cell, even when its centre lies in another block's core
        cores = np.array([b.core for b in make_plan(vol.shape, DEMO_VOX, q).blocks])
        core = cores[cells["block"].to_numpy()]
        at = np.floor(cells[["z", "y", "x"]].to_numpy() + 0.5)
        outside += int((~np.all((at >= core[:, :, 0]) & (at < core[:, :, 1]), axis=1)).sum())
    assert outside > 0
    # the split reads farther than the rest of the chain: the overlap grows
    assert np.all(np.array(required_overlap(DEMO_VOX, NO_SPLIT)) < np.array(overlap))
