"""The *Curate cells* widget (headless): a small exported project opened in napari, stepped
through by intensity, cells accepted, rejected and added, undone, and saved — the reopened
project holds exactly the edits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("napari")

from napari.layers import Points  # noqa: E402

from spimflow.annotate import Project, frame_to_markers, markers_to_frame  # noqa: E402
from spimflow.atlas import Ontology, Region  # noqa: E402
from spimflow.napari._curation import (  # noqa: E402
    CellKey,
    CurationWidget,
    Curator,
    UndoStack,
    camera_of,
    cell_order,
    cell_table,
    move_point,
    point_table,
    region_mask,
)
from spimflow.napari._project import project_layers  # noqa: E402
from spimflow.steps.curate import KEPT, REJECTED, curate, detections_as_markers  # noqa: E402

VOXEL = (4.0, 2.0, 2.0)
#: six detections: kept ones (True) start as type "cell", the others as "rejected"
CELLS_RAW = pd.DataFrame(
    {
        "z": [1.0, 2.0, 3.0, 4.0, 2.0, 5.0],
        "y": [10.25, 20.0, 30.0, 12.0, 40.5, 8.0],
        "x": [11.0, 21.5, 31.0, 41.0, 5.0, 50.0],
        "intensity_raw": [500.0, 900.0, 100.0, 700.0, 300.0, 800.0],
        "volume_um3": [40.0, 90.0, 10.0, 70.0, 30.0, 80.0],
    }
)
KEPT_MASK = np.array([True, True, False, True, False, True])
ACRONYMS = ["CTXa3", "TH", "TH", "CTXb", "CTXa3", "TH"]
BY_INTENSITY = [1, 5, 3, 0, 4, 2]  # detection ids, brightest first


def make_project(root: Path) -> Path:
    """``results/s1/annotation/cells.cdb`` as the export writes it, with ``cells/`` beside it."""
    results = root / "results" / "s1"
    (results / "cells").mkdir(parents=True)
    (results / "annotation").mkdir()
    CELLS_RAW.to_parquet(results / "cells" / "cells_raw.parquet")
    atlas = CELLS_RAW[KEPT_MASK].assign(region_acronym=np.array(ACRONYMS, dtype=object)[KEPT_MASK])
    atlas.to_parquet(results / "cells" / "cells_atlas.parquet")
    cdb = results / "annotation" / "cells.cdb"
    with Project.create(cdb) as project:
        project.set_marker_type(KEPT, color="#00ff00")
        project.set_marker_type(REJECTED, color="#ff00ff")
        project.add_volume_planes("../raw/signal.ome.zarr", 8, layer="signal", width=64, height=64)
        frame_to_markers(project, detections_as_markers(CELLS_RAW, KEPT_MASK, ACRONYMS))
        project.set_option("spimflow_voxel_size_um", json.dumps(list(VOXEL)))
    return cdb


@pytest.fixture
def project(tmp_path) -> Path:
    return make_project(tmp_path)


@pytest.fixture
def curation(project, make_napari_viewer):
    """A viewer with the project opened by the spimflow reader, and the widget docked."""
    viewer = make_napari_viewer()
    viewer.open(str(project), plugin="spimflow")
    widget = CurationWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Curate cells")
    return viewer, widget


def cell_ids(layer) -> list[int]:
    return layer.features["cell_id"].astype(int).tolist()


def current_cell(widget) -> int:
    name, index = widget.curator.current()
    return int(widget.curator.layers[name].features["cell_id"].iloc[index])


def press(viewer, key: str) -> None:
    """A key press as napari dispatches it (active layer's keymap first, then the viewer's)."""
    assert viewer.window._qt_viewer._key_map_handler.press_key(key)


# -- pure logic ----------------------------------------------------------------------------------


def test_cell_table_joins_regions_by_cell_id_or_centre():
    by_centre = cell_table(CELLS_RAW, CELLS_RAW.iloc[[1, 3]].assign(region_acronym=["TH", "CTXb"]))
    assert by_centre["region_acronym"].tolist() == ["", "TH", "", "CTXb", "", ""]
    curated = pd.DataFrame({"cell_id": [5, -1, 0], "region_acronym": ["TH", "MO", "CTXa3"]})
    by_id = cell_table(CELLS_RAW, curated)
    assert by_id["region_acronym"].tolist() == ["CTXa3", "", "", "", "", "TH"]
    assert by_id.loc[1, "intensity_raw"] == 900.0 and by_id.loc[2, "volume_um3"] == 10.0
    bare = cell_table(CELLS_RAW[["z", "y", "x"]])
    assert bare["intensity_raw"].isna().all() and (bare["region_acronym"] == "").all()


def test_order_and_region_match_without_a_viewer():
    points = pd.DataFrame(
        {
            "type": ["cell", "rejected", "cell", "cell"],
            "marker_id": [1, 2, 3, -1],
            "z": [3.0, 1.0, 2.0, 0.0],
            "y": 0.0,
            "x": 0.0,
            "intensity_raw": [5.0, 9.0, 7.0, np.nan],
            "volume_um3": [3.0, 1.0, 2.0, np.nan],
            "region_acronym": ["TH", "CTXa3", "", ""],
        }
    )
    assert [k.marker_id for k in cell_order(points, "intensity")] == [2, 3, 1, -1]
    assert [k.marker_id for k in cell_order(points, "size")] == [1, 3, 2, -1]
    assert [k.marker_id for k in cell_order(points, "region")] == [2, 1, 3, -1]
    assert [k.marker_id for k in cell_order(points, "position", types=[KEPT])] == [-1, 3, 1]
    no_values = points.assign(intensity_raw=np.nan)
    assert [k.marker_id for k in cell_order(no_values, "intensity")] == [-1, 2, 3, 1]  # by position
    with pytest.raises(ValueError, match="unknown order"):
        cell_order(points, "colour")
    onto = Ontology(
        [
            Region(997, "root", "root", None),
            Region(688, "CTX", "Cortex", 997),
            Region(1, "CTXa3", "Cortex a3", 688),
            Region(549, "TH", "Thalamus", 997),
        ]
    )
    acronyms = ["CTXa3", "TH", "CTX", "CTXb"]
    assert region_mask(acronyms, "ctx", onto).tolist() == [True, False, True, False]
    assert region_mask(acronyms, "CTX").tolist() == [False, False, True, False]  # exact without an ontology
    assert region_mask(acronyms, "CTXa").tolist() == [True, False, False, False]  # else by prefix
    assert not region_mask(acronyms, " ").any()


def test_move_point_carries_features_and_size():
    features = pd.DataFrame({"marker_id": [7, 8], "cell_id": [3, -1], "text": ["TH I=1", ""], "processed": [1, 0]})
    source = Points(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), features=features, size=[5.0, 9.0])
    target = Points(np.zeros((0, 3)), features=features.iloc[:0], size=4.0)
    assert move_point(source, target, 0) == 0
    assert target.features.iloc[0].to_dict() == {"marker_id": 7, "cell_id": 3, "text": "TH I=1", "processed": 1}
    assert target.data[0].tolist() == [1.0, 2.0, 3.0] and target.size[0] == 5.0
    assert source.features["marker_id"].tolist() == [8] and source.size.tolist() == [9.0]
    # napari's own add (add mode) gives a blank point, not a copy of the last one
    target.add([[9.0, 9.0, 9.0]])
    assert target.features.iloc[-1][["marker_id", "cell_id", "text"]].tolist() == [-1, -1, ""]
    stack = UndoStack()
    assert stack.pop() is None and len(stack) == 0


# -- the widget on a project ---------------------------------------------------------------------------


def test_widget_finds_the_project_and_orders_by_intensity(curation, project):
    viewer, widget = curation
    cur = widget.curator
    assert widget.project_path == project
    assert cur.layers[KEPT].name == KEPT and cur.layers[REJECTED].name == REJECTED
    assert sorted(cell_ids(cur.layers[KEPT])) == [0, 1, 3, 5]
    assert sorted(cell_ids(cur.layers[REJECTED])) == [2, 4]
    by_id = dict(zip(point_table(cur.layers)["marker_id"], point_table(cur.layers)["cell_id"]))
    assert [by_id[k.marker_id] for k in cur.order] == BY_INTENSITY
    assert widget.counts_label.text() == "kept 4 · rejected 2 · added 0 · re-typed 0"
    widget.order_box.setCurrentText("size (small first)")
    assert [by_id[k.marker_id] for k in cur.order] == BY_INTENSITY[::-1]
    widget.order_box.setCurrentText("region")  # CTXa3 (0 from the atlas table, 4 from the marker text), CTXb, TH
    assert [by_id[k.marker_id] for k in cur.order] == [0, 4, 3, 1, 5, 2]
    widget.subset_box.setCurrentText("rejected")
    assert [by_id[k.marker_id] for k in cur.order] == [4, 2]


def test_next_and_previous_select_and_centre_the_cell(curation):
    viewer, widget = curation
    cur = widget.curator
    widget.next_button.click()
    assert current_cell(widget) == 1
    layer = cur.layers[KEPT]
    index = cell_ids(layer).index(1)
    assert layer.selected_data == {index} and viewer.layers.selection.active is layer
    z, y, x = CELLS_RAW.loc[1, ["z", "y", "x"]]
    assert viewer.dims.point[0] == pytest.approx(z * VOXEL[0])  # world units: the layer's scale
    assert camera_of(viewer).center[-2:] == pytest.approx((y * VOXEL[1], x * VOXEL[2]))
    assert widget.info_label.text() == "1/6 · cell · cell 1 · TH · I=900 · V=90 µm³ · z=2"
    widget.next_button.click()
    widget.next_button.click()
    assert current_cell(widget) == 3
    rejected = cur.layers[REJECTED]
    press(viewer, "N")  # cell 0, then cell 4: a rejected one, its layer becomes the active one
    press(viewer, "N")
    assert current_cell(widget) == 4 and viewer.layers.selection.active is rejected
    assert rejected.selected_data == {cell_ids(rejected).index(4)} and not layer.selected_data
    assert viewer.dims.point[0] == pytest.approx(2 * VOXEL[0])
    press(viewer, "B")
    assert current_cell(widget) == 0
    for _ in range(10):
        widget.previous_button.click()
    assert current_cell(widget) == 1  # stops at the first
    for _ in range(10):
        widget.next_button.click()
    assert current_cell(widget) == 2  # and at the last


def test_accept_reject_move_points_with_their_features(curation):
    viewer, widget = curation
    cur = widget.curator
    kept, rejected = cur.layers[KEPT], cur.layers[REJECTED]
    before = kept.features[kept.features["cell_id"] == 1].iloc[0].to_dict()
    widget.next_button.click()  # cell 1, kept
    press(viewer, "R")  # reject it; the next cell (5) becomes current
    assert 1 not in cell_ids(kept) and 1 in cell_ids(rejected)
    assert rejected.features[rejected.features["cell_id"] == 1].iloc[0].to_dict() == before
    assert rejected.data[cell_ids(rejected).index(1)].tolist() == pytest.approx([2.0, 20.0, 21.5])
    assert current_cell(widget) == 5
    assert widget.counts_label.text() == "kept 3 · rejected 3 · added 0 · re-typed 1"
    widget.advance_box.setChecked(False)
    widget.next_button.click()
    widget.next_button.click()
    widget.next_button.click()  # 5 → 3 → 0 → 4 (rejected)
    assert current_cell(widget) == 4
    widget.accept_button.click()
    assert 4 in cell_ids(kept) and current_cell(widget) == 4  # no advance
    assert kept.selected_data == {cell_ids(kept).index(4)}
    widget.accept_button.click()  # already a cell: nothing to do, nothing to undo
    assert len(cur.undo_stack) == 2
    assert widget.counts_label.text() == "kept 4 · rejected 2 · added 0 · re-typed 2"


def test_add_and_undo(curation):
    viewer, widget = curation
    cur = widget.curator
    kept, rejected = cur.layers[KEPT], cur.layers[REJECTED]
    start = {KEPT: kept.data.copy(), REJECTED: rejected.data.copy()}
    widget.next_button.click()
    widget.reject_button.click()  # cell 1 rejected, now at cell 5
    widget.reject_button.click()  # cell 5 rejected, now at cell 3
    viewer.cursor.position = (3.2 * VOXEL[0], 15.0 * VOXEL[1], 16.5 * VOXEL[2])
    press(viewer, "C")  # add at the cursor, on the nearest plane
    assert kept.features.iloc[-1][["marker_id", "cell_id", "text"]].tolist() == [-1, -1, ""]
    assert kept.data[-1].tolist() == pytest.approx([3.0, 15.0, 16.5])
    widget.add_mode_button.click()
    assert kept.mode == "add" and viewer.layers.selection.active is kept
    kept.add([[6.0, 30.0, 30.0]])  # what a click in add mode does
    assert kept.features.iloc[-1][["marker_id", "cell_id"]].tolist() == [-1, -1]
    kept.mode = "pan_zoom"  # napari's toolbar
    assert not widget.add_mode_button.isChecked()
    assert widget.counts_label.text() == "kept 4 · rejected 4 · added 2 · re-typed 2"
    widget.undo_button.click()  # the add-mode point
    assert len(kept.data) == 3 and kept.data[-1].tolist() == pytest.approx([3.0, 15.0, 16.5])
    press(viewer, "U")  # the cursor point
    assert widget.counts_label.text() == "kept 2 · rejected 4 · added 0 · re-typed 2"
    press(viewer, "U")  # cell 5 back to kept, and current again
    assert 5 in cell_ids(kept) and current_cell(widget) == 5
    assert kept.selected_data == {cell_ids(kept).index(5)}
    widget.undo_button.click()
    assert current_cell(widget) == 1
    widget.undo_button.click()
    assert widget.status_label.text() == "nothing to undo"
    assert widget.counts_label.text() == "kept 4 · rejected 2 · added 0 · re-typed 0"
    for name, layer in cur.layers.items():  # same points (order within a layer may differ)
        assert sorted(map(tuple, layer.data.tolist())) == sorted(map(tuple, start[name].tolist()))


def test_jump_to_region(curation):
    viewer, widget = curation
    widget.region_edit.setText("th")
    widget.region_button.click()
    assert current_cell(widget) == 1
    widget.region_edit.setText("CTXb")
    widget.region_edit.returnPressed.emit()
    assert current_cell(widget) == 3
    widget.region_edit.setText("MO")
    widget.region_button.click()
    assert current_cell(widget) == 3 and "no cell in 'MO'" in widget.status_label.text()
    widget.curator.ontology = Ontology(
        [
            Region(997, "root", "root", None),
            Region(688, "CTX", "Cortex", 997),
            Region(1, "CTXa3", "a3", 688),
            Region(2, "CTXb", "b", 688),
        ]
    )
    widget.next_button.click()  # cell 0
    widget.region_edit.setText("CTX")  # first cell below CTX in intensity order: 3 (CTXb)
    widget.region_button.click()
    assert current_cell(widget) == 3


def test_save_writes_exactly_the_edits(curation, project):
    viewer, widget = curation
    cur = widget.curator
    widget.next_button.click()
    widget.reject_button.click()  # cell 1 → rejected
    widget.region_edit.setText("CTXa3")
    widget.region_edit.returnPressed.emit()  # cell 0
    widget.next_button.click()  # cell 4 (rejected)
    assert current_cell(widget) == 4 and viewer.layers.selection.active is cur.layers[REJECTED]
    press(viewer, "A")  # cell 4 → cell (the widget's key, not napari's "select all" of Points layers)
    viewer.cursor.position = (6.0 * VOXEL[0], 33.0 * VOXEL[1], 44.0 * VOXEL[2])
    widget.add_button.click()
    with Project.open(project) as p:
        before = markers_to_frame(p).set_index("marker_id")
    widget.save_button.click()
    assert widget.status_label.text().startswith("saved cells.cdb: kept 5 · rejected 2 · added 1 · re-typed 2")
    with Project.open(project) as p:
        after = markers_to_frame(p).set_index("marker_id")
    assert (after["type"] == KEPT).sum() == 5 and (after["type"] == REJECTED).sum() == 2
    new = after.index.difference(before.index)
    assert len(new) == 1 and before.index.difference(after.index).empty
    assert after.loc[new[0], ["z", "y", "x"]].tolist() == pytest.approx([6.0, 33.0, 44.0])
    assert after.loc[new[0], "type"] == KEPT and pd.isna(after.loc[new[0], "style"])
    old = after.loc[before.index]
    changed = old.index[(old["type"] != before["type"]).to_numpy()]
    assert sorted(before.loc[changed, "style"]) == ['{"spimflow_cell": 1}', '{"spimflow_cell": 4}']
    assert old.loc[changed, "type"].tolist() == [
        REJECTED if s.endswith("1}") else KEPT for s in before.loc[changed, "style"]
    ]
    pd.testing.assert_frame_equal(old[["z", "y", "x", "style", "text"]], before[["z", "y", "x", "style", "text"]])
    # what the import makes of it: 4 detections kept or accepted, one added
    curated = curate(CELLS_RAW, after.reset_index(), KEPT_MASK)
    assert sorted(curated["cell_id"]) == [-1, 0, 3, 4, 5]
    assert dict(zip(curated["cell_id"], curated["curation"]))[4] == "accepted"
    # the layers now carry the new marker id; saving again changes nothing
    assert sorted(cur.layers[KEPT].features["marker_id"]) == sorted(after.index[after["type"] == KEPT])
    widget.save_button.click()
    with Project.open(project) as p:
        again = markers_to_frame(p).set_index("marker_id")
    pd.testing.assert_frame_equal(again, after)
    assert widget.counts_label.text() == "kept 5 · rejected 2 · added 1 · re-typed 2"
    widget.undo_button.click()  # the added cell, saved meanwhile, goes again
    assert widget.counts_label.text() == "kept 4 · rejected 2 · added 0 · re-typed 2"
    viewer.cursor.position = (50.0 * VOXEL[0], 1.0, 1.0)  # a plane the project does not have
    widget.add_button.click()
    widget.save_button.click()
    assert widget.status_label.text().startswith("not saved:") and "z = 50" in widget.status_label.text()
    with Project.open(project) as p:
        pd.testing.assert_frame_equal(markers_to_frame(p).set_index("marker_id"), after)


def test_without_cell_tables_cells_go_by_position(project, make_napari_viewer):
    for name in ("cells_raw.parquet", "cells_atlas.parquet"):
        (project.parent.parent / "cells" / name).unlink()
    viewer = make_napari_viewer()
    widget = CurationWidget(viewer)  # before the project is open: waits for it
    viewer.window.add_dock_widget(widget)
    assert widget.curator is None and not widget.next_button.isEnabled()
    viewer.open(str(project), plugin="spimflow")
    assert widget.curator is not None and widget.next_button.isEnabled()
    widget.next_button.click()
    assert current_cell(widget) == 0  # z = 1, the first plane
    assert widget.info_label.text() == "1/6 · cell · cell 0 · CTXa3 · z=1"  # region from the marker text
    viewer.layers.remove(REJECTED)  # the project's layers gone: the widget lets go, and its keys too
    assert widget.curator is None and not widget.next_button.isEnabled()
    assert not viewer.keymap and not viewer.layers[KEPT].keymap
    viewer.layers.remove(KEPT)
    viewer.open(str(project), plugin="spimflow")  # opened again: taken up again
    assert widget.curator is not None and len(widget.curator.layers[REJECTED].data) == 2
    assert len(viewer.keymap) == 6
    widget.close()
    assert widget.curator is None and not viewer.keymap


def test_a_missing_type_gets_an_empty_layer(project, make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open(str(project), plugin="spimflow")
    viewer.layers.remove(REJECTED)
    widget = CurationWidget(viewer)
    viewer.window.add_dock_widget(widget)
    rejected = widget.curator.layers[REJECTED]
    assert rejected in viewer.layers and len(rejected.data) == 0 and rejected.metadata["marker_type"] == REJECTED
    assert len(viewer.keymap) == 6 and len(viewer.layers) == 2
    assert rejected.scale.tolist() == list(VOXEL) and list(rejected.features.columns)[:2] == ["marker_id", "cell_id"]
    widget.next_button.click()
    widget.reject_button.click()
    assert len(rejected.data) == 1 and widget.counts_label.text() == "kept 3 · rejected 1 · added 0 · re-typed 1"


def test_curator_alone(project):
    """The logic class needs neither widget nor viewer: layers in, edits out."""
    cell, rejected = (Points(data, **kwargs) for data, kwargs, _ in project_layers(project))
    cur = Curator(cell, rejected)  # no cell table: by position
    assert cur.describe().startswith("6 cells by intensity")
    cur.step(1)
    assert cur.reject(advance=True) and cur.current_key in cur.order
    assert cur.counts() == {"kept": 3, "rejected": 3, "added": 0, "retyped": 1, "deleted": 0}
    rejected.remove([0])  # deleted in napari
    assert cur.counts()["deleted"] == 1
    assert cur.go_to(CellKey(12345, (0.0, 0.0, 0.0))) is None


def test_the_manifest_widget_is_this_one(project, make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open(str(project), plugin="spimflow")
    _, widget = viewer.window.add_plugin_dock_widget("spimflow", "Curate cells")
    assert isinstance(widget, CurationWidget) and widget.curator is not None
