"""Detection on the embedded demo brain, against the demo's own ground truth."""

from pathlib import Path

import numpy as np
import pytest

from spimflow.config import load_config
from spimflow.steps.detect import detect_cells, threshold_cells
from spimflow.steps.detect.evaluate import match_points

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(demo_dir):
    return demo_dir


def test_demo_precision_and_recall(demo):
    import pandas as pd
    import tifffile

    cfg = load_config(REPO / "config" / "sample.yaml")
    planes = sorted((demo / "sample" / "signal").glob("Z*.tif"))
    assert planes, "demo signal planes not found"
    vol = np.stack([tifffile.imread(p) for p in planes])
    truth = pd.read_csv(demo / "truth" / "cells.csv")
    vox = cfg.channels.signal.voxel_size
    cells = threshold_cells(detect_cells(vol, vox, cfg.steps.detect), cfg.steps.threshold.ranges)
    # match radius: about half a cell diameter (demo cells: Gaussian blobs, sigma 4-6 µm)
    m = match_points(cells[["z", "y", "x"]].to_numpy(), truth[["z", "y", "x"]].to_numpy(), 6.0, vox)
    print(f"demo: {len(truth)} true cells, {len(cells)} detected, precision {m.precision:.3f}, recall {m.recall:.3f}")
    assert m.precision >= 0.95 and m.recall >= 0.95
