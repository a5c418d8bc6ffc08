"""Precision and recall on synthetic iDISCO+-like volumes with known cells."""

import numpy as np
import pytest

from spimflow.params.detect import DetectParams, ThresholdParams
from spimflow.steps.detect import detect_cells, threshold_cells
from spimflow.steps.detect.evaluate import match_points
from spimflow.steps.detect.synthetic import make_synthetic_cells

MATCH_RADIUS_UM = 6.0  # about half a cell diameter (cells: Gaussian blobs, sigma 4-6 µm)


@pytest.mark.parametrize(
    "vox,shape",
    [
        ((10.0, 5.0, 5.0), (30, 160, 160)),  # the demo's voxels
        ((4.0, 2.0, 2.0), (40, 200, 200)),  # fine in-plane sampling
        ((3.0, 4.0, 4.0), (60, 120, 120)),
    ],
)  # ClearMap-like
def test_precision_and_recall_with_default_parameters(vox, shape):
    vol, truth = make_synthetic_cells(
        shape, vox, gradient=0.6, texture=150, background=300, density_per_mm3=25000, seed=11
    )
    assert truth["pair"].sum() > 10  # some touching pairs
    cells = threshold_cells(detect_cells(vol, vox, DetectParams()), ThresholdParams().ranges)
    m = match_points(cells[["z", "y", "x"]].to_numpy(), truth[["z", "y", "x"]].to_numpy(), MATCH_RADIUS_UM, vox)
    print(
        f"voxels {vox}: {len(truth)} cells, {len(cells)} detected, precision {m.precision:.3f}, recall {m.recall:.3f}"
    )
    assert m.precision >= 0.95 and m.recall >= 0.95
    # matched centres are sub-voxel accurate in-plane
    d = (cells[["z", "y", "x"]].to_numpy()[m.pairs[:, 0]] - truth[["z", "y", "x"]].to_numpy()[m.pairs[:, 1]]) * vox
    assert np.median(np.abs(d[:, 1:])) < 0.25 * vox[1]
    # brighter cells have brighter measurements
    amp = truth["amplitude"].to_numpy()[m.pairs[:, 1]]
    assert np.corrcoef(amp, cells["intensity_raw"].to_numpy()[m.pairs[:, 0]])[0, 1] > 0.9


def test_matching_is_one_to_one_within_the_radius():
    truth = np.array([[0, 0, 0], [0, 0, 10.0]])
    det = np.array([[0, 0, 0.5], [0, 0, 0.7], [0, 0, 30.0]])
    m = match_points(det, truth, 2.0, (1.0, 1.0, 1.0))
    assert m.n_matched == 1 and m.precision == pytest.approx(1 / 3) and m.recall == 0.5
