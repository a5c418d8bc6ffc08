"""The napari plugin on the demo results (headless): the manifest validates, napari finds the
plugin, a results folder opens as aligned layers in raw space, the atlas labels lie on the
true cells' regions, single files give the same layers, and a screenshot for the docs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("napari")

from spimflow.napari._reader import get_reader  # noqa: E402
from spimflow.napari._viewer import add_layers, layers_for  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "docs" / "images" / "napari_demo.png"


def test_manifest_validates():
    res = subprocess.run([sys.executable, "-m", "npe2", "validate", "spimflow"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_napari_discovers_the_plugin():
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    assert "spimflow" in {m.name for m in pm.iter_manifests()}
    widgets = [w.display_name for w in pm.get_manifest("spimflow").contributions.widgets]
    assert widgets == ["Curate cells", "Tune detection", "Project annotations"]


@pytest.mark.slow
def test_results_folder_opens_as_aligned_layers(demo_workflow, make_napari_viewer):
    work, _ = demo_workflow
    results = work / "results" / "demo"
    viewer = make_napari_viewer()
    layers = viewer.open(str(results), plugin="spimflow")
    names = [layer.name for layer in layers]
    assert names == ["autofluorescence", "signal", "atlas regions", "detected shapes", "cells", "rejected cells"]
    signal = viewer.layers["signal"]
    assert signal.multiscale and tuple(signal.scale) == (10.0, 5.0, 5.0)
    lo, hi = signal.contrast_limits
    assert 0 < lo < hi < 65535  # from percentiles, not the dtype range
    cells = viewer.layers["cells"]
    n_cells = len(pd.read_parquet(results / "cells" / "cells.parquet"))
    assert len(cells.data) == n_cells and "region_acronym" in cells.features.columns
    assert viewer.layers["atlas regions"].data.dtype == np.uint32


@pytest.mark.slow
def test_atlas_labels_lie_on_the_true_cells_regions(demo_workflow, make_napari_viewer):
    """The label under each true cell position (looked up through napari's own
    world → data transform) is the truth's region for >= 95 % of cells."""
    work, _ = demo_workflow
    viewer = make_napari_viewer()
    add_layers(viewer, layers_for(work / "results" / "demo"))
    labels = viewer.layers["atlas regions"]
    truth = pd.read_csv(work / "resources/demo/truth/cells.csv")
    world = truth[["z", "y", "x"]].to_numpy() * np.array([10.0, 5.0, 5.0])  # raw voxels → µm
    data = np.array([labels.world_to_data(p) for p in world])
    idx = np.floor(data + 0.5).astype(int)
    inside = np.all((idx >= 0) & (idx < labels.data.shape), axis=1)
    found = np.zeros(len(truth), np.int64)
    found[inside] = labels.data[tuple(idx[inside].T)]
    agree = float(np.mean(found == truth["region_id"].to_numpy()))
    print(f"label under the true cell = true region for {agree:.3f} of {len(truth)} cells")
    assert agree >= 0.95


@pytest.mark.slow
def test_single_files_give_the_same_layers(demo_workflow):
    work, _ = demo_workflow
    results = work / "results" / "demo"
    folder = {d[1]["name"]: d for d in get_reader(str(results))(str(results))}
    (annotation,) = get_reader(str(results / "registration/annotation_in_raw.ome.zarr"))(
        str(results / "registration/annotation_in_raw.ome.zarr")
    )
    assert annotation[1]["scale"] == folder["atlas regions"][1]["scale"]
    assert annotation[1]["translate"] == folder["atlas regions"][1]["translate"]
    np.testing.assert_array_equal(annotation[0], folder["atlas regions"][0])
    (cells,) = get_reader(str(results / "cells/cells_atlas.parquet"))(str(results / "cells/cells_atlas.parquet"))
    np.testing.assert_array_equal(cells[0], folder["cells"][0])
    np.testing.assert_array_equal(cells[1]["face_color"], folder["cells"][1]["face_color"])
    assert cells[1]["scale"] == folder["cells"][1]["scale"]
    (csv_cells,) = get_reader(str(results / "cells/cells_atlas.csv"))(str(results / "cells/cells_atlas.csv"))
    np.testing.assert_allclose(csv_cells[0], folder["cells"][0])
    (signal,) = get_reader(str(results / "raw/signal.ome.zarr"))(str(results / "raw/signal.ome.zarr"))
    assert signal[1]["scale"] == folder["signal"][1]["scale"]
    maps = layers_for(results, "atlas")
    assert {d[1]["name"] for d in maps} >= {"density", "density_left", "density_right", "density_cortex"}
    assert maps[0][1]["scale"] == (25.0, 25.0, 25.0)


@pytest.mark.slow
def test_screenshot_of_the_demo_for_the_docs(demo_workflow, make_napari_viewer, tmp_path):
    """The picture in docs/napari.md; written there when SPIMFLOW_UPDATE_SCREENSHOTS=1
    (so a test run leaves the repository as it was)."""
    import os
    import shutil

    work, _ = demo_workflow
    viewer = make_napari_viewer()
    add_layers(viewer, layers_for(work / "results" / "demo"))
    viewer.window.resize(1500, 950)
    viewer.dims.set_point(0, 60 * 10.0)  # plane 60 of the signal, in µm
    viewer.layers.selection.active = viewer.layers["cells"]
    viewer.reset_view()
    shot = viewer.screenshot(str(tmp_path / "napari_demo.png"), canvas_only=False, flash=False)
    assert shot.ndim == 3 and shot.shape[0] > 200 and shot.shape[1] > 200
    assert shot[..., :3].std() > 5  # not a blank picture
    if os.environ.get("SPIMFLOW_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copy(tmp_path / "napari_demo.png", SCREENSHOT)


def test_annotations_widget_lists_them_and_goes_to_the_plane(tmp_path, make_napari_viewer):
    from spimflow.annotate import Project
    from spimflow.napari._annotations import AnnotationsWidget

    path = tmp_path / "p.cdb"
    with Project.create(path) as project:
        project.add_volume_planes(tmp_path / "signal.ome.zarr", 10, layer="signal")
        project.set_marker_type("cell", color="#00ff00")
        project.set_option("spimflow_voxel_size_um", "[4.0, 2.0, 2.0]")
        project.set_annotation(z=7, comment="bubble", rating=2, tags=["artefact"])
        project.set_annotation(z=3, comment="nice", rating=5)
        project.set_markers([5.5, 6.5], [5.5, 6.5], z=[0, 9], type="cell", layer="signal")
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="spimflow")
    widget = AnnotationsWidget(viewer)
    rows = [[widget.table.item(i, j).text() for j in range(4)] for i in range(widget.table.rowCount())]
    assert rows == [["3", "5", "nice", ""], ["7", "2", "bubble", "artefact"]]
    assert "artefact" in widget.summary.text()
    widget.go_to_row(1)
    cells = viewer.layers["cell"]
    assert round(cells.world_to_data(viewer.dims.point)[0]) == 7


def test_atlas_labels_hover_names_and_large_allen_ids(make_napari_viewer):
    """Region colours and hover names come from the ontology, for ids far above 2^16."""
    from spimflow.atlas import Ontology, Region
    from spimflow.napari._layers import region_colormap, region_features

    ontology = Ontology(
        [
            Region(997, "root", "root", None, (255, 255, 255)),
            Region(614454277, "BIG", "A region with an Allen-sized id", 997, (200, 10, 30)),
        ]
    )
    data = np.zeros((3, 10, 10), np.uint32)
    data[1, 2:8, 2:8] = 614454277
    present = np.unique(data)
    viewer = make_napari_viewer()
    labels = viewer.add_labels(
        data, colormap=region_colormap(ontology, present), features=region_features(ontology, present)
    )
    status = labels.get_status((1, 4, 4), world=True)["value"]
    assert "BIG" in status and "Allen-sized" in status
    np.testing.assert_allclose(
        labels.colormap.map(np.array([614454277], np.uint32))[0], (200 / 255, 10 / 255, 30 / 255, 1)
    )
