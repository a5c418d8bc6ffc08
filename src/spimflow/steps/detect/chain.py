"""The detection chain on one block: filters → maxima → centres → shapes → measurements.

Coordinates: (z, y, x) voxel indices of the whole volume, voxel centres at integers.
A block is a sub-array ``raw`` whose first voxel is volume voxel ``offset``; it
returns only the cells it owns: those whose centre, rounded to the nearest voxel,
lies in its core. With an overlap of at least :func:`required_overlap` every owned
cell is exactly what a whole-volume run gives (same floats, same shape).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from spimflow.params.detect import DetectParams
from spimflow.steps.detect import _objects_nb as O
from spimflow.steps.detect.filters import (
    IlluminationField,
    as_float32,
    background_radius,
    dog_filter,
    dog_radius,
    remove_background,
)
from spimflow.steps.detect.split import split_margin, split_rows

#: Columns of a cell table, in order, with their dtypes.
CELL_COLUMNS: dict[str, str] = {
    "z": "float64",
    "y": "float64",
    "x": "float64",
    "size": "int64",
    "volume_um3": "float64",
    "intensity_raw": "float64",
    "intensity_bg": "float64",
    "intensity_dog": "float64",
    "mean_raw": "float64",
    "mean_bg": "float64",
    "mean_dog": "float64",
    "edge": "float64",
    "block": "int64",
}
#: Columns a threshold may use (positions, everything measured, the distance to the border).
MEASURED_COLUMNS = [c for c in CELL_COLUMNS if c != "block"]


def empty_cells() -> pd.DataFrame:
    """Make a cell table with no rows and the right columns and dtypes.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`CELL_COLUMNS`, zero rows.

    Examples
    --------
    >>> cells = empty_cells()
    >>> cells.shape, str(cells["size"].dtype)
    ((0, 13), 'int64')
    """
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in CELL_COLUMNS.items()})


# -- reach of each step, in voxels ---------------------------------------------------


@dataclass(frozen=True)
class Radii:
    """How far (voxels, per axis z, y, x) each step looks; sets the block overlap.

    Attributes
    ----------
    background : tuple of int
        Reach of the opening: 2 × rectangle half-size, 0 along z.
    dog : tuple of int
        Outer Gaussian half-width.
    maxima : tuple of int
        h-max / plateau window half-size (>= 1).
    shape : tuple of int
        Maximum cell radius: half-size of the watershed box.
    box : tuple of int
        Peak-intensity box half-size.
    """

    background: tuple[int, int, int]  # reach of the opening (2 x rectangle half-size, 0 along z)
    dog: tuple[int, int, int]  # outer Gaussian half-width
    maxima: tuple[int, int, int]  # h-max / plateau window half-size (>= 1)
    shape: tuple[int, int, int]  # max cell radius: half-size of the watershed box
    box: tuple[int, int, int]  # peak-intensity box half-size

    @property
    def filters(self) -> tuple[int, int, int]:
        """Combined reach (voxels, z, y, x) of the filters: background + DoG."""
        return tuple(b + d for b, d in zip(self.background, self.dog))  # type: ignore[return-value]


def detection_radii(voxel_size: Sequence[float], params: DetectParams) -> Radii:
    """Convert the µm sizes of the detection parameters to reaches in voxels per axis.

    Parameters
    ----------
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : DetectParams
        Detection parameters; switched-off steps reach 0.

    Returns
    -------
    Radii

    Examples
    --------
    >>> from spimflow.params.detect import DetectParams
    >>> r = detection_radii((4.0, 2.0, 2.0), DetectParams())
    >>> r.background, r.dog, r.maxima, r.shape, r.box
    ((0, 14, 14), (5, 9, 9), (2, 4, 4), (3, 6, 6), (1, 2, 2))
    >>> r.filters
    (5, 23, 23)
    """
    vs = tuple(float(v) for v in voxel_size)
    if params.background.enabled:
        ry, rx = background_radius(vs, params.background)
        bg = (0, 2 * ry, 2 * rx)
    else:
        bg = (0, 0, 0)
    dog = dog_radius(vs, params.dog) if params.dog.enabled else (0, 0, 0)
    mx = tuple(max(1, int(round(params.maxima.radius_um / v))) for v in vs)
    sh = tuple(int(math.floor(params.shape.max_radius_um / v)) for v in vs) if params.shape.enabled else (0, 0, 0)
    box = tuple(int(math.floor(params.measure.box_um[a] / vs[a] / 2.0 + 0.5)) for a in range(3))
    return Radii(bg, dog, mx, sh, box)  # type: ignore[arg-type]


def object_margin(voxel_size: Sequence[float], params: DetectParams) -> tuple[int, int, int]:
    """How far (voxels per axis) beyond the core the objects of owned cells read the filtered image.

    A cell owned by a block has its peak voxel p within (maxima window + 1) of the core
    (its centre is the region centroid or p ± 0.5; with ``refine.center: centroid`` the
    centroid of its shape, within the shape radius of p: then p is within
    max(window, shape radius) + 1). Results at p read the filtered image
    within max(window, box, shape radius + 1 + window) of p: the maxima test, the peak
    box, and the watershed ball with the neighbours of its voxels and the maxima tests
    of the roots inside it; with ``split.enabled``, also
    :func:`~spimflow.steps.detect.split.split_margin` of p (the touching-cell search).

    Parameters
    ----------
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : DetectParams
        Detection parameters.

    Returns
    -------
    tuple of int
        Margin (z, y, x), voxels.

    Examples
    --------
    >>> from spimflow.params.detect import DetectParams
    >>> object_margin((4.0, 2.0, 2.0), DetectParams())  # the touching-cell split reads farthest
    (15, 26, 26)
    >>> object_margin((4.0, 2.0, 2.0), DetectParams.model_validate({"split": {"enabled": False}}))
    (9, 16, 16)
    """
    r = detection_radii(voxel_size, params)
    reach = centre_reach(r, params)
    out = []
    for a in range(3):
        need = max(r.maxima[a], 1, r.box[a], (r.shape[a] + 1 + r.maxima[a]) if params.shape.enabled else 0)
        if params.split.enabled:  # the touching-cell split (spimflow.steps.detect.split)
            need = max(need, split_margin(voxel_size, params, r.maxima, r.box)[a])
        out.append(reach[a] + need)
    return tuple(out)  # type: ignore[return-value]


def centre_reach(radii: Radii, params: DetectParams) -> tuple[int, int, int]:
    """How far (voxels per axis) a cell's peak voxel can lie outside the core of the block owning it.

    The centre is within the maxima window of the peak (sub-voxel fit, plateau or h-dome
    centroid), or, with ``refine.center: centroid``, within the shape radius; + 1 for
    rounding the centre to its nearest voxel.

    Parameters
    ----------
    radii : Radii
        From :func:`detection_radii`.
    params : DetectParams
        Detection parameters (``refine.center``).

    Returns
    -------
    tuple of int
        Reach (z, y, x), voxels.

    Examples
    --------
    >>> from spimflow.params.detect import DetectParams
    >>> p = DetectParams.model_validate({"refine": {"center": "centroid"}})
    >>> r = detection_radii((4.0, 2.0, 2.0), p)
    >>> centre_reach(r, DetectParams()), centre_reach(r, p)
    ((3, 5, 5), (4, 7, 7))
    """
    centroid = params.refine.center == "centroid" and params.shape.enabled
    return tuple(max(radii.maxima[a], radii.shape[a] if centroid else 0) + 1 for a in range(3))  # type: ignore


def required_overlap(voxel_size: Sequence[float], params: DetectParams) -> tuple[int, int, int]:
    """Smallest block overlap for results identical to a whole-volume run.

    :func:`object_margin` plus the filters' reach (the filtered image is exact only
    farther than that from an internal block edge).

    Parameters
    ----------
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : DetectParams
        Detection parameters.

    Returns
    -------
    tuple of int
        Overlap (z, y, x), voxels.

    Examples
    --------
    >>> from spimflow.params.detect import DetectParams
    >>> required_overlap((4.0, 2.0, 2.0), DetectParams())
    (20, 49, 49)
    >>> required_overlap((4.0, 2.0, 2.0), DetectParams.model_validate({"split": {"enabled": False}}))
    (14, 39, 39)
    """
    r = detection_radii(voxel_size, params)
    return tuple(m + f for m, f in zip(object_margin(voxel_size, params), r.filters))  # type: ignore[return-value]


# -- steps -------------------------------------------------------------------------------


@dataclass
class Filtered:
    """The images of the chain on one block, all (z, y, x).

    Attributes
    ----------
    raw : ndarray
        The input (uint16/float32 as given).
    bg : ndarray of float32
        After illumination correction and background removal (whole block).
    dog : ndarray of float32
        The image maxima and shapes work on, computed only on the sub-box starting at
        block voxel ``origin``.
    origin : tuple of int
        Block voxel (z, y, x) of ``dog[0, 0, 0]``.
    """

    raw: np.ndarray
    bg: np.ndarray
    dog: np.ndarray
    origin: tuple[int, int, int] = (0, 0, 0)


def filter_chain(
    raw: np.ndarray,
    voxel_size: Sequence[float],
    params: DetectParams,
    gain: np.ndarray | None = None,
    sub: tuple[slice, slice, slice] | None = None,
) -> Filtered:
    """Run the filters on one block: illumination, background removal, DoG.

    A switched-off step passes its input through, so ``bg`` is the illumination-
    corrected image without background removal and ``dog`` equals ``bg`` without DoG.

    Parameters
    ----------
    raw : ndarray
        Block voxels (z, y, x), any real dtype.
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : DetectParams
        Detection parameters.
    gain : ndarray, optional
        Illumination gain (1 / field) for these voxels, broadcast over planes; required
        when illumination correction is enabled.
    sub : tuple of slice, optional
        Compute the DoG only on this (z, y, x) sub-box of the block (default: all of it).

    Returns
    -------
    Filtered

    Raises
    ------
    ValueError
        If illumination correction is enabled and ``gain`` is None.
    """
    if raw.dtype not in (np.uint16, np.float32):
        raw = raw.astype(np.float32)
    raw = np.ascontiguousarray(raw)
    work = raw
    if params.illumination.enabled:
        if gain is None:
            raise ValueError("illumination is enabled: pass the gain of this block")
        work = np.ascontiguousarray(as_float32(raw) * gain, np.float32)
    bg = remove_background(work, voxel_size, params.background) if params.background.enabled else as_float32(work)
    sub = sub or (slice(0, raw.shape[0]), slice(0, raw.shape[1]), slice(0, raw.shape[2]))
    part = bg[sub]
    dog = dog_filter(part, voxel_size, params.dog) if params.dog.enabled else np.ascontiguousarray(part)
    return Filtered(raw, bg, dog, tuple(s.start for s in sub))  # type: ignore[arg-type]


@dataclass
class Maxima:
    """Maxima found by :func:`find_maxima`, in voxel indices of the image searched.

    Attributes
    ----------
    peaks : (n, 3) ndarray of int64
        Peak voxel (z, y, x) of each kept maximum.
    deltas : (n, 3) ndarray of float64
        Centre minus peak (sub-voxel fit or region centroid), voxels.
    rejected : (k, 3) ndarray of int64
        Local maxima that were not kept (plateau duplicates, h-max) ...
    targets : (k, 3) ndarray of int64
        ... and the brighter (or equal, earlier) voxel that rejected each.
    """

    peaks: np.ndarray  # (n, 3) int64 peak voxel of each maximum (indices of the image searched)
    deltas: np.ndarray  # (n, 3) float64 centre - peak (sub-voxel fit or region centroid)
    rejected: np.ndarray  # (k, 3) int64 local maxima that were not kept (plateau duplicates, h-max) ...
    targets: np.ndarray  # (k, 3) int64 ... and the brighter (or equal, earlier) voxel that rejected each


def find_maxima(f: np.ndarray, voxel_size: Sequence[float], params: DetectParams) -> Maxima:
    """Find regional maxima (h_max null) or h-maxima of ``f`` >= threshold; one per plateau/dome.

    Centre: with ``refine`` on, the peak voxel plus a 3-point Gaussian fit along each
    axis (plateaus of equal values keep their centroid); with it off, the centroid
    of the maximum's region (plateau or h-dome), as ClearMap does.

    Parameters
    ----------
    f : ndarray of float32
        Filtered image (z, y, x), C-contiguous.
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : DetectParams
        Detection parameters (``maxima``, ``refine``).

    Returns
    -------
    Maxima
    """
    r = detection_radii(voxel_size, params)
    if not f.size:
        z = np.zeros((0, 3), np.int64)
        return Maxima(z, np.zeros((0, 3)), z, z)
    cands = O.local_max_candidates(f, np.float32(params.maxima.threshold))
    h = float(params.maxima.h_max or 0.0)
    keep, cen, npts, target = O.maxima_regions(f, cands, h, *r.maxima)
    peaks = cands[keep]
    rej = cands[~keep]
    tgt = target[~keep]
    order = np.lexsort((rej[:, 2], rej[:, 1], rej[:, 0]))
    cen = cen[keep]
    if params.refine.enabled and len(peaks):
        fit = O.refine_peaks(f, peaks)
        plateau = (npts[keep] > 1) & (h == 0.0)
        cen = np.where(plateau[:, None], cen, fit)
    return Maxima(peaks, cen, np.ascontiguousarray(rej[order]), np.ascontiguousarray(tgt[order]))


def owned_mask(centres: np.ndarray, core: Sequence[tuple[int, int]], volume_shape: Sequence[int]) -> np.ndarray:
    """Select the centres whose nearest voxel lies in the core [start, stop) per axis.

    Parameters
    ----------
    centres : (n, 3) ndarray of float
        Cell centres (z, y, x), volume voxel coordinates.
    core : sequence of (int, int)
        Core range [start, stop) per axis (z, y, x).
    volume_shape : sequence of int
        Volume shape (z, y, x); centres just outside the volume count for the edge voxel.

    Returns
    -------
    (n,) ndarray of bool

    Examples
    --------
    >>> centres = np.array([[9.4, 0.0, 0.0], [9.6, 0.0, 0.0]])
    >>> owned_mask(centres, [(0, 10), (0, 10), (0, 10)], (20, 10, 10)).tolist()
    [True, False]
    """
    if not len(centres):
        return np.zeros(0, bool)
    vox = np.floor(centres + 0.5).astype(np.int64)
    vox = np.clip(vox, 0, np.asarray(volume_shape, np.int64) - 1)
    lo = np.array([c[0] for c in core])
    hi = np.array([c[1] for c in core])
    return np.all((vox >= lo) & (vox < hi), axis=1)


def edge_distance(centres: np.ndarray, volume_shape: Sequence[int], voxel_size: Sequence[float]) -> np.ndarray:
    """Distance (µm) from each centre to the nearest outermost voxel plane of the volume.

    0 for a cell centred on the first or last plane along any axis (its centre may lie
    outside the volume); distances are per axis in µm, the smallest over the six faces.

    Parameters
    ----------
    centres : (n, 3) ndarray of float
        Cell centres (z, y, x), volume voxel coordinates.
    volume_shape : sequence of int
        Volume shape (z, y, x).
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.

    Returns
    -------
    (n,) ndarray of float64

    Examples
    --------
    >>> edge_distance(np.array([[0.0, 5.0, 5.0], [3.0, 5.0, 5.0]]), (10, 20, 20), (5.0, 2.0, 2.0)).tolist()
    [0.0, 10.0]
    """
    c = np.asarray(centres, np.float64).reshape(-1, 3)
    last = np.asarray(volume_shape, np.float64) - 1.0
    d = np.minimum(c, last - c) * np.asarray(voxel_size, np.float64)
    return np.maximum(d.min(axis=1), 0.0) if len(c) else np.zeros(0)


def on_border(peaks: np.ndarray, volume_shape: Sequence[int]) -> np.ndarray:
    """Select peaks on the outermost plane of the volume along any axis.

    Such a maximum is where the filters meet the border: a cell cut by it (centre
    outside), or bright structure that goes on beyond it. It cannot be told from a
    cell centred exactly on that plane.

    Parameters
    ----------
    peaks : (n, 3) ndarray of int
        Peak voxels (z, y, x), volume voxel coordinates.
    volume_shape : sequence of int
        Volume shape (z, y, x).

    Returns
    -------
    (n,) ndarray of bool

    Examples
    --------
    >>> on_border(np.array([[0, 4, 4], [3, 4, 4], [3, 4, 9]]), (10, 9, 10)).tolist()
    [True, False, True]
    """
    p = np.asarray(peaks, np.int64).reshape(-1, 3)
    last = np.asarray(volume_shape, np.int64) - 1
    return np.any((p <= 0) | (p >= last), axis=1)


def measure_cells(
    flt: Filtered,
    maxima: Maxima,
    owned: np.ndarray,
    voxel_size: Sequence[float],
    params: DetectParams,
    with_centroid: bool = False,
) -> dict[str, np.ndarray]:
    """Measure shape (watershed) and intensities of the maxima (found in ``flt.dog``) listed in ``owned``.

    Parameters
    ----------
    flt : Filtered
        The block's images.
    maxima : Maxima
        Maxima of ``flt.dog``.
    owned : ndarray of int
        Indices into ``maxima.peaks`` of the cells to measure.
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : DetectParams
        Detection parameters (``shape``, ``measure``).
    with_centroid : bool, optional
        Also return ``centroid``.

    Returns
    -------
    dict of str to ndarray
        One array per owned maximum for each key: ``size`` (voxels in the watershed
        shape; 0 when shape is off or the peak is not above the shape threshold),
        ``volume_um3`` (µm³), ``intensity_raw/bg/dog`` (max of raw / bg / dog in the peak
        box) and ``mean_raw/bg/dog`` (mean over the shape; NaN when size is 0); with
        ``with_centroid``, ``centroid`` (n, 3): the shape's centroid minus the peak voxel
        (voxels; NaN when size is 0).
    """
    r = detection_radii(voxel_size, params)
    vz, vy, vx = (float(v) for v in voxel_size)
    size, sums, peaks = O.cell_shapes(
        flt.dog,
        np.float32(params.shape.threshold),
        maxima.peaks,
        owned.astype(np.int64),
        maxima.rejected,
        maxima.targets,
        *r.shape,
        vz,
        vy,
        vx,
        float(params.shape.max_radius_um),
        flt.raw,
        flt.bg,
        *flt.origin,
        *r.box,
        bool(params.shape.enabled),
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / np.where(size > 0, size, np.nan)[:, None]
    out = {
        "size": size,
        "volume_um3": size * (vz * vy * vx),
        "intensity_raw": peaks[:, 0],
        "intensity_bg": peaks[:, 1],
        "intensity_dog": peaks[:, 2],
        "mean_raw": means[:, 0],
        "mean_bg": means[:, 1],
        "mean_dog": means[:, 2],
    }
    if with_centroid:
        out["centroid"] = means[:, 3:6]  # sums of integer offsets / size: the same in every block
    return out


def detect_block(
    raw: np.ndarray,
    voxel_size: Sequence[float],
    params: DetectParams,
    *,
    offset: Sequence[int] = (0, 0, 0),
    core: Sequence[tuple[int, int]] | None = None,
    volume_shape: Sequence[int] | None = None,
    gain: np.ndarray | None = None,
    block_id: int = 0,
) -> pd.DataFrame:
    """Detect the cells of one block (or a whole volume: default core = everything).

    Parameters
    ----------
    raw : ndarray
        The block's voxels (z, y, x), any real dtype.
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : DetectParams
        Detection parameters.
    offset : sequence of int, optional
        Volume index (z, y, x) of ``raw[0, 0, 0]``.
    core : sequence of (int, int), optional
        Volume ranges [start, stop) per axis of the cells to return; default all of ``raw``.
    volume_shape : sequence of int, optional
        Shape of the whole volume; default ``offset + raw.shape``.
    gain : ndarray, optional
        Illumination gain for these voxels (see :meth:`IlluminationField.gain`).
    block_id : int, optional
        Written to the ``block`` column.

    Returns
    -------
    pandas.DataFrame
        Cell table with :data:`CELL_COLUMNS`, centres in volume voxel coordinates (z, y, x).

    Raises
    ------
    ValueError
        If ``raw`` is not 3-D, or illumination is enabled without ``gain``.
    """
    raw = np.asarray(raw)
    if raw.ndim != 3:
        raise ValueError(f"expected a 3D (z, y, x) block, got shape {raw.shape}")
    offset = np.asarray(offset, np.int64)
    if volume_shape is None:
        volume_shape = tuple(int(o + s) for o, s in zip(offset, raw.shape))
    if core is None:
        core = [(int(o), int(o + s)) for o, s in zip(offset, raw.shape)]
    if not raw.size:
        return empty_cells()
    flt = block_filters(raw, voxel_size, params, offset=offset, core=core, gain=gain)
    if flt is None:
        return empty_cells()
    mx = find_maxima(flt.dog, voxel_size, params)
    return block_cells(
        flt, mx, voxel_size, params, offset=offset, core=core, volume_shape=volume_shape, block_id=block_id
    )[0]


def block_filters(
    raw: np.ndarray,
    voxel_size: Sequence[float],
    params: DetectParams,
    *,
    offset: Sequence[int],
    core: Sequence[tuple[int, int]],
    gain: np.ndarray | None = None,
) -> Filtered | None:
    """The filters of :func:`detect_block`: the DoG only where the block's cells can look.

    Parameters
    ----------
    raw : ndarray
        The block's voxels (z, y, x), non-empty.
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : DetectParams
        Detection parameters.
    offset : sequence of int
        Volume index (z, y, x) of ``raw[0, 0, 0]``.
    core : sequence of (int, int)
        Volume ranges [start, stop) per axis of the cells the block reports.
    gain : ndarray, optional
        Illumination gain for these voxels.

    Returns
    -------
    Filtered or None
        None when no voxel of ``raw`` is near the core.
    """
    offset = np.asarray(offset, np.int64)
    # the DoG and the objects only where owned cells can look (see object_margin)
    r = detection_radii(voxel_size, params)
    margin = np.add(object_margin(voxel_size, params), r.dog)
    lo = np.maximum(np.array([c[0] for c in core]) - offset - margin, 0)
    hi = np.minimum(np.array([c[1] for c in core]) - offset + margin, raw.shape)
    if np.any(hi <= lo):
        return None
    sub = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    return filter_chain(raw, voxel_size, params, gain, sub)


def block_cells(
    flt: Filtered,
    mx: Maxima,
    voxel_size: Sequence[float],
    params: DetectParams,
    *,
    offset: Sequence[int],
    core: Sequence[tuple[int, int]],
    volume_shape: Sequence[int],
    block_id: int = 0,
    only: np.ndarray | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The cells of :func:`detect_block` from its filtered images and maxima: centres, ownership, measurements.

    With ``refine.center: centroid`` every maximum whose centroid could round into the
    core (:func:`centre_reach`) is measured first, and ownership is decided on the
    centroid, so each cell still belongs to exactly one block.

    Parameters
    ----------
    flt : Filtered
        From :func:`block_filters`.
    mx : Maxima
        Maxima of ``flt.dog`` (:func:`find_maxima`).
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : DetectParams
        Detection parameters.
    offset : sequence of int
        Volume index (z, y, x) of the block's first voxel (``flt.raw[0, 0, 0]``).
    core : sequence of (int, int)
        Volume ranges [start, stop) per axis of the cells to return.
    volume_shape : sequence of int
        Shape of the whole volume.
    block_id : int, optional
        Written to the ``block`` column.
    only : ndarray of int, optional
        Report only these maxima (indices into ``mx.peaks``); the others still count
        where a cell's objects look at other maxima. Default: all.

    Returns
    -------
    cells : pandas.DataFrame
        Cell table with :data:`CELL_COLUMNS`.
    index : ndarray of int
        Row i is the maximum ``mx.peaks[index[i]]`` (with ``split.enabled``, the row of a
        partner split off a cell follows the cell's row and repeats its index).
    """
    origin = np.asarray(offset, np.int64) + np.asarray(flt.origin, np.int64)
    centres = (mx.peaks + origin).astype(np.float64) + mx.deltas  # integer + delta: exact in any block
    cand = np.arange(len(centres)) if only is None else np.unique(np.asarray(only, np.int64))
    meas = None
    if params.refine.center == "centroid" and params.shape.enabled:
        peaks = mx.peaks + origin
        reach = np.asarray(centre_reach(detection_radii(voxel_size, params), params))
        lo, hi = np.array([c[0] for c in core]) - reach, np.array([c[1] for c in core]) + reach
        cand = cand[np.all((peaks[cand] >= lo) & (peaks[cand] < hi), axis=1)]
        meas = measure_cells(flt, mx, cand, voxel_size, params, with_centroid=True)
        shift = meas.pop("centroid")
        has = meas["size"] > 0  # no shape voxel: the peak centre stays
        centres = centres[cand]
        centres[has] = peaks[cand[has]].astype(np.float64) + shift[has]
    else:
        centres = centres[cand]
    mine = owned_mask(centres, core, volume_shape)
    if not params.border.keep_peaks:
        mine &= ~on_border(mx.peaks[cand] + origin, volume_shape)
    sel = np.flatnonzero(mine)
    owned = cand[sel]
    if not len(owned):
        return empty_cells(), owned
    if meas is None:
        meas = measure_cells(flt, mx, owned, voxel_size, params)
    else:
        meas = {k: v[sel] for k, v in meas.items()}
    centres = centres[sel]
    if params.split.enabled:  # touching cells: a split cell's two rows, both reported by the block owning it
        box = detection_radii(voxel_size, params).box
        centres, meas, owned = split_rows(
            flt, mx, owned, centres, meas, voxel_size, params, origin=origin, volume_shape=volume_shape, box=box
        )
    table = {
        "z": centres[:, 0],
        "y": centres[:, 1],
        "x": centres[:, 2],
        **meas,
        "edge": edge_distance(centres, volume_shape, voxel_size),
        "block": np.full(len(owned), block_id, np.int64),
    }
    return pd.DataFrame({c: np.asarray(table[c]).astype(t) for c, t in CELL_COLUMNS.items()}), owned


def detect_cells(
    volume: np.ndarray,
    voxel_size: Sequence[float],
    params: DetectParams | None = None,
    illumination: IlluminationField | None = None,
) -> pd.DataFrame:
    """Run the whole detection chain on an in-memory volume as a single block (for notebooks and tests).

    Parameters
    ----------
    volume : ndarray
        Signal image (z, y, x), any real dtype.
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : DetectParams, optional
        Detection parameters; default ``DetectParams()``.
    illumination : IlluminationField, optional
        Flat-field; required when ``params.illumination.enabled``.

    Returns
    -------
    pandas.DataFrame
        Cell table with :data:`CELL_COLUMNS`, centres in voxel coordinates (z, y, x).

    Raises
    ------
    ValueError
        If illumination is enabled and ``illumination`` is None.
    """
    params = params or DetectParams()
    gain = None
    if params.illumination.enabled:
        if illumination is None:
            raise ValueError("illumination is enabled: pass an IlluminationField")
        gain = illumination.gain((0, volume.shape[0]), (0, volume.shape[1]), (0, volume.shape[2]))
    return detect_block(volume, voxel_size, params, gain=gain)
