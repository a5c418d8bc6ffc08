"""Touching cells: split a cell whose watershed basin hides a second cell (docs/detection.md, "Touching cells").

Two cells closer than about two diameters along a coarsely sampled axis (10 µm z
steps for 12 µm nuclei) often land on neighbouring voxels, so only the brighter one
is a regional maximum of the filtered image and no local-maximum test can find the
other. This step looks for it with a model of one cell: the filtered image of a
Gaussian blob of the expected diameter D (FWHM), as the chain's own DoG sees it. Every
detected cell's model is subtracted from the filtered image; a second maximum of what
is left, inside the cell's watershed basin, at least ``split.min_distance`` × D from
its centre and at least ``split.min_ratio`` × its peak, is a hidden cell.

Everything a cell's split reads lies in a fixed box around its peak
(:func:`split_margin`), so block results stay identical to a whole-volume run.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spimflow.params.detect import DetectParams
from spimflow.steps.detect import _objects_nb as O
from spimflow.steps.detect import _split_nb as K
from spimflow.steps.detect.filters import gaussian_half_kernel

#: Candidate partners lie in the cell's basin within this many diameters of its peak.
SEARCH_RADIUS = 2.0
#: A local maximum's model is subtracted within this many diameters of its centre.
MODEL_RADIUS = 1.0
#: No partner within this many diameters of another local maximum (it would be that cell).
EXCLUSION_RADIUS = 1.0
#: Sampling of the model's 1-D profiles, voxels.
PROFILE_STEP = 1.0 / 32.0
#: FWHM / sigma of a Gaussian.
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def expected_diameter(params: DetectParams) -> float:
    """The cell diameter (µm, FWHM) the split's single-cell model uses.

    ``cell_diameter_um`` when set, else the diameter the DoG implies: 4 × ``dog.sigma_inner_um``
    (the inverse of its formula in :data:`~spimflow.params.detect.SIZE_FORMULAS`).

    Parameters
    ----------
    params : DetectParams
        Detection parameters.

    Returns
    -------
    float

    Examples
    --------
    >>> from spimflow.params.detect import DetectParams
    >>> expected_diameter(DetectParams()), expected_diameter(DetectParams(cell_diameter_um=10.0))
    (12.0, 10.0)
    """
    if params.cell_diameter_um is not None:
        return float(params.cell_diameter_um)
    return 4.0 * float(params.dog.sigma_inner_um)


def search_box(voxel_size: Sequence[float], params: DetectParams) -> tuple[int, int, int]:
    """Half-size (voxels, z, y, x) of the box holding a cell's search ball (:data:`SEARCH_RADIUS` diameters).

    Parameters
    ----------
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : DetectParams
        Detection parameters.

    Returns
    -------
    tuple of int

    Examples
    --------
    >>> from spimflow.params.detect import DetectParams
    >>> search_box((10.0, 5.0, 5.0), DetectParams())
    (2, 4, 4)
    """
    r = SEARCH_RADIUS * expected_diameter(params)
    return tuple(int(math.floor(r / float(v))) for v in voxel_size)  # type: ignore[return-value]


def split_margin(
    voxel_size: Sequence[float], params: DetectParams, window: Sequence[int], box: Sequence[int]
) -> tuple[int, int, int]:
    """How far (voxels per axis) from a cell's peak voxel its split reads the filtered image.

    Candidates lie within the search box h (:func:`search_box`); their residuals and
    3-point fits read one voxel further and subtract the models of the local maxima
    centred within the model radius of those voxels (a centre is within half a voxel
    of its peak; finding a local maximum and fitting it reads one voxel around it).
    The basin walk reads the neighbours of the ball and the maxima windows of the
    roots inside it; the halves' peak boxes reach h + 1 + box.

    Parameters
    ----------
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : DetectParams
        Detection parameters.
    window : sequence of int
        Maxima window half-size (voxels, z, y, x).
    box : sequence of int
        Peak-intensity box half-size (voxels, z, y, x).

    Returns
    -------
    tuple of int

    Examples
    --------
    >>> from spimflow.params.detect import DetectParams
    >>> split_margin((10.0, 5.0, 5.0), DetectParams(), (1, 2, 2), (0, 1, 1))
    (6, 9, 9)
    """
    d = expected_diameter(params)
    h = search_box(voxel_size, params)
    out = []
    for v, hh, w, b in zip(voxel_size, h, window, box):
        model = int(math.ceil(MODEL_RADIUS * d / float(v) + 0.5))
        out.append(max(hh + 2 + model, hh + 1 + int(w), hh + 1 + int(b)))
    return tuple(out)  # type: ignore[return-value]


@functools.lru_cache(maxsize=32)
def _profiles(voxel_size: tuple[float, ...], dog: tuple | None, diameter: float, half: int):
    sigma = diameter / FWHM_PER_SIGMA
    u = np.arange(-half, half + PROFILE_STEP / 2, PROFILE_STEP)
    pi = np.zeros((3, len(u)))
    po = np.zeros((3, len(u)))
    for a, v in enumerate(voxel_size):
        s = sigma / v
        if dog is None:
            pi[a] = np.exp(-(u**2) / (2 * s * s))
            continue
        inner, outer, truncate = dog
        for tab, sig in ((pi, inner), (po, outer)):
            hk = gaussian_half_kernel(sig / v, truncate).astype(np.float64)
            r = len(hk) - 1
            for j in range(-r, r + 1):
                tab[a] += hk[abs(j)] * np.exp(-((u - j) ** 2) / (2 * s * s))
    j0 = int(round(half / PROFILE_STEP))
    peak = float(np.prod(pi[:, j0]) - np.prod(po[:, j0]))
    if not peak > 0:
        raise ValueError(f"the DoG gives no positive response to a cell of {diameter} µm")
    f = peak ** (-1.0 / 3.0)
    pi *= f
    po *= f
    pi.flags.writeable = False
    po.flags.writeable = False
    return pi, po, float(u[0])


def single_cell_profiles(voxel_size: Sequence[float], params: DetectParams) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-axis profiles of the single-cell model: the chain's DoG applied to a Gaussian blob of the expected diameter.

    The DoG is separable, so its response to a separable blob centred at c is
    prod_a I_a(x_a - c_a) - prod_a O_a(x_a - c_a), where I_a (O_a) is the blob's profile
    along axis a sampled on the voxel grid and convolved with the inner (outer) sampled
    Gaussian kernel of :func:`~spimflow.steps.detect.filters.dog_filter`. Profiles are
    tabulated every :data:`PROFILE_STEP` voxel and scaled so the model is 1 at the
    centre. Without DoG the model is the blob itself. The background removal is left
    out (it passes an isolated cell unchanged). Cached per voxel size and parameters.

    Parameters
    ----------
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : DetectParams
        Detection parameters (``dog``, ``cell_diameter_um``).

    Returns
    -------
    inner, outer : (3, n) ndarray of float64
        Profiles along z, y, x, sampled at u0 + i × :data:`PROFILE_STEP` voxels.
    u0 : float
        First sample position (voxels from the centre).

    Raises
    ------
    ValueError
        If the DoG does not respond positively to a cell of the expected size.

    Examples
    --------
    >>> from spimflow.params.detect import DetectParams
    >>> pi, po, u0 = single_cell_profiles((4.0, 2.0, 2.0), DetectParams())
    >>> j0 = int(round(-u0 / PROFILE_STEP))
    >>> round(float(np.prod(pi[:, j0]) - np.prod(po[:, j0])), 6)
    1.0
    """
    vs = tuple(float(v) for v in voxel_size)
    h = search_box(vs, params)
    half = 2 * max(h) + 4
    d = params.dog
    dog = (float(d.sigma_inner_um), float(d.sigma_outer_um), float(d.truncate)) if d.enabled else None
    return _profiles(vs, dog, expected_diameter(params), half)


@dataclass
class Split:
    """What :func:`split_cells` found for each tested cell (see :func:`._split_nb.find_partners` and
    :func:`._split_nb.measure_halves`).

    Attributes
    ----------
    split : (m,) ndarray of bool
        The cell holds a second one.
    peak : (m, 3) ndarray of int64
        The partner's peak voxel minus the cell's peak voxel.
    centre : (m, 2, 3) ndarray of float64
        Centres (parent, partner) minus the cell's peak voxel.
    centroid : (m, 2, 3) ndarray of float64
        Centroid of each half's shape minus the peak voxel (NaN for an empty half).
    size : (m, 2) ndarray of int64
        Shape voxels per half.
    sums : (m, 2, 3) ndarray of float64
        Sums of raw, bg and filtered values over each half's shape.
    peaks : (m, 2, 3) ndarray of float64
        Max of raw, bg and filtered values in the measure box at each half's centre.
    score : (m,) ndarray of float64
        Residual at the partner's peak / the cell's peak value (0: no candidate).
    """

    split: np.ndarray
    peak: np.ndarray
    centre: np.ndarray
    centroid: np.ndarray
    size: np.ndarray
    sums: np.ndarray
    peaks: np.ndarray
    score: np.ndarray


def local_maxima(dog: np.ndarray, maxima) -> tuple[np.ndarray, np.ndarray]:
    """All local maxima of the filtered image above the maxima threshold, kept or not, with sub-voxel centres.

    Parameters
    ----------
    dog : ndarray of float32
        Filtered image (z, y, x).
    maxima : Maxima
        Maxima of ``dog`` (:func:`~spimflow.steps.detect.chain.find_maxima`): its kept
        ``peaks`` and ``rejected`` candidates are every local maximum.

    Returns
    -------
    peaks : (n, 3) ndarray of int64
        In (z, y, x) order.
    deltas : (n, 3) ndarray of float64
        Centre minus peak: the 3-point Gaussian fit along each axis (as ``refine``).
    """
    peaks = np.concatenate([maxima.peaks, maxima.rejected]).astype(np.int64).reshape(-1, 3)
    order = np.lexsort((peaks[:, 2], peaks[:, 1], peaks[:, 0]))
    peaks = np.ascontiguousarray(peaks[order])
    return peaks, O.refine_peaks(dog, peaks)


def split_cells(
    dog: np.ndarray,
    raw: np.ndarray,
    bg: np.ndarray,
    origin: Sequence[int],
    maxima,
    owned: np.ndarray,
    voxel_size: Sequence[float],
    params: DetectParams,
    box: Sequence[int],
) -> Split:
    """Look for a hidden second cell in the basin of each cell ``maxima.peaks[owned]`` (see the module docstring).

    Parameters
    ----------
    dog : ndarray of float32
        Filtered image the maxima were found in (z, y, x).
    raw, bg : ndarray
        Raw and background-corrected images; their voxel ``origin + i`` is ``dog``'s i.
    origin : sequence of int
        Offset of ``dog`` in ``raw`` / ``bg``.
    maxima : Maxima
        Maxima of ``dog`` (:func:`~spimflow.steps.detect.chain.find_maxima`).
    owned : ndarray of int
        Indices into ``maxima.peaks`` of the cells to test.
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : DetectParams
        Detection parameters (``split``, ``shape``, ``maxima``, ``dog``, ``cell_diameter_um``).
    box : sequence of int
        Half-size (voxels) of the peak-intensity box.

    Returns
    -------
    Split
    """
    vs = tuple(float(v) for v in voxel_size)
    d = expected_diameter(params)
    pi, po, u0 = single_cell_profiles(vs, params)
    h = search_box(vs, params)
    peaks, deltas = local_maxima(dog, maxima)
    shape = np.asarray(dog.shape, np.int64)
    keys = (peaks[:, 0] * shape[1] + peaks[:, 1]) * shape[2] + peaks[:, 2]
    mine = maxima.peaks[np.asarray(owned, np.int64)].reshape(-1, 3)
    idx = np.searchsorted(keys, (mine[:, 0] * shape[1] + mine[:, 1]) * shape[2] + mine[:, 2])
    thr = np.float32(params.shape.threshold)
    score, split, peak, centre, amp = K.find_partners(
        dog,
        thr,
        peaks,
        deltas,
        idx.astype(np.int64),
        maxima.rejected,
        maxima.targets,
        *h,
        *vs,
        SEARCH_RADIUS * d,
        MODEL_RADIUS * d,
        float(params.split.min_ratio),
        float(params.maxima.threshold),
        float(params.split.min_distance) * d,
        EXCLUSION_RADIUS * d,
        pi,
        po,
        u0,
        PROFILE_STEP,
    )
    m = len(idx)
    centroid = np.zeros((m, 2, 3))
    size = np.zeros((m, 2), np.int64)
    sums = np.zeros((m, 2, 3))
    box_peaks = np.zeros((m, 2, 3))
    which = np.flatnonzero(split)
    if len(which):
        out = K.measure_halves(
            dog,
            thr,
            peaks,
            idx[which].astype(np.int64),
            maxima.rejected,
            maxima.targets,
            *h,
            *vs,
            SEARCH_RADIUS * d,
            float(params.shape.max_radius_um),
            np.ascontiguousarray(centre[which]),
            np.ascontiguousarray(amp[which]),
            pi,
            po,
            u0,
            PROFILE_STEP,
            raw,
            bg,
            *(int(o) for o in origin),
            *(int(b) for b in box),
        )
        centroid[which], size[which], sums[which], box_peaks[which] = out
    return Split(split, peak, centre, centroid, size, sums, box_peaks, score)


def split_rows(
    flt,
    maxima,
    owned: np.ndarray,
    centres: np.ndarray,
    meas: dict[str, np.ndarray],
    voxel_size: Sequence[float],
    params: DetectParams,
    *,
    origin: Sequence[int],
    volume_shape: Sequence[int],
    box: Sequence[int],
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Replace each owned cell that holds a hidden second cell by two rows: the cell and its partner.

    The block that owns a cell (by its centre before the split) reports both halves,
    so each is reported exactly once whatever the block grid. Centres: with
    ``refine.center: peak`` the cell keeps its centre and the partner's is its
    residual peak + fit; with ``centroid``, each is the centroid of its half's shape
    (the model centre when the half is empty). Measurements per half: ``size`` its
    shape voxels (0 with ``shape.enabled`` off, as for every cell), ``intensity_*`` the
    max in the measure box at its centre, ``mean_*`` over its shape. With
    ``border.keep_peaks`` off, a partner peaking on the volume's outermost plane is not
    split off.

    Parameters
    ----------
    flt : Filtered
        The block's images.
    maxima : Maxima
        Maxima of ``flt.dog``.
    owned : ndarray of int
        Indices into ``maxima.peaks`` of the block's cells, one per row of ``centres``.
    centres : (n, 3) ndarray of float64
        Their centres, volume voxels.
    meas : dict of str to ndarray
        Their measurements (:func:`~spimflow.steps.detect.chain.measure_cells`).
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : DetectParams
        Detection parameters.
    origin : sequence of int
        Volume index of ``flt.dog[0, 0, 0]``.
    volume_shape : sequence of int
        Shape of the whole volume.
    box : sequence of int
        Half-size (voxels) of the peak-intensity box.

    Returns
    -------
    centres, meas, owned
        The same with a partner row after each split cell (its ``owned`` entry repeats the cell's).
    """
    if not len(owned):
        return centres, meas, owned
    sp = split_cells(flt.dog, flt.raw, flt.bg, flt.origin, maxima, owned, voxel_size, params, box)
    peaks = maxima.peaks[owned] + np.asarray(origin, np.int64)
    do = sp.split.copy()
    if not params.border.keep_peaks:  # as chain.on_border: a peak on the volume's outermost plane
        q = peaks + sp.peak
        do &= ~np.any((q <= 0) | (q >= np.asarray(volume_shape, np.int64) - 1), axis=1)
    if not do.any():
        return centres, meas, owned
    rows = np.repeat(np.arange(len(owned)), np.where(do, 2, 1))
    second = np.zeros(len(rows), bool)
    second[1:] = rows[1:] == rows[:-1]
    first = np.flatnonzero(do[rows] & ~second)  # the split cells' own rows
    part = first + 1
    cells = rows[first]
    new_centres = centres[rows].copy()
    new_meas = {k: v[rows].copy() for k, v in meas.items()}
    base = peaks[cells].astype(np.float64)
    centroid = params.refine.center == "centroid"
    for half, where in ((0, first), (1, part)):
        model = base + sp.centre[cells, half]
        if centroid:
            cen = base + sp.centroid[cells, half]
            model = np.where(sp.size[cells, half][:, None] > 0, cen, model)
        if half == 1 or centroid:
            new_centres[where] = model
        size = sp.size[cells, half] if params.shape.enabled else np.zeros(len(cells), np.int64)  # as every cell
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sp.sums[cells, half] / np.where(size > 0, size, np.nan)[:, None]
        vz, vy, vx = (float(v) for v in voxel_size)
        new_meas["size"][where] = size
        new_meas["volume_um3"][where] = size * (vz * vy * vx)
        for j, name in enumerate(("raw", "bg", "dog")):
            new_meas[f"intensity_{name}"][where] = sp.peaks[cells, half, j]
            new_meas[f"mean_{name}"][where] = means[:, j]
    return new_centres, new_meas, owned[rows]
