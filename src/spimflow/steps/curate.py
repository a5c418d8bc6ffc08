"""Curation of detected cells through an annotation project: detections out as markers,
edited markers back in as the curated cell table.

Every detected cell (a row of ``cells_raw``) becomes one point marker: type ``cell`` when
the thresholds kept it, ``rejected`` when they removed it. Its detection id (the row
number in ``cells_raw``) rides along in the marker's style as ``{"spimflow_cell": id}``,
which ClickPoints and napari keep but do not show. Coming back, each marker is compared
with the detection it came from:

- a marker where its detection was, of type ``cell``: ``curation`` ``detected`` (or
  ``accepted`` when the thresholds had rejected it and a person re-typed it to ``cell``);
- moved (another plane, or more than 1e-3 voxel away in the plane): ``moved``, measured
  again at the new centre;
- a marker without a detection id (a cell the detector missed): ``added``, measured at
  the marker;
- type ``rejected`` (as exported, or re-typed from ``cell``), or deleted: not a cell.

The curated table holds the markers of type ``cell`` only, with the cell-table columns,
``cell_id`` (the detection id, -1 for added cells) and ``curation``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd

from spimflow.params.detect import DetectParams
from spimflow.steps.detect.chain import (
    CELL_COLUMNS,
    Maxima,
    edge_distance,
    filter_chain,
    measure_cells,
    required_overlap,
)
from spimflow.steps.detect.filters import IlluminationField

KEPT = "cell"
REJECTED = "rejected"
STYLE_KEY = "spimflow_cell"
#: how far (voxels, in the plane) a marker may sit from its detection and still count as not moved
MOVE_TOLERANCE = 1e-3

#: The cell-table columns measured at a centre (all but the centre and the block).
MEASURED = [c for c in CELL_COLUMNS if c not in ("z", "y", "x", "block")]


def marker_style(cell_id: int) -> str:
    """The marker style that carries a detection id.

    Parameters
    ----------
    cell_id : int
        Row number of the cell in ``cells_raw``.

    Returns
    -------
    str
        JSON text.

    Examples
    --------
    >>> marker_style(7)
    '{"spimflow_cell": 7}'
    >>> style_cell_id(marker_style(7)), style_cell_id(None), style_cell_id('{"color": "#ff0000"}')
    (7, -1, -1)
    """
    return json.dumps({STYLE_KEY: int(cell_id)})


def style_cell_id(style: str | None) -> int:
    """The detection id a marker style carries, or -1.

    Parameters
    ----------
    style : str or None
        A marker's style text (JSON, as ClickPoints stores it).

    Returns
    -------
    int
        The id, or -1 when the style holds none (a marker a person added).
    """
    if not style or not isinstance(style, str):
        return -1
    try:
        value = json.loads(style)
    except ValueError:
        return -1
    cell = value.get(STYLE_KEY) if isinstance(value, dict) else None
    return int(cell) if isinstance(cell, int) and not isinstance(cell, bool) else -1


def marker_text(cells: pd.DataFrame, acronyms: Sequence[str] | None = None) -> list[str]:
    """One short label per cell: region acronym (when known) and key measurements.

    Parameters
    ----------
    cells : DataFrame
        Cell table (``intensity_raw``, ``size``, ``volume_um3``).
    acronyms : sequence of str, optional
        Region acronym of each cell.

    Returns
    -------
    list of str

    Examples
    --------
    >>> t = pd.DataFrame({"intensity_raw": [812.4], "size": [33], "volume_um3": [412.5]})
    >>> marker_text(t, ["CTXa3"])
    ['CTXa3 I=812 V=412µm³']
    """
    parts = [f"I={i:.0f} V={v:.0f}µm³" for i, v in zip(cells["intensity_raw"], cells["volume_um3"])]
    if acronyms is None:
        return parts
    return [f"{a} {p}" if a else p for a, p in zip(acronyms, parts)]


def detections_as_markers(
    cells_raw: pd.DataFrame, kept: np.ndarray, acronyms: Sequence[str] | None = None
) -> pd.DataFrame:
    """Every detection as a marker row for :func:`spimflow.annotate.frame_to_markers`.

    Parameters
    ----------
    cells_raw : DataFrame
        All detections, before thresholds (row number = detection id).
    kept : ndarray of bool
        Which detections passed the thresholds.
    acronyms : sequence of str, optional
        Region acronym of each detection, for the marker text.

    Returns
    -------
    DataFrame
        Columns ``z, y, x, type, text, style``.
    """
    kept = np.asarray(kept, bool)
    return pd.DataFrame(
        {
            "z": cells_raw["z"].to_numpy(),
            "y": cells_raw["y"].to_numpy(),
            "x": cells_raw["x"].to_numpy(),
            "type": np.where(kept, KEPT, REJECTED),
            "text": marker_text(cells_raw, acronyms),
            "style": [marker_style(i) for i in range(len(cells_raw))],
        }
    )


def kept_mask(cells_raw: pd.DataFrame, cells: pd.DataFrame) -> np.ndarray:
    """Which rows of ``cells_raw`` are in the thresholded table ``cells`` (by centre).

    Parameters
    ----------
    cells_raw, cells : DataFrame
        All detections, and those the thresholds kept.

    Returns
    -------
    ndarray of bool
    """
    keys = pd.MultiIndex.from_frame(cells[["z", "y", "x"]])
    return pd.MultiIndex.from_frame(cells_raw[["z", "y", "x"]]).isin(keys)


def curate(cells_raw: pd.DataFrame, markers: pd.DataFrame, kept: np.ndarray | None = None) -> pd.DataFrame:
    """Compare edited markers with the detections they came from.

    Parameters
    ----------
    cells_raw : DataFrame
        All detections (row number = detection id).
    markers : DataFrame
        The project's markers (:func:`spimflow.annotate.markers_to_frame`: ``z`` is the
        plane, ``y, x`` voxel centres, ``type``, ``style``).
    kept : ndarray of bool, optional
        Which detections the thresholds kept (so a rejected one re-typed to ``cell`` is
        reported as ``accepted``).

    Returns
    -------
    DataFrame
        One row per marker of type ``cell``: ``z, y, x`` (a detection's own sub-voxel
        centre when the marker did not move), ``cell_id``, ``curation`` and
        ``needs_measuring`` (moved and added cells), in marker order. Measured columns
        are not filled in here (see :func:`curated_cells`).

    Raises
    ------
    ValueError
        If a marker carries a detection id that ``cells_raw`` does not have (a project
        exported from other detections).

    Examples
    --------
    >>> raw = pd.DataFrame({"z": [1.2, 5.0], "y": [3.0, 4.0], "x": [2.0, 8.0]})
    >>> m = pd.DataFrame({"z": [1, 5, 2], "y": [3.0, 4.0, 6.0], "x": [2.0, 9.5, 1.0],
    ...                   "type": ["cell", "cell", "cell"],
    ...                   "style": [marker_style(0), marker_style(1), None]})
    >>> curate(raw, m)[["z", "cell_id", "curation"]].to_dict("list")
    {'z': [1.2, 5.0, 2.0], 'cell_id': [0, 1, -1], 'curation': ['detected', 'moved', 'added']}
    """
    ids = np.array([style_cell_id(s) for s in markers["style"]], dtype=np.int64)
    bad = ids[(ids >= len(cells_raw))]
    if len(bad):
        raise ValueError(
            f"markers name detection ids {sorted(set(bad.tolist()))[:5]} that the cell table does not have "
            f"({len(cells_raw)} detections): the project was exported from other detections"
        )
    first = ~pd.Series(ids).duplicated().to_numpy() | (ids < 0)  # a copied marker counts as added
    ids = np.where(first, ids, -1)
    has = ids >= 0
    src = cells_raw.iloc[np.where(has, ids, 0)]
    orig_plane = np.floor(src["z"].to_numpy() + 0.5)
    same = (
        has
        & (markers["z"].to_numpy() == orig_plane)
        & (np.abs(markers["y"].to_numpy() - src["y"].to_numpy()) <= MOVE_TOLERANCE)
        & (np.abs(markers["x"].to_numpy() - src["x"].to_numpy()) <= MOVE_TOLERANCE)
    )
    out = pd.DataFrame(
        {
            "z": np.where(same, src["z"].to_numpy(), markers["z"].to_numpy()).astype(np.float64),
            "y": np.where(same, src["y"].to_numpy(), markers["y"].to_numpy()).astype(np.float64),
            "x": np.where(same, src["x"].to_numpy(), markers["x"].to_numpy()).astype(np.float64),
            "cell_id": ids,
            "type": markers["type"].to_numpy(),
            "curation": np.where(~has, "added", np.where(same, "detected", "moved")),
        }
    )
    if kept is not None:
        was_kept = np.ones(len(out), bool)
        was_kept[has] = np.asarray(kept, bool)[ids[has]]
        out.loc[same & ~was_kept, "curation"] = "accepted"
    out["needs_measuring"] = out["curation"].isin(["moved", "added"]).to_numpy()
    return out[out["type"] == KEPT].drop(columns="type").reset_index(drop=True)


def measure_at(
    source,
    points: np.ndarray,
    voxel_size: Sequence[float],
    params: DetectParams,
    illumination: IlluminationField | None = None,
) -> pd.DataFrame:
    """Measure cells at given centres as the detector would (shape and intensities).

    Each point is measured in its own block (the point's voxel ± the overlap the filters
    need, clipped to the volume), seeded at the voxel nearest to the point.

    Parameters
    ----------
    source : array_like (z, y, x)
        The signal volume (a zarr or numpy array; only the blocks are read).
    points : (n, 3) ndarray
        Centres (z, y, x) in voxels.
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : DetectParams
        Detection parameters.
    illumination : IlluminationField, optional
        The flat field, when illumination correction is on.

    Returns
    -------
    DataFrame
        The measured columns of :data:`CELL_COLUMNS` (``size`` … ``edge``), one row
        per point.
    """
    shape = np.asarray(source.shape)
    overlap = np.asarray(required_overlap(voxel_size, params))
    rows = []
    for p in np.asarray(points, np.float64).reshape(-1, 3):
        peak = np.clip(np.floor(p + 0.5).astype(np.int64), 0, shape - 1)
        lo, hi = np.maximum(peak - overlap, 0), np.minimum(peak + overlap + 1, shape)
        raw = np.asarray(source[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]])
        gain = None
        if params.illumination.enabled and illumination is not None:
            gain = illumination.gain((lo[0], hi[0]), (lo[1], hi[1]), (lo[2], hi[2]))
        flt = filter_chain(raw, voxel_size, params, gain)
        none = np.zeros((0, 3), np.int64)
        maxima = Maxima((peak - lo)[None].astype(np.int64), np.zeros((1, 3)), none, none)
        row = {k: float(v[0]) for k, v in measure_cells(flt, maxima, np.array([0]), voxel_size, params).items()}
        row["edge"] = float(edge_distance(p[None], shape, voxel_size)[0])
        rows.append(row)
    return pd.DataFrame(rows, columns=MEASURED)


def curated_cells(
    cells_raw: pd.DataFrame,
    markers: pd.DataFrame,
    kept: np.ndarray | None,
    source,
    voxel_size: Sequence[float],
    params: DetectParams,
    illumination: IlluminationField | None = None,
) -> pd.DataFrame:
    """The curated cell table: the project's ``cell`` markers with every cell-table column.

    Parameters
    ----------
    cells_raw : DataFrame
        All detections (row number = detection id).
    markers : DataFrame
        The edited project's markers (:func:`spimflow.annotate.markers_to_frame`).
    kept : ndarray of bool or None
        Which detections the thresholds kept (see :func:`curate`).
    source : array_like (z, y, x)
        The signal volume, for measuring moved and added cells.
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : DetectParams
        Detection parameters.
    illumination : IlluminationField, optional
        The flat field, when illumination correction is on.

    Returns
    -------
    DataFrame
        :data:`CELL_COLUMNS` (``block`` -1 for moved and added cells) plus ``cell_id`` and
        ``curation``.
    """
    cur = curate(cells_raw, markers, kept)
    table = pd.DataFrame({"z": cur["z"], "y": cur["y"], "x": cur["x"]})
    has = cur["cell_id"].to_numpy() >= 0
    for c in [*MEASURED, "block"]:
        values = np.zeros(len(cur), dtype=CELL_COLUMNS[c])
        values[has] = cells_raw[c].to_numpy()[cur["cell_id"].to_numpy()[has]]
        table[c] = values
    again = cur["needs_measuring"].to_numpy()
    if again.any():
        fresh = measure_at(source, cur.loc[again, ["z", "y", "x"]].to_numpy(), voxel_size, params, illumination)
        for c in MEASURED:
            table.loc[again, c] = fresh[c].to_numpy().astype(CELL_COLUMNS[c])
        table.loc[again, "block"] = -1
    table = table.astype(CELL_COLUMNS)
    table["cell_id"] = cur["cell_id"].to_numpy()
    table["curation"] = cur["curation"].to_numpy()
    return table
