"""spimflow.annotate.store: the ClickPoints-compatible project file (schema, round trips,
files laid out by ClickPoints, concurrent writers, a writer killed mid-transaction, other
schema versions and files that are no project)."""

import datetime
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import textwrap
import time
import zlib

import numpy as np
import pandas as pd
import pytest

from spimflow.annotate import (
    AnnotationError,
    NotAProjectError,
    Project,
    ReadOnlyProjectError,
    markers_to_frame,
)
from spimflow.annotate import schema as cp_schema
from spimflow.errors import SpimflowError

# ClickPoints 1.10 (schema version 22), tables and columns as documented
DOCUMENTED_V22 = {
    "meta": {"id", "key", "value"},
    "path": {"id", "path"},
    "layer": {"id", "name", "base_layer_id"},
    "image": {
        "id",
        "filename",
        "ext",
        "frame",
        "external_id",
        "timestamp",
        "sort_index",
        "width",
        "height",
        "path_id",
        "layer_id",
    },
    "offset": {"id", "image_id", "x", "y"},
    "track": {"id", "style", "text", "hidden", "type_id"},
    "markertype": {"id", "name", "color", "mode", "style", "text", "hidden"},
    "marker": {"id", "image_id", "x", "y", "type_id", "processed", "track_id", "style", "text"},
    "line": {"id", "image_id", "x1", "y1", "x2", "y2", "type_id", "processed", "style", "text"},
    "rectangle": {"id", "image_id", "x", "y", "width", "height", "type_id", "processed", "style", "text"},
    "ellipse": {"id", "image_id", "x", "y", "width", "height", "angle", "type_id", "processed", "style", "text"},
    "polygon": {"id", "image_id", "type_id", "closed", "processed", "style", "text"},
    "polygonpoint": {"id", "polygon_id", "x", "y", "index"},
    "mask": {"id", "image_id", "data"},
    "masktype": {"id", "name", "color", "index"},
    "annotation": {"id", "image_id", "timestamp", "comment", "rating"},
    "tag": {"id", "name"},
    "tagassociation": {"id", "annotation_id", "tag_id"},
    "option": {"id", "key", "value"},
}


def _unique_indexes(conn, table):
    out = set()
    for _, name, unique, *_ in conn.execute(f'PRAGMA index_list("{table}")'):
        if unique:
            out.add(tuple(r[2] for r in conn.execute(f'PRAGMA index_info("{name}")')))
    return out


def _new(tmp_path, name="p.cdb", planes=5):
    project = Project.create(tmp_path / name)
    if planes:
        project.add_volume_planes(tmp_path / "vol.ome.zarr", planes, width=64, height=48)
    return project


# ----------------------------------------------------------------------------- schema


def test_schema_matches_documented_v22(tmp_path):
    _new(tmp_path, planes=0).close()
    conn = sqlite3.connect(tmp_path / "p.cdb")
    have = {t: set(cols) for t, cols in cp_schema.table_columns(conn).items()}
    assert have == DOCUMENTED_V22
    assert {t: set(c) for t, c in cp_schema.TABLE_COLUMNS.items()} == DOCUMENTED_V22
    assert conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone() == ("22",)
    assert cp_schema.SCHEMA_VERSION == 22
    for table, cols in [
        ("meta", ("key",)),
        ("path", ("path",)),
        ("layer", ("name",)),
        ("image", ("filename", "path_id", "frame")),
        ("offset", ("image_id",)),
        ("markertype", ("name",)),
        ("marker", ("image_id", "track_id")),
        ("masktype", ("name",)),
        ("masktype", ("index",)),
        ("annotation", ("image_id",)),
        ("option", ("key",)),
        ("polygonpoint", ("polygon_id", "index")),
    ]:
        assert cols in _unique_indexes(conn, table), (table, cols)
    # as in ClickPoints 1.10's source (not unique there either; spimflow keeps them unique itself)
    assert ("image_id",) not in _unique_indexes(conn, "mask")
    assert ("name",) not in _unique_indexes(conn, "tag")
    for table in DOCUMENTED_V22:
        for fk in conn.execute(f'PRAGMA foreign_key_list("{table}")'):
            expected = "NO ACTION" if (table, fk[3]) == ("layer", "base_layer_id") else "CASCADE"
            assert fk[6] == expected, (table, fk)
    assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall() == [("no_empty_tracks",)]
    conn.close()
    with Project.open(tmp_path / "p.cdb", "r+") as project:
        assert project._db().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert project.version == 22 and project.writable


# ----------------------------------------------------------------------------- round trip


def _snapshot(p: Project) -> dict:
    return {
        "meta": p.get_meta(),
        "options": p.get_options(),
        "paths": p.get_paths(),
        "layers": p.get_layers(),
        "images": p.get_images(),
        "types": p.get_marker_types(),
        "markers": p.get_markers(),
        "tracks": p.get_tracks(),
        "lines": p.get_lines(),
        "rects": p.get_rectangles(),
        "ellipses": p.get_ellipses(),
        "polygons": p.get_polygons(),
        "mask_types": p.get_mask_types(),
        "masks": p.get_masks(),
        "annotations": p.get_annotations(),
        "tags": p.get_tags(),
        "offsets": p.get_offsets(),
        "frame": markers_to_frame(p),
    }


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], pd.DataFrame):
            left, right = a[key].copy(), b[key].copy()
            if "points" in left:
                for pa, pb in zip(left.pop("points"), right.pop("points"), strict=True):
                    np.testing.assert_array_equal(pa, pb)
            pd.testing.assert_frame_equal(left, right, obj=key)
        else:
            assert a[key] == b[key], key


def test_every_entity_round_trips(tmp_path):
    path = tmp_path / "p.cdb"
    when = datetime.datetime(2024, 5, 17, 10, 30, 5, 250000)
    with Project.create(path) as p:
        p.set_option("buffer_size", 300)
        planes = p.add_volume_planes(tmp_path / "raw" / "signal.ome.zarr", 4, width=32, height=16)
        other = p.add_volume_planes([tmp_path / "ch2" / f"z{i}.tif" for i in range(4)], layer="autofluo")
        assert list(planes) == [1, 2, 3, 4] and list(other) == [5, 6, 7, 8]
        extra = p.add_image(tmp_path / "overview.png", sort_index=10, timestamp=when, external_id=7)
        p.set_marker_type("cell", "#ff0000", style={"shape": "ring"}, text="cell $marker_id")
        p.set_marker_type("trace", (0, 255, 0), mode=Project.TYPE_TRACK, text="track $track_id")
        for name, mode in [("ruler", 2), ("box", 1), ("oval", 8), ("outline", 16)]:
            p.set_marker_type(name, mode=mode, hidden=name == "box")
        ids = p.set_markers(
            [1.5, 2.5, 3.5],
            [4.5, 5.5, 6.5],
            z=[0, 1, 3],
            type="cell",
            text=["a", None, "c"],
            style=[None, '{"scale": 2}', None],
            processed=[0, 1, 0],
        )
        track = p.add_track("trace", style='{"track-line-style": "dash"}')
        p.set_markers([10.5, 11.5, 12.5], [3.5, 3.5, 3.5], z=[0, 1, 2], track=track)
        p.set_lines([1, 2], [1, 2], [5, 6], [5, 6], z=[0, 1], type="ruler", text="$length px")
        p.set_rectangles(2.0, 3.0, 4.0, 5.0, image=planes[2], type="box")
        p.set_ellipses([8.0], [9.0], [3.0], [2.0], [30.0], z=3, type="oval")
        p.add_polygon([[1, 1], [5, 1], [5, 4]], z=1, type="outline", closed=False)
        p.set_mask_type("tissue", "#0000ff")
        p.set_mask_type("vessel", index=5)
        mask = np.zeros((16, 32), np.uint8)
        mask[2:5, 3:9] = 1
        mask[8:, 20:] = 5
        p.set_mask(mask, z=2)
        p.set_annotation(z=1, comment="folded section", rating=3, tags=["artefact", "check"], timestamp=when)
        p.set_annotation(image=extra, comment="overview")
        p.set_offset(0.25, -1.5, z=2)
        before = _snapshot(p)
    with Project.open(path, "r") as p:
        after = _snapshot(p)
        np.testing.assert_array_equal(p.get_mask(z=2), mask)
        assert p.get_mask(z=0) is None
        assert p.get_annotation(z=1)["tags"] == ["artefact", "check"]
    _assert_same(before, after)
    # spot checks of what was read back
    m = after["markers"]
    assert m["id"].tolist()[:3] == ids.tolist()
    assert m["x"].tolist() == [1.5, 2.5, 3.5, 10.5, 11.5, 12.5]
    assert m["z"].tolist() == [0, 1, 3, 0, 1, 2]
    assert m["text"].tolist()[:3] == ["a", None, "c"] and m["processed"].tolist()[:3] == [0, 1, 0]
    assert m["type"].tolist()[3:] == ["trace"] * 3 and m["track_id"].tolist()[3:] == [track] * 3
    assert after["types"].set_index("name").loc["trace", "color"] == "#00FF00"
    assert after["types"].set_index("name").loc["cell", "style"] == '{"shape": "ring"}'
    assert after["tracks"].iloc[0][["n_markers", "first_z", "last_z"]].tolist() == [3, 0, 2]
    assert after["images"].set_index("id").loc[extra, "timestamp"] == when
    assert after["images"]["ext"].tolist() == [".zarr"] * 4 + [".png"] + [".tif"] * 4
    assert after["images"]["sort_index"].tolist() == [0, 1, 2, 3, 10, 0, 1, 2, 3]
    assert after["images"]["frame"].tolist() == [0, 1, 2, 3, 0, 0, 1, 2, 3]
    assert after["layers"]["name"].tolist() == ["default", "autofluo"]
    assert after["ellipses"]["angle"].tolist() == [30.0]
    np.testing.assert_array_equal(after["polygons"]["points"][0], [[1, 1], [5, 1], [5, 4]])
    assert after["mask_types"]["index"].tolist() == [1, 5]
    assert after["options"] == {"buffer_size": "300"}
    assert after["offsets"][["z", "x", "y"]].values.tolist() == [[2, 0.25, -1.5]]


def test_writes_leave_other_entities_alone(tmp_path):
    with _new(tmp_path) as p:
        p.set_marker_type("a")
        p.set_marker_type("b")
        p.set_markers([1, 2], [1, 2], z=0, type="a")
        p.set_markers([3, 4], [3, 4], z=1, type="b")
        p.set_lines(0, 0, 1, 1, z=0, type="a")
        p.set_annotation(z=0, comment="keep me")
        assert p.remove_markers(type="a") == 2
        p.set_marker_type("b", color="#123456")  # update: mode/style/text untouched
        assert p.get_markers()["type"].tolist() == ["b", "b"]
        assert len(p.get_lines()) == 1 and p.get_annotation(z=0)["comment"] == "keep me"
        assert p.get_marker_type("b")["mode"] == 0
        with pytest.raises(AnnotationError, match="needs a filter"):
            p.remove_markers()


def test_bulk_write_is_all_or_nothing(tmp_path):
    with _new(tmp_path) as p:
        p.set_marker_type("cell")
        p.set_marker_type("trace", mode=4)
        track = p.add_track("trace")
        with pytest.raises(AnnotationError, match="no marker type named 'nope'"):
            p.set_markers([1, 2, 3], [1, 2, 3], z=0, type=["cell", "cell", "nope"])
        with pytest.raises(AnnotationError, match="one marker per image|UNIQUE"):  # a track holds one per image
            p.set_markers([1, 2, 3], [1, 2, 3], z=[0, 1, 1], track=track)
        with pytest.raises(AnnotationError, match="no image .* z = 9"):
            p.set_markers([1, 2], [1, 2], z=[0, 9], type="cell")
        assert p.count_markers() == 0
        assert p.integrity_check() == []


def test_tracks_split_merge_and_trim(tmp_path):
    with _new(tmp_path, planes=6) as p:
        p.set_marker_type("trace", mode=Project.TYPE_TRACK, text="T$track_id")
        p.set_marker_type("cell")
        with pytest.raises(AnnotationError, match="not track mode"):
            p.add_track("cell")
        t1 = p.add_track("trace", text="first")
        p.set_markers(np.arange(6) + 0.5, np.ones(6), z=np.arange(6), track=t1)
        t2 = p.split_track(t1, 2)
        tracks = p.get_tracks().set_index("id")
        assert tracks.loc[t1, ["n_markers", "first_z", "last_z"]].tolist() == [3, 0, 2]
        assert tracks.loc[t2, ["n_markers", "first_z", "last_z", "text"]].tolist() == [3, 3, 5, "first"]
        assert p.split_track(t1, 5) is None
        assert p.merge_tracks(t1, t2) == 3
        assert p.get_tracks()["id"].tolist() == [t1]
        t3 = p.add_track("trace")
        p.set_marker(0.5, 0.5, z=4, track=t3)
        with pytest.raises(AnnotationError, match="both have markers"):
            p.merge_tracks(t1, t3)
        assert p.remove_track_markers_after(t1, 3) == 2
        assert p.get_markers(track=t1)["z"].tolist() == [0, 1, 2, 3]
        # ClickPoints' trigger: a track goes with its last marker
        p.remove_markers(track=t3)
        assert t3 not in p.get_tracks()["id"].tolist()
        p.remove_tracks(t1)
        assert p.count_markers() == 0


def test_modes_r_and_w(tmp_path):
    path = tmp_path / "p.cdb"
    with pytest.raises(NotAProjectError, match="no such"):
        Project.open(path, "r")
    with Project.open(path, "r+") as p:  # r+ creates, as ClickPoints does
        p.set_marker_type("cell")
    with pytest.raises(AnnotationError, match="already exists"):
        Project.create(path)
    with Project.open(path, "r") as p:
        assert not p.writable
        with pytest.raises(ReadOnlyProjectError, match="mode='r'"):
            p.set_marker_type("other")
    with Project.open(path, "w") as p:
        assert p.get_marker_types().empty
    assert sorted(os.listdir(tmp_path)) == ["p.cdb"]  # no temporary or journal left behind


# ----------------------------------------------------------------------------- a file as ClickPoints lays it out

# The tables as ClickPoints 1.10 (peewee) creates them, written out by hand for this test.
CLICKPOINTS_DDL = """
CREATE TABLE "meta" ("id" INTEGER NOT NULL PRIMARY KEY, "key" VARCHAR(255) NOT NULL, "value" VARCHAR(255) NOT NULL);
CREATE UNIQUE INDEX "meta_key" ON "meta" ("key");
CREATE TABLE "option" ("id" INTEGER NOT NULL PRIMARY KEY, "key" VARCHAR(255) NOT NULL, "value" VARCHAR(255));
CREATE UNIQUE INDEX "option_key" ON "option" ("key");
CREATE TABLE "path" ("id" INTEGER NOT NULL PRIMARY KEY, "path" VARCHAR(255) NOT NULL);
CREATE UNIQUE INDEX "path_path" ON "path" ("path");
CREATE TABLE "layer" ("id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(255) NOT NULL,
    "base_layer_id" INTEGER NOT NULL, FOREIGN KEY ("base_layer_id") REFERENCES "layer" ("id"));
CREATE UNIQUE INDEX "layer_name" ON "layer" ("name");
CREATE TABLE "image" ("id" INTEGER NOT NULL PRIMARY KEY, "filename" VARCHAR(255) NOT NULL,
    "ext" VARCHAR(10) NOT NULL, "frame" INTEGER NOT NULL, "external_id" INTEGER, "timestamp" DATETIME,
    "sort_index" INTEGER NOT NULL, "width" INTEGER, "height" INTEGER, "path_id" INTEGER NOT NULL,
    "layer_id" INTEGER NOT NULL,
    FOREIGN KEY ("path_id") REFERENCES "path" ("id") ON DELETE CASCADE,
    FOREIGN KEY ("layer_id") REFERENCES "layer" ("id") ON DELETE CASCADE);
CREATE UNIQUE INDEX "image_filename_path_id_frame" ON "image" ("filename", "path_id", "frame");
CREATE TABLE "offset" ("id" INTEGER NOT NULL PRIMARY KEY, "image_id" INTEGER NOT NULL, "x" REAL NOT NULL,
    "y" REAL NOT NULL, FOREIGN KEY ("image_id") REFERENCES "image" ("id") ON DELETE CASCADE);
CREATE UNIQUE INDEX "offset_image_id" ON "offset" ("image_id");
CREATE TABLE "markertype" ("id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(255) NOT NULL,
    "color" VARCHAR(255) NOT NULL, "mode" INTEGER NOT NULL, "style" VARCHAR(255), "text" VARCHAR(255),
    "hidden" INTEGER NOT NULL);
CREATE UNIQUE INDEX "markertype_name" ON "markertype" ("name");
CREATE TABLE "track" ("id" INTEGER NOT NULL PRIMARY KEY, "style" VARCHAR(255), "text" VARCHAR(255),
    "type_id" INTEGER NOT NULL, "hidden" INTEGER NOT NULL,
    FOREIGN KEY ("type_id") REFERENCES "markertype" ("id") ON DELETE CASCADE);
CREATE TABLE "marker" ("id" INTEGER NOT NULL PRIMARY KEY, "image_id" INTEGER NOT NULL, "x" REAL NOT NULL,
    "y" REAL NOT NULL, "type_id" INTEGER, "processed" INTEGER NOT NULL, "track_id" INTEGER,
    "style" VARCHAR(255), "text" VARCHAR(255),
    FOREIGN KEY ("image_id") REFERENCES "image" ("id") ON DELETE CASCADE,
    FOREIGN KEY ("type_id") REFERENCES "markertype" ("id") ON DELETE CASCADE,
    FOREIGN KEY ("track_id") REFERENCES "track" ("id") ON DELETE CASCADE);
CREATE UNIQUE INDEX "marker_image_id_track_id" ON "marker" ("image_id", "track_id");
CREATE TABLE "line" ("id" INTEGER NOT NULL PRIMARY KEY, "image_id" INTEGER NOT NULL, "x1" REAL NOT NULL,
    "y1" REAL NOT NULL, "x2" REAL NOT NULL, "y2" REAL NOT NULL, "type_id" INTEGER, "processed" INTEGER NOT NULL,
    "style" VARCHAR(255), "text" VARCHAR(255),
    FOREIGN KEY ("image_id") REFERENCES "image" ("id") ON DELETE CASCADE,
    FOREIGN KEY ("type_id") REFERENCES "markertype" ("id") ON DELETE CASCADE);
CREATE TABLE "rectangle" ("id" INTEGER NOT NULL PRIMARY KEY, "image_id" INTEGER NOT NULL, "x" REAL NOT NULL,
    "y" REAL NOT NULL, "width" REAL NOT NULL, "height" REAL NOT NULL, "type_id" INTEGER,
    "processed" INTEGER NOT NULL, "style" VARCHAR(255), "text" VARCHAR(255),
    FOREIGN KEY ("image_id") REFERENCES "image" ("id") ON DELETE CASCADE,
    FOREIGN KEY ("type_id") REFERENCES "markertype" ("id") ON DELETE CASCADE);
CREATE TABLE ellipse (id INTEGER NOT NULL PRIMARY KEY, image_id INTEGER NOT NULL, x REAL NOT NULL,
    y REAL NOT NULL, width REAL NOT NULL, height REAL NOT NULL, angle REAL NOT NULL, type_id INTEGER,
    processed INTEGER NOT NULL, style VARCHAR (255), text VARCHAR (255),
    FOREIGN KEY (image_id) REFERENCES image (id) ON DELETE CASCADE,
    FOREIGN KEY (type_id) REFERENCES markertype (id) ON DELETE CASCADE);
CREATE TABLE polygon (id INTEGER NOT NULL PRIMARY KEY, image_id INTEGER NOT NULL, type_id INTEGER,
    closed INTEGER NOT NULL, processed INTEGER NOT NULL, style VARCHAR (255), text VARCHAR (255),
    FOREIGN KEY (image_id) REFERENCES image (id) ON DELETE CASCADE,
    FOREIGN KEY (type_id) REFERENCES markertype (id) ON DELETE CASCADE);
CREATE TABLE polygonpoint (id INTEGER NOT NULL PRIMARY KEY, polygon_id INTEGER NOT NULL, x REAL NOT NULL,
    y REAL NOT NULL, [index] INTEGER NOT NULL, FOREIGN KEY (polygon_id) REFERENCES polygon (id) ON DELETE CASCADE);
CREATE UNIQUE INDEX polygonpoint_polygon_id_index ON polygonpoint (polygon_id, "index");
CREATE TABLE "mask" ("id" INTEGER NOT NULL PRIMARY KEY, "image_id" INTEGER NOT NULL, "data" BLOB NOT NULL,
    FOREIGN KEY ("image_id") REFERENCES "image" ("id") ON DELETE CASCADE);
CREATE TABLE "masktype" ("id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(255) NOT NULL,
    "color" VARCHAR(255) NOT NULL, "index" INTEGER NOT NULL);
CREATE UNIQUE INDEX "masktype_name" ON "masktype" ("name");
CREATE UNIQUE INDEX "masktype_index" ON "masktype" ("index");
CREATE TABLE "annotation" ("id" INTEGER NOT NULL PRIMARY KEY, "image_id" INTEGER NOT NULL, "timestamp" DATETIME,
    "comment" TEXT NOT NULL, "rating" INTEGER NOT NULL,
    FOREIGN KEY ("image_id") REFERENCES "image" ("id") ON DELETE CASCADE);
CREATE UNIQUE INDEX "annotation_image_id" ON "annotation" ("image_id");
CREATE TABLE "tag" ("id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(255) NOT NULL);
CREATE TABLE "tagassociation" ("id" INTEGER NOT NULL PRIMARY KEY, "annotation_id" INTEGER NOT NULL,
    "tag_id" INTEGER NOT NULL,
    FOREIGN KEY ("annotation_id") REFERENCES "annotation" ("id") ON DELETE CASCADE,
    FOREIGN KEY ("tag_id") REFERENCES "tag" ("id") ON DELETE CASCADE);
CREATE TRIGGER no_empty_tracks AFTER DELETE ON marker BEGIN
    DELETE FROM track WHERE id = OLD.track_id AND
    (SELECT COUNT(marker.id) FROM marker WHERE marker.track_id = track.id) = 0; END;
"""


def _bool_mask_blob(mask: np.ndarray) -> bytes:
    """A 0/1 mask in ClickPoints' BOOL encoding (what ClickPoints writes when the maximum is 1)."""
    packed = zlib.compress(np.packbits(mask.ravel() > 0).tobytes())
    return (
        b"BOOL"
        + struct.pack(">LL", *mask.shape)
        + bytes([0])
        + b"VALS"
        + bytes([1])
        + struct.pack(">Q", len(packed))
        + packed
    )


def _clickpoints_file(path, version="22"):
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(CLICKPOINTS_DDL)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN")
    conn.execute("INSERT INTO meta (key, value) VALUES ('version', ?)", (version,))
    conn.execute("INSERT INTO path (id, path) VALUES (1, '.')")
    conn.execute("INSERT INTO layer (id, name, base_layer_id) VALUES (1, 'default', 1)")
    conn.executemany(
        "INSERT INTO image (id, filename, ext, frame, external_id, timestamp, sort_index, width, height, "
        "path_id, layer_id) VALUES (?, 'stack.tif', '.tif', ?, NULL, ?, ?, 20, 10, 1, 1)",
        [(i + 1, i, f"2023-01-0{i + 1} 12:00:00", i) for i in range(4)],
    )
    conn.execute(
        "INSERT INTO markertype (id, name, color, mode, style, text, hidden) "
        "VALUES (1, 'cell', '#FF0000', 0, NULL, NULL, 0)"
    )
    conn.execute(
        "INSERT INTO markertype (id, name, color, mode, style, text, hidden) "
        "VALUES (2, 'trace', '#00FF00', 4, '{\"track-line-style\": \"dash\"}', 'T$track_id', 0)"
    )
    conn.execute("INSERT INTO track (id, style, text, type_id, hidden) VALUES (1, NULL, NULL, 2, 0)")
    conn.executemany(
        "INSERT INTO marker (image_id, x, y, type_id, processed, track_id, style, text) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (1, 5.5, 3.5, 1, 0, None, None, None),
            (1, 7.5, 2.5, 1, 1, None, None, "checked"),
            (3, 10.0, 4.0, 1, 0, None, '{"color": "#0000FF"}', None),
            (1, 2.5, 2.5, 2, 0, 1, None, None),
            (2, 3.5, 2.5, 2, 0, 1, None, None),
            (3, 4.5, 2.5, 2, 0, 1, None, None),
        ],
    )
    conn.execute("INSERT INTO offset (image_id, x, y) VALUES (2, 1.0, -2.0)")
    mask = np.zeros((10, 20), np.uint8)
    mask[2:6, 4:15] = 1
    conn.execute("INSERT INTO masktype (name, color, \"index\") VALUES ('tissue', '#FFFFFF', 1)")
    conn.execute("INSERT INTO mask (image_id, data) VALUES (3, ?)", (_bool_mask_blob(mask),))
    conn.execute("INSERT INTO option (key, value) VALUES ('buffer_size', '300')")
    conn.execute("COMMIT")
    conn.close()
    return mask


def test_reads_a_file_laid_out_by_clickpoints(tmp_path):
    path = tmp_path / "clickpoints.cdb"
    mask = _clickpoints_file(path)
    with Project.open(path, "r") as p:
        images = p.get_images()
        assert images["sort_index"].tolist() == [0, 1, 2, 3] and images["frame"].tolist() == [0, 1, 2, 3]
        assert images["timestamp"][0] == datetime.datetime(2023, 1, 1, 12)
        types = p.get_marker_types()
        assert types["name"].tolist() == ["cell", "trace"] and types["mode"].tolist() == [0, 4]
        m = p.get_markers()
        assert len(m) == 6
        assert m["x"].tolist() == [5.5, 7.5, 10.0, 2.5, 3.5, 4.5]
        assert m["z"].tolist() == [0, 0, 2, 0, 1, 2]
        assert m["type"].tolist() == ["cell"] * 3 + ["trace"] * 3
        assert m["text"].tolist()[1] == "checked" and m["processed"].tolist()[1] == 1
        assert m["track_id"].tolist() == [pd.NA] * 3 + [1, 1, 1]
        tracks = p.get_tracks()
        assert tracks[["id", "n_markers", "first_z", "last_z"]].values.tolist() == [[1, 3, 0, 2]]
        frame = markers_to_frame(p)
        assert frame["x"].tolist() == [5.0, 7.0, 9.5, 2.0, 3.0, 4.0]
        assert frame["y"].tolist() == [3.0, 2.0, 3.5, 2.0, 2.0, 2.0]
        shifted = markers_to_frame(p, apply_offset=True)
        assert shifted["x"].tolist()[4] == 4.0 and shifted["y"].tolist()[4] == 0.0
        np.testing.assert_array_equal(p.get_mask(z=2), mask)
        assert p.get_options() == {"buffer_size": "300"}
        assert p.get_lines().empty and p.get_polygons().empty
    # and spimflow can add to it without disturbing what is there
    with Project.open(path, "r+") as p:
        assert p.writable
        p.set_markers([1.5], [1.5], z=3, type="cell")
        t = p.get_tracks()
        assert t["n_markers"].tolist() == [3]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT COUNT(*) FROM marker").fetchone() == (7,)
    conn.close()


# ----------------------------------------------------------------------------- other versions, not projects


@pytest.mark.parametrize("version", ["21", "23"])
def test_other_schema_version_opens_read_only_unchanged(tmp_path, version):
    path = tmp_path / f"v{version}.cdb"
    _clickpoints_file(path, version=version)
    before = path.read_bytes()
    for mode in ("r", "r+"):
        with Project.open(path, mode) as p:
            assert not p.writable and p.version == int(version)
            assert f"schema version {version}" in p.read_only_reason
            assert len(p.get_markers()) == 6  # reading works
            with pytest.raises(ReadOnlyProjectError) as err:
                p.set_markers([1.0], [1.0], z=0, type="cell")
            assert str(path) in str(err.value) and f"version {version}" in str(err.value)
            assert "not been modified" in str(err.value)
            with pytest.raises(ReadOnlyProjectError):
                p.set_marker_type("new")
    assert path.read_bytes() == before
    with Project.open(path, "r+") as p, pytest.raises(ReadOnlyProjectError), p.transaction():
        pass
    assert path.read_bytes() == before


def test_files_that_are_no_project(tmp_path):
    junk = tmp_path / "junk.cdb"
    junk.write_bytes(np.random.default_rng(1).bytes(4096))
    other = tmp_path / "other.cdb"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE cells (x, y)")
    conn.commit()
    conn.close()
    no_version = tmp_path / "noversion.cdb"
    conn = sqlite3.connect(no_version)
    conn.execute("CREATE TABLE meta (id INTEGER PRIMARY KEY, key, value)")
    conn.commit()
    conn.close()
    for path, message in [
        (junk, "not an SQLite database"),
        (other, "no 'meta' table"),
        (no_version, "no 'version' row"),
        (tmp_path, "is a directory"),
    ]:
        before = path.read_bytes() if path.is_file() else None
        for mode in ("r", "r+"):
            with pytest.raises(NotAProjectError, match=message) as err:
                Project.open(path, mode)
            assert str(path) in str(err.value)
            assert isinstance(err.value, SpimflowError)
        if before is not None:
            assert path.read_bytes() == before


# ----------------------------------------------------------------------------- processes

WRITER = textwrap.dedent("""
    import sys, time, pathlib
    import numpy as np
    from spimflow.annotate import Project
    path, label, go = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
    with Project.open(path, "r+") as p:
        print("ready", flush=True)
        while not go.exists():
            time.sleep(0.005)
        for batch in range(20):
            p.set_markers(np.arange(500) % 60 + 0.5, np.full(500, batch + 0.5), z=batch % 5, type="cell", text=label)
            time.sleep(0.002)
    print("done", flush=True)
""")


def test_two_processes_write_at_once(tmp_path):
    path = tmp_path / "shared.cdb"
    with _new(tmp_path, "shared.cdb") as p:
        p.set_marker_type("cell")
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), label, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for label in ("A", "B")
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"
        go.touch()
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    with Project.open(path) as p:
        m = p.get_markers()
        assert p.integrity_check() == []
    assert m["text"].value_counts().to_dict() == {"A": 10_000, "B": 10_000}
    assert m["id"].is_unique


KILLED = textwrap.dedent("""
    import sys, time
    import numpy as np
    from spimflow.annotate import Project
    p = Project.open(sys.argv[1], "r+")
    n = 200_000
    def progress(done, total):
        if done < total:
            # inside the open transaction: this process sees its own uncommitted rows
            print("chunk", done, p.count_markers(), flush=True)
            time.sleep(120)
    p.set_markers(np.arange(n) % 60 + 0.5, np.full(n, 1.5), z=np.arange(n) % 5, type="cell",
                  chunk_size=20_000, progress=progress)
    print("committed", flush=True)
""")


def test_writer_killed_mid_transaction_leaves_all_or_nothing(tmp_path):
    path = tmp_path / "killed.cdb"
    with _new(tmp_path, "killed.cdb") as p:
        p.set_marker_type("cell")
        p.set_markers(np.arange(1000) % 60 + 0.5, np.full(1000, 0.5), z=0, type="cell")
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline().split()
        assert line == ["chunk", "20000", str(1000 + 20_000)], (line, proc.stderr.read() if proc.poll() else "")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    with Project.open(path, "r") as p:
        assert p.count_markers() == 1000  # none of the killed batch
        assert p.integrity_check() == []
    start = time.monotonic()
    with Project.open(path, "r+", timeout=5) as p:  # the dead writer's lock is gone
        p.set_markers([1.5], [1.5], z=1, type="cell")
        assert p.count_markers() == 1001
    assert time.monotonic() - start < 5


def test_layers_updates_and_cascades(tmp_path):
    with _new(tmp_path, planes=4) as p:
        p.add_volume_planes(tmp_path / "ch2.ome.zarr", 4, layer="ch2")
        p.set_marker_type("a")
        p.set_marker_type("t", mode=Project.TYPE_TRACK)
        ids = p.set_markers([1, 2, 3], [1, 2, 3], z=[0, 1, 2], type="a", layer="ch2")
        assert p.get_markers(z=1).empty and p.get_markers(z=1, layer="ch2")["id"].tolist() == [ids[1]]
        assert p.update_markers(ids[:2], x=[9, 8], text="moved") == 2
        assert p.get_markers()[["x", "text"]].values.tolist() == [[9, "moved"], [8, "moved"], [3, None]]
        track = p.add_track("t")
        p.set_marker(0.5, 0.5, z=3, track=track)
        assert p.get_tracks(type="t")["n_markers"].tolist() == [1]
        assert p.remove_marker_type("t") == 1  # takes its tracks and markers along (ON DELETE CASCADE)
        assert p.get_tracks().empty and p.count_markers() == 3
        with pytest.raises(AnnotationError, match=r"mask shape \(4, 4\) does not match"):
            p.set_mask(np.zeros((4, 4), np.uint8), z=0)
        p.set_annotation(z=0, comment="c", tags=["x"])
        p.set_annotation(z=0, rating=2)  # other fields and tags stay
        assert {k: v for k, v in p.get_annotation(z=0).items() if k in ("comment", "rating", "tags")} == {
            "comment": "c",
            "rating": 2,
            "tags": ["x"],
        }
        np.testing.assert_array_equal(p.image_ids([0, 7], strict=False), [1, -1])
        assert p.integrity_check() == []
