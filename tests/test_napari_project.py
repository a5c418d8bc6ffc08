"""The napari plugin and ClickPoints projects: a ``.cdb`` as layers (``_project``) and Points
layers saved back into it (``_writer``), in a real (headless) viewer."""

import json
import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spimflow.annotate import AnnotationError, Project, frame_to_markers, markers_to_frame
from spimflow.napari._project import cell_ids_of_styles, project_layers, reset_ids_of_added_points
from spimflow.napari._reader import get_reader
from spimflow.napari._writer import save_points_layers, write_layer_data, write_points
from spimflow.steps.curate import KEPT, REJECTED, marker_style

VOXEL = [4.0, 1.6, 1.6]
N_PLANES = 8
HEIGHT, WIDTH = 30, 40
# cells (voxel centres, detection ids 0..7) and rejected detections (ids 8..11)
CELLS = pd.DataFrame(
    {
        "z": [0.0, 1.0, 3.0, 2.0, 4.0, 5.0, 6.0, 7.0],
        "y": [3.0, 5.25, 7.0, 9.0, 11.0, 13.0, 15.0, 17.5],
        "x": [2.0, 4.0, 6.5, 8.0, 10.0, 12.0, 14.0, 16.0],
    }
)
REJECTS = pd.DataFrame({"z": [1.0, 2.0, 3.0, 4.0], "y": [20.0, 21.0, 22.0, 23.0], "x": [30.0, 31.0, 32.0, 33.0]})
MASK = np.zeros((HEIGHT, WIDTH), np.uint8)
MASK[2:6, 3:9] = 1
MASK[10:, 20:] = 2
# tables the writer must never touch (all but ``marker``)
OTHER_TABLES = (
    "meta",
    "path",
    "layer",
    "image",
    "offset",
    "track",
    "markertype",
    "line",
    "rectangle",
    "ellipse",
    "polygon",
    "polygonpoint",
    "mask",
    "masktype",
    "annotation",
    "tag",
    "tagassociation",
    "option",
)


def build_project(path: Path) -> Path:
    """Two point types with styles carrying detection ids, a rectangle, a polygon, a track,
    a mask, an annotation with a tag and the voxel size."""
    with Project.create(path) as p:
        p.add_volume_planes(path.parent / "signal.ome.zarr", N_PLANES, layer="signal", width=WIDTH, height=HEIGHT)
        p.set_marker_type(KEPT, "#00FF00")
        p.set_marker_type(REJECTED, "#FF00FF")
        p.set_marker_type("roi", "#FFFF00", mode=Project.TYPE_RECT)
        p.set_marker_type("outline", "#00FFFF", mode=Project.TYPE_POLYGON)
        p.set_marker_type("trace", "#FF8000", mode=Project.TYPE_TRACK)
        p.set_marker_type("ruler", "#FFFFFF", mode=Project.TYPE_LINE)
        p.set_marker_type("oval", "#808080", mode=Project.TYPE_ELLIPSE)
        cells = CELLS.assign(type=KEPT, style=[marker_style(i) for i in range(8)], text=[f"c{i}" for i in range(8)])
        rejects = REJECTS.assign(type=REJECTED, style=[marker_style(8 + i) for i in range(4)], text=None)
        frame_to_markers(p, pd.concat([cells, rejects], ignore_index=True))
        p.set_rectangles(2.0, 3.0, 4.0, 5.0, z=1, type="roi", text="look here")
        p.add_polygon([[1.0, 1.0], [9.0, 1.0], [9.0, 6.0]], z=2, type="outline")
        p.set_lines(1.0, 2.0, 5.0, 2.0, z=4, type="ruler")
        p.set_ellipses(8.0, 9.0, 4.0, 2.0, 90.0, z=5, type="oval")  # centre, full axes, degrees
        track = p.add_track("trace")
        p.set_markers([10.5, 11.5, 12.5], [3.5, 4.5, 5.5], z=[0, 1, 2], track=track)
        p.set_mask_type("tissue", "#0000FF")
        p.set_mask_type("vessel", "#FF0000")
        p.set_mask(MASK, z=3)
        p.set_annotation(z=2, comment="folded section", rating=3, tags=["check"])
        p.set_option("spimflow_voxel_size_um", json.dumps(VOXEL))
    return path


@pytest.fixture
def project(tmp_path) -> Path:
    return build_project(tmp_path / "cells.cdb")


def table_dump(path: Path, tables=OTHER_TABLES) -> dict:
    """Every row of the tables, as stored (BLOBs as bytes)."""
    conn = sqlite3.connect(path)
    try:
        return {t: conn.execute(f'SELECT * FROM "{t}" ORDER BY id').fetchall() for t in tables}
    finally:
        conn.close()


def marker_rows(path: Path) -> dict[int, tuple]:
    conn = sqlite3.connect(path)
    try:
        return {r[0]: r for r in conn.execute("SELECT * FROM marker ORDER BY id")}
    finally:
        conn.close()


def by_name(layers) -> dict:
    return {kw["name"]: (data, kw, kind) for data, kw, kind in layers}


def add_to_viewer(viewer, layers) -> dict:
    return {kw["name"]: getattr(viewer, f"add_{kind}")(data, **kw) for data, kw, kind in layers}


# -- reading -------------------------------------------------------------------------------------


def test_project_layers_show_every_entity(project):
    layers = by_name(project_layers(project))
    assert {n: k for n, (_, _, k) in layers.items()} == {
        KEPT: "points",
        REJECTED: "points",
        "roi": "shapes",
        "outline": "shapes",
        "ruler": "shapes",
        "oval": "shapes",
        "trace": "tracks",
        "masks": "labels",
    }
    assert list(layers)[:2] == [KEPT, REJECTED]  # type order; the point types first

    data, kw, _ = layers[KEPT]
    np.testing.assert_allclose(data, CELLS[["z", "y", "x"]].to_numpy())  # voxel centres, not ClickPoints' +0.5
    assert kw["scale"] == tuple(VOXEL)
    assert kw["face_color"] == [0.0, 1.0, 0.0, 1.0]
    assert kw["metadata"]["marker_type"] == KEPT and kw["metadata"]["spimflow_cdb"] == str(project)
    f = kw["features"]
    assert f.columns.tolist() == ["marker_id", "cell_id", "text", "processed"]
    assert f["marker_id"].tolist() == list(range(1, 9)) and f["cell_id"].tolist() == list(range(8))
    assert f["text"].tolist() == [f"c{i}" for i in range(8)] and f["processed"].tolist() == [0] * 8
    assert kw["feature_defaults"]["marker_id"] == -1 and kw["feature_defaults"]["cell_id"] == -1

    data, kw, _ = layers[REJECTED]
    np.testing.assert_allclose(data, REJECTS[["z", "y", "x"]].to_numpy())
    assert kw["face_color"] == [1.0, 0.0, 1.0, 1.0]
    assert kw["features"]["cell_id"].tolist() == [8, 9, 10, 11] and kw["features"]["text"].tolist() == [""] * 4
    # annotations and tags ride on the first layer
    meta = layers[KEPT][1]["metadata"]
    assert [(a["z"], a["comment"], a["rating"], a["tags"]) for a in meta["annotations"]] == [
        (2, "folded section", 3, ["check"])
    ]
    assert meta["tags"] == ["check"] and "folded section" in meta["annotations_summary"]

    # the rectangle (corner 2, 3 and size 4 x 5 in ClickPoints pixels) lies in its plane, in voxels
    shapes, kw, _ = layers["roi"]
    assert kw["shape_type"] == ["rectangle"] and kw["metadata"]["rectangle_ids"] == [1]
    np.testing.assert_allclose(shapes[0], [[1, 2.5, 1.5], [1, 2.5, 5.5], [1, 7.5, 5.5], [1, 7.5, 1.5]])
    assert kw["features"]["text"].tolist() == ["look here"] and kw["scale"] == tuple(VOXEL)
    shapes, kw, _ = layers["outline"]
    assert kw["shape_type"] == ["polygon"] and kw["metadata"]["marker_type"] == "outline"
    np.testing.assert_allclose(shapes[0], [[2, 0.5, 0.5], [2, 0.5, 8.5], [2, 5.5, 8.5]])
    shapes, kw, _ = layers["ruler"]
    assert kw["shape_type"] == ["line"]
    np.testing.assert_allclose(shapes[0], [[4, 1.5, 0.5], [4, 1.5, 4.5]])
    shapes, kw, _ = layers["oval"]  # turned by 90°: the 4 px axis runs along y
    assert kw["shape_type"] == ["ellipse"] and shapes[0].shape == (4, 3)
    np.testing.assert_allclose(shapes[0].min(axis=0), [5, 6.5, 6.5], atol=1e-9)
    np.testing.assert_allclose(shapes[0].max(axis=0), [5, 10.5, 8.5], atol=1e-9)
    # the track: (track_id, t = z, y, x)
    data, kw, _ = layers["trace"]
    np.testing.assert_allclose(data, [[1, 0, 3, 10], [1, 1, 4, 11], [1, 2, 5, 12]])
    assert kw["metadata"]["track_ids"] == [1]
    # the mask on plane 3 of a (z, y, x) stack
    data, kw, _ = layers["masks"]
    assert data.shape == (N_PLANES, HEIGHT, WIDTH)
    stack = np.asarray(data)
    np.testing.assert_array_equal(stack[3], MASK)
    assert not stack[[0, 1, 2, 4, 5, 6, 7]].any()
    assert kw["features"]["name"].tolist() == ["", "tissue", "vessel"]


def test_cell_ids_of_styles_agree_with_curate():
    styles = [marker_style(12), None, "", "not json", '{"spimflow_cell": true}', '{"a": 1, "spimflow_cell": 4}']
    assert cell_ids_of_styles(styles).tolist() == [12, -1, -1, -1, -1, 4]


def test_empty_point_type_and_no_voxel_size(tmp_path):
    path = tmp_path / "bare.cdb"
    with Project.create(path) as p:
        p.add_volume_planes("planes", 2)
        p.set_marker_type("unseen", "#123456")
    ((data, kw, kind),) = project_layers(path)
    assert kind == "points" and kw["name"] == "unseen" and data.shape == (0, 3)
    assert kw["scale"] == (1.0, 1.0, 1.0) and len(kw["features"]) == 0


# -- editing in a viewer and saving --------------------------------------------------------------


def test_edits_in_the_viewer_are_saved_exactly(make_napari_viewer, project):
    before_other = table_dump(project)
    before_markers = marker_rows(project)
    viewer = make_napari_viewer()
    layers = add_to_viewer(viewer, project_layers(project))
    cell, rejected = layers[KEPT], layers[REJECTED]

    # move 3 points (ids 1, 2 in their plane; id 3 to another plane)
    data = cell.data.copy()
    data[0, 1] += 2.25
    data[1, 2] -= 1.5
    data[2, 0] = 5.0
    cell.data = data
    # delete 2 (ids 6 and 7)
    cell.selected_data = {5, 6}
    cell.remove_selected()
    # reject one (id 4): its point moves, with its features, into the other layer
    cell.selected_data = {3}  # napari now copies this point's features into points added later
    row = cell.features.iloc[3].copy()
    coords = cell.data[3].copy()
    cell.remove_selected()
    rejected.add(coords)
    for column in ("marker_id", "cell_id", "text", "processed"):
        rejected.features.loc[len(rejected.data) - 1, column] = row[column]
    # add 2 cells (they inherit id 4's features from the selection above)
    cell.add(np.array([[6.0, 25.0, 26.0], [7.0, 27.5, 28.25]]))
    assert cell.features["marker_id"].tolist()[-2:] == [4, 4]

    assert write_points(str(project), [cell.as_layer_data_tuple(), rejected.as_layer_data_tuple()]) == [str(project)]

    # nothing else changed, byte for byte
    assert table_dump(project) == before_other
    after_markers = marker_rows(project)
    for marker_id in (5, 8, 9, 10, 11, 12, 13, 14, 15):  # untouched cells, rejects and the track's markers
        assert after_markers[marker_id] == before_markers[marker_id]
    # exactly the edits
    with Project.open(project) as p:
        m = markers_to_frame(p).set_index("marker_id")
    assert sorted(m.index) == [1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]
    cells = m[m["type"] == KEPT]
    assert sorted(cells.index) == [1, 2, 3, 5, 8, 16, 17]
    expected = CELLS.copy()
    expected.loc[0, "y"] += 2.25
    expected.loc[1, "x"] -= 1.5
    expected.loc[2, "z"] = 5.0
    for marker_id in (1, 2, 3, 5, 8):
        np.testing.assert_allclose(cells.loc[marker_id, ["z", "y", "x"]].astype(float), expected.loc[marker_id - 1])
        assert cells.loc[marker_id, "style"] == marker_style(marker_id - 1)
        assert cells.loc[marker_id, "text"] == f"c{marker_id - 1}"
    np.testing.assert_allclose(cells.loc[[16, 17], ["z", "y", "x"]].astype(float), [[6, 25, 26], [7, 27.5, 28.25]])
    assert cells.loc[[16, 17], "style"].isna().all() and cells.loc[[16, 17], "text"].isna().all()
    rejects = m[m["type"] == REJECTED]
    assert sorted(rejects.index) == [4, 9, 10, 11, 12]
    np.testing.assert_allclose(rejects.loc[4, ["z", "y", "x"]].astype(float), CELLS.loc[3])
    assert rejects.loc[4, "style"] == marker_style(3) and rejects.loc[4, "text"] == "c3"
    assert m.loc[[13, 14, 15], "type"].tolist() == ["trace"] * 3
    with Project.open(project) as p:
        assert p.integrity_check() == []
        assert p.get_tracks()["n_markers"].tolist() == [3]

    # the new markers' ids are in the layers now: saving again (napari's own save) changes nothing
    assert cell.features["marker_id"].tolist() == [1, 2, 3, 5, 8, 16, 17]
    assert rejected.features["marker_id"].tolist() == [9, 10, 11, 12, 4]
    saved = marker_rows(project)
    viewer.layers.selection = {cell, rejected}
    assert viewer.layers.save(str(project), selected=True, plugin="spimflow") == [str(project)]
    assert marker_rows(project) == saved
    data = cell.data.copy()
    data[3, 2] += 1.0  # marker 5
    cell.data = data
    viewer.layers.save(str(project), selected=True, plugin="spimflow")
    changed = {k for k, v in marker_rows(project).items() if saved.get(k) != v}
    assert changed == {5} and marker_rows(project)[5][2] == saved[5][2] + 1.0  # x
    assert table_dump(project) == before_other


def test_save_points_layers_and_a_point_deleted_then_added(make_napari_viewer, project):
    viewer = make_napari_viewer()
    layers = add_to_viewer(viewer, project_layers(project))
    cell, rejected = layers[KEPT], layers[REJECTED]
    reset_ids_of_added_points(cell)
    cell.selected_data = {0}  # defaults are now marker 1's features
    cell.remove_selected()
    cell.add(np.array([2.0, 10.0, 10.0]))  # a new cell, not marker 1 moved
    assert cell.features["marker_id"].tolist()[-1] == -1 and cell.features["cell_id"].tolist()[-1] == -1
    assert save_points_layers(project, [cell, rejected]) == [str(project)]
    assert cell.features["marker_id"].tolist() == [2, 3, 4, 5, 6, 7, 8, 16]
    with Project.open(project) as p:
        m = markers_to_frame(p, type=KEPT).set_index("marker_id")
    assert 1 not in m.index and pd.isna(m.loc[16, "style"]) and pd.isna(m.loc[16, "text"])
    np.testing.assert_allclose(m.loc[16, ["z", "y", "x"]].astype(float), [2, 10, 10])


# -- the writer on its own -----------------------------------------------------------------------


def _points(data, name, features=None, **metadata):
    data = np.asarray(data, float).reshape(-1, 3)
    features = pd.DataFrame(features if features is not None else {}, index=range(len(data)))
    return data, {"name": name, "features": features, "metadata": dict(metadata), "scale": (2.0, 1.0, 1.0)}, "points"


def test_writer_creates_a_new_project(tmp_path):
    path = tmp_path / "new" / "points.cdb"
    source = "raw/signal.ome.zarr"
    cells = _points(
        [[0, 1, 2], [3, 4.5, 5]], "cell", {"marker_id": [-1, -1], "cell_id": [7, -1]}, spimflow_image_source=source
    )
    other = _points([[1, 1, 1]], "unsure")
    ids = write_layer_data(path, [cells, other])
    assert [i.tolist() for i in ids] == [[1, 2], [3]]
    assert cells[1]["features"]["marker_id"].tolist() == [1, 2]  # written back into the feature table
    assert "marker_id" not in other[1]["features"].columns  # a table without the column keeps its columns
    assert cells[1]["metadata"]["spimflow_cdb"] == str(path)
    with Project.open(path) as p:
        images = p.get_images()
        assert images["sort_index"].tolist() == [0, 1, 2, 3] and set(images["filename"]) == {"signal.ome.zarr"}
        assert json.loads(p.get_option("spimflow_voxel_size_um")) == [2.0, 1.0, 1.0]
        m = markers_to_frame(p)
    assert m["type"].tolist() == ["cell", "cell", "unsure"]
    assert [s if isinstance(s, str) else None for s in m["style"]] == [marker_style(7), None, None]
    layers = by_name(project_layers(path))
    np.testing.assert_allclose(layers["cell"][0], [[0, 1, 2], [3, 4.5, 5]])
    assert layers["cell"][1]["features"]["cell_id"].tolist() == [7, -1]
    assert not list(tmp_path.glob("new/.points.cdb.tmp*"))


def test_writer_refuses_missing_planes_and_track_types_and_changes_nothing(project):
    before = (table_dump(project), marker_rows(project))
    layers = by_name(project_layers(project))
    data, kw, kind = layers[KEPT]
    far = data.copy()
    far[0, 0] = N_PLANES + 2
    with pytest.raises(AnnotationError, match=rf"{project.name}.*z = {N_PLANES + 2}"):
        write_points(str(project), [(far, kw, kind)])
    with pytest.raises(AnnotationError, match="track type"):
        write_points(str(project), [_points([[0, 1, 1]], "trace")])
    with pytest.raises(ValueError, match="same marker type"):
        write_points(str(project), [(data, kw, kind), (data, dict(kw, name="copy"), kind)])
    assert (table_dump(project), marker_rows(project)) == before


def test_points_of_another_project_become_new_markers(tmp_path, project):
    other = build_project(tmp_path / "other.cdb")
    (data, kw, kind) = by_name(project_layers(other))[REJECTED]
    data = data[:2]
    kw = dict(kw, features=kw["features"].iloc[:2].reset_index(drop=True))
    write_points(str(project), [(data, kw, kind)])
    with Project.open(project) as p:
        m = markers_to_frame(p)
    rejects = m[m["type"] == REJECTED]
    assert rejects["marker_id"].tolist() == [16, 17]  # ids 9..12 of ``other`` mean nothing here
    assert rejects["style"].tolist() == [marker_style(8), marker_style(9)]
    np.testing.assert_allclose(rejects[["z", "y", "x"]].to_numpy(), REJECTS.iloc[:2].to_numpy())
    assert (m["type"] == KEPT).sum() == 8


def test_a_point_never_takes_a_tracked_marker(project):
    before = marker_rows(project)
    write_points(str(project), [_points([[1, 2, 3]], KEPT, {"marker_id": [13]})])  # 13: the track's first marker
    after = marker_rows(project)
    assert {k: after[k] for k in (13, 14, 15)} == {k: before[k] for k in (13, 14, 15)}
    with Project.open(project) as p:
        cells = markers_to_frame(p, type=KEPT)
    assert cells["marker_id"].tolist() == [16]
    np.testing.assert_allclose(cells[["z", "y", "x"]].to_numpy(float), [[1, 2, 3]])


# -- the plugin end to end -----------------------------------------------------------------------


def test_reader_and_plugin_open_a_project(make_napari_viewer, project):
    reader = get_reader(str(project))
    assert callable(reader)
    names = [kw["name"] for _, kw, _ in reader(str(project))]
    assert names == [KEPT, REJECTED, "roi", "ruler", "oval", "outline", "trace", "masks"]
    viewer = make_napari_viewer()
    opened = viewer.open(project, plugin="spimflow")
    assert [(layer.name, type(layer).__name__) for layer in opened] == [
        (KEPT, "Points"),
        (REJECTED, "Points"),
        ("roi", "Shapes"),
        ("ruler", "Shapes"),
        ("oval", "Shapes"),
        ("outline", "Shapes"),
        ("trace", "Tracks"),
        ("masks", "Labels"),
    ]
    cell = viewer.layers[KEPT]
    np.testing.assert_allclose(cell.data, CELLS.to_numpy())
    np.testing.assert_allclose(cell.scale, VOXEL)
    assert cell.metadata["annotations"][0]["comment"] == "folded section"


@pytest.mark.slow
def test_100k_markers_read_and_saved_quickly(tmp_path):
    rng = np.random.default_rng(1)
    n = 100_000
    path = tmp_path / "big.cdb"
    with Project.create(path) as p:
        p.add_volume_planes("signal.ome.zarr", 100)
        frame = pd.DataFrame(
            {
                "z": rng.integers(0, 100, n).astype(float),
                "y": rng.uniform(0, 500, n),
                "x": rng.uniform(0, 500, n),
                "type": np.where(rng.random(n) < 0.7, KEPT, REJECTED),
                "style": [marker_style(i) for i in range(n)],
            }
        )
        frame_to_markers(p, frame)
    t0 = time.perf_counter()
    layers = by_name(project_layers(path))
    read = time.perf_counter() - t0
    data, kw, kind = layers[KEPT]
    data = data.copy()
    data[:1000, 1] += 0.5
    t0 = time.perf_counter()
    write_points(str(path), [(data, kw, kind), layers[REJECTED]])
    write = time.perf_counter() - t0
    assert read < 5 and write < 5, (read, write)
    with Project.open(path) as p:
        assert p.count_markers() == n
        moved = markers_to_frame(p, type=KEPT).set_index("marker_id").loc[kw["features"]["marker_id"][:1000]]
    np.testing.assert_allclose(moved["y"], data[:1000, 1])
