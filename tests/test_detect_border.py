"""Volume borders: cells cut by the border and bright structure going on beyond it.

A crop of a larger synthetic volume has cells whose centre lies outside it; with the
"nearest" edge handling of the filters they peak on the outermost plane. Those maxima
are dropped by default (``steps.detect.border.keep_peaks``), every cell has its
distance to the border (``edge``, µm), and the result is the same for every block size.
"""

import numpy as np
import pandas as pd
import pytest

from spimflow.blocks import detect_volume
from spimflow.params.detect import DetectParams, ThresholdParams
from spimflow.steps.detect import detect_cells, threshold_cells
from spimflow.steps.detect.evaluate import match_points
from spimflow.steps.detect.synthetic import make_synthetic_cells
from spimflow.steps.detect.threshold import check_threshold_config

VOX = (5.0, 2.0, 2.0)  # the real crop of the report: 5 x 2 x 2 µm voxels
MATCH_UM = 6.0  # half a cell diameter
Z0, Z1 = 12, 36  # the crop of a 48-plane volume


@pytest.fixture(scope="module")
def cut_volume():
    """A 24-plane crop; truth in crop voxels, split into cells inside and outside it."""
    vol, truth = make_synthetic_cells((48, 110, 110), VOX, density_per_mm3=60000, texture=100, background=300, seed=3)
    crop = np.ascontiguousarray(vol[Z0:Z1])
    truth = truth.assign(z=truth["z"] - Z0)
    n = crop.shape[0]
    inside = truth["z"].between(-0.5, n - 0.5, inclusive="left")
    return crop, truth[inside].reset_index(drop=True), truth[~inside].reset_index(drop=True)


def _xyz(frame: pd.DataFrame) -> np.ndarray:
    return frame[["z", "y", "x"]].to_numpy()


def test_cells_cut_by_the_z_border_are_not_reported_at_the_border(cut_volume):
    crop, inside, outside = cut_volume
    n = crop.shape[0]
    assert len(outside[(outside.z > -3) & (outside.z < n + 2)]) > 20  # many cells are cut by the border
    cells = threshold_cells(detect_cells(crop, VOX), ThresholdParams().ranges)
    # no detection stands for a cell whose centre is outside the volume ...
    everything = pd.concat([inside, outside], ignore_index=True)
    m = match_points(_xyz(cells), _xyz(everything), MATCH_UM, VOX)
    assert (m.pairs[:, 1] >= len(inside)).sum() == 0
    assert m.precision >= 0.98
    # ... none sits on the first or last plane, and every edge distance is positive and right
    peaks = np.floor(cells["z"].to_numpy() + 0.5)
    assert not np.any((peaks == 0) | (peaks == n - 1))
    assert (cells["edge"] > 0).all()
    c = _xyz(cells)
    expected = (np.minimum(c, np.array(crop.shape) - 1 - c) * VOX).min(axis=1)
    assert np.allclose(cells["edge"], expected)
    # the cells inside are found, except those centred within half a voxel of the border
    away = inside[inside.z.between(0.5, n - 1.5)]
    assert match_points(_xyz(cells), _xyz(away), MATCH_UM, VOX).recall >= 0.97


def test_border_peaks_are_kept_on_request(cut_volume):
    crop, inside, outside = cut_volume
    p = DetectParams.model_validate({"border": {"keep_peaks": True}})
    cells = detect_cells(crop, VOX, p)
    default = detect_cells(crop, VOX)
    on_border = cells["edge"] == 0
    assert on_border.sum() > 20  # what the default drops: the filters' response to the border
    assert len(cells) - on_border.sum() == len(default)


def _with_structure_beyond_the_border(crop: np.ndarray) -> np.ndarray:
    """Add bright, smooth structure (a 30 µm-sigma blob) centred two planes beyond the last one."""
    zz, yy, xx = np.indices(crop.shape, dtype=np.float64)
    n = crop.shape[0]
    d2 = ((zz - (n + 1)) * VOX[0]) ** 2 + ((yy - 55) * VOX[1]) ** 2 + ((xx - 55) * VOX[2]) ** 2
    bright = 4000.0 * np.exp(-d2 / (2 * 30.0**2))
    return np.clip(crop + bright, 0, 65535).astype(np.uint16)


def test_bright_structure_ending_at_the_border_gives_no_cells(cut_volume):
    crop, inside, _ = cut_volume
    vol = _with_structure_beyond_the_border(crop)
    n = vol.shape[0]
    kept = DetectParams.model_validate({"border": {"keep_peaks": True}})
    near = np.hypot(*(((_xyz(detect_cells(vol, VOX, kept))[:, 1:] - 55) * VOX[1:]).T))
    assert (near < 30).any()  # without the border rule the structure is "detected"
    cells = threshold_cells(detect_cells(vol, VOX), ThresholdParams().ranges)
    assert not np.any(np.floor(cells["z"].to_numpy() + 0.5) == n - 1)
    m = match_points(_xyz(cells), _xyz(inside), MATCH_UM, VOX)
    assert m.precision >= 0.98


@pytest.mark.parametrize("size", [(17, 50, 50), (20, 55, 55)])  # >= the overlap (17, 49, 49)
def test_borders_are_treated_alike_in_every_block(cut_volume, size):
    vol = _with_structure_beyond_the_border(cut_volume[0])
    ref = detect_volume(vol, VOX, DetectParams()).drop(columns="block")
    p = DetectParams.model_validate({"blocks": {"size": list(size), "batch": 4}})
    got = detect_volume(vol, VOX, p)
    assert got["block"].nunique() > 4
    assert got.drop(columns="block").equals(ref)


def test_thresholds_accept_positions_and_the_edge(cut_volume):
    crop = cut_volume[0]
    assert check_threshold_config({"z": (2.0, 20.0), "edge": (10.0, None), "x": (None, 50.0)}) == []
    assert "no such cell column" in check_threshold_config({"edges": (1.0, None)})[0]
    cells = detect_cells(crop, VOX)
    kept = threshold_cells(cells, {"edge": (10.0, None), "z": (None, 15.0)})
    assert len(kept) and (kept["edge"] >= 10).all() and (kept["z"] <= 15).all()
    assert len(kept) == ((cells["edge"] >= 10) & (cells["z"] <= 15)).sum()
