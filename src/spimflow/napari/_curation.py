"""The *Curate cells* dock widget: step through the detections of an annotation project
(``results/<sample>/annotation/cells.cdb`` opened with the spimflow reader) and accept or
reject them by eye.

The project opens as two Points layers, ``cell`` (kept) and ``rejected``, told apart by
``metadata["marker_type"]``; their ``metadata["spimflow_cdb"]`` names the project. Accepting
or rejecting a cell moves its point, with every feature (``marker_id``, ``cell_id``, ...),
into the other layer; saving writes both layers back into the project, where moved points
are re-typed (the ``annotation_import`` rule then reads the curated cells).

The logic lives in small Qt-free pieces that tests call directly: :func:`cell_order` (the
stepping order), :func:`move_point` / :func:`add_point` (edits on layers), :class:`UndoStack`
and :class:`Curator` (navigation, edits, undo, counts); :class:`CurationWidget` only wires
buttons, keys and labels to a :class:`Curator`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from napari.layers import Points
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from spimflow.annotate import AnnotationError
from spimflow.atlas import Ontology
from spimflow.napari._layers import KEPT_COLOUR, REJECTED_COLOUR, ontology_of, results_dir_of, sample_config
from spimflow.napari._writer import save_points_layers
from spimflow.steps.curate import KEPT, REJECTED

#: the two marker types a curation edits, in display order
TYPES = (KEPT, REJECTED)
#: stepping orders: name → (columns, ascending per column); ties are broken by position
ORDERS: dict[str, tuple[tuple[str, ...], tuple[bool, ...]]] = {
    "intensity": (("intensity_raw",), (False,)),
    "intensity (low first)": (("intensity_raw",), (True,)),
    "size": (("volume_um3",), (False,)),
    "size (small first)": (("volume_um3",), (True,)),
    "region": (("region_acronym", "intensity_raw"), (True, False)),
    "position": (("z", "y", "x"), (True, True, True)),
}
#: which cells to step through: name → marker types
SUBSETS: dict[str, tuple[str, ...]] = {"all": TYPES, "kept": (KEPT,), "rejected": (REJECTED,)}
#: keys of the widget (bound on the viewer and on the two Points layers)
KEYS = {"next": "N", "previous": "B", "accept": "A", "reject": "R", "add": "C", "undo": "U"}
#: features a point the curation adds gets (no marker id: a cell the detector missed)
BLANK = {"marker_id": -1, "cell_id": -1, "text": ""}
_TEXT_REGION = re.compile(r"^(\S+) I=")


# -- the cell table next to the project -------------------------------------------------------


def cells_folder_of(cdb: Path) -> Path:
    """The ``cells/`` folder of the run a project was exported from.

    Parameters
    ----------
    cdb : Path
        ``<results>/<sample>/annotation/cells.cdb``.

    Returns
    -------
    Path
        ``<results>/<sample>/cells``.

    Examples
    --------
    >>> cells_folder_of(Path("results/brain1/annotation/cells.cdb")).as_posix()
    'results/brain1/cells'
    """
    return Path(cdb).parent.parent / "cells"


def cell_table(cells_raw: pd.DataFrame, cells_atlas: pd.DataFrame | None = None) -> pd.DataFrame:
    """Sort keys of every detection, indexed by detection id (row of ``cells_raw``).

    Parameters
    ----------
    cells_raw : DataFrame
        All detections (``intensity_raw``, ``volume_um3`` when measured).
    cells_atlas : DataFrame, optional
        Cells mapped into the atlas (``region_acronym``), joined on ``cell_id`` when the
        table has one (curated cells), else on the centre ``z, y, x``.

    Returns
    -------
    DataFrame
        Index ``cell_id``; columns ``intensity_raw``, ``volume_um3`` (NaN when absent) and
        ``region_acronym`` ("" when unknown).

    Examples
    --------
    >>> raw = pd.DataFrame({"z": [1.0, 2.0], "y": [3.0, 4.0], "x": [5.0, 6.0], "intensity_raw": [9.0, 7.0]})
    >>> atlas = pd.DataFrame({"z": [2.0], "y": [4.0], "x": [6.0], "region_acronym": ["TH"]})
    >>> cell_table(raw, atlas)[["intensity_raw", "region_acronym"]].to_dict("list")
    {'intensity_raw': [9.0, 7.0], 'region_acronym': ['', 'TH']}
    """
    out = pd.DataFrame(index=pd.RangeIndex(len(cells_raw), name="cell_id"))
    for column in ("intensity_raw", "volume_um3"):
        values = cells_raw[column].to_numpy(np.float64) if column in cells_raw.columns else np.nan
        out[column] = values
    regions = np.full(len(cells_raw), "", dtype=object)
    if cells_atlas is not None and "region_acronym" in cells_atlas.columns and len(cells_atlas):
        acronyms = cells_atlas["region_acronym"].fillna("").astype(str).to_numpy()
        if "cell_id" in cells_atlas.columns:
            ids = cells_atlas["cell_id"].to_numpy(np.int64)
            ok = (ids >= 0) & (ids < len(cells_raw))
            regions[ids[ok]] = acronyms[ok]
        elif {"z", "y", "x"} <= set(cells_atlas.columns):
            keys = pd.MultiIndex.from_frame(cells_raw[["z", "y", "x"]])
            where = keys.get_indexer(pd.MultiIndex.from_frame(cells_atlas[["z", "y", "x"]]))
            regions[where[where >= 0]] = acronyms[where >= 0]
    out["region_acronym"] = regions
    return out


def load_cell_table(cdb: Path) -> pd.DataFrame | None:
    """:func:`cell_table` of the run a project belongs to, or None without ``cells_raw``.

    Parameters
    ----------
    cdb : Path
        The project, ``<results>/<sample>/annotation/cells.cdb``.

    Returns
    -------
    DataFrame or None
        From ``cells/cells_raw.parquet`` and, when present, ``cells/cells_atlas.parquet``.
    """
    folder = cells_folder_of(cdb)
    raw_path, atlas_path = folder / "cells_raw.parquet", folder / "cells_atlas.parquet"
    if not raw_path.is_file():
        return None
    atlas = pd.read_parquet(atlas_path) if atlas_path.is_file() else None
    return cell_table(pd.read_parquet(raw_path), atlas)


def project_ontology(cdb: Path) -> Ontology | None:
    """The atlas ontology of the run a project belongs to (None when it cannot be found).

    Parameters
    ----------
    cdb : Path
        The project inside ``results/<sample>/``.

    Returns
    -------
    Ontology or None
    """
    results = results_dir_of(Path(cdb).resolve().parent)
    if results is None:
        return None
    try:
        return ontology_of(results, sample_config(results))
    except (OSError, ValueError, KeyError):
        return None


def text_region(text: object) -> str:
    """The region acronym at the start of an exported marker text, or "".

    Parameters
    ----------
    text : object
        Marker text as the export writes it (``"CTXa3 I=812 V=412µm³"``).

    Returns
    -------
    str

    Examples
    --------
    >>> text_region("CTXa3 I=812 V=412µm³"), text_region("I=812 V=412µm³"), text_region(None)
    ('CTXa3', '', '')
    """
    found = _TEXT_REGION.match(text) if isinstance(text, str) else None
    return found.group(1) if found else ""


# -- the points of both layers, and their order -------------------------------------------------


@dataclass(frozen=True)
class CellKey:
    """What identifies a point while it moves between the layers.

    Parameters
    ----------
    marker_id : int
        The project's marker id; -1 for a point added in napari (then ``position`` tells
        it apart).
    position : tuple of float
        The point's data coordinates (z, y, x voxels) when the key was made.
    """

    marker_id: int
    position: tuple[float, ...]


def _marker_ids(layer: Points) -> np.ndarray:
    if "marker_id" not in layer.features.columns:
        return np.full(len(layer.data), -1, np.int64)
    return pd.to_numeric(layer.features["marker_id"], errors="coerce").fillna(-1).to_numpy(np.int64)


def _cell_ids(layer: Points) -> np.ndarray:
    if "cell_id" not in layer.features.columns:
        return np.full(len(layer.data), -1, np.int64)
    return pd.to_numeric(layer.features["cell_id"], errors="coerce").fillna(-1).to_numpy(np.int64)


def _column(layer: Points, name: str, default) -> np.ndarray:
    if name in layer.features.columns:
        return layer.features[name].to_numpy()
    return np.full(len(layer.data), default, dtype=object if isinstance(default, str) else np.int64)


class _OnePoint:
    """One point of a layer, with the attributes :func:`point_table` reads."""

    def __init__(self, layer: Points, index: int):
        self.ndim = layer.ndim
        self.data = np.asarray(layer.data[index : index + 1])
        self.features = layer.features.iloc[index : index + 1].reset_index(drop=True)


def point_table(layers: Mapping[str, Points], table: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per point of the curated layers, with the sort keys of its detection.

    Parameters
    ----------
    layers : mapping of str to Points
        Marker type → layer (``cell``, ``rejected``).
    table : DataFrame, optional
        :func:`cell_table` (index ``cell_id``).

    Returns
    -------
    DataFrame
        ``type``, ``index`` (row in its layer), ``marker_id``, ``cell_id``, ``z, y, x`` (data
        coordinates), ``text``, ``intensity_raw``, ``volume_um3`` and ``region_acronym``
        (from ``table``, else from the marker text).
    """
    parts = []
    for name, layer in layers.items():
        data = np.asarray(layer.data, np.float64).reshape(-1, layer.ndim)[:, -3:]
        parts.append(
            pd.DataFrame(
                {
                    "type": name,
                    "index": np.arange(len(data)),
                    "marker_id": _marker_ids(layer),
                    "cell_id": _cell_ids(layer),
                    "z": data[:, 0],
                    "y": data[:, 1],
                    "x": data[:, 2],
                    "text": pd.Series(_column(layer, "text", ""), dtype=object).to_numpy(),
                }
            )
        )
    points = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["type", "index"])
    ids = points["cell_id"].to_numpy(np.int64) if len(points) else np.zeros(0, np.int64)
    known = (ids >= 0) & (ids < (len(table) if table is not None else 0))
    for column in ("intensity_raw", "volume_um3"):
        values = np.full(len(points), np.nan)
        if table is not None and column in table.columns:
            values[known] = table[column].to_numpy(np.float64)[ids[known]]
        points[column] = values
    regions = np.array([text_region(t) for t in points.get("text", [])], dtype=object)
    if table is not None and "region_acronym" in table.columns:
        from_table = table["region_acronym"].to_numpy(object)[ids[known]]
        regions[known] = np.where(from_table != "", from_table, regions[known])
    points["region_acronym"] = regions
    return points


def keys_of(points: pd.DataFrame) -> list[CellKey]:
    """The :class:`CellKey` of every row of a :func:`point_table`.

    Parameters
    ----------
    points : DataFrame
        :func:`point_table`.

    Returns
    -------
    list of CellKey
    """
    xyz = points[["z", "y", "x"]].to_numpy(np.float64)
    return [CellKey(int(m), tuple(float(v) for v in p)) for m, p in zip(points["marker_id"], xyz)]


def cell_order(points: pd.DataFrame, by: str = "intensity", types: Sequence[str] = TYPES) -> list[CellKey]:
    """The order to step through the cells in.

    Parameters
    ----------
    points : DataFrame
        :func:`point_table`.
    by : str
        A key of :data:`ORDERS`. When its first column has no values (no cell table), the
        cells go by position.
    types : sequence of str
        Only points of these marker types.

    Returns
    -------
    list of CellKey
        Cells without a value of the sort key (added ones, unknown region) go last; ties
        go by position (z, y, x).

    Examples
    --------
    >>> pts = pd.DataFrame({"type": ["cell", "rejected", "cell"], "marker_id": [1, 2, 3],
    ...                     "z": [0.0, 1.0, 2.0], "y": 0.0, "x": 0.0,
    ...                     "intensity_raw": [5.0, 9.0, np.nan], "volume_um3": [3.0, 1.0, 2.0],
    ...                     "region_acronym": ["TH", "CTX", ""]})
    >>> [k.marker_id for k in cell_order(pts, "intensity")]
    [2, 1, 3]
    >>> [k.marker_id for k in cell_order(pts, "size (small first)", types=["cell"])]
    [3, 1]
    >>> [k.marker_id for k in cell_order(pts, "region")]
    [2, 1, 3]
    """
    if by not in ORDERS:
        raise ValueError(f"unknown order {by!r}: one of {', '.join(ORDERS)}")
    columns, ascending = ORDERS[by]
    frame = points[points["type"].isin(list(types))].copy()
    if not len(frame) or frame[columns[0]].replace("", np.nan).isna().all():
        columns, ascending = ORDERS["position"]
    if "region_acronym" in columns:
        frame["region_acronym"] = frame["region_acronym"].replace("", np.nan)
    sort_by = [*columns, "z", "y", "x"]
    frame = frame.sort_values(sort_by, ascending=[*ascending, True, True, True], na_position="last", kind="stable")
    return keys_of(frame)


def region_mask(acronyms: Sequence[str], query: str, ontology: Ontology | None = None) -> np.ndarray:
    """Which cells are in a region (and, with an ontology, in any region below it).

    Parameters
    ----------
    acronyms : sequence of str
        Region acronym of each cell.
    query : str
        The acronym asked for (case-insensitive).
    ontology : Ontology, optional
        For the regions below ``query``. Without one, or when the ontology does not know
        ``query``: the cells whose acronym is ``query``, or, when there are none, starts
        with it.

    Returns
    -------
    ndarray of bool

    Examples
    --------
    >>> region_mask(["CTXa3", "TH", "ctxa3"], "CTXa3").tolist(), region_mask(["CA1", "CA3", "TH"], "CA").tolist()
    ([True, False, True], [True, True, False])
    """
    names = np.array([str(a).lower() for a in acronyms], dtype=object)
    query = query.strip().lower()
    if not query:
        return np.zeros(len(names), bool)
    if ontology is not None:
        below = {r.acronym.lower(): r.id for r in ontology}
        if query in below:
            wanted = {ontology.acronym(r).lower() for r in ontology.descendants(below[query], include_self=True)}
            return np.isin(names, list(wanted))
    exact = names == query
    if exact.any():
        return exact
    return np.array([n.startswith(query) for n in names], bool)


# -- edits on layers ------------------------------------------------------------------------------


def blank_defaults(layer: Points) -> None:
    """Make points added to ``layer`` (napari's add mode, :func:`add_point`) carry no
    marker or detection id, rather than napari's default (the last point's features).

    Parameters
    ----------
    layer : Points
        A curated layer.
    """
    columns = layer.features.columns
    if not len(columns):
        return
    defaults = layer.feature_defaults.iloc[0].to_dict() if len(layer.feature_defaults) else {}
    wanted = {c: v for c, v in BLANK.items() if c in columns}
    if all(c in defaults and defaults[c] == v for c, v in wanted.items()):
        return
    for c in columns:
        defaults.setdefault(c, layer.features[c].iloc[-1] if len(layer.features) else None)
    layer.feature_defaults = {**{c: defaults[c] for c in columns}, **wanted}


def add_point(layer: Points, position: Sequence[float], features: Mapping | None = None, size=None) -> int:
    """Append a point with given features (the others as blank as :data:`BLANK`).

    Parameters
    ----------
    layer : Points
        Target layer.
    position : sequence of float
        Data coordinates.
    features : mapping, optional
        Feature values of the new point (columns the layer lacks are ignored).
    size : float, optional
        Point size (default: the layer's current size).

    Returns
    -------
    int
        Index of the new point (it is also selected, as napari's own add does).
    """
    columns = list(layer.features.columns)
    if columns:
        blank_defaults(layer)
        base = layer.feature_defaults.iloc[0].to_dict()
        given = {c: v for c, v in (features or {}).items() if c in columns}
        layer.feature_defaults = {**base, **given}
    try:
        layer.add(np.asarray(position, np.float64).reshape(1, -1))
    finally:
        if columns:
            layer.feature_defaults = {**base, **{c: v for c, v in BLANK.items() if c in columns}}
    index = len(layer.data) - 1
    if size is not None:
        sizes = np.array(layer.size, np.float64)
        sizes[index] = size
        layer.size = sizes
    return index


def move_point(source: Points, target: Points, index: int) -> int:
    """Move one point, with its features and size, from one layer to another.

    Parameters
    ----------
    source, target : Points
        The layers (same data coordinates).
    index : int
        The point in ``source``.

    Returns
    -------
    int
        Its index in ``target`` (the last).
    """
    features = source.features.iloc[index].to_dict() if len(source.features.columns) else {}
    position = np.array(source.data[index], np.float64)
    size = float(np.asarray(source.size)[index])
    new = add_point(target, position, features, size)
    source.remove([index])
    return new


def find_point(layers: Mapping[str, Points], key: CellKey, tolerance: float = 1e-6) -> tuple[str, int] | None:
    """Where a point is now.

    Parameters
    ----------
    layers : mapping of str to Points
        Marker type → layer.
    key : CellKey
        The point: by marker id, or (added points) by position.
    tolerance : float
        How far (data units) an added point may be from ``key.position``.

    Returns
    -------
    (str, int) or None
        Its marker type and index; None when it was deleted (or an added point moved).
    """
    fallback = None
    for name, layer in layers.items():
        ids = _marker_ids(layer)
        if key.marker_id >= 0:
            hits = np.flatnonzero(ids == key.marker_id)
            if len(hits):
                return name, int(hits[0])
            continue
        data = np.asarray(layer.data, np.float64).reshape(-1, layer.ndim)[:, -3:]
        near = np.all(np.abs(data - np.asarray(key.position)) <= tolerance, axis=1)
        hits = np.flatnonzero(near & (ids < 0))
        if len(hits):
            return name, int(hits[0])
        saved = np.flatnonzero(near & (_cell_ids(layer) < 0))  # an added point saved since: it has a marker id now
        if fallback is None and len(saved):
            fallback = name, int(saved[0])
    return fallback


def centre_on(viewer, layer: Points, index: int) -> None:
    """Show a point: its plane in the sliders and the camera centred on it.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.
    layer : Points
        The point's layer (its scale, translate and affine are honoured).
    index : int
        The point.
    """
    world = np.asarray(layer.data_to_world(layer.data[index]), np.float64)
    offset = viewer.dims.ndim - len(world)
    displayed = list(viewer.dims.displayed)
    for k, value in enumerate(world):
        if offset + k not in displayed:
            viewer.dims.set_point(offset + k, float(value))
    centre = [float(world[d - offset]) if d >= offset else float(viewer.dims.point[d]) for d in displayed]
    camera_of(viewer).center = tuple(centre)


def camera_of(viewer):
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before).

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.

    Returns
    -------
    napari.components.Camera
    """
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


# -- undo and the curation itself -----------------------------------------------------------------


@dataclass(frozen=True)
class Edit:
    """One undoable edit.

    Parameters
    ----------
    kind : {"move", "add"}
        Re-typed (moved between layers) or added.
    key : CellKey
        The point.
    source : str or None
        Marker type it had (None for an added point).
    target : str
        Marker type it got.
    """

    kind: str
    key: CellKey
    source: str | None
    target: str


@dataclass
class UndoStack:
    """Edits, newest last.

    Parameters
    ----------
    edits : list of Edit, optional
        Initial content.

    Examples
    --------
    >>> stack = UndoStack()
    >>> stack.push(Edit("add", CellKey(-1, (0.0, 1.0, 2.0)), None, "cell"))
    >>> len(stack), stack.pop().kind, stack.pop()
    (1, 'add', None)
    """

    edits: list[Edit] = field(default_factory=list)

    def push(self, edit: Edit) -> None:
        """Record an edit.

        Parameters
        ----------
        edit : Edit
            The edit just made.
        """
        self.edits.append(edit)

    def pop(self) -> Edit | None:
        """The newest edit, removed (None when empty)."""
        return self.edits.pop() if self.edits else None

    def __len__(self) -> int:
        return len(self.edits)


class Curator:
    """Navigation, accept/reject/add, undo and counts over the two layers of a project.

    Parameters
    ----------
    cell_layer, rejected_layer : Points
        The project's ``cell`` and ``rejected`` layers (same data coordinates).
    table : DataFrame, optional
        :func:`cell_table` of the run, for the sort keys; without it cells go by position.
    ontology : Ontology, optional
        For :meth:`jump_to_region` to find cells of regions below the one asked for.
    """

    def __init__(
        self,
        cell_layer: Points,
        rejected_layer: Points,
        table: pd.DataFrame | None = None,
        ontology: Ontology | None = None,
    ):
        self.layers: dict[str, Points] = {KEPT: cell_layer, REJECTED: rejected_layer}
        self.table = table
        self.ontology = ontology
        self.undo_stack = UndoStack()
        self.order: list[CellKey] = []
        self.position = -1
        self.order_by = "intensity"
        self.subset = "all"
        #: True while the curator itself changes the layers (napari's data events then are ours)
        self.busy = False
        start = point_table(self.layers)
        known = start[start["marker_id"] >= 0]
        #: marker type of every marker as the project was opened (marker id → type)
        self._original = pd.Series(known["type"].to_numpy(object), index=known["marker_id"].to_numpy(np.int64))
        self._original = self._original[~self._original.index.duplicated()]
        for layer in self.layers.values():
            blank_defaults(layer)
        self.sort()

    # navigation
    def points(self) -> pd.DataFrame:
        """:func:`point_table` of the layers now."""
        return point_table(self.layers, self.table)

    def sort(self, by: str | None = None, subset: str | None = None) -> None:
        """Rebuild the order (the current cell stays current when it is in the new one).

        Parameters
        ----------
        by : str, optional
            A key of :data:`ORDERS` (default: as before).
        subset : str, optional
            A key of :data:`SUBSETS` (default: as before).
        """
        self.order_by = by or self.order_by
        self.subset = subset or self.subset
        current = self.current_key
        self.order = cell_order(self.points(), self.order_by, SUBSETS[self.subset])
        self.position = self.order.index(current) if current in self.order else -1

    @property
    def current_key(self) -> CellKey | None:
        """The current cell's key (None before the first step)."""
        return self.order[self.position] if 0 <= self.position < len(self.order) else None

    def current(self) -> tuple[str, int] | None:
        """The current cell: (marker type, index in its layer), or None."""
        key = self.current_key
        return None if key is None else find_point(self.layers, key)

    def step(self, n: int = 1) -> tuple[str, int] | None:
        """Go ``n`` cells on (negative: back), skipping cells deleted meanwhile; stops at the ends.

        Parameters
        ----------
        n : int
            Number of cells, ±1 for next/previous.

        Returns
        -------
        (str, int) or None
            The new current cell.
        """
        if not self.order:
            return None
        direction = 1 if n >= 0 else -1
        for _ in range(abs(n)):
            pos = self.position + direction
            while 0 <= pos < len(self.order) and find_point(self.layers, self.order[pos]) is None:
                pos += direction
            if not 0 <= pos < len(self.order):
                break
            self.position = pos
        return self.current()

    def go_to(self, key: CellKey) -> tuple[str, int] | None:
        """Make a cell current.

        Parameters
        ----------
        key : CellKey
            The cell (when it is not in the order, the position does not change).

        Returns
        -------
        (str, int) or None
        """
        if key in self.order:
            self.position = self.order.index(key)
            return self.current()
        return None

    def jump_to_region(self, acronym: str) -> tuple[str, int] | None:
        """Go to the first cell (in the current order) of a region or a region below it.

        Parameters
        ----------
        acronym : str
            Region acronym (case-insensitive); see :func:`region_mask`.

        Returns
        -------
        (str, int) or None
            The cell, or None (and no move) when no cell in the order is in the region.
        """
        points = self.points()
        keys = keys_of(points)
        inside = region_mask(points["region_acronym"].tolist(), acronym, self.ontology)
        wanted = {k for k, hit in zip(keys, inside) if hit}
        for i, key in enumerate(self.order):
            if key in wanted:
                self.position = i
                return self.current()
        return None

    # edits
    def set_type(self, target: str, advance: bool = False) -> bool:
        """Move the current cell into the layer of ``target`` (accept: ``cell``, reject: ``rejected``).

        Parameters
        ----------
        target : str
            ``cell`` or ``rejected``.
        advance : bool
            Step to the next cell afterwards.

        Returns
        -------
        bool
            Whether the cell moved (False when it already was of that type, or no cell is current).
        """
        where = self.current()
        moved = False
        if where is not None and where[0] != target:
            key = self.current_key
            self._move(where[0], target, where[1])
            self.undo_stack.push(Edit("move", key, where[0], target))
            moved = True
        if advance:
            self.step(1)
        return moved

    def accept(self, advance: bool = False) -> bool:
        """Make the current cell a ``cell``.

        Parameters
        ----------
        advance : bool
            Step to the next cell afterwards.

        Returns
        -------
        bool
            Whether it moved.
        """
        return self.set_type(KEPT, advance)

    def reject(self, advance: bool = False) -> bool:
        """Make the current cell ``rejected``.

        Parameters
        ----------
        advance : bool
            Step to the next cell afterwards.

        Returns
        -------
        bool
            Whether it moved.
        """
        return self.set_type(REJECTED, advance)

    def add(self, world_position: Sequence[float], target: str = KEPT) -> int:
        """Add a cell the detector missed (a point without marker or detection id).

        Parameters
        ----------
        world_position : sequence of float
            Where, in world coordinates (e.g. ``viewer.cursor.position``); z is rounded to
            the nearest plane, as a marker's z is its plane.
        target : str
            Marker type of the new point.

        Returns
        -------
        int
            Index of the new point in its layer.
        """
        layer = self.layers[target]
        data = np.asarray(layer.world_to_data(world_position), np.float64)[-layer.ndim :]
        data[-3] = np.floor(data[-3] + 0.5)
        self.busy = True
        try:
            index = add_point(layer, data)
        finally:
            self.busy = False
        self.record_added(target, [index])
        return index

    def record_added(self, target: str, indices: Sequence[int]) -> None:
        """Record points added to a layer in napari (add mode) so that undo removes them.

        Parameters
        ----------
        target : str
            Their marker type.
        indices : sequence of int
            Their indices in the layer.
        """
        layer = self.layers[target]
        for i in indices:
            position = tuple(float(v) for v in np.asarray(layer.data[int(i)], np.float64)[-3:])
            self.undo_stack.push(Edit("add", CellKey(-1, position), None, target))

    def undo(self) -> Edit | None:
        """Undo the newest edit that can still be undone (its point not deleted meanwhile).

        Returns
        -------
        Edit or None
            The edit undone; a re-typed cell becomes current again.
        """
        while (edit := self.undo_stack.pop()) is not None:
            where = find_point(self.layers, edit.key)
            if where is None:
                continue
            if edit.kind == "add":
                self.busy = True
                try:
                    self.layers[where[0]].remove([where[1]])
                finally:
                    self.busy = False
            else:
                self._move(where[0], edit.source, where[1])
                self.go_to(edit.key)
            return edit
        return None

    def _move(self, source: str, target: str, index: int) -> int:
        self.busy = True
        try:
            return move_point(self.layers[source], self.layers[target], index)
        finally:
            self.busy = False

    # what there is
    def counts(self) -> dict[str, int]:
        """Kept and rejected points, added ones, re-typed and deleted markers.

        Added points are those without a marker id (not saved yet) or without a detection
        id (saved: the import calls them ``added``).

        Returns
        -------
        dict of str to int
            ``kept``, ``rejected``, ``added``, ``retyped``, ``deleted``.
        """
        ids = {name: _marker_ids(layer) for name, layer in self.layers.items()}
        now = pd.concat([pd.Series(name, index=v[v >= 0]) for name, v in ids.items()])
        now = now[~now.index.duplicated()]
        before = self._original.reindex(now.index)
        return {
            "kept": len(self.layers[KEPT].data),
            "rejected": len(self.layers[REJECTED].data),
            "added": int(sum(((v < 0) | (_cell_ids(self.layers[n]) < 0)).sum() for n, v in ids.items())),
            "retyped": int((before.notna() & (before != now)).sum()),
            "deleted": int((~self._original.index.isin(now.index)).sum()),
        }

    def counts_text(self) -> str:
        """:meth:`counts` as one line."""
        c = self.counts()
        text = f"kept {c['kept']} · rejected {c['rejected']} · added {c['added']} · re-typed {c['retyped']}"
        return text + (f" · deleted {c['deleted']}" if c["deleted"] else "")

    def describe(self) -> str:
        """One line about the current cell (position in the order, type, id, region, measures)."""
        where = self.current()
        if where is None:
            return f"{len(self.order)} cells by {self.order_by}: next (N) to start"
        name, index = where
        row = point_table({name: _OnePoint(self.layers[name], index)}, self.table).iloc[0]
        parts = [f"{self.position + 1}/{len(self.order)}", name]
        parts.append(f"cell {row['cell_id']}" if row["cell_id"] >= 0 else "added")
        if row["region_acronym"]:
            parts.append(str(row["region_acronym"]))
        if np.isfinite(row["intensity_raw"]):
            parts.append(f"I={row['intensity_raw']:.0f}")
        if np.isfinite(row["volume_um3"]):
            parts.append(f"V={row['volume_um3']:.0f} µm³")
        parts.append(f"z={row['z']:.0f}")
        return " · ".join(parts)

    def save(self, path: Path) -> None:
        """Write both layers into the project (re-typed, added and deleted markers).

        Parameters
        ----------
        path : Path
            The ``.cdb`` project.
        """
        self.busy = True
        try:
            save_points_layers(Path(path), [self.layers[KEPT], self.layers[REJECTED]])
        finally:
            self.busy = False
        for layer in self.layers.values():
            blank_defaults(layer)


# -- the widget ----------------------------------------------------------------------------------


def project_layers_of(viewer) -> tuple[Points | None, Points | None, Path | None]:
    """The ``cell`` and ``rejected`` layers of the first project open in a viewer.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.

    Returns
    -------
    (Points or None, Points or None, Path or None)
        The layers (by ``metadata["marker_type"]``) and the project path.
    """
    found: dict[str, Points] = {}
    path = None
    for layer in viewer.layers:
        meta = layer.metadata or {}
        if not isinstance(layer, Points) or meta.get("marker_type") not in TYPES or "spimflow_cdb" not in meta:
            continue
        if path is None:
            path = str(meta["spimflow_cdb"])
        if str(meta["spimflow_cdb"]) == path:
            found.setdefault(meta["marker_type"], layer)
    return found.get(KEPT), found.get(REJECTED), Path(path) if path else None


def empty_like(layer: Points, marker_type: str) -> tuple[np.ndarray, dict, str]:
    """Layer data for an empty Points layer of another marker type of the same project.

    Parameters
    ----------
    layer : Points
        A layer of the project (gives scale, translate, metadata and feature columns).
    marker_type : str
        ``cell`` or ``rejected``.

    Returns
    -------
    (ndarray, dict, str)
        ``(data, kwargs, "points")``.
    """
    features = layer.features.iloc[:0].copy()
    colour = KEPT_COLOUR if marker_type == KEPT else REJECTED_COLOUR
    kwargs = {
        "name": marker_type,
        "scale": tuple(layer.scale),
        "translate": tuple(layer.translate),
        "features": features,
        "metadata": {**layer.metadata, "marker_type": marker_type},
        "face_color": np.asarray(colour, np.float64),
        "size": float(np.asarray(layer.current_size)),
        "border_width": 0,
    }
    return np.zeros((0, layer.ndim)), kwargs, "points"


class CurationWidget(QWidget):
    """Dock widget: step through a project's cells, accept/reject/add them, undo, save.

    Keys (on the viewer and the two Points layers): N next, B back (previous), A accept,
    R reject, C add a cell at the mouse cursor, U undo.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer holding a project opened with the spimflow reader (or about to: the
        widget attaches to the first project added later).
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.curator: Curator | None = None
        self.project_path: Path | None = None
        #: (keymap provider, key, function) of every key this widget bound
        self._bindings: list = []
        self._attaching = False
        self.destroyed.connect(partial(_unbind, self._bindings))

        self.order_box = QComboBox()
        self.order_box.addItems(list(ORDERS))
        self.subset_box = QComboBox()
        self.subset_box.addItems(list(SUBSETS))
        self.region_edit = QLineEdit()
        self.region_edit.setPlaceholderText("acronym, e.g. CTX")
        self.region_button = QPushButton("Go")
        self.previous_button = QPushButton(f"◀ previous ({KEYS['previous']})")
        self.next_button = QPushButton(f"next ({KEYS['next']}) ▶")
        self.accept_button = QPushButton(f"accept ({KEYS['accept']})")
        self.reject_button = QPushButton(f"reject ({KEYS['reject']})")
        self.add_button = QPushButton(f"add at cursor ({KEYS['add']})")
        self.add_mode_button = QPushButton("add mode")
        self.add_mode_button.setCheckable(True)
        self.add_mode_button.setToolTip("click into the canvas to add cells to the 'cell' layer")
        self.undo_button = QPushButton(f"undo ({KEYS['undo']})")
        self.advance_box = QCheckBox("next cell after accept/reject")
        self.advance_box.setChecked(True)
        self.save_button = QPushButton("Save project")
        self.info_label = QLabel()
        self.info_label.setWordWrap(True)
        self.counts_label = QLabel()
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)

        grid = QGridLayout()
        grid.addWidget(QLabel("order"), 0, 0)
        grid.addWidget(self.order_box, 0, 1)
        grid.addWidget(QLabel("cells"), 1, 0)
        grid.addWidget(self.subset_box, 1, 1)
        grid.addWidget(QLabel("jump to region"), 2, 0)
        region_row = QHBoxLayout()
        region_row.addWidget(self.region_edit)
        region_row.addWidget(self.region_button)
        grid.addLayout(region_row, 2, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        for buttons in (
            (self.previous_button, self.next_button),
            (self.accept_button, self.reject_button),
            (self.add_button, self.add_mode_button, self.undo_button),
        ):
            row = QHBoxLayout()
            for button in buttons:
                row.addWidget(button)
            layout.addLayout(row)
        for widget in (self.advance_box, self.info_label, self.counts_label, self.save_button, self.status_label):
            layout.addWidget(widget)
        layout.addStretch(1)

        self.order_box.currentTextChanged.connect(self._on_order)
        self.subset_box.currentTextChanged.connect(self._on_order)
        self.region_button.clicked.connect(self.jump_to_region)
        self.region_edit.returnPressed.connect(self.jump_to_region)
        self.previous_button.clicked.connect(self.previous)
        self.next_button.clicked.connect(self.next)
        self.accept_button.clicked.connect(self.accept)
        self.reject_button.clicked.connect(self.reject)
        self.add_button.clicked.connect(self.add_at_cursor)
        self.add_mode_button.toggled.connect(self.set_add_mode)
        self.undo_button.clicked.connect(self.undo)
        self.save_button.clicked.connect(self.save)

        self.viewer.layers.events.inserted.connect(self._on_layers_changed)
        self.viewer.layers.events.removed.connect(self._on_layers_changed)
        self.attach()

    # attaching to a project
    def attach(self, create_missing: bool = True) -> bool:
        """Find the project's layers in the viewer and start curating them.

        Parameters
        ----------
        create_missing : bool
            When only one of the ``cell`` and ``rejected`` layers is open, add an empty one
            for the other type (else wait until both are there).

        Returns
        -------
        bool
            Whether a project is attached.
        """
        if self.curator is not None:
            return True
        cell, rejected, path = project_layers_of(self.viewer)
        if (cell is None and rejected is None) or (not create_missing and (cell is None or rejected is None)):
            self._set_enabled(False)
            self.info_label.setText("open a project: results/<sample>/annotation/cells.cdb (spimflow reader)")
            self.counts_label.setText("")
            return False
        self._attaching = True  # the layer added next is not a project opened
        try:
            if cell is None:
                data, kwargs, _ = empty_like(rejected, KEPT)
                cell = self.viewer.add_points(data, **kwargs)
            if rejected is None:
                data, kwargs, _ = empty_like(cell, REJECTED)
                rejected = self.viewer.add_points(data, **kwargs)
        finally:
            self._attaching = False
        self.project_path = path
        self.curator = Curator(cell, rejected, load_cell_table(path), project_ontology(path))
        self.curator.sort(self.order_box.currentText(), self.subset_box.currentText())
        for layer in (cell, rejected):
            layer.events.data.connect(self._on_data)
        cell.events.mode.connect(self._on_mode)
        self._bind_keys()
        self._set_enabled(True)
        self.refresh()
        return True

    def _on_layers_changed(self, event=None) -> None:
        """A layer added or removed: let go of a project whose layers went, take up one that came."""
        if self._attaching:
            return
        if self.curator is not None and any(layer not in self.viewer.layers for layer in self.curator.layers.values()):
            self._detach()
        self.attach(create_missing=False)

    def _detach(self) -> None:
        for layer in self.curator.layers.values():
            layer.events.data.disconnect(self._on_data)
        self.curator.layers[KEPT].events.mode.disconnect(self._on_mode)
        self._unbind_keys()
        self.curator = None
        self.project_path = None
        self._set_enabled(False)
        self.info_label.setText("open a project: results/<sample>/annotation/cells.cdb (spimflow reader)")
        self.counts_label.setText("")

    def _set_enabled(self, enabled: bool) -> None:
        for widget in (
            self.previous_button,
            self.next_button,
            self.accept_button,
            self.reject_button,
            self.add_button,
            self.add_mode_button,
            self.undo_button,
            self.save_button,
            self.region_button,
        ):
            widget.setEnabled(enabled)

    def _bind_keys(self) -> None:
        actions = {
            "next": self.next,
            "previous": self.previous,
            "accept": self.accept,
            "reject": self.reject,
            "add": self.add_at_cursor,
            "undo": self.undo,
        }
        for provider in (self.viewer, *self.curator.layers.values()):
            for name, action in actions.items():
                func = _KeyAction(action)
                provider.bind_key(KEYS[name], func, overwrite=True)
                self._bindings.append((provider, KEYS[name], func))

    def _unbind_keys(self) -> None:
        _unbind(self._bindings)

    def closeEvent(self, event) -> None:
        """Let go of the project (keys, event connections) when the widget closes.

        Parameters
        ----------
        event : QCloseEvent
            Qt's event.
        """
        if self.curator is not None:
            self._detach()
        self.viewer.layers.events.inserted.disconnect(self._on_layers_changed)
        self.viewer.layers.events.removed.disconnect(self._on_layers_changed)
        super().closeEvent(event)

    # actions
    def next(self) -> None:
        """Go to the next cell."""
        self._navigate(1)

    def previous(self) -> None:
        """Go to the previous cell."""
        self._navigate(-1)

    def _navigate(self, n: int) -> None:
        if self.curator is not None:
            self.curator.step(n)
            self.show_current()

    def accept(self) -> None:
        """Accept the current cell (then the next one is current, unless switched off)."""
        if self.curator is not None:
            self.curator.accept(self.advance_box.isChecked())
            self.show_current()

    def reject(self) -> None:
        """Reject the current cell (then the next one is current, unless switched off)."""
        if self.curator is not None:
            self.curator.reject(self.advance_box.isChecked())
            self.show_current()

    def add_at_cursor(self) -> None:
        """Add a cell where the mouse cursor is (on the plane shown)."""
        if self.curator is None:
            return
        index = self.curator.add(self.viewer.cursor.position)
        self.status_label.setText(f"added a cell at {np.round(self.curator.layers[KEPT].data[index], 1).tolist()}")
        self.refresh()

    def set_add_mode(self, on: bool) -> None:
        """Put the ``cell`` layer in napari's add mode (click to add) or back to select mode.

        Parameters
        ----------
        on : bool
            Add mode on or off.
        """
        if self.curator is None:
            return
        layer = self.curator.layers[KEPT]
        self.viewer.layers.selection.active = layer
        layer.mode = "add" if on else "select"

    def undo(self) -> None:
        """Undo the last accept, reject or add."""
        if self.curator is None:
            return
        edit = self.curator.undo()
        self.status_label.setText("nothing to undo" if edit is None else f"undone: {edit.kind} ({edit.target})")
        if edit is not None and edit.kind == "move":
            self.show_current()
        else:
            self.refresh()

    def jump_to_region(self) -> None:
        """Go to the first cell of the region typed in the line edit."""
        if self.curator is None:
            return
        query = self.region_edit.text().strip()
        if self.curator.jump_to_region(query) is None:
            self.status_label.setText(f"no cell in {query!r} in this order")
            self.refresh()
        else:
            self.status_label.setText("")
            self.show_current()

    def save(self) -> None:
        """Write the layers into the project file."""
        if self.curator is None:
            return
        try:
            self.curator.save(self.project_path)
        except (AnnotationError, ValueError, OSError) as exc:
            self.status_label.setText(f"not saved: {exc}")
            return
        self.status_label.setText(f"saved {self.project_path.name}: {self.curator.counts_text()}")
        self.refresh()

    # display
    def show_current(self) -> None:
        """Select and centre the current cell, and update the labels."""
        where = self.curator.current() if self.curator is not None else None
        if where is not None:
            name, index = where
            layer = self.curator.layers[name]
            for other in self.curator.layers.values():
                if other is not layer and other.selected_data:
                    other.selected_data = set()
            layer.visible = True
            if not self.add_mode_button.isChecked():
                self.viewer.layers.selection.active = layer
            layer.selected_data = {index}
            centre_on(self.viewer, layer, index)
        self.refresh()

    def refresh(self) -> None:
        """Update the current-cell line and the counts."""
        if self.curator is None:
            return
        self.info_label.setText(self.curator.describe())
        self.counts_label.setText(self.curator.counts_text())

    def _on_order(self, _text: str = "") -> None:
        if self.curator is not None:
            self.curator.sort(self.order_box.currentText(), self.subset_box.currentText())
            self.refresh()

    def _on_data(self, event) -> None:
        """Points added, removed or moved in napari itself: record napari's adds for undo, recount."""
        action = str(getattr(event, "action", ""))
        if self.curator is None or self.curator.busy or action not in ("added", "removed", "changed"):
            return
        if action == "added":
            layer = event.source
            name = next(n for n, lay in self.curator.layers.items() if lay is layer)
            n = len(layer.data)
            self.curator.record_added(name, [n + int(i) for i in event.data_indices if int(i) < 0])
        self.refresh()

    def _on_mode(self, event=None) -> None:
        """The ``cell`` layer's mode changed (also in napari's toolbar): keep the button in step."""
        on = str(self.curator.layers[KEPT].mode) == "add" if self.curator is not None else False
        if self.add_mode_button.isChecked() != on:
            self.add_mode_button.blockSignals(True)
            self.add_mode_button.setChecked(on)
            self.add_mode_button.blockSignals(False)


def _unbind(bindings: list) -> None:
    """Remove key bindings made by a widget (those still bound to its functions)."""
    for provider, key, func in bindings:
        if any(bound is func for bound in provider.keymap.values()):
            provider.bind_key(key, None)
    bindings.clear()


class _KeyAction:
    """A key binding calling a widget action (napari passes the viewer or layer; ignored)."""

    def __init__(self, action):
        self.action = action

    def __call__(self, _owner=None):
        self.action()
