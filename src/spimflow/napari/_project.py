"""A ClickPoints project (``.cdb``) → napari layer data, in spimflow's voxel convention.

* every marker type of point mode (0) → a **Points** layer named after the type (also when
  it has no markers; markers in a track are in the Tracks layer instead), coloured like the
  type, with the features ``marker_id``, ``cell_id`` (the detection id the style carries,
  -1 for none), ``text`` and ``processed``; these are the layers the writer
  (:mod:`spimflow.napari._writer`) saves back;
* rectangles, lines, ellipses and polygons → one **Shapes** layer per type and kind, each
  shape lying in its plane (every vertex has the plane's z);
* tracked markers → one **Tracks** layer per track type, columns ``track_id, t, y, x`` with
  ``t`` = z (ClickPoints' frame is spimflow's plane);
* masks → one **Labels** layer ``(z, y, x)``, read plane by plane when shown (dask);
* annotations (comment, rating, tags) and the project's tags → the metadata of the first
  layer (keys ``annotations``, ``tags`` and the one-line ``annotations_summary``).

Positions: ClickPoints stores pixel centres at ``i + 0.5`` (x, y) and the plane as the
image's ``sort_index``; the layers hold voxel centres ``(z, y, x)``
(:func:`spimflow.annotate.markers_to_frame`). All layers get the voxel size the export
stored (option ``spimflow_voxel_size_um``) as ``scale``, else ``(1, 1, 1)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
from napari.layers import Points
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.events import Event

from spimflow.annotate import Project, clickpoints_to_voxel, markers_to_frame
from spimflow.annotate.schema import TYPE_MARKER
from spimflow.napari._layers import LayerData, points_layer
from spimflow.steps.curate import STYLE_KEY, style_cell_id

#: Project option holding the voxel size (µm, z y x) as a JSON list (written by the export).
VOXEL_SIZE_OPTION = "spimflow_voxel_size_um"
#: Features of the Points layers (and their values for a point added in napari).
POINT_FEATURE_DEFAULTS = {"marker_id": -1, "cell_id": -1, "text": "", "processed": 0}
_STYLE_PREFIX = "{" + json.dumps(STYLE_KEY) + ": "
_SHAPE_KINDS = ("rectangle", "line", "ellipse", "polygon")


def voxel_size_of(project: Project) -> tuple[float, float, float]:
    """The voxel size (µm, z y x) stored in a project, else ``(1, 1, 1)``.

    Parameters
    ----------
    project : Project

    Returns
    -------
    tuple of float
    """
    text = project.get_option(VOXEL_SIZE_OPTION)
    try:
        values = [float(v) for v in json.loads(text)]
    except (TypeError, ValueError):
        return (1.0, 1.0, 1.0)
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        return (1.0, 1.0, 1.0)
    return (values[0], values[1], values[2])


def cell_ids_of_styles(styles: Any) -> np.ndarray:
    """The detection id each marker style carries (:func:`spimflow.steps.curate.style_cell_id`),
    fast: the export's own style text is parsed directly, anything else as JSON.

    Parameters
    ----------
    styles : array_like of str or None

    Returns
    -------
    numpy.ndarray
        int64, -1 where a style carries no id.

    Examples
    --------
    >>> cell_ids_of_styles(['{"spimflow_cell": 7}', None, '{"color": "#ff0000", "spimflow_cell": 3}', ""]).tolist()
    [7, -1, 3, -1]
    """
    values = np.asarray(styles, dtype=object).ravel().tolist()
    skip = len(_STYLE_PREFIX)

    def one(v: Any) -> int:
        if not isinstance(v, str) or not v:
            return -1
        digits = v[skip:-1]
        if v.startswith(_STYLE_PREFIX) and v.endswith("}") and digits.isascii() and digits.isdigit():
            return int(digits)  # the export's own text
        return style_cell_id(v)

    return np.fromiter((one(v) for v in values), dtype=np.int64, count=len(values))


def rgba(color: Any, default: tuple = (1.0, 1.0, 1.0, 1.0)) -> tuple[float, float, float, float]:
    """A ClickPoints colour (``"#RRGGBB"`` or ``"#RRGGBBAA"``) as RGBA floats 0..1.

    Parameters
    ----------
    color : str or None
    default : tuple of float
        Returned for a missing or malformed colour.

    Returns
    -------
    tuple of float

    Examples
    --------
    >>> rgba("#FF8000")
    (1.0, 0.5019607843137255, 0.0, 1.0)
    """
    digits = str(color or "").strip().lstrip("#")
    if len(digits) not in (6, 8):
        return default
    try:
        values = [int(digits[i : i + 2], 16) / 255.0 for i in range(0, len(digits), 2)]
    except ValueError:
        return default
    return (values[0], values[1], values[2], values[3] if len(values) == 4 else 1.0)


def _none_to_empty(values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=object)
    return np.array(
        ["" if v is None or v is pd.NA or (isinstance(v, float) and v != v) else str(v) for v in arr], dtype=object
    )


def _type_points(path: Path, name: str, colour: str, hidden: bool, markers: pd.DataFrame, scale: tuple) -> LayerData:
    """One marker type as a Points layer (``markers``: rows of :func:`markers_to_frame`)."""
    frame = pd.DataFrame(
        {
            "z": markers["z"].to_numpy(np.float64),
            "y": markers["y"].to_numpy(np.float64),
            "x": markers["x"].to_numpy(np.float64),
        }
    )
    features = pd.DataFrame(
        {
            "marker_id": markers["marker_id"].to_numpy(np.int64),
            "cell_id": cell_ids_of_styles(markers["style"].to_numpy(object)),
            "text": _none_to_empty(markers["text"].to_numpy(object)),
            "processed": markers["processed"].to_numpy(np.int64),
        }
    )
    data, kwargs, kind = points_layer(
        frame,
        scale,
        name,
        list(rgba(colour)),  # napari takes a list (a tuple would be read as a feature name)
        features=features,
        feature_defaults=dict(POINT_FEATURE_DEFAULTS),
        visible=not hidden,
        metadata={"spimflow_cdb": str(path), "marker_type": name},
    )
    kwargs.pop("out_of_slice_display", None)  # a marker belongs to its plane (and napari 0.9 deprecates it)
    return data, kwargs, kind


def _corners(cx, cy, half_w, half_h, angle_deg) -> np.ndarray:
    """(n, 4, 2) corners (x, y) of rotated boxes, in drawing order."""
    t = np.deg2rad(np.asarray(angle_deg, dtype=np.float64))
    ux, uy = np.cos(t), np.sin(t)
    signs = np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], dtype=np.float64)
    a = half_w[:, None] * signs[None, :, 0]
    b = half_h[:, None] * signs[None, :, 1]
    x = cx[:, None] + a * ux[:, None] - b * uy[:, None]
    y = cy[:, None] + a * uy[:, None] + b * ux[:, None]
    return np.stack([x, y], axis=-1)


def _shape_vertices(kind: str, frame: pd.DataFrame) -> tuple[list[np.ndarray], list[str]]:
    """Vertices ``(z, y, x)`` in voxels of every shape of one kind, and napari shape types."""
    n = len(frame)
    z = frame["z"].to_numpy(np.float64)
    if kind == "polygon":
        vertices = []
        for plane, pts in zip(z, frame["points"], strict=True):
            pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
            vertices.append(
                np.column_stack(
                    [np.full(len(pts), plane), clickpoints_to_voxel(pts[:, 1]), clickpoints_to_voxel(pts[:, 0])]
                )
            )
        return vertices, ["polygon" if closed else "path" for closed in frame["closed"]]
    if kind == "line":
        xy = np.stack([frame[["x1", "y1"]].to_numpy(np.float64), frame[["x2", "y2"]].to_numpy(np.float64)], axis=1)
        shape_type = "line"
    elif kind == "rectangle":
        x, y = frame["x"].to_numpy(np.float64), frame["y"].to_numpy(np.float64)
        w, h = frame["width"].to_numpy(np.float64), frame["height"].to_numpy(np.float64)
        xy = np.stack(
            [np.stack([x, y], -1), np.stack([x + w, y], -1), np.stack([x + w, y + h], -1), np.stack([x, y + h], -1)],
            axis=1,
        )
        shape_type = "rectangle"
    else:  # ellipse: centre, full axes, angle in degrees (Qt: clockwise on screen, y down)
        xy = _corners(
            frame["x"].to_numpy(np.float64),
            frame["y"].to_numpy(np.float64),
            frame["width"].to_numpy(np.float64) / 2,
            frame["height"].to_numpy(np.float64) / 2,
            frame["angle"].to_numpy(np.float64),
        )
        shape_type = "ellipse"
    xy = clickpoints_to_voxel(xy.reshape(n, -1, 2))
    zyx = np.concatenate([np.repeat(z[:, None, None], xy.shape[1], axis=1), xy[..., ::-1]], axis=-1)
    return list(zyx), [shape_type] * n


def _shape_layers(path: Path, project: Project, colours: dict, scale: tuple, used: set[str]) -> list[LayerData]:
    layers = []
    getters = {
        "rectangle": project.get_rectangles,
        "line": project.get_lines,
        "ellipse": project.get_ellipses,
        "polygon": project.get_polygons,
    }
    for kind in _SHAPE_KINDS:
        shapes = getters[kind]()
        if not len(shapes):
            continue
        types = shapes["type"].astype(object).where(shapes["type"].notna(), None)
        for type_name in dict.fromkeys(types.tolist()):
            rows = shapes[(types == type_name).to_numpy() if type_name is not None else types.isna().to_numpy()]
            rows = rows.reset_index(drop=True)
            vertices, shape_types = _shape_vertices(kind, rows)
            label = type_name if type_name is not None else "(no type)"
            name = label if label not in used else f"{label} ({kind}s)"
            used.add(name)
            colour = rgba(colours.get(type_name))
            features = pd.DataFrame(
                {
                    f"{kind}_id": rows["id"].to_numpy(np.int64),
                    "text": _none_to_empty(rows["text"].to_numpy(object)),
                    "processed": rows["processed"].to_numpy(np.int64),
                }
            )
            kwargs = {
                "name": name,
                "shape_type": shape_types,
                "edge_color": list(colour),
                "face_color": [*colour[:3], 0.15 if kind in ("rectangle", "ellipse", "polygon") else 0.0],
                "edge_width": 1.0,
                "scale": scale,
                "features": features,
                "metadata": {
                    "spimflow_cdb": str(path),
                    "marker_type": type_name,
                    "kind": kind,
                    f"{kind}_ids": rows["id"].astype(int).tolist(),
                },
            }
            layers.append((vertices, kwargs, "shapes"))
    return layers


def _track_layers(path: Path, project: Project, markers: pd.DataFrame, scale: tuple, used: set[str]) -> list:
    tracked = markers[markers["track_id"].notna().to_numpy()]
    if not len(tracked):
        return []
    tracks = project.get_tracks()
    track_type = dict(zip(tracks["id"].astype(int), tracks["type"], strict=True))
    track_ids = tracked["track_id"].to_numpy(np.int64)
    types = np.array([track_type.get(int(t)) for t in np.unique(track_ids)], dtype=object)
    type_of = dict(zip(np.unique(track_ids).tolist(), types.tolist(), strict=True))
    layers = []
    for type_name in dict.fromkeys(types.tolist()):
        keep = np.array([type_of[int(t)] == type_name for t in track_ids], dtype=bool)
        rows = tracked[keep]
        order = np.lexsort((rows["z"].to_numpy(), rows["track_id"].to_numpy(np.int64)))
        rows = rows.iloc[order]
        data = np.column_stack(
            [
                rows["track_id"].to_numpy(np.float64),
                rows["z"].to_numpy(np.float64),
                rows["y"].to_numpy(np.float64),
                rows["x"].to_numpy(np.float64),
            ]
        )
        label = type_name if type_name is not None else "(no type)"
        name = label if label not in used else f"{label} (tracks)"
        used.add(name)
        ids = sorted({int(t) for t in rows["track_id"]})
        kwargs = {
            "name": name,
            "scale": scale,
            "features": pd.DataFrame({"marker_id": rows["marker_id"].to_numpy(np.int64)}),
            "tail_length": 1000,
            "metadata": {"spimflow_cdb": str(path), "marker_type": type_name, "track_ids": ids},
        }
        layers.append((data, kwargs, "tracks"))
    return layers


def _mask_layer(path: Path, project: Project, scale: tuple) -> LayerData | None:
    masks = project.get_masks()
    if not len(masks):
        return None
    images = project.get_images()
    n_planes = int(max(images["sort_index"].max(), masks["z"].max())) + 1
    first = masks.drop_duplicates("z", keep="first")  # one mask per plane (the first layer's, by mask id)
    image_of = {int(z): int(i) for z, i in zip(first["z"], first["image_id"], strict=True)}
    sized = images.dropna(subset=["width", "height"])
    if len(sized):
        shape = (int(sized["height"].max()), int(sized["width"].max()))
    else:
        shape = project.get_mask(image=next(iter(image_of.values()))).shape

    def plane(image_id: int) -> np.ndarray:  # read when napari shows the plane
        with Project.open(path, "r") as p:
            arr = p.get_mask(image=image_id)
        out = np.zeros(shape, dtype=np.uint8)
        if arr is not None:
            h, w = min(shape[0], arr.shape[0]), min(shape[1], arr.shape[1])
            out[:h, :w] = arr[:h, :w]
        return out

    planes = [
        da.from_delayed(dask.delayed(plane)(image_of[z]), shape, dtype=np.uint8)
        if z in image_of
        else da.zeros(shape, dtype=np.uint8, chunks=shape)
        for z in range(n_planes)
    ]
    mask_types = project.get_mask_types()
    colours: dict[Any, Any] = {int(i): rgba(c) for i, c in zip(mask_types["index"], mask_types["color"], strict=True)}
    colours[0] = (0.0, 0.0, 0.0, 0.0)
    colours[None] = (0.5, 0.5, 0.5, 1.0)
    features = pd.DataFrame(
        {"index": [0, *mask_types["index"].astype(int)], "name": ["", *mask_types["name"].astype(str)]}
    )
    kwargs = {
        "name": "masks",
        "scale": scale,
        "opacity": 0.5,
        "colormap": DirectLabelColormap(color_dict=colours),
        "features": features,
        "metadata": {
            "spimflow_cdb": str(path),
            "mask_ids": masks["id"].astype(int).tolist(),
            "mask_types": mask_types[["name", "color", "index"]].to_dict("records"),
        },
    }
    return da.stack(planes), kwargs, "labels"


def reset_ids_of_added_points(layer: Points) -> Callable[[Event], None]:
    """Make every point added to ``layer`` from now on a new marker.

    napari gives an added point the features of the last selected point (its
    ``feature_defaults``), ``marker_id`` and ``cell_id`` included; the writer would then
    take the point for that marker (moved) when the marker's own point was deleted. This
    gives added points the features :data:`POINT_FEATURE_DEFAULTS` (no marker, no
    detection, no text; ``layer.add`` and drawing points, not paste). A widget that moves
    a point between layers sets its features after ``add``.

    Parameters
    ----------
    layer : napari.layers.Points
        A layer of :func:`project_layers`.

    Returns
    -------
    callable
        The connected callback (``layer.events.data.disconnect(it)`` undoes this).
    """

    def on_data(event: Event) -> None:
        if str(getattr(event, "action", "")) != "added":
            return
        n = len(layer.data)
        rows = sorted({int(i) % n for i in getattr(event, "data_indices", ()) if n})
        features = layer.features
        for column, value in POINT_FEATURE_DEFAULTS.items():
            if rows and column in features.columns:
                features.loc[rows, column] = value

    layer.events.data.connect(on_data)
    return on_data


def annotation_records(project: Project) -> list[dict]:
    """The project's annotations as plain records (plane, comment, rating, tags, timestamp).

    Parameters
    ----------
    project : Project

    Returns
    -------
    list of dict
        Keys ``id, z, comment, rating, tags, timestamp`` (timestamp as ISO text or None).
    """
    records = []
    for row in project.get_annotations().itertuples(index=False):
        ts = row.timestamp
        records.append(
            {
                "id": int(row.id),
                "z": int(row.z),
                "comment": row.comment or "",
                "rating": int(row.rating or 0),
                "tags": list(row.tags),
                "timestamp": None if ts is None else (ts.isoformat(sep=" ") if hasattr(ts, "isoformat") else str(ts)),
            }
        )
    return records


def annotation_summary(records: list[dict], tags: list[str]) -> str:
    """One line about a project's annotations and tags ("" when it has none).

    Parameters
    ----------
    records : list of dict
        From :func:`annotation_records`.
    tags : list of str
        All tag names of the project.

    Returns
    -------
    str

    Examples
    --------
    >>> annotation_summary([{"z": 3, "comment": "fold", "rating": 2, "tags": ["check"]}], ["check"])
    '1 annotation: z=3 "fold" rating 2 [check]; tags: check'
    """
    if not records and not tags:
        return ""
    parts = []
    for r in records[:5]:
        text = f"z={r['z']}"
        text += f' "{r["comment"]}"' if r["comment"] else ""
        text += f" rating {r['rating']}" if r["rating"] else ""
        text += f" [{', '.join(r['tags'])}]" if r["tags"] else ""
        parts.append(text)
    head = f"{len(records)} annotation{'s' if len(records) != 1 else ''}"
    line = f"{head}: {'; '.join(parts)}{' ...' if len(records) > 5 else ''}" if records else head
    return f"{line}; tags: {', '.join(tags)}" if tags else line


def project_layers(path: Path) -> list[LayerData]:
    """Everything napari can show of a ClickPoints project, as layer data tuples.

    Parameters
    ----------
    path : pathlib.Path
        The ``.cdb`` file (opened read-only; it is never modified).

    Returns
    -------
    list of tuple
        ``(data, kwargs, layer_type)``: one Points layer per point-mode marker type (in
        type order), then Shapes (rectangles, lines, ellipses, polygons), Tracks and the
        Labels layer of the masks. The first layer's metadata holds ``annotations``,
        ``tags`` and ``annotations_summary``.
    """
    path = Path(path)
    with Project.open(path, "r") as project:
        scale = voxel_size_of(project)
        types = project.get_marker_types()
        markers = markers_to_frame(project)
        colours = dict(zip(types["name"], types["color"], strict=True))
        layers: list[LayerData] = []
        used: set[str] = set()
        untracked = markers[markers["track_id"].isna().to_numpy()]  # tracked ones are in the Tracks layers
        by_type = {name: rows for name, rows in untracked.groupby("type", sort=False)} if len(untracked) else {}
        empty = markers.iloc[:0]
        for t in types.itertuples(index=False):
            mode = int(t.mode or 0)
            if mode != TYPE_MARKER:
                continue
            layers.append(_type_points(path, t.name, t.color, bool(t.hidden), by_type.get(t.name, empty), scale))
            used.add(t.name)
        layers += _shape_layers(path, project, colours, scale, used)
        layers += _track_layers(path, project, markers, scale, used)
        mask = _mask_layer(path, project, scale)
        if mask is not None:
            layers.append(mask)
        records = annotation_records(project)
        tags = project.get_tags()["name"].astype(str).tolist()
    if layers and (records or tags):
        meta = layers[0][1].setdefault("metadata", {})
        meta["annotations"] = records
        meta["tags"] = tags
        meta["annotations_summary"] = annotation_summary(records, tags)
    return layers
