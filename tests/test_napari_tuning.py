"""The detection-tuning widget on a tiny fake results folder (headless): its candidates in a box
are exactly the workflow's cells there, its precision / recall / F1 are ``spimflow evaluate``'s,
the parameters re-run the detection, and the YAML snippet merges into a valid config."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import yaml

pytest.importorskip("napari")

from spimflow.annotate import read_points  # noqa: E402
from spimflow.blocks import detect_volume, sort_cells  # noqa: E402
from spimflow.cli import main  # noqa: E402
from spimflow.config import SampleConfig  # noqa: E402
from spimflow.io.omezarr import write_ome_zarr  # noqa: E402
from spimflow.napari._layers import image_layer  # noqa: E402
from spimflow.napari._tuning import (  # noqa: E402
    CANDIDATES_LAYER,
    TuningWidget,
    apply_snippet,
    apply_values,
    box_from_view,
    detect_in_box,
    format_box,
    params_snippet,
    points_to_voxels,
    snippet_yaml,
    tuned_values,
    view_box,
)
from spimflow.params.detect import DetectParams, ThresholdParams  # noqa: E402
from spimflow.steps.detect import IlluminationField, threshold_cells  # noqa: E402
from spimflow.steps.detect.evaluate import in_box, parse_box  # noqa: E402
from spimflow.steps.detect.synthetic import make_synthetic_cells  # noqa: E402

VOX = (10.0, 5.0, 5.0)
SHAPE = (40, 150, 170)
THRESHOLD = ThresholdParams.model_validate({"ranges": {"volume_um3": [400.0, None]}})
BOX = "9:27,37:101,60:131"  # crosses block borders along every axis (blocks of 16 x 64 x 64)
CELL_COLUMNS = [
    "z",
    "y",
    "x",
    "size",
    "volume_um3",
    "intensity_raw",
    "intensity_bg",
    "intensity_dog",
    "mean_raw",
    "mean_bg",
    "mean_dog",
]


def sample_dict(detect: dict | None = None) -> dict:
    """A valid sample config whose inputs exist once :func:`fake_results` ran (paths relative to its base)."""
    signal = {
        "source": {"format": "zarr", "path": "results/s1/raw/signal.ome.zarr"},
        "voxel_size": list(VOX),
        "orientation": "ipl",
    }
    return {
        "sample": "s1",
        "results": "results",
        "channels": {"signal": signal},  # detection only: tuning needs no atlas
        "steps": {
            "detect": detect or {"blocks": {"size": [16, 64, 64]}},
            "threshold": {"ranges": {"volume_um3": [400.0, None]}},
        },
    }


@pytest.fixture(scope="module")
def fake_results(tmp_path_factory):
    """base/ with config.yaml, an unrelated folder (atlas/) and results/s1 (raw signal + resolved config);
    the synthetic truth in truth.csv; the whole-volume detection of the workflow."""
    base = tmp_path_factory.mktemp("tuning")
    volume, truth = make_synthetic_cells(SHAPE, VOX, density_per_mm3=20000, seed=3)
    results = base / "results" / "s1"
    (results / "raw").mkdir(parents=True)
    (base / "atlas").mkdir()
    write_ome_zarr(results / "raw" / "signal.ome.zarr", volume, VOX, chunks=(8, 64, 64), n_levels=2, name="signal")
    cfg = SampleConfig.model_validate(sample_dict())
    resolved = cfg.model_dump(mode="json")
    (results / "config.resolved.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    (base / "config.yaml").write_text(yaml.safe_dump(sample_dict(), sort_keys=False))
    truth[["z", "y", "x"]].to_csv(base / "truth.csv", index=False)
    whole = detect_volume(volume, VOX, cfg.steps.detect)
    return {"base": base, "results": results, "volume": volume, "cfg": cfg, "whole": whole}


def workflow_cells_in(fake, box_text: str, threshold: ThresholdParams | None = None) -> pd.DataFrame:
    """What the workflow counts inside the box: whole-volume cells, thresholded, centre in the box."""
    cells = threshold_cells(fake["whole"], (threshold or fake["cfg"].steps.threshold).ranges)
    return sort_cells(cells[in_box(cells[["z", "y", "x"]].to_numpy(), parse_box(box_text))])


def assert_same_cells(got: pd.DataFrame, expected: pd.DataFrame):
    assert len(got) == len(expected)
    pd.testing.assert_frame_equal(
        got[CELL_COLUMNS].reset_index(drop=True), expected[CELL_COLUMNS].reset_index(drop=True), check_exact=True
    )


@pytest.fixture()
def widget(fake_results, make_napari_viewer):
    """The widget docked next to the signal layer (as the reader adds it): it finds the results folder."""
    viewer = make_napari_viewer()
    data, kw, _ = image_layer(fake_results["results"] / "raw" / "signal.ome.zarr", "signal")
    viewer.add_image(data, **kw)
    w = TuningWidget(viewer)
    w.auto_run.setChecked(False)
    return w


# -- detection on a box = the workflow's cells in it ----------------------------------------------------


@pytest.mark.parametrize("box", [BOX, "0:40,0:150,0:170", "0:6,140:150,0:30", "3.2:17.5,20.5:80.4,99.5:169.9"])
def test_detection_on_a_box_is_the_whole_volume_detection_there(fake_results, box):
    detect = fake_results["cfg"].steps.detect
    got = detect_in_box(
        fake_results["volume"], parse_box(box), VOX, detect, threshold=fake_results["cfg"].steps.threshold
    )
    assert_same_cells(got, workflow_cells_in(fake_results, box))


def test_illumination_field_is_applied_as_in_the_workflow(fake_results):
    detect = DetectParams.model_validate({"blocks": {"size": [16, 64, 64]}, "illumination": {"enabled": True}})
    y = np.linspace(0.5, 1.0, 10, dtype=np.float32)
    field = IlluminationField(np.tile(y[None, :, None], (1, 1, 12)), (16, 16), 0.2)
    whole = detect_volume(fake_results["volume"], VOX, detect, illumination=field)
    got = detect_in_box(fake_results["volume"], parse_box(BOX), VOX, detect, illumination=field)
    expected = sort_cells(whole[in_box(whole[["z", "y", "x"]].to_numpy(), parse_box(BOX))])
    assert_same_cells(got, expected)
    with pytest.raises(ValueError, match="illumination"):
        detect_in_box(fake_results["volume"], parse_box(BOX), VOX, detect)


def test_widget_candidates_equal_the_workflow_cells_in_the_box(widget, fake_results):
    assert widget.source is not None and widget.source.results_dir == fake_results["results"]
    assert widget.source.voxel_size == VOX and widget.source.notes == []
    widget.box_edit.setText(BOX)
    cells = widget.run()
    expected = workflow_cells_in(fake_results, BOX)
    assert len(expected) > 20
    assert_same_cells(cells, expected)
    layer = widget.viewer.layers[CANDIDATES_LAYER]
    np.testing.assert_array_equal(layer.data, expected[["z", "y", "x"]].to_numpy())
    assert tuple(layer.scale) == VOX
    # a second run replaces the layer's points, it adds no layer
    widget.box_edit.setText("0:40,0:60,0:60")
    widget.run()
    assert [ly.name for ly in widget.viewer.layers].count(CANDIDATES_LAYER) == 1
    np.testing.assert_array_equal(
        widget.viewer.layers[CANDIDATES_LAYER].data,
        workflow_cells_in(fake_results, "0:40,0:60,0:60")[["z", "y", "x"]].to_numpy(),
    )


def test_results_folder_typed_and_bad_inputs_are_reported(fake_results, make_napari_viewer):
    viewer = make_napari_viewer()
    w = TuningWidget(viewer)
    assert w.source is None and w.run() is None and "results folder" in w.status.text()
    assert not w.set_results_dir(fake_results["base"] / "atlas")
    assert "config.resolved.yaml" in w.status.text()
    assert w.set_results_dir(fake_results["results"] / "raw" / "signal.ome.zarr")  # anything inside works
    assert w.spins["maxima_threshold"].value() == fake_results["cfg"].steps.detect.maxima.threshold
    assert w.spins["volume_min_um3"].value() == 400.0
    w.box_edit.setText("0:10,5")
    assert w.run() is None and "z0:z1,y0:y1,x0:x1" in w.status.text()
    w.box_edit.setText("0:40,0:150,0:170")
    w.max_read_voxels = 1000
    assert w.run() is None and "zoom in" in w.status.text()
    # the signal added later (e.g. by the reader) is no reason to reload an already chosen folder
    data, kw, _ = image_layer(fake_results["results"] / "raw" / "signal.ome.zarr", "signal")
    viewer.add_image(data, **kw)
    assert w.source.results_dir == fake_results["results"]


# -- metrics = spimflow evaluate ---------------------------------------------------------------------------


def cli_metrics(fake, cells: pd.DataFrame, box: str, radius: float, capsys, tmp_path) -> dict:
    cells_path = tmp_path / "cells.parquet"
    cells.to_parquet(cells_path)
    capsys.readouterr()
    argv = [
        "evaluate",
        str(fake["base"] / "config.yaml"),
        "--markers",
        str(fake["base"] / "truth.csv"),
        "--cells",
        str(cells_path),
        "--box",
        box,
        "--radius-um",
        str(radius),
        "--json",
        "--base",
        str(fake["base"]),
    ]
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("radius", [10.0, 4.0])
def test_metrics_equal_spimflow_evaluate(widget, fake_results, capsys, tmp_path, radius):
    truth = read_points(fake_results["base"] / "truth.csv")[["z", "y", "x"]].to_numpy()
    widget.viewer.add_points(truth, scale=VOX, name="truth")
    # the same markers on a twice coarser grid: converted through world coordinates
    widget.viewer.add_points(truth / 2.0, scale=tuple(2 * v for v in VOX), name="truth coarse")
    assert widget.reference_combo.findText(CANDIDATES_LAYER) == -1
    widget.box_edit.setText(BOX)
    widget.radius_spin.setValue(radius)
    widget.run()
    assert widget.metrics is None  # no reference chosen yet
    widget.set_reference("truth")
    expected = cli_metrics(fake_results, workflow_cells_in(fake_results, BOX), BOX, radius, capsys, tmp_path)
    got = widget.metrics
    assert expected["matched"] > 10 and 0 < expected["precision"] <= 1 and 0 < expected["recall"] < 1
    for key in ("detected", "markers", "matched"):
        assert got[key] == expected[key]
    for key in ("precision", "recall", "f1"):
        assert abs(got[key] - expected[key]) <= 1e-12
    assert "precision" in widget.metrics_label.text()
    # clicking a marker updates the numbers at once
    truth_layer = widget.viewer.layers["truth"]
    truth_layer.data = np.vstack([truth_layer.data, [[18.0, 70.0, 95.0]]])
    assert widget.metrics["markers"] == expected["markers"] + 1
    truth_layer.data = truth_layer.data[:-1]
    assert widget.metrics["markers"] == expected["markers"]
    widget.set_reference("truth coarse")
    assert {k: widget.metrics[k] for k in ("detected", "markers", "matched")} == {
        k: expected[k] for k in ("detected", "markers", "matched")
    }
    # the candidates layer never counts as a reference; the combo follows the layers
    assert widget.reference_combo.findText(CANDIDATES_LAYER) == -1
    widget.viewer.layers.remove("truth coarse")
    assert widget.reference_combo.findText("truth coarse") == -1 and widget.metrics is None


def test_points_convert_through_world_coordinates():
    translate = np.eye(4)
    translate[:3, 3] = (10.0, 0.0, -5.0)
    pts = points_to_voxels([[1.0, 2.0, 3.0]], translate @ np.diag([10.0, 5.0, 5.0, 1.0]), VOX)
    np.testing.assert_allclose(pts, [[2.0, 2.0, 2.0]])
    exact = np.array([[0.1, 0.2, 0.3]])
    assert points_to_voxels(exact, np.diag([*VOX, 1.0]), VOX).tolist() == exact.tolist()  # no rounding
    four_d = points_to_voxels([[7.0, 1.0, 2.0, 3.0]], np.diag([1.0, *VOX, 1.0]), VOX)
    assert four_d.tolist() == [[1.0, 2.0, 3.0]]


# -- parameters re-run the detection ----------------------------------------------------------------------


def test_changing_parameters_changes_the_candidates(widget, fake_results, qtbot):
    widget.box_edit.setText(BOX)
    before = widget.run()
    widget.spins["maxima_threshold"].setValue(widget.spins["maxima_threshold"].value() * 6)
    fewer = widget.run()
    assert 0 < len(fewer) < len(before)
    detect, threshold = widget.params()
    assert detect.maxima.threshold == fake_results["cfg"].steps.detect.maxima.threshold * 6
    expected = detect_in_box(fake_results["volume"], parse_box(BOX), VOX, detect, threshold=threshold)
    assert_same_cells(fewer, expected)
    # a threshold change only re-filters the cached detection
    detected = widget.detected
    widget.spins["volume_min_um3"].setValue(3000.0)
    widget.run()
    assert widget.detected is detected and len(widget.candidates) < len(fewer)
    # with "run on change", a change re-runs by itself (debounced)
    widget.auto_run.setChecked(True)
    widget.spins["volume_min_um3"].setValue(0.0)
    qtbot.waitUntil(lambda: len(widget.candidates) == len(threshold_cells(widget.detected, {})), timeout=5000)
    widget.auto_run.setChecked(False)
    # nothing left is shown as an empty layer
    widget.spins["maxima_threshold"].setValue(1e8)
    assert len(widget.run()) == 0 and len(widget.viewer.layers[CANDIDATES_LAYER].data) == 0
    # invalid values are reported, not raised
    widget.spins["sigma_outer_um"].setValue(widget.spins["sigma_inner_um"].value())
    assert widget.run() is None and "sigma_outer_um" in widget.status.text()


# -- the box from the view ---------------------------------------------------------------------------------


def test_box_from_view_pure():
    assert box_from_view((40.0, 0, 0), (1, 2), (100.0, 150.0), 2.0, (400, 600), (4.0, 2.0, 2.0), (50, 500, 500), 2) == (
        (8, 13),
        (0, 101),
        (0, 151),
    )
    # y sliced, z and x displayed, clipped at the volume's end
    box = box_from_view((0, 21.0, 0), (0, 2), (190.0, 990.0), 1.0, (40, 40), (4.0, 2.0, 2.0), (50, 500, 500), 1)
    assert box == ((43, 50), (10, 13), (485, 500))
    with pytest.raises(ValueError, match="no part"):
        box_from_view((0, 0, 0), (1, 2), (-500.0, -500.0), 1.0, (100, 100), (1.0, 1.0, 1.0), (5, 5, 5))


def test_box_from_the_viewer(widget, fake_results):
    viewer = widget.viewer
    viewer.dims.set_point(0, 20 * VOX[0])
    viewer.reset_view()
    widget.planes_spin.setValue(3)
    box = widget.box_from_current_view()
    assert box == ((17, 24), (0, SHAPE[1]), (0, SHAPE[2]))  # the whole plane fits the canvas
    assert widget.box_edit.text() == format_box(box)
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.zoom = camera.zoom * 4
    camera.center = (camera.center[0], 75 * VOX[1], 85 * VOX[2])
    small = view_box(viewer, VOX, SHAPE, 0)
    assert small[0] == (20, 21)
    for axis in (1, 2):
        lo, hi = small[axis]
        assert 0 < lo < SHAPE[axis] // 2 < hi < SHAPE[axis]
    # an empty box field runs on the visible region
    widget.box_edit.setText("")
    cells = widget.run()
    assert widget.box_edit.text() == format_box(widget.box) and len(cells) > 0
    viewer.dims.ndisplay = 3
    assert widget.box_from_current_view() is None and "2D" in widget.status.text()


# -- the snippet -------------------------------------------------------------------------------------------


def test_snippet_holds_only_the_changes_and_merges_into_a_valid_config(widget, fake_results, tmp_path):
    assert widget.snippet() == {}
    widget.spins["sigma_outer_um"].setValue(7.5)
    widget.spins["maxima_threshold"].setValue(150.0)
    widget.spins["volume_min_um3"].setValue(600.0)
    snippet = widget.snippet()
    assert snippet == {
        "steps": {
            "detect": {"dog": {"sigma_outer_um": 7.5}, "maxima": {"threshold": 150.0}},
            "threshold": {"ranges": {"volume_um3": [600.0, None]}},
        }
    }
    assert "sigma_outer_um: 7.5" in widget.snippet_text.toPlainText()
    path = widget.save_snippet(tmp_path / "tuned.yaml")
    text = path.read_text()
    assert text.startswith("#") and yaml.safe_load(text) == snippet
    original = yaml.safe_load((fake_results["base"] / "config.yaml").read_text())
    merged = SampleConfig.model_validate(apply_snippet(original, yaml.safe_load(text)))
    detect, threshold = widget.params()
    assert merged.steps.detect == detect and merged.steps.threshold == threshold
    assert merged.steps.detect.blocks.size == (16, 64, 64)  # untouched keys survive
    assert original["steps"]["detect"] == {"blocks": {"size": [16, 64, 64]}}  # the input is not changed


def test_snippet_functions_keep_what_the_widget_does_not_touch():
    base = DetectParams.model_validate({"background": {"size_um": [20.0, 40.0]}})
    thr = ThresholdParams.model_validate({"ranges": {"size": [3, None]}})
    values = tuned_values(base, thr)
    assert values.volume_min_um3 == 0.0 and values.background_um == 20.0
    same = apply_values(base, thr, values)
    assert same == (base, thr) and params_snippet(base, thr, *same) == {}
    d, t = apply_values(base, thr, replace(values, background_um=25.0, volume_min_um3=100.0))
    assert d.background.size_um == (25.0, 25.0)
    assert t.ranges == {"size": (3, None), "volume_um3": (100.0, None)}
    snippet = params_snippet(base, thr, d, t)
    assert snippet == {
        "steps": {
            "detect": {"background": {"size_um": [25.0, 25.0]}},
            "threshold": {"ranges": {"size": [3, None], "volume_um3": [100.0, None]}},
        }
    }
    assert yaml.safe_load(snippet_yaml(snippet, "a\nb")) == snippet
    assert snippet_yaml({}) == "{}\n"


def small_results(tmp_path, detect: dict):
    """results/s1 with a small synthetic signal and a resolved config with these detection parameters."""
    volume, _ = make_synthetic_cells((16, 60, 60), VOX, density_per_mm3=20000, seed=5)
    results = tmp_path / "results" / "s1"
    (results / "raw").mkdir(parents=True)
    write_ome_zarr(results / "raw" / "signal.ome.zarr", volume, VOX, n_levels=1)
    cfg = SampleConfig.model_validate(sample_dict(detect))
    (results / "config.resolved.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return results, volume


def test_untouched_values_keep_the_configs_exact_numbers(tmp_path, make_napari_viewer):
    detect = {"dog": {"sigma_inner_um": 0.05, "sigma_outer_um": 6.123456}, "maxima": {"threshold": 80.987654}}
    results, _ = small_results(tmp_path, detect)
    w = TuningWidget(make_napari_viewer())
    assert w.set_results_dir(results)
    assert w.spins["sigma_inner_um"].value() == 0.1  # shown clipped and rounded ...
    assert w.snippet() == {}  # ... but not changed
    assert w.params()[0].maxima.threshold == 80.987654
    w.spins["maxima_threshold"].setValue(90.0)
    assert w.snippet() == {"steps": {"detect": {"maxima": {"threshold": 90.0}}}}


def test_missing_illumination_field_is_noted_and_switched_off(tmp_path, make_napari_viewer):
    results, volume = small_results(tmp_path, {"illumination": {"enabled": True}})
    w = TuningWidget(make_napari_viewer())
    w.auto_run.setChecked(False)
    assert w.set_results_dir(results)
    assert w.source.illumination_off and "illumination" in w.status.text()
    w.box_edit.setText("0:16,0:60,0:60")
    plain = DetectParams.model_validate({"illumination": {"enabled": False}})
    expected = detect_in_box(volume, parse_box("0:16,0:60,0:60"), VOX, plain, threshold=THRESHOLD)
    assert_same_cells(w.run(), expected)
    assert "WITHOUT" in w.status.text()
    assert "illumination" not in w.snippet().get("steps", {}).get("detect", {})
    # with the run's field present it is used
    field = IlluminationField(np.full((1, 4, 4), 0.5, np.float32), (16, 16), 0.2)
    field.save(tmp_path / "field.npz")
    (results / "cells" / "blocks").mkdir(parents=True)
    (tmp_path / "field.npz").rename(results / "cells" / "blocks" / "illumination.npz")
    assert w.set_results_dir(results) and not w.source.illumination_off
    lit = w.run()
    expected = detect_in_box(
        volume,
        parse_box("0:16,0:60,0:60"),
        VOX,
        DetectParams.model_validate({"illumination": {"enabled": True}}),
        illumination=field,
        threshold=THRESHOLD,
    )
    assert_same_cells(lit, expected)
