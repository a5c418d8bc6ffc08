"""spimflow.annotate: the +0.5 pixel convention, SmartText, masks, Cell Counter XML and point files."""

import os
import sqlite3

import numpy as np
import pandas as pd
import pytest

from spimflow.annotate import (
    CLICKPOINTS_PIXEL_OFFSET,
    AnnotationError,
    Project,
    clickpoints_to_voxel,
    format_cellcounter,
    frame_to_markers,
    markers_to_frame,
    parse_cellcounter,
    read_cellcounter,
    read_points,
    render_text,
    resolve_text,
    voxel_to_clickpoints,
    write_cellcounter,
    write_points,
)
from spimflow.annotate.masks import decode_mask, encode_mask

# ----------------------------------------------------------------------------- the +0.5


def test_pixel_offset_helpers():
    assert CLICKPOINTS_PIXEL_OFFSET == 0.5
    np.testing.assert_array_equal(voxel_to_clickpoints([0, 10, 2.25]), [0.5, 10.5, 2.75])
    np.testing.assert_array_equal(clickpoints_to_voxel([0.5, 10.5, 2.75]), [0, 10, 2.25])
    x = np.random.default_rng(0).uniform(0, 1000, 100)
    np.testing.assert_array_equal(clickpoints_to_voxel(voxel_to_clickpoints(x)), x)


def test_offset_applied_on_the_way_in_and_out(tmp_path):
    path = tmp_path / "p.cdb"
    with Project.create(path) as p:
        p.add_volume_planes(tmp_path / "vol.zarr", 3)
        frame_to_markers(p, pd.DataFrame({"z": [0, 2], "y": [4.0, 7.25], "x": [10.0, 0.0], "type": ["cell", "glia"]}))
    conn = sqlite3.connect(path)
    stored = conn.execute(
        "SELECT m.x, m.y, i.sort_index, t.name FROM marker m JOIN image i ON i.id = m.image_id "
        "JOIN markertype t ON t.id = m.type_id ORDER BY m.id"
    ).fetchall()
    assert stored == [(10.5, 4.5, 0, "cell"), (0.5, 7.75, 2, "glia")]
    # a marker ClickPoints put at the centre of pixel (x=3, y=1) on plane 1
    conn.execute("INSERT INTO marker (image_id, x, y, type_id, processed) VALUES (2, 3.5, 1.5, 1, 0)")
    conn.commit()
    conn.close()
    with Project.open(path) as p:
        frame = markers_to_frame(p)
    assert list(frame.columns) == ["z", "y", "x", "type", "marker_id", "track_id", "text", "processed", "style"]
    assert frame[["z", "y", "x"]].values.tolist() == [[0, 4.0, 10.0], [2, 7.25, 0.0], [1, 1.0, 3.0]]
    assert frame["type"].tolist() == ["cell", "glia", "cell"]


def test_frame_round_trips_through_a_project(tmp_path):
    rng = np.random.default_rng(3)
    n = 500
    frame = pd.DataFrame(
        {
            "z": rng.integers(0, 8, n),
            "y": rng.uniform(0, 50, n),
            "x": rng.uniform(0, 60, n),
            "type": rng.choice(["neuron", "glia"], n),
            "text": rng.choice(["a", "b"], n),
        }
    )
    with Project.create(tmp_path / "p.cdb") as p:
        p.add_volume_planes(tmp_path / "vol.zarr", 8)
        ids = frame_to_markers(p, frame)
        back = markers_to_frame(p)
    assert back["marker_id"].tolist() == ids.tolist()
    np.testing.assert_array_equal(back["z"], frame["z"])
    # +0.5 then -0.5 in float64: equal to within one unit in the last place
    np.testing.assert_allclose(back["x"], frame["x"], rtol=0, atol=1e-13)
    np.testing.assert_allclose(back["y"], frame["y"], rtol=0, atol=1e-13)
    assert back["type"].tolist() == frame["type"].tolist() and back["text"].tolist() == frame["text"].tolist()
    with Project.create(tmp_path / "q.cdb") as p, pytest.raises(AnnotationError, match="add the planes first"):
        frame_to_markers(p, frame)


# ----------------------------------------------------------------------------- SmartText


def test_render_text():
    marker = {"id": 12, "x": 3.14159, "y": 2.0, "track_id": 7, "type_id": 2, "image_id": 5}
    assert render_text("ID_$marker_id", marker=marker) == "ID_12"
    assert render_text("T$track_id of $type_name", marker=marker, type={"id": 2, "name": "cell"}) == "T7 of cell"
    assert render_text("$x_pos | $y_pos\\n$x,$y", marker=marker) == "3.14 | 2.00\n3.14,2.00"
    assert render_text("track $track_id", track={"id": 3}) == "track 3"
    assert render_text("$type_id@$image_id", marker=marker) == "2@5"
    assert render_text("$marker_id $track_id", marker={"x": 1}) == "?? ??"
    line = {"id": 1, "x1": 0, "y1": 0, "x2": 3, "y2": 4}
    assert render_text("$length px from $x", marker=line) == "5.00 px from 0.00"
    assert render_text("$width x $height = $area", marker={"width": 2, "height": 3}) == "2.00 x 3.00 = 6.00"
    assert render_text("$area", marker={"width": 2, "height": 2, "angle": 0}) == f"{np.pi:.2f}"
    assert render_text("$unknown and $$ stay", marker=marker) == "$unknown and $$ stay"
    assert render_text(None) == ""
    assert render_text("$marker_id", marker=pd.Series({"id": 4})) == "4"
    assert resolve_text(None, "track text", "type text") == "track text"
    assert resolve_text(float("nan"), None, "type text") == "type text"
    assert resolve_text("own", "track", "type") == "own"
    assert resolve_text(None) is None


# ----------------------------------------------------------------------------- masks


def test_mask_codec():
    mask = np.zeros((7, 13), np.uint8)
    mask[1:3, 2:9] = 3
    mask[5, :] = 200
    blob = encode_mask(mask)
    assert blob.startswith(b"\x89PNG")
    np.testing.assert_array_equal(decode_mask(blob), mask)
    np.testing.assert_array_equal(decode_mask(encode_mask(mask > 0)), mask > 0)
    with pytest.raises(AnnotationError, match="2D"):
        encode_mask(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(AnnotationError, match="0..255"):
        encode_mask(np.full((2, 2), 300))
    with pytest.raises(AnnotationError, match="neither PNG"):
        decode_mask(b"GIF89a....")


# ----------------------------------------------------------------------------- Cell Counter XML

# as Fiji's Cell Counter writes it (CRLF, 1-based MarkerZ); the second counter has no markers,
# the third no <Name> (older files)
FIJI_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\r\n<CellCounter_Marker_File>\r\n <Image_Properties>\r\n'
    "     <Image_Filename>brain_488.tif</Image_Filename>\r\n </Image_Properties>\r\n <Marker_Data>\r\n"
    "     <Current_Type>1</Current_Type>\r\n"
    "     <Marker_Type>\r\n         <Type>1</Type>\r\n         <Name>neuron</Name>\r\n"
    "         <Marker>\r\n             <MarkerX>120</MarkerX>\r\n             <MarkerY>45</MarkerY>\r\n"
    "             <MarkerZ>1</MarkerZ>\r\n         </Marker>\r\n"
    "         <Marker>\r\n             <MarkerX>7</MarkerX>\r\n             <MarkerY>300</MarkerY>\r\n"
    "             <MarkerZ>12</MarkerZ>\r\n         </Marker>\r\n     </Marker_Type>\r\n"
    "     <Marker_Type>\r\n         <Type>2</Type>\r\n         <Name>glia &amp; co</Name>\r\n     </Marker_Type>\r\n"
    "     <Marker_Type>\r\n         <Type>4</Type>\r\n"
    "         <Marker>\r\n             <MarkerX>1</MarkerX>\r\n             <MarkerY>2</MarkerY>\r\n"
    "             <MarkerZ>3</MarkerZ>\r\n         </Marker>\r\n     </Marker_Type>\r\n"
    " </Marker_Data>\r\n</CellCounter_Marker_File>\r\n"
)


def test_cellcounter_reads_fiji_xml(tmp_path):
    path = tmp_path / "CellCounter_brain.xml"
    path.write_bytes(FIJI_XML.encode())
    frame = read_cellcounter(path)
    assert frame[["z", "y", "x"]].values.tolist() == [[0, 45, 120], [11, 300, 7], [2, 2, 1]]
    assert frame["type"].tolist() == ["neuron", "neuron", "Type 4"]
    assert frame["counter"].tolist() == [1, 1, 4]
    assert frame.attrs["image_filename"] == "brain_488.tif"
    assert frame.attrs["cellcounter_types"] == [[1, "neuron"], [2, "glia & co"], [4, "Type 4"]]
    zero_based = parse_cellcounter(FIJI_XML, z_base=0)
    assert zero_based["z"].tolist() == [1, 12, 3]


def test_cellcounter_round_trip(tmp_path):
    original = read_cellcounter(_write(tmp_path / "a.xml", FIJI_XML))
    write_cellcounter(original, tmp_path / "b.xml")
    again = read_cellcounter(tmp_path / "b.xml")
    pd.testing.assert_frame_equal(again, original)
    assert again.attrs == original.attrs  # empty counter 2 and the file name survive
    # from a plain table: names kept, "Type N" keeps N, others get free numbers; x, y, z rounded
    table = pd.DataFrame({"z": [0, 1.2, 2], "y": [5.4, 6.6, 7], "x": [1, 2, 3.5], "type": ["Type 3", "neuron", "glia"]})
    text = format_cellcounter(table, image_filename="stack.tif")
    back = parse_cellcounter(text)
    # grouped by counter; x 3.5 -> 4 (half to even), y 6.6 -> 7, z 1.2 -> 1
    assert back[["z", "y", "x"]].values.tolist() == [[1, 7, 2], [2, 7, 4], [0, 5, 1]]
    assert dict(zip(back["type"], back["counter"], strict=True)) == {"Type 3": 3, "neuron": 1, "glia": 2}
    assert "<MarkerZ>1</MarkerZ>" in text and "<Image_Filename>stack.tif</Image_Filename>" in text
    ints = parse_cellcounter(format_cellcounter(pd.DataFrame({"z": [0], "y": [1], "x": [2], "type": [5]})))
    assert ints["type"].tolist() == ["Type 5"] and ints["counter"].tolist() == [5]


def test_cellcounter_errors(tmp_path):
    with pytest.raises(AnnotationError, match="not well-formed"):
        parse_cellcounter("<CellCounter_Marker_File>", source="x.xml")
    with pytest.raises(AnnotationError, match="not a Cell Counter marker file"):
        parse_cellcounter("<svg/>")
    with pytest.raises(AnnotationError, match="z_base=0"):
        parse_cellcounter(FIJI_XML.replace("<MarkerZ>1</MarkerZ>", "<MarkerZ>0</MarkerZ>"))
    with pytest.raises(AnnotationError, match="MarkerX is not a number"):
        parse_cellcounter(FIJI_XML.replace("<MarkerX>7</MarkerX>", "<MarkerX>seven</MarkerX>"))
    with pytest.raises(AnnotationError, match="non-negative"):
        format_cellcounter(pd.DataFrame({"z": [-1], "y": [0], "x": [0]}))


def _write(path, text):
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- point files


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".xml", ".cdb"])
def test_points_round_trip(tmp_path, suffix):
    frame = pd.DataFrame(
        {
            "z": [0, 3, 3, 7],
            "y": [1.0, 2.0, 30.0, 4.0],
            "x": [5.0, 6.0, 7.0, 80.0],
            "type": ["neuron", "glia", "neuron", "neuron"],
        }
    )
    path = tmp_path / f"points{suffix}"
    assert write_points(frame, path) == path
    back = read_points(path)
    if suffix == ".xml":  # Cell Counter groups markers by counter
        back = back.sort_values(["z", "y"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(back[["z", "y", "x"]].astype(float), frame[["z", "y", "x"]].astype(float))
    assert back["type"].tolist() == frame["type"].tolist()
    assert sorted(os.listdir(tmp_path)) == [path.name]  # no temporary sibling or journal left
    if suffix == ".cdb":
        with pytest.raises(AnnotationError, match="already exists"):
            write_points(frame, path)
        write_points(frame.iloc[:2], path, overwrite=True, volume="signal.ome.zarr")
        assert len(read_points(path)) == 2
        with Project.open(path) as p:
            assert set(p.get_images()["filename"]) == {"signal.ome.zarr"}


def test_points_errors(tmp_path):
    frame = pd.DataFrame({"z": [0], "y": [1.0], "x": [2.0]})
    with pytest.raises(AnnotationError, match="unknown point file type '.txt'"):
        write_points(frame, tmp_path / "p.txt")
    with pytest.raises(AnnotationError, match="lacks column"):
        write_points(frame.drop(columns="y"), tmp_path / "p.csv")
    pd.DataFrame({"a": [1]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(AnnotationError, match=r"bad\.csv.*lacks column"):
        read_points(tmp_path / "bad.csv")
    with pytest.raises(AnnotationError, match="no such point file"):
        read_points(tmp_path / "missing.parquet")
