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


# -- one knob: the cell diameter -----------------------------------------------------------

#: What a user would say of the demo's nuclei: Gaussian blobs of sigma 4.5-6 µm have a full
#: width at half maximum of 10.6-14.1 µm.
DEMO_CELL_DIAMETER_UM = 12.0


def _f1(cells, truth, vox):
    m = match_points(cells[["z", "y", "x"]].to_numpy(), truth[["z", "y", "x"]].to_numpy(), 6.0, vox)
    f1 = 2 * m.precision * m.recall / max(m.precision + m.recall, 1e-12)
    return m, f1


def test_cell_diameter_alone_on_the_demo(demo):
    import pandas as pd
    import tifffile

    from spimflow.params.detect import DetectParams, ThresholdParams

    vol = np.stack([tifffile.imread(p) for p in sorted((demo / "sample" / "signal").glob("Z*.tif"))])
    truth = pd.read_csv(demo / "truth" / "cells.csv")
    vox = load_config(REPO / "config" / "sample.yaml").channels.signal.voxel_size
    params = DetectParams(cell_diameter_um=DEMO_CELL_DIAMETER_UM)
    cells = threshold_cells(detect_cells(vol, vox, params), ThresholdParams().ranges)
    # cells centred on the outermost planes are dropped by design (see test_detect_border)
    last = np.array(vol.shape) - 1
    t = truth[["z", "y", "x"]].to_numpy()
    truth = truth[np.all((t >= 0.5) & (t <= last - 0.5), axis=1)]
    m, f1 = _f1(cells, truth, vox)
    print(f"demo, cell_diameter_um only: precision {m.precision:.3f}, recall {m.recall:.3f}, F1 {f1:.3f}")
    assert f1 >= 0.97


@pytest.mark.slow
def test_cell_diameter_alone_on_a_box_of_the_large_demo():
    """A 40 x 240 x 240-voxel box of the large demo's sample (5 x 2.5 x 2.5 µm voxels, twice the
    cell density), rendered by the demo's own generator."""
    from spimflow.demo.atlas import build_atlas
    from spimflow.demo.sample import PRESETS, illumination, make_transform, place_cells, render_planes, sample_geometry
    from spimflow.params.detect import DetectParams, ThresholdParams

    preset = PRESETS["large"]
    rng = np.random.default_rng([0, 1])
    atlas = build_atlas()
    geom = sample_geometry(atlas.annotation.shape, preset)
    tf = make_transform(geom, atlas.annotation.shape, rng)
    cells = place_cells(geom, atlas, tf, preset, rng)
    flat = illumination(geom)
    nz, ny, nx = geom.raw_shape
    z0, y0, x0 = nz // 2 - 20, ny // 2 - 120, nx // 2 - 120
    rows, cols = slice(y0, y0 + 240), slice(x0, x0 + 240)
    vol = np.stack([render_planes(z, atlas, tf, geom, cells, flat, 0, rows, cols)[1] for z in range(z0, z0 + 40)])
    truth = cells["raw"] - np.array([z0, y0, x0])
    inside = np.all((truth >= 0.5) & (truth <= np.array(vol.shape) - 1.5), axis=1)
    import pandas as pd

    truth = pd.DataFrame(truth[inside], columns=["z", "y", "x"])
    assert len(truth) > 150
    vox = preset.voxel_size_um
    found = threshold_cells(
        detect_cells(vol, vox, DetectParams(cell_diameter_um=DEMO_CELL_DIAMETER_UM)), ThresholdParams().ranges
    )
    m, f1 = _f1(found, truth, vox)
    print(
        f"large demo box, cell_diameter_um only: {len(truth)} cells, P {m.precision:.3f} R {m.recall:.3f} F1 {f1:.3f}"
    )
    assert f1 >= 0.97
