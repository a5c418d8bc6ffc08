"""npe2 writer: napari Points layers → the markers of a ClickPoints project (``.cdb``).

Each Points layer stands for one marker type: ``metadata["marker_type"]`` (set by the
reader, :mod:`spimflow.napari._project`), else the layer's name. Saving makes the
project's markers of the saved types equal to the layers' points, in one transaction
(all or nothing), and changes nothing else:

* a point keeps its marker through the feature ``marker_id``: a marker of a saved type
  whose id no layer holds any more is removed; a marker whose point moved (another plane,
  or more than 1e-6 voxel in y or x) gets the new position (same id, style and text);
  a marker whose point is now in the layer of another type (moved between layers,
  e.g. accepted or rejected in curation) gets that type;
* a point without a valid ``marker_id`` (missing, NaN, negative, unknown to the project,
  or the id of a tracked marker) becomes a new marker of the layer's type; its ``cell_id``
  feature (>= 0) goes into the style (:func:`spimflow.steps.curate.marker_style`), its
  ``text`` and ``processed`` features into those fields;
* several points holding one ``marker_id`` (napari gives an added or pasted point the
  features of the last selected one): the first one still at the marker's stored position
  keeps the marker, else the first one; the others are new markers without detection id,
  text or processed flag (a copy). A detection id that a kept point holds is not given to
  a new marker either;
* other marker types, tracks (and their markers), shapes, masks, annotations, tags,
  options and images are never touched; a saved type that does not exist yet is created
  (point mode, the layer's face colour).

Points are voxel centres ``(z, y, x)`` in the layer's data coordinates (its ``scale`` does
not matter); ``z`` is rounded to the nearest plane, which must exist in the project (a
2D layer is plane 0). A layer read from *another* project (``metadata["spimflow_cdb"]``)
carries marker ids that mean nothing here: all its points become new markers.

A file that does not exist yet becomes a new project: one image row per plane ``0 .. max z``,
all referring to one volume (``metadata["spimflow_image_source"]`` of the first layer that
has it, else ``"planes"``), with ``frame`` = ``sort_index`` = z; the first layer's ``scale``
is stored as the voxel size (option ``spimflow_voxel_size_um``) unless it is ``(1, 1, 1)``.

After saving, the ids of new markers are written into the layers' ``marker_id`` feature
and ``metadata["spimflow_cdb"]`` names the file, so saving again adds nothing twice (napari
hands the writer the layer's own feature table and metadata; :func:`save_points_layers`
sets them explicitly).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Points

from spimflow.annotate import AnnotationError, Project, voxel_to_clickpoints
from spimflow.annotate.schema import TYPE_MARKER, TYPE_TRACK
from spimflow.annotate.store import normalize_color
from spimflow.io.atomic import atomic_path
from spimflow.napari._project import VOXEL_SIZE_OPTION
from spimflow.steps.curate import marker_style

#: Positions (voxels, y and x) closer than this to the stored ones count as not moved.
POSITION_TOLERANCE = 1e-6
#: Image source of the planes of a project created by the writer when no layer names one.
DEFAULT_IMAGE_SOURCE = "planes"


@dataclass
class _Layer:
    """One Points layer, as the writer needs it."""

    name: str
    marker_type: str
    plane: np.ndarray  # int64, z rounded to the nearest plane
    y: np.ndarray  # voxel centres
    x: np.ndarray
    ids: np.ndarray  # int64, -1: none
    cell_id: np.ndarray  # int64, -1: none
    text: list
    processed: np.ndarray
    colour: str | None
    source: str | None  # metadata["spimflow_cdb"]
    attributes: dict
    scale: tuple | None


def _int_column(features: pd.DataFrame, name: str, n: int) -> np.ndarray:
    if name not in features.columns:
        return np.full(n, -1, dtype=np.int64)
    values = pd.to_numeric(pd.Series(features[name].to_numpy(object), dtype=object), errors="coerce")
    values = values.to_numpy(np.float64)
    ok = np.isfinite(values) & (values == np.round(values))
    return np.where(ok, values, -1).astype(np.int64)


def _texts(features: pd.DataFrame, n: int) -> list:
    if "text" not in features.columns:
        return [None] * n
    return [
        None if v is None or v is pd.NA or (isinstance(v, float) and v != v) or v == "" else str(v)
        for v in features["text"].tolist()
    ]


def _colour(attributes: dict) -> str | None:
    """The layer's face colour as ``#RRGGBB`` (first point, else the colour for new points)."""
    for key in ("face_color", "current_face_color"):
        value = attributes.get(key)
        if value is None or isinstance(value, str) and not value.startswith("#"):
            continue
        if isinstance(value, str):
            try:
                return normalize_color(value)[:7]
            except AnnotationError:
                continue
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim == 2:
            if not len(arr):
                continue
            arr = arr[0]
        if arr.shape[-1] in (3, 4) and np.isfinite(arr).all():
            return normalize_color([int(round(float(v) * 255)) for v in np.clip(arr[:3], 0, 1)])
    return None


def _layer_input(data: Any, attributes: dict, layer_type: str) -> _Layer:
    name = str(attributes.get("name") or "points")
    if layer_type != "points":
        raise ValueError(f"layer {name!r} is a {layer_type} layer; only Points layers can be saved as markers")
    metadata = attributes.get("metadata") or {}
    marker_type = str(metadata.get("marker_type") or name)
    arr = np.asarray(data, dtype=np.float64)
    arr = arr.reshape(-1, arr.shape[-1] if arr.ndim == 2 else (attributes.get("ndim") or 3))
    if arr.shape[1] == 2:
        arr = np.column_stack([np.zeros(len(arr)), arr])
    elif arr.shape[1] != 3:
        raise ValueError(f"layer {name!r} has {arr.shape[1]} dimensions; markers need (z, y, x) or (y, x)")
    if not np.isfinite(arr).all():
        raise ValueError(f"layer {name!r} has points with non-finite coordinates")
    n = len(arr)
    features = attributes.get("features")
    features = pd.DataFrame(features) if features is not None else pd.DataFrame(index=range(n))
    if len(features) != n:
        features = pd.DataFrame(index=range(n))
    processed = _int_column(features, "processed", n)
    scale = attributes.get("scale")
    return _Layer(
        name=name,
        marker_type=marker_type,
        plane=np.floor(arr[:, 0] + 0.5).astype(np.int64),
        y=arr[:, 1].copy(),
        x=arr[:, 2].copy(),
        ids=_int_column(features, "marker_id", n),
        cell_id=_int_column(features, "cell_id", n),
        text=_texts(features, n),
        processed=np.maximum(processed, 0),
        colour=_colour(attributes),
        source=metadata.get("spimflow_cdb"),
        attributes=attributes,
        scale=None if scale is None else tuple(float(v) for v in np.ravel(scale)),
    )


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def _check_types(project: Project, layers: list[_Layer]) -> None:
    """Create missing types (point mode); refuse track types (their markers belong to tracks)."""
    types = project.get_marker_types().set_index("name")
    for layer in layers:
        name = layer.marker_type
        if name in types.index:
            if int(types.loc[name, "mode"]) & TYPE_TRACK:
                raise AnnotationError(
                    f"{project.path}: marker type {name!r} is a track type; a Points layer cannot be saved into it"
                )
            continue
        project.set_marker_type(name, color=layer.colour, mode=TYPE_MARKER)
        types = project.get_marker_types().set_index("name")


def _check_planes(project: Project, layers: list[_Layer]) -> None:
    """Every plane a point lies on must exist (before anything is written)."""
    planes = np.unique(np.concatenate([layer.plane for layer in layers] or [np.zeros(0, np.int64)]))
    if len(planes):
        images = project.get_images()
        missing = sorted(set(planes.tolist()) - set(images["sort_index"].astype(int).tolist()))
        if missing:
            shown = ", ".join(map(str, missing[:8])) + (" ..." if len(missing) > 8 else "")
            raise AnnotationError(
                f"{project.path}: points lie on z = {shown}, planes the project does not have "
                f"(it has {len(images['sort_index'].unique())} planes, z = {images['sort_index'].min()} .. "
                f"{images['sort_index'].max()})"
                if len(images)
                else f"{project.path}: the project has no images (planes); points lie on z = {shown}"
            )


def _move_planes(project: Project, ids: np.ndarray, planes: np.ndarray, old_images: np.ndarray) -> None:
    """Put markers on other planes (the image of that plane in the ClickPoints layer of their old image)."""
    images = project.get_images()
    layer_of = dict(zip(images["id"].astype(int), images["layer_id"].astype(int), strict=True))
    new_images = np.empty(len(ids), dtype=np.int64)
    layers = np.array([layer_of.get(int(i), -1) for i in old_images], dtype=np.int64)
    for layer_id in np.unique(layers):
        rows = layers == layer_id
        new_images[rows] = project.image_ids(planes[rows], None if layer_id < 0 else int(layer_id))
    project.update_markers(ids, image=new_images)


def _winners(ids: np.ndarray, known: np.ndarray, at_stored: np.ndarray) -> np.ndarray:
    """Which points keep their marker: per known id one holder, the first one still at the
    stored position, else the first one (a copy made in napari inherits its source's id)."""
    keep = np.zeros(len(ids), dtype=bool)
    order = np.lexsort((np.arange(len(ids)), ~at_stored, ids))
    order = order[known[order]]
    if len(order):
        first = np.r_[True, ids[order][1:] != ids[order][:-1]]
        keep[order[first]] = True
    return keep


def _new_cell_ids(cell: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Detection ids for new markers: a copy of a point that is still there (same detection
    id) gets none, so no two markers claim one detection."""
    out = np.where(keep, -1, cell)
    held = np.isin(out, cell[keep & (cell >= 0)]) | pd.Series(out).duplicated().to_numpy()
    return np.where((out >= 0) & ~held, out, -1)


def _sync(project: Project, layers: list[_Layer], honour_ids: list[bool]) -> list[np.ndarray]:
    """Make the markers of the layers' types equal to their points; the final marker id of every point."""
    _check_planes(project, layers)
    _check_types(project, layers)
    sizes = [len(layer.plane) for layer in layers]
    which = np.repeat(np.arange(len(layers)), sizes)
    ids = np.concatenate(
        [np.where(h, layer.ids, -1) for layer, h in zip(layers, honour_ids, strict=True)] or [np.zeros(0, np.int64)]
    ).astype(np.int64)
    plane = np.concatenate([layer.plane for layer in layers] or [np.zeros(0, np.int64)])
    x = voxel_to_clickpoints(np.concatenate([layer.x for layer in layers] or [np.zeros(0)]))
    y = voxel_to_clickpoints(np.concatenate([layer.y for layer in layers] or [np.zeros(0)]))
    cell = np.concatenate([layer.cell_id for layer in layers] or [np.zeros(0, np.int64)])
    types = np.array([layer.marker_type for layer in layers], dtype=object)[which]
    saved_types = list(dict.fromkeys(types.tolist()))
    current = project.get_markers(type=saved_types)
    wanted = np.unique(ids[ids >= 0])
    others = wanted[~np.isin(wanted, current["id"].to_numpy(np.int64))]  # ids of other types (moved between layers)
    existing = current[current["id"].isin(wanted).to_numpy()]
    if len(others):
        existing = pd.concat([existing, project.get_markers(ids=others.tolist())], ignore_index=True)
    existing = existing.sort_values("id", kind="stable").reset_index(drop=True)
    stored_ids = existing["id"].to_numpy(np.int64)
    pos = np.clip(np.searchsorted(stored_ids, ids), 0, max(len(stored_ids) - 1, 0))
    known = (ids >= 0) & (stored_ids[pos] == ids if len(stored_ids) else np.zeros(len(ids), dtype=bool))
    if len(stored_ids):  # a tracked marker belongs to its track (a Tracks layer), never to a Points layer
        known &= existing["track_id"].isna().to_numpy()[pos]

    def old(column: str, dtype: Any) -> np.ndarray:
        values = existing[column].to_numpy(dtype)
        return values[pos] if len(values) else np.zeros(len(ids), dtype=dtype)

    old_plane, old_image = old("z", np.int64), old("image_id", np.int64)
    old_x, old_y, old_type = old("x", np.float64), old("y", np.float64), old("type", object)
    moved = (np.abs(x - old_x) > POSITION_TOLERANCE) | (np.abs(y - old_y) > POSITION_TOLERANCE)
    replaned = plane != old_plane
    keep = _winners(ids, known, known & ~moved & ~replaned)
    final = np.where(keep, ids, -1)
    # markers of the saved types that no layer holds any more
    current_ids = current["id"].to_numpy(np.int64)[current["track_id"].isna().to_numpy()]  # tracks stay
    gone = current_ids[~np.isin(current_ids, final[keep])]
    if len(gone):
        project.remove_markers(ids=gone.tolist())
    change = keep & (moved | (types != old_type))
    if change.any():
        project.update_markers(final[change], x=x[change], y=y[change], type=types[change].tolist())
    replaned &= keep
    if replaned.any():
        _move_planes(project, final[replaned], plane[replaned], old_image[replaned])
    copies = known & ~keep  # points that inherited the id of a marker another point keeps
    cells = np.where(copies, -1, _new_cell_ids(cell, keep))
    starts = np.cumsum([0, *sizes])
    for index, layer in enumerate(layers):
        rows = np.flatnonzero(~keep[starts[index] : starts[index + 1]])
        if not len(rows):
            continue
        at = starts[index] + rows
        final[at] = project.set_markers(
            x[at],
            y[at],
            z=plane[at],
            type=layer.marker_type,
            style=[marker_style(c) if c >= 0 else None for c in cells[at].tolist()],
            text=[None if copies[at[k]] else layer.text[i] for k, i in enumerate(rows.tolist())],
            processed=np.where(copies[at], 0, layer.processed[rows]),
        )
    return [final[starts[i] : starts[i + 1]] for i in range(len(layers))]


def _init_new(project: Project, path: Path, layers: list[_Layer]) -> None:
    """Planes 0 .. max z (one volume, frame = z) and the voxel size of a new project."""
    planes = np.concatenate([layer.plane for layer in layers] or [np.zeros(0, np.int64)])
    if len(planes) and planes.min() < 0:
        raise AnnotationError(f"{path}: points lie on z = {int(planes.min())}; planes start at 0")
    n_planes = int(planes.max()) + 1 if len(planes) else 1
    source = next(
        (
            str(layer.attributes["metadata"]["spimflow_image_source"])
            for layer in layers
            if (layer.attributes.get("metadata") or {}).get("spimflow_image_source")
        ),
        DEFAULT_IMAGE_SOURCE,
    )
    project.add_volume_planes(source, n_planes)
    scale = layers[0].scale if layers else None
    if scale is not None and len(scale) == 3 and not np.allclose(scale, 1.0):
        project.set_option(VOXEL_SIZE_OPTION, json.dumps(list(scale)))


def _write_back(layer: _Layer, ids: np.ndarray, path: Path) -> None:
    """New marker ids into the layer's own feature table and metadata (napari passes them by reference)."""
    features = layer.attributes.get("features")
    if isinstance(features, pd.DataFrame) and len(features) == len(ids) and "marker_id" in features.columns:
        try:
            features["marker_id"] = ids
        except (ValueError, TypeError):  # a read-only view: the layer keeps its ids
            pass
    metadata = layer.attributes.get("metadata")
    if isinstance(metadata, dict):
        metadata["spimflow_cdb"] = str(path)
        metadata.setdefault("marker_type", layer.marker_type)


def write_layer_data(path: str | os.PathLike, layer_data: Sequence[tuple[Any, dict, str]]) -> list[np.ndarray]:
    """Save Points layer data into a project; see the module docstring for the rules.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.cdb`` file (created when missing).
    layer_data : sequence of (data, attributes, layer_type)
        napari layer data tuples of Points layers.

    Returns
    -------
    list of numpy.ndarray
        For each layer, the marker id of each point after saving.

    Raises
    ------
    ValueError
        For a layer that is not a Points layer or has no (z, y, x) points.
    spimflow.annotate.AnnotationError
        When the project cannot take the points (a plane it does not have, a read-only
        project, ...); then nothing was written.
    """
    path = Path(path)
    layers = [_layer_input(*item) for item in layer_data]
    names = [layer.marker_type for layer in layers]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"{path}: several layers save into the same marker type(s) {dup}; merge them first")
    if path.exists():
        honour = [layer.source is None or _same_file(layer.source, path) for layer in layers]
        with Project.open(path, "r+") as project:
            if not project.writable:
                raise AnnotationError(f"{path}: cannot save the points: {project.read_only_reason}")
            with project.transaction():
                final = _sync(project, layers, honour)
    else:  # a new project, complete or not at all
        with atomic_path(path) as tmp, Project.create(tmp) as project, project.transaction():
            _init_new(project, path, layers)
            final = _sync(project, layers, [False] * len(layers))
    for layer, ids in zip(layers, final, strict=True):
        _write_back(layer, ids, path)
    return final


def write_points(path: str, layer_data: list[tuple[Any, dict, str]]) -> list[str]:
    """npe2 writer (``points+``, ``.cdb``): save Points layers as the markers of their types.

    Parameters
    ----------
    path : str
        The ``.cdb`` file (created when missing).
    layer_data : list of (data, attributes, layer_type)
        The layers napari saves.

    Returns
    -------
    list of str
        ``[path]``.
    """
    write_layer_data(path, layer_data)
    return [str(path)]


def save_points_layers(path: str | os.PathLike, layers: Sequence[Points]) -> list[str]:
    """Save napari Points layers into a project (the curation widget's save).

    Parameters
    ----------
    path : str or os.PathLike
        The ``.cdb`` file (created when missing).
    layers : sequence of napari.layers.Points
        Each one marker type (``metadata["marker_type"]``, else its name). Afterwards their
        ``marker_id`` feature holds the marker ids (new markers included) and
        ``metadata["spimflow_cdb"]`` the file.

    Returns
    -------
    list of str
        ``[path]``.
    """
    layers = list(layers)
    final = write_layer_data(path, [layer.as_layer_data_tuple() for layer in layers])
    for layer, ids in zip(layers, final, strict=True):
        if "marker_id" not in layer.features.columns or not np.array_equal(layer.features["marker_id"], ids):
            defaults = {k: v.iloc[0] for k, v in layer.feature_defaults.items()}
            features = layer.features.copy()
            features["marker_id"] = ids
            layer.features = features
            layer.feature_defaults = {**defaults, "marker_id": -1}  # a point added later is a new marker
        layer.metadata["spimflow_cdb"] = str(path)
        layer.metadata.setdefault("marker_type", layer.name)
    return [str(path)]
