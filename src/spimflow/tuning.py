"""Tune cell detection on a box of the signal against hand-clicked markers (headless).

Two users: ``spimflow tune`` (:func:`tune_detection`, a parameter search) and the
napari tuning widget (:mod:`spimflow.napari._tuning`, by eye); both run exactly the
workflow's detection on a box.

The detection on a box is the workflow's (block independence, see
:mod:`spimflow.blocks`): the box plus the :func:`~spimflow.steps.detect.required_overlap`
margin is read and :func:`~spimflow.steps.detect.detect_block` reports the cells whose
centre lies in the box, the same cells (same floats) a whole-volume run finds there with
the same parameters. The thresholds of ``steps.threshold`` are then applied, as the
workflow does before counting.

The search (:func:`tune_detection`) runs the filters once per cell size
(``steps.detect.cell_diameter_um``, every size parameter derived from it) and finds the
maxima once, at the lowest maxima threshold it will try; a higher threshold keeps the
maxima at or above it (:func:`maxima_above`, exactly what the chain finds at that
threshold) and the cells measured for them, re-measuring only when a suppressed
maximum below the threshold could have changed a cell's shape. ``steps.threshold``
ranges are re-applied to the measured table, so a threshold setting costs a match of
point sets. It maximises F1 over a grid (cell sizes × maxima thresholds × lower bounds
of the threshold columns), then refines the best point coordinate by coordinate.

Coordinates: boxes and cells are (z, y, x) voxels of the raw signal volume, half-open
boxes ``[start, stop)`` as in ``spimflow evaluate --box``.
"""

from __future__ import annotations

import copy
import math
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
import yaml
from scipy.spatial import cKDTree

from spimflow.annotate import read_points
from spimflow.blocks import check_detect_config, sort_cells
from spimflow.cohort import load_run
from spimflow.config import SampleConfig, read_config_file
from spimflow.errors import ConfigError, InputFileError
from spimflow.io.atomic import atomic_path
from spimflow.io.omezarr import open_ome_zarr
from spimflow.params.detect import SIZE_FORMULAS, DetectParams, ThresholdParams
from spimflow.steps.detect import IlluminationField, detect_block, empty_cells, required_overlap, threshold_cells
from spimflow.steps.detect.chain import (
    Filtered,
    Maxima,
    block_cells,
    block_filters,
    centre_reach,
    detection_radii,
    find_maxima,
    object_margin,
)
from spimflow.steps.detect.evaluate import (
    candidate_pairs,
    evaluate_against_markers,
    in_box,
    marker_box,
    match_pairs,
    parse_box,
)
from spimflow.steps.detect.split import search_box
from spimflow.steps.detect.threshold import check_threshold_config

Box = tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
IntBox = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]

#: Default matching radius of the metrics (µm), as ``spimflow evaluate``.
DEFAULT_RADIUS_UM = 10.0
#: Where the workflow writes the flat-field, relative to ``results/<sample>``.
ILLUMINATION_FIELD = Path("cells") / "blocks" / "illumination.npz"
#: The ingested signal, relative to ``results/<sample>``.
SIGNAL_ZARR = Path("raw") / "signal.ome.zarr"


# -- the source: a results folder ---------------------------------------------------------------


@dataclass
class TuningSource:
    """What the tuning runs on: a results folder's raw signal and resolved config.

    Attributes
    ----------
    results_dir : Path
        The ``results/<sample>`` folder.
    config : SampleConfig
        The sample config; ``steps.detect`` and ``steps.threshold`` are the starting
        parameters.
    array : array_like
        Level 0 of ``raw/signal.ome.zarr``, (z, y, x).
    voxel_size : tuple of float
        Voxel size (z, y, x) of the signal, µm (from the zarr, as the workflow's detection).
    illumination : IlluminationField or None
        The run's flat-field (``cells/blocks/illumination.npz``) when illumination
        correction is enabled and the file exists.
    notes : list of str
        Things the user should know (e.g. illumination correction switched off).
    """

    results_dir: Path
    config: SampleConfig
    array: Any
    voxel_size: tuple[float, float, float]
    illumination: IlluminationField | None
    notes: list[str]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape (z, y, x) of the signal volume, voxels."""
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def illumination_off(self) -> bool:
        """True when the config enables illumination correction but the run's field is missing."""
        return self.config.steps.detect.illumination.enabled and self.illumination is None


def open_source(results_dir: str | Path, cfg: SampleConfig) -> TuningSource:
    """Open the ingested signal of a results folder for tuning.

    Parameters
    ----------
    results_dir : str or Path
        ``results/<sample>``.
    cfg : SampleConfig
        The sample's config.

    Returns
    -------
    TuningSource

    Raises
    ------
    InputFileError
        If ``raw/signal.ome.zarr`` is missing or not an OME-Zarr image.
    """
    folder = Path(results_dir)
    img = open_ome_zarr(folder / SIGNAL_ZARR)
    notes = []
    field_ = None
    if cfg.steps.detect.illumination.enabled:
        npz = folder / ILLUMINATION_FIELD
        if npz.is_file():
            field_ = IlluminationField.load(npz)
        else:
            notes.append(
                f"illumination correction is enabled but {npz} does not exist (run the workflow's "
                "detect_illumination rule): tuning runs WITHOUT it, so candidates differ from the workflow's"
            )
    cfg_vs = tuple(float(v) for v in cfg.channels.signal.voxel_size)
    if not np.allclose(cfg_vs, img.voxel_size):
        notes.append(f"the zarr's voxel size {img.voxel_size} differs from the config's {cfg_vs}; using the zarr's")
    return TuningSource(folder, cfg, img.array, img.voxel_size, field_, notes)


# -- boxes ----------------------------------------------------------------------------------------


def format_box(box: Box | IntBox) -> str:
    """Write a box as ``z0:z1,y0:y1,x0:x1`` (the form ``spimflow evaluate --box`` reads).

    Parameters
    ----------
    box : tuple of three (start, stop) pairs
        Voxels, half-open.

    Returns
    -------
    str

    Examples
    --------
    >>> format_box(((8, 13), (0, 101), (0.5, 151.0)))
    '8:13,0:101,0.5:151'
    """
    return ",".join(f"{float(a):g}:{float(b):g}" for a, b in box)


def clip_box(box: Box | IntBox, volume_shape: Sequence[int]) -> Box:
    """A box cut to the part of the volume cells can be centred in (-0.5 to n - 0.5 per axis).

    Parameters
    ----------
    box : tuple of three (start, stop) pairs
        Voxels (z, y, x), half-open.
    volume_shape : sequence of int
        Volume shape (z, y, x).

    Returns
    -------
    tuple of three (start, stop) pairs

    Raises
    ------
    ValueError
        If the box lies outside the volume along an axis.

    Examples
    --------
    >>> clip_box(((-3, 5), (10, 20), (0, 100)), (8, 50, 60))
    ((-0.5, 5.0), (10.0, 20.0), (0.0, 59.5))
    """
    out = []
    for (a, b), n, name in zip(box, volume_shape, "zyx"):
        lo, hi = max(float(a), -0.5), min(float(b), int(n) - 0.5)
        if not lo < hi:
            raise ValueError(
                f"box {format_box(box)} lies outside the signal volume along {name} "
                f"(shape {tuple(int(s) for s in volume_shape)}; expected {name} within 0:{int(n)})"
            )
        out.append((lo, hi))
    return tuple(out)  # type: ignore[return-value]


def read_region(
    box: Box | IntBox, volume_shape: Sequence[int], voxel_size: Sequence[float], params: DetectParams
) -> tuple[IntBox, IntBox]:
    """The block that holds every cell centred in ``box``: its core and its read region.

    A cell belongs to the core holding its centre rounded to the nearest voxel (clipped
    to the volume), so the core is the box's voxels plus the one just past its end; with
    ``split.enabled`` it grows by how far a partner split off a touching cell can lie
    from the cell that reports it (the cell's centre reach + the split's search box).
    The read region adds :func:`~spimflow.steps.detect.required_overlap`, clipped to the
    volume.

    Parameters
    ----------
    box : tuple of three (start, stop) pairs
        Voxels (z, y, x), half-open.
    volume_shape : sequence of int
        Volume shape (z, y, x).
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : DetectParams
        Detection parameters (they set the overlap).

    Returns
    -------
    core, read : tuple of three (int, int)
        Half-open volume voxel ranges (z, y, x).

    Raises
    ------
    ValueError
        If a range of ``box`` is empty.

    Examples
    --------
    >>> from spimflow.params.detect import DetectParams
    >>> core, read = read_region(((10, 20), (0, 50), (100, 200)), (40, 300, 300), (4.0, 2.0, 2.0), DetectParams())
    >>> core, read
    (((1, 30), (0, 68), (83, 218)), ((0, 40), (0, 117), (34, 267)))
    >>> read_region(((10, 20), (0, 50), (100, 200)), (40, 300, 300), (4.0, 2.0, 2.0),
    ...             DetectParams.model_validate({"split": {"enabled": False}}))
    (((10, 21), (0, 51), (100, 201)), ((0, 35), (0, 90), (61, 240)))
    """
    overlap = required_overlap(voxel_size, params)
    # a partner split off a touching cell (steps.detect.split) is reported by the block owning that cell,
    # whose centre can lie up to (its peak's reach + the split's search box) from the partner's
    grow = (0, 0, 0)
    if params.split.enabled:
        grow = tuple(np.add(centre_reach(detection_radii(voxel_size, params), params), search_box(voxel_size, params)))
    core, read = [], []
    for (a, b), n, o, g in zip(box, volume_shape, overlap, grow):
        if not float(a) < float(b):
            raise ValueError(f"empty box range {a}:{b}; expected start < stop")
        n = int(n)
        lo = min(max(math.floor(float(a) + 0.5), 0), n - 1)
        hi = min(max(math.floor(float(b) + 0.5), 0), n - 1) + 1
        lo, hi = max(0, lo - int(g)), min(n, hi + int(g))
        core.append((lo, hi))
        read.append((max(0, lo - o), min(n, hi + o)))
    return tuple(core), tuple(read)  # type: ignore[return-value]


def read_voxels(read: IntBox) -> int:
    """Number of voxels of a region.

    Parameters
    ----------
    read : tuple of three (int, int)
        Half-open voxel ranges.

    Returns
    -------
    int

    Examples
    --------
    >>> read_voxels(((0, 10), (5, 25), (0, 3)))
    600
    """
    return int(np.prod([b - a for a, b in read]))


# -- detection on a box ------------------------------------------------------------------------------


def _gain(params: DetectParams, illumination: IlluminationField | None, read: IntBox) -> np.ndarray | None:
    if not params.illumination.enabled:
        return None
    if illumination is None:
        raise ValueError("illumination correction is enabled: pass the flat-field (cells/blocks/illumination.npz)")
    return illumination.gain(*read)


def _ranges(threshold: ThresholdParams | Mapping | None) -> Mapping | None:
    return threshold.ranges if isinstance(threshold, ThresholdParams) else threshold


def detect_in_box(
    source,
    box: Box | IntBox,
    voxel_size: Sequence[float],
    params: DetectParams,
    *,
    illumination: IlluminationField | None = None,
    threshold: ThresholdParams | Mapping | None = None,
) -> pd.DataFrame:
    """The workflow's cells whose centre lies in ``box``, computed from the box and its margin only.

    Equal (same rows, same floats) to the cells of
    :func:`~spimflow.blocks.detect_volume` on the whole volume with the same parameters
    that satisfy :func:`~spimflow.steps.detect.evaluate.in_box`, thresholded with
    ``threshold`` when given.

    Parameters
    ----------
    source : array_like
        The whole (z, y, x) signal volume (numpy or zarr array; only the read region is read).
    box : tuple of three (start, stop) pairs
        Voxels (z, y, x), half-open.
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : DetectParams
        Detection parameters.
    illumination : IlluminationField, optional
        The flat-field; required when ``params.illumination.enabled``.
    threshold : ThresholdParams or mapping, optional
        Ranges (``steps.threshold``, or its ``ranges`` mapping) to keep cells by.

    Returns
    -------
    pandas.DataFrame
        Cell table (:data:`~spimflow.steps.detect.CELL_COLUMNS`), sorted by (z, y, x).

    Raises
    ------
    ValueError
        If illumination correction is enabled without ``illumination``, or the box is empty.

    Examples
    --------
    >>> from spimflow.params.detect import DetectParams
    >>> from spimflow.steps.detect.synthetic import make_synthetic_cells
    >>> volume, truth = make_synthetic_cells((20, 60, 60), seed=1)
    >>> cells = detect_in_box(volume, ((0, 20), (0, 30), (0, 60)), (4.0, 2.0, 2.0), DetectParams())
    >>> bool(len(cells) > 0), bool((cells["y"] < 30).all())
    (True, True)
    """
    shape = tuple(int(s) for s in source.shape)
    core, read = read_region(box, shape, voxel_size, params)
    gain = _gain(params, illumination, read)
    raw = np.asarray(source[tuple(slice(a, b) for a, b in read)])
    cells = detect_block(raw, voxel_size, params, offset=[a for a, _ in read], core=core, volume_shape=shape, gain=gain)
    if len(cells):
        cells = cells[in_box(cells[["z", "y", "x"]].to_numpy(), box)]
    if threshold is not None:
        cells = threshold_cells(cells, _ranges(threshold))
    return sort_cells(cells) if len(cells) else empty_cells()


def box_metrics(
    cells: pd.DataFrame | np.ndarray, markers: np.ndarray, voxel_size: Sequence[float], radius_um: float, box: Box
) -> dict:
    """Precision, recall and F1 of the cells against markers inside ``box`` (as ``spimflow evaluate``).

    Parameters
    ----------
    cells : pandas.DataFrame or (n, 3) array_like
        Detected cells (``z, y, x`` columns) or centres, voxels.
    markers : (m, 3) array_like
        Reference points (z, y, x), voxels.
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    radius_um : float
        Largest distance of a matched pair, µm.
    box : tuple of three (start, stop) pairs
        The region compared, voxels, half-open.

    Returns
    -------
    dict
        ``detected, markers, matched, precision, recall, f1, box`` (see
        :func:`~spimflow.steps.detect.evaluate.evaluate_against_markers`).

    Examples
    --------
    >>> r = box_metrics(np.array([[1.0, 1, 1], [1, 5, 5]]), np.array([[1.0, 1, 2]]), (1, 1, 1), 2.0,
    ...                 ((0, 3), (0, 9), (0, 9)))
    >>> r["matched"], r["precision"], r["recall"]
    (1, 0.5, 1.0)
    """
    centres = cells[["z", "y", "x"]].to_numpy() if isinstance(cells, pd.DataFrame) else np.asarray(cells, float)
    return evaluate_against_markers(centres, np.asarray(markers, float), voxel_size, radius_um, box)


# -- parameters and the snippet ---------------------------------------------------------------------


def _diff(base: Mapping, new: Mapping, leaves: tuple[str, ...] = ("ranges",)) -> dict:
    out = {}
    for key, value in new.items():
        old = base.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping) and key not in leaves:
            sub = _diff(old, value, leaves)
            if sub:
                out[key] = sub
        elif value != old:
            out[key] = value
    return out


def params_snippet(
    base_detect: DetectParams,
    base_threshold: ThresholdParams,
    detect: DetectParams,
    threshold: ThresholdParams,
) -> dict:
    """The config keys that differ from the starting parameters, nested as in a sample config.

    Parameters
    ----------
    base_detect, base_threshold : DetectParams, ThresholdParams
        The config's ``steps.detect`` and ``steps.threshold``.
    detect, threshold : DetectParams, ThresholdParams
        The tuned parameters.

    Returns
    -------
    dict
        ``{"steps": {"detect": {...}, "threshold": {...}}}`` with only the changed keys
        (JSON types: lists, not tuples; ``threshold.ranges`` complete when it changed);
        empty when nothing changed.

    Examples
    --------
    >>> from spimflow.params.detect import DetectParams, ThresholdParams
    >>> d = DetectParams.model_validate({"maxima": {"threshold": 120.0}})
    >>> params_snippet(DetectParams(), ThresholdParams(), d, ThresholdParams())
    {'steps': {'detect': {'maxima': {'threshold': 120.0}}}}
    """
    steps = {}
    for name, base, new in (("detect", base_detect, detect), ("threshold", base_threshold, threshold)):
        changed = _diff(base.model_dump(mode="json"), new.model_dump(mode="json"))
        if changed:
            steps[name] = changed
    return {"steps": steps} if steps else {}


def snippet_yaml(snippet: Mapping, comment: str | None = None) -> str:
    """Write a snippet as YAML, optionally after ``#`` comment lines.

    Parameters
    ----------
    snippet : mapping
        From :func:`params_snippet`.
    comment : str, optional
        Text put before the YAML, each line prefixed with ``# ``.

    Returns
    -------
    str

    Examples
    --------
    >>> print(snippet_yaml({"steps": {"threshold": {"ranges": {"volume_um3": [300.0, None]}}}}), end="")
    steps:
      threshold:
        ranges:
          volume_um3: [300.0, null]
    """
    head = "".join(f"# {line}\n" for line in comment.splitlines()) if comment else ""
    body = yaml.safe_dump(dict(snippet), sort_keys=False, default_flow_style=None, allow_unicode=True)
    return head + (body if snippet else "{}\n")


def apply_snippet(config: Mapping, snippet: Mapping) -> dict:
    """Merge a snippet into a config mapping (nested mappings merged key by key, as Snakemake
    merges several ``--configfile``).

    Parameters
    ----------
    config : mapping
        A sample config (e.g. ``yaml.safe_load`` of the config file).
    snippet : mapping
        From :func:`params_snippet`.

    Returns
    -------
    dict
        A new mapping; ``config`` is not changed.

    Examples
    --------
    >>> apply_snippet({"steps": {"detect": {"maxima": {"threshold": 80, "radius_um": 8}}}},
    ...               {"steps": {"detect": {"maxima": {"threshold": 120}}}})
    {'steps': {'detect': {'maxima': {'threshold': 120, 'radius_um': 8}}}}
    """
    out = copy.deepcopy(dict(config))
    for key, value in snippet.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = apply_snippet(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def snippet_problems(detect: DetectParams, threshold: ThresholdParams, voxel_size: Sequence[float]) -> list[str]:
    """What the workflow would refuse in the tuned parameters (block grid too small, ...).

    Parameters
    ----------
    detect : DetectParams
        Tuned detection parameters.
    threshold : ThresholdParams
        Tuned threshold ranges.
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.

    Returns
    -------
    list of str
        One message per problem, naming the config key.
    """
    return check_detect_config(detect, voxel_size) + check_threshold_config(threshold.ranges, detect.shape.enabled)


# -- the search ----------------------------------------------------------------------------------------

#: Cell diameters of the grid, as factors of the config's (a third of an octave apart).
DIAMETER_FACTORS = tuple(round(2.0 ** (k / 3.0), 4) for k in range(-3, 4))
#: Maxima thresholds of the grid: those that keep this many maxima per marker in the box.
COUNT_FACTORS = (0.85, 1.0, 1.3)
#: The lowest maxima threshold measured keeps this many maxima per marker (the refinement
#: goes down to it).
LOWEST_COUNT_FACTOR = 2.0
#: Lower bounds tried for a threshold column: these quantiles of its values in the box.
RANGE_QUANTILES = (0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
#: Columns whose lower bound the search tunes when the config's ranges use them
#: (``volume_um3`` always, with the shape on).
TUNABLE_COLUMNS = (
    "size",
    "volume_um3",
    "intensity_raw",
    "intensity_bg",
    "intensity_dog",
    "mean_raw",
    "mean_bg",
    "mean_dog",
)
_SHAPE_COLUMNS = ("size", "volume_um3", "mean_raw", "mean_bg", "mean_dog")


def round_sig(value: float, digits: int = 3, down: bool = False) -> float:
    """Round to ``digits`` significant digits (values written into a config stay readable).

    Parameters
    ----------
    value : float
    digits : int, optional
    down : bool, optional
        Round towards -inf (the result is never above ``value``).

    Returns
    -------
    float

    Examples
    --------
    >>> round_sig(1234.5678), round_sig(0.012345), round_sig(0.0), round_sig(1239.0, down=True)
    (1230.0, 0.0123, 0.0, 1230.0)
    >>> round_sig(-1234.5, down=True)
    -1240.0
    """
    value = float(value)
    if value == 0 or not math.isfinite(value):
        return value
    places = digits - 1 - int(math.floor(math.log10(abs(value))))
    out = round(value, places)
    if down and out > value:
        out = round(math.floor(value * 10.0**places) / 10.0**places, places)
        if out > value:  # float noise in the scaling
            out = round(out - 10.0**-places, places)
    return out


def config_diameter(detect: DetectParams) -> float:
    """The cell diameter a config's sizes correspond to: ``cell_diameter_um``, else the one
    whose derived outer DoG sigma is the config's.

    Parameters
    ----------
    detect : DetectParams

    Returns
    -------
    float
        µm.

    Examples
    --------
    >>> config_diameter(DetectParams())
    12.0
    """
    if detect.cell_diameter_um is not None:
        return float(detect.cell_diameter_um)
    factor = SIZE_FORMULAS[("dog", "sigma_outer_um")][0]
    return round_sig(detect.dog.sigma_outer_um / factor, 4)


def _without_sizes(user_detect: Mapping) -> dict:
    """A ``steps.detect`` mapping without the size keys ``cell_diameter_um`` derives."""
    out = copy.deepcopy(dict(user_detect))
    out.pop("cell_diameter_um", None)
    for section, key in SIZE_FORMULAS:
        if isinstance(out.get(section), Mapping):
            out[section] = {k: v for k, v in out[section].items() if k != key}
    return out


def sized_params(user_detect: Mapping, diameter: float, maxima_threshold: float) -> DetectParams:
    """Detection parameters with every size derived from ``diameter`` and this maxima threshold.

    Parameters
    ----------
    user_detect : mapping
        The keys of ``steps.detect`` the user gave (their size keys are dropped).
    diameter : float
        ``cell_diameter_um``.
    maxima_threshold : float
        ``maxima.threshold``.

    Returns
    -------
    DetectParams

    Examples
    --------
    >>> p = sized_params({"dog": {"sigma_inner_um": 2.0}, "maxima": {"h_max": 5.0}}, 16.0, 120.0)
    >>> p.dog.sigma_inner_um, p.dog.sigma_outer_um, p.maxima.h_max, p.maxima.threshold
    (4.0, 8.0, 5.0, 120.0)
    """
    data = _without_sizes(user_detect)
    data["cell_diameter_um"] = float(diameter)
    data["maxima"] = {**(data.get("maxima") or {}), "threshold": float(maxima_threshold)}
    return DetectParams.model_validate(data)


def _at_threshold(params: DetectParams, t: float) -> DetectParams:
    return params.model_copy(update={"maxima": params.maxima.model_copy(update={"threshold": float(t)})})


def maxima_above(mx: Maxima, f: np.ndarray, threshold: float) -> Maxima:
    """The maxima :func:`~spimflow.steps.detect.find_maxima` finds at a higher threshold.

    ``find_maxima`` tests each local maximum >= threshold on its own (its plateau or
    h-dome inside a window), so at threshold t it keeps exactly the maxima (and rejects
    exactly the candidates) found at any lower threshold whose value is >= t, in the
    same order.

    Parameters
    ----------
    mx : Maxima
        Maxima of ``f`` at a lower threshold.
    f : ndarray of float32
        The image searched.
    threshold : float
        The higher threshold.

    Returns
    -------
    Maxima
    """
    t = np.float32(threshold)
    keep = f[tuple(mx.peaks.T)] >= t
    rej = f[tuple(mx.rejected.T)] >= t
    return Maxima(mx.peaks[keep], mx.deltas[keep], mx.rejected[rej], mx.targets[rej])


def fit_blocks(detect: DetectParams, voxel_size: Sequence[float]) -> DetectParams:
    """The parameters with a block grid the workflow accepts for their sizes.

    A given overlap that is too small becomes null (the minimum, computed); blocks grow
    to hold the overlap and the filter windows.

    Parameters
    ----------
    detect : DetectParams
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.

    Returns
    -------
    DetectParams

    Examples
    --------
    >>> p = DetectParams.model_validate({"blocks": {"size": [16, 64, 64], "overlap": [2, 2, 2]}})
    >>> q = fit_blocks(p, (4.0, 2.0, 2.0))
    >>> q.blocks.overlap, q.blocks.size
    (None, (20, 64, 64))
    """
    need = required_overlap(voxel_size, detect)
    blocks = detect.blocks.model_dump()
    if blocks["overlap"] is not None and any(o < n for o, n in zip(blocks["overlap"], need)):
        blocks["overlap"] = None
    r = detection_radii(voxel_size, detect)
    overlap = blocks["overlap"] or need
    size = []
    for a in range(3):
        wanted = [overlap[a]]
        if detect.dog.enabled:
            wanted.append(2 * r.dog[a] + 1)
        if detect.shape.enabled:
            wanted.append(2 * r.shape[a] + 1)
        if detect.background.enabled and a > 0:
            wanted.append(2 * r.background[a] // 2 * 2 + 1)
        size.append(max(int(blocks["size"][a]), *wanted))
    blocks["size"] = tuple(size)
    if blocks == detect.blocks.model_dump():
        return detect
    return detect.model_copy(update={"blocks": type(detect.blocks).model_validate(blocks)})


@dataclass
class Trial:
    """One parameter setting the search evaluated.

    Attributes
    ----------
    stage : str
        ``config`` (the config as it is), ``grid`` or ``refine``.
    diameter : float
        ``cell_diameter_um`` (for ``config``: the diameter its sizes correspond to).
    maxima_threshold : float
        ``maxima.threshold``.
    ranges : dict
        ``steps.threshold.ranges``.
    metrics : dict
        ``detected, markers, matched, precision, recall, f1`` in the box.
    seconds : float
        Wall time of this trial (including the chain run it needed).
    """

    stage: str
    diameter: float
    maxima_threshold: float
    ranges: dict
    metrics: dict
    seconds: float

    @property
    def f1(self) -> float:
        """F1 in the box."""
        return float(self.metrics["f1"])


@dataclass
class TuneResult:
    """What :func:`tune_detection` found.

    Attributes
    ----------
    trials : list of Trial
        Everything tried, in order; ``trials[0]`` is the config as it is.
    best : Trial
        The trial with the highest F1 (the first such: ties keep the config).
    detect, threshold : DetectParams, ThresholdParams
        The best parameters (the config's own when nothing beat it).
    box : tuple of three (start, stop) pairs
        The box compared.
    check : dict
        Metrics of the workflow's detection with the best parameters, recomputed
        from scratch (:func:`detect_in_box`): equal to ``best.metrics``.
    seconds : float
        Total wall time.
    """

    trials: list[Trial]
    best: Trial
    detect: DetectParams
    threshold: ThresholdParams
    box: Box
    check: dict
    seconds: float

    @property
    def baseline(self) -> Trial:
        """The config's own trial."""
        return self.trials[0]


@dataclass
class _SizeRun:
    """The filters and maxima on the box for one cell size, down to the lowest maxima threshold tried,
    and the cells measured at one threshold (the base the others are derived from)."""

    params: DetectParams  # at t_low
    t_low: float
    values: np.ndarray  # peak values of the maxima with a peak in the box, descending
    rejected: np.ndarray  # (k, 3) volume voxels of the candidates rejected at t_low ...
    rejected_values: np.ndarray  # ... and their values
    peaks: np.ndarray  # (n, 3) volume voxels of the maxima at t_low ...
    peak_values: np.ndarray  # ... and their values
    read: IntBox
    core: IntBox
    seconds: float
    flt: Filtered | None = None  # released when not needed (memory)
    mx: Maxima | None = None
    cells: pd.DataFrame | None = None  # cells in the box at base_t (_Search._cells: _peak, _key, _split columns)
    base_t: float = math.inf
    charged: bool = False  # seconds already counted in a trial
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Search:
    """State of one :func:`tune_detection` call: the box, the markers, a chain run per size."""

    def __init__(self, source, voxel_size, user_detect, base_detect, base_threshold, markers, box, radius_um, field_):
        self.source = source
        self.shape = tuple(int(s) for s in source.shape)
        self.vs = tuple(float(v) for v in voxel_size)
        self.user_detect = dict(user_detect)
        self.markers = np.asarray(markers, float).reshape(-1, 3)
        self.box = box
        self.radius_um = float(radius_um)
        self.illumination = field_
        self.box_markers = self.markers[in_box(self.markers, box)]
        self.n_markers = len(self.box_markers)
        self.t0 = float(base_detect.maxima.threshold)
        self.columns = [c for c in base_threshold.ranges if c in TUNABLE_COLUMNS]
        if base_detect.shape.enabled and "volume_um3" not in self.columns:
            self.columns.append("volume_um3")
        if not base_detect.shape.enabled:
            self.columns = [c for c in self.columns if c not in _SHAPE_COLUMNS]
        self.runs: dict[float, _SizeRun] = {}
        self._raw_cache: tuple[IntBox, np.ndarray] | None = None
        self._lock = threading.Lock()

    # -- the chain ------------------------------------------------------------------------------

    def raw(self, read: IntBox) -> np.ndarray:
        """The voxels of a region, from the last region read when it holds them."""
        with self._lock:
            if self._raw_cache is not None:
                have, arr = self._raw_cache
                if all(h[0] <= r[0] and r[1] <= h[1] for h, r in zip(have, read)):
                    return arr[tuple(slice(r[0] - h[0], r[1] - h[0]) for h, r in zip(have, read))]
            arr = np.asarray(self.source[tuple(slice(a, b) for a, b in read)])
            self._raw_cache = (read, arr)
            return arr

    def size_runs(self, diameters: Sequence[float], pool: Executor | None) -> None:
        """Run the chain for the cell sizes not run yet, in parallel threads (the kernels release the GIL)."""
        untried = [d for d in dict.fromkeys(diameters) if d not in self.runs]
        if pool is None or len(untried) < 2:
            for d in untried:
                self.size_run(d)
        else:
            for future in [pool.submit(self.size_run, d) for d in untried]:
                future.result()

    def _filters(self, params: DetectParams, read: IntBox, core: IntBox) -> Filtered | None:
        gain = _gain(params, self.illumination, read)
        return block_filters(self.raw(read), self.vs, params, offset=[a for a, _ in read], core=core, gain=gain)

    def _cells(
        self,
        flt: Filtered,
        mx: Maxima,
        params: DetectParams,
        read: IntBox,
        core: IntBox,
        only: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """The chain's cells in the box from these maxima, with the peak value, peak voxel (as a
        flat index of the volume) and split flag of the maximum each row comes from."""
        cells, index = block_cells(
            flt, mx, self.vs, params, offset=[a for a, _ in read], core=core, volume_shape=self.shape, only=only
        )
        peaks = mx.peaks[index]
        vox = peaks + np.asarray(flt.origin) + np.array([a for a, _ in read])
        _, first, counts = np.unique(index, return_inverse=True, return_counts=True)
        cells = cells.assign(
            _peak=flt.dog[tuple(peaks.T)].astype(np.float64),
            _key=np.ravel_multi_index(tuple(vox.T), self.shape) if len(vox) else np.zeros(0, np.int64),
            _split=counts[first] > 1,  # a cell and the partner split off it (steps.detect.split)
        )
        return sort_cells(cells[in_box(cells[["z", "y", "x"]].to_numpy(), self.box)])

    def size_run(self, diameter: float) -> _SizeRun:
        """The filters and the maxima for one cell size, down to the lowest threshold tried (cached)."""
        if diameter in self.runs:
            return self.runs[diameter]
        start = time.perf_counter()
        params = sized_params(self.user_detect, diameter, self.t0)
        core, read = read_region(self.box, self.shape, self.vs, params)
        flt = self._filters(params, read, core)
        if flt is None:  # cannot happen for a box inside the volume
            raise ValueError(f"box {format_box(self.box)}: no voxel of the volume near it")
        # every positive local maximum (or down to the config's threshold if that is lower)
        floor = min(float(np.nextafter(np.float32(0), np.float32(1))), self.t0)
        mx = find_maxima(flt.dog, self.vs, _at_threshold(params, floor))
        shift = np.asarray(flt.origin) + np.array([a for a, _ in read])
        values = np.sort(flt.dog[tuple(mx.peaks[in_box(mx.peaks + shift, self.box)].T)].astype(np.float64))[::-1]
        t_low = min([self.t0, *self.count_thresholds(values, (LOWEST_COUNT_FACTOR,))])
        mx = maxima_above(mx, flt.dog, t_low)
        params = _at_threshold(params, t_low)
        run = _SizeRun(
            params,
            t_low,
            values,
            mx.rejected + shift,
            flt.dog[tuple(mx.rejected.T)].astype(np.float64),
            mx.peaks + shift,
            flt.dog[tuple(mx.peaks.T)].astype(np.float64),
            read,
            core,
            time.perf_counter() - start,
            flt,
            mx,
        )
        with self._lock:
            self.runs[diameter] = run
        return run

    def release(self, evaluated: Sequence[float], keep: float) -> None:
        """Drop the filtered images of the cell sizes ``evaluated`` but ``keep`` (made again if needed)."""
        for d in evaluated:
            if d != keep and d in self.runs:
                with self.runs[d].lock:
                    self.runs[d].flt = self.runs[d].mx = None

    def count_thresholds(self, values: np.ndarray, factors: Sequence[float] = COUNT_FACTORS) -> list[float]:
        """Maxima thresholds that keep about ``factors`` × markers maxima in the box."""
        found = {self.threshold_for_count(values, round(f * self.n_markers)) for f in factors}
        return sorted(found - {math.inf})

    @staticmethod
    def threshold_for_count(values: np.ndarray, k: int) -> float:
        """A threshold (3 significant digits) keeping at least the ``k`` brightest of ``values``."""
        if not len(values):
            return math.inf
        return round_sig(values[min(max(int(k), 1), len(values)) - 1], down=True)

    def _images(self, run: _SizeRun) -> tuple[Filtered, Maxima]:
        """The filtered images and the maxima at ``t_low`` of a size (made again if released)."""
        with run.lock:
            if run.flt is None or run.mx is None:
                run.flt = self._filters(run.params, run.read, run.core)
                run.mx = find_maxima(run.flt.dog, self.vs, run.params)
            return run.flt, run.mx

    def cells_at(self, diameter: float, t: float) -> pd.DataFrame:
        """The chain's cells in the box (before ``steps.threshold``) at this size and maxima threshold.

        The first threshold asked for (or any lower one) is measured in full and becomes
        the base. At a higher threshold t the cells are the base's whose maximum is >= t,
        except where t could change a cell's objects: a candidate between the base and t
        (not there at t) within their reach (a suppressed maximum redirects watershed
        paths; the split of touching cells models every local maximum), or a split (the
        partner must reach the threshold). Those maxima are measured again at t; every
        result depends on its own neighbourhood only, so the rest stay as they are.
        """
        run = self.size_run(diameter)
        if t < run.t_low:
            raise ValueError(f"maxima threshold {t} is below the lowest one measured ({run.t_low})")
        t32 = np.float32(t)
        with run.lock:
            cells, base = run.cells, run.base_t
        if cells is None or t < base:
            flt, low = self._images(run)
            cells = self._cells(flt, maxima_above(low, flt.dog, t), _at_threshold(run.params, t), run.read, run.core)
            with run.lock:
                if t < run.base_t:
                    run.cells, run.base_t = cells, t
            return cells
        cells = cells[cells["_peak"] >= t32]
        split = run.params.split.enabled
        gone = lambda v: (v >= np.float32(base)) & (v < t32)  # noqa: E731 - candidates at the base, not at t
        below = run.rejected[gone(run.rejected_values)]
        if split:
            below = np.concatenate([below, run.peaks[gone(run.peak_values)]])
        if not len(below) and not (split and cells["_split"].any()):
            return cells
        # reach of a cell's objects from its peak (with centroid centres or the split any
        # maximum counts, not only the cells in the box: a changed shape can move a centroid
        # into the box, a new split can put a partner there)
        reach = np.asarray(object_margin(self.vs, run.params), float) + 1.0
        tree = cKDTree(below / reach) if len(below) else None

        def near(points: np.ndarray) -> np.ndarray:
            if tree is None or not len(points):
                return np.zeros(len(points), bool)
            return np.isfinite(tree.query(points / reach, k=1, p=np.inf, distance_upper_bound=1.0 + 1e-9)[0])

        if split or run.params.refine.center == "centroid":
            maybe = near(run.peaks[run.peak_values >= t32]).any()
        else:
            maybe = near(np.column_stack(np.unravel_index(cells["_key"].to_numpy(), self.shape))).any()
        if not maybe and not (split and cells["_split"].any()):
            return cells
        flt, low = self._images(run)
        mx = maxima_above(low, flt.dog, t)
        keys = np.ravel_multi_index(tuple((mx.peaks + np.asarray(flt.origin) + [a for a, _ in run.read]).T), self.shape)
        again = near(np.column_stack(np.unravel_index(keys, self.shape)))
        if split:
            again |= np.isin(keys, cells.loc[cells["_split"], "_key"].to_numpy())
        redo = self._cells(flt, mx, _at_threshold(run.params, t), run.read, run.core, only=np.flatnonzero(again))
        stay = cells[~np.isin(cells["_key"].to_numpy(), keys[again])]
        if not len(stay) or not len(redo):
            return stay if len(stay) else redo
        return sort_cells(pd.concat([stay, redo], ignore_index=True))

    # -- metrics -----------------------------------------------------------------------------------

    def scorer(self, cells: pd.DataFrame) -> Callable[[Mapping], dict]:
        """Metrics of the cells a ``steps.threshold.ranges`` keeps (as ``spimflow evaluate`` in the box).

        The candidate pairs of cells and markers are found once; each ranges setting
        matches its subset of them (:func:`~spimflow.steps.detect.evaluate.match_pairs`).
        """
        row, col, dist = candidate_pairs(cells[["z", "y", "x"]].to_numpy(), self.box_markers, self.radius_um, self.vs)
        numbered = cells.assign(_row=np.arange(len(cells)))

        def score(ranges: Mapping) -> dict:
            keep = np.zeros(len(cells), bool)
            keep[threshold_cells(numbered, ranges)["_row"].to_numpy()] = True
            sel = keep[row]
            m = match_pairs(int(keep.sum()), len(self.box_markers), row[sel], col[sel], dist[sel], self.radius_um)
            return {
                "detected": m.n_detected,
                "markers": m.n_reference,
                "matched": m.n_matched,
                "precision": m.precision,
                "recall": m.recall,
                "f1": m.f1,
            }

        return score

    def best_ranges(self, cells: pd.DataFrame, start: Mapping) -> tuple[dict, dict]:
        """Coordinate search over the lower bounds of the tunable columns (upper bounds kept)."""
        score = self.scorer(cells)
        ranges = {k: tuple(v) for k, v in start.items()}
        best = score(ranges)
        for _ in range(2):
            changed = False
            for col in self.columns:
                values = cells[col].to_numpy(float)
                values = values[np.isfinite(values)]
                options = [None] + [round_sig(v) for v in np.quantile(values, RANGE_QUANTILES)] if len(values) else []
                for lo in dict.fromkeys(options):
                    cur = ranges.get(col, (None, None))
                    if lo == cur[0]:
                        continue
                    trial = {k: v for k, v in ranges.items() if k != col}
                    if lo is not None or cur[1] is not None:
                        trial[col] = (lo, cur[1])
                    m = score(trial)
                    if m["f1"] > best["f1"]:
                        best, ranges, changed = m, trial, True
            if not changed:
                break
        return ranges, best


def tune_detection(
    source,
    voxel_size: Sequence[float],
    detect: DetectParams,
    threshold: ThresholdParams,
    markers: np.ndarray,
    box: Box,
    *,
    user_detect: Mapping | None = None,
    radius_um: float = DEFAULT_RADIUS_UM,
    illumination: IlluminationField | None = None,
    rounds: int = 3,
    threads: int = 2,
    report: Callable[[Trial], None] | None = None,
) -> TuneResult:
    """Search detection and threshold parameters that maximise F1 against markers in a box.

    The config as it is is tried first. Then a grid: cell diameters (:data:`DIAMETER_FACTORS`
    × the config's, every size parameter derived from it) × maxima thresholds (those
    keeping :data:`COUNT_FACTORS` × the number of markers; at the config's size also the
    config's), each with
    the best lower bounds of the threshold columns (:data:`TUNABLE_COLUMNS` in the
    config's ranges, and ``volume_um3``; a coordinate search over quantiles of their
    values). Then up to ``rounds`` rounds of coordinate refinement around the best:
    diameter (± a sixth of an octave), then maxima threshold (as the number of maxima
    it keeps, ± 15 %, down to :data:`LOWEST_COUNT_FACTOR` × the markers), steps halved
    when nothing improves. Every setting is evaluated exactly as the workflow would
    detect and threshold it (see the module docstring); ties keep the setting nearest
    to the config, so the config wins unless something is strictly better.

    Parameters
    ----------
    source : array_like
        The whole (z, y, x) signal volume (numpy or zarr array; only the box and its
        margin are read).
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    detect : DetectParams
        The config's ``steps.detect`` (everything but the sizes and the maxima threshold
        is kept).
    threshold : ThresholdParams
        The config's ``steps.threshold``.
    markers : (n, 3) array_like
        Hand-clicked cell centres (z, y, x), voxels.
    box : tuple of three (start, stop) pairs
        The annotated region, voxels, half-open; only cells and markers inside count.
    user_detect : mapping, optional
        The ``steps.detect`` keys the user wrote (default: those set in ``detect``).
    radius_um : float, optional
        Largest distance of a matched pair, µm.
    illumination : IlluminationField, optional
        The flat-field; required when illumination correction is enabled.
    rounds : int, optional
        Refinement rounds.
    threads : int, optional
        Threads running the chain for different cell sizes at once (each holds the
        filtered images of the box and its margin, about 10 bytes per voxel).
    report : callable, optional
        Called with each :class:`Trial` as it is done (progress).

    Returns
    -------
    TuneResult

    Raises
    ------
    ValueError
        If no marker lies in the box, or illumination correction is enabled without
        ``illumination``.
    """
    start = time.perf_counter()
    if user_detect is None:
        user_detect = detect.model_dump(mode="json", exclude_unset=True)
    s = _Search(source, voxel_size, user_detect, detect, threshold, markers, box, radius_um, illumination)
    if s.n_markers == 0:
        raise ValueError(f"no marker lies in the box {format_box(box)}")
    trials: list[Trial] = []
    tried: set[tuple[float, float]] = set()

    def add(trial: Trial) -> Trial:
        trials.append(trial)
        if report is not None:
            report(trial)
        return trial

    d0 = config_diameter(detect)

    def distance(trial: Trial) -> tuple[float, float]:
        """How far a setting is from the config's (ties go to the nearest)."""
        return abs(math.log(trial.diameter / d0)), abs(trial.maxima_threshold - s.t0) / max(abs(s.t0), 1e-9)

    t = time.perf_counter()
    cells = detect_in_box(source, box, s.vs, detect, illumination=illumination)
    base_ranges = {k: tuple(v) for k, v in threshold.ranges.items()}
    metrics = _metrics(box_metrics(threshold_cells(cells, base_ranges), s.markers, s.vs, s.radius_um, box))
    base = best = add(Trial("config", config_diameter(detect), s.t0, base_ranges, metrics, time.perf_counter() - t))

    def evaluate(stage: str, diameter: float, thresholds: Sequence[float], pool: Executor) -> None:
        """Try these maxima thresholds at one size: the cells of each in parallel, then the ranges."""
        nonlocal best
        t = time.perf_counter()
        run = s.size_run(diameter)
        untried = sorted(v for v in set(thresholds) if (diameter, v) not in tried and v >= run.t_low)
        tried.update((diameter, v) for v in untried)
        # the lowest first: the base the others are derived from
        tables = [s.cells_at(diameter, untried[0])] if untried else []
        tables += pool.map(lambda v: s.cells_at(diameter, v), untried[1:])
        share = (time.perf_counter() - t) / max(len(untried), 1)
        for t_value, cells in zip(untried, tables):
            t = time.perf_counter()
            ranges, m = s.best_ranges(cells, base_ranges)
            seconds = time.perf_counter() - t + share + (0.0 if run.charged else run.seconds)
            run.charged = True
            out = add(Trial(stage, diameter, t_value, ranges, m, seconds))
            if out.f1 > best.f1 or (out.f1 == best.f1 and distance(out) < distance(best)):
                best = out

    diameters = [round_sig(d0 * f) for f in DIAMETER_FACTORS]
    big = sized_params(user_detect, max(diameters), s.t0)
    s.raw(read_region(box, s.shape, s.vs, big)[1])  # read once the region the largest size needs
    workers = max(1, int(threads))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # the chain for the next size runs in another thread while this one's thresholds are tried
        future = pool.submit(s.size_run, diameters[0])
        for i, d in enumerate(diameters):
            run = future.result()
            if i + 1 < len(diameters):
                future = pool.submit(s.size_run, diameters[i + 1])
            # the config's maxima threshold too at the config's size (the DoG's scale follows the size)
            evaluate("grid", d, [*s.count_thresholds(run.values), *([s.t0] if d == round_sig(d0) else [])], pool)
            s.release(diameters[: i + 1], keep=best.diameter)

        # coordinate refinement around the best: the diameter (a sixth of an octave), then the
        # maxima threshold as the number of maxima it keeps in the box (± 15 %); steps halve
        d_step, k_step = 2.0 ** (1 / 6), 0.15
        for _ in range(max(0, int(rounds)) if best is not base else 0):
            before = best
            d_best, t_best = best.diameter, best.maxima_threshold
            k = _count_at(s.size_run(d_best).values, t_best)
            steps = (round_sig(d_best * d_step), round_sig(d_best / d_step))
            s.size_runs(steps, pool)
            for d in steps:
                run = s.size_run(d)
                evaluate("refine", d, [max(s.threshold_for_count(run.values, k), run.t_low)], pool)
            s.release([*steps, d_best], keep=best.diameter)
            d_best, t_best = best.diameter, best.maxima_threshold
            values = s.size_run(d_best).values
            k = _count_at(values, t_best)
            counts = (round(k * (1 + k_step)), round(k * (1 - k_step)))
            evaluate("refine", d_best, [s.threshold_for_count(values, kk) for kk in counts], pool)
            if best is before:
                d_step, k_step = math.sqrt(d_step), k_step / 2

    if best is base:
        out_detect, out_threshold = detect, threshold
    else:
        out_detect = fit_blocks(sized_params(user_detect, best.diameter, best.maxima_threshold), s.vs)
        out_threshold = threshold.model_copy(update={"ranges": dict(best.ranges)})
    # the best, recomputed as the workflow would (a check of the shortcuts above)
    again = detect_in_box(source, box, s.vs, out_detect, illumination=illumination, threshold=out_threshold)
    check = _metrics(box_metrics(again, s.markers, s.vs, s.radius_um, box))
    return TuneResult(trials, best, out_detect, out_threshold, box, check, time.perf_counter() - start)


def _metrics(result: Mapping) -> dict:
    return {k: result[k] for k in ("detected", "markers", "matched", "precision", "recall", "f1")}


def _count_at(values: np.ndarray, t: float) -> int:
    return int(np.count_nonzero(values >= np.float32(t)))


# -- reporting -----------------------------------------------------------------------------------------

#: Header of :func:`format_trial` rows.
TRIAL_HEADER = (
    f"{'#':>4}  {'stage':<6}  {'diameter':>8}  {'max.thr':>9}  {'detected':>8}  {'matched':>7}  "
    f"{'precision':>9}  {'recall':>6}  {'F1':>6}  {'s':>5}  threshold ranges"
)


def format_ranges(ranges: Mapping) -> str:
    """``steps.threshold.ranges`` on one line.

    Parameters
    ----------
    ranges : mapping of str to (float or None, float or None)

    Returns
    -------
    str

    Examples
    --------
    >>> format_ranges({"volume_um3": (200.0, None), "intensity_raw": (None, 5000.0)})
    'volume_um3>=200 intensity_raw<=5000'
    >>> format_ranges({})
    '-'
    """
    parts = []
    for col, (lo, hi) in ranges.items():
        if lo is not None and hi is not None:
            parts.append(f"{lo:g}<={col}<={hi:g}")
        elif lo is not None:
            parts.append(f"{col}>={lo:g}")
        elif hi is not None:
            parts.append(f"{col}<={hi:g}")
    return " ".join(parts) or "-"


def format_trial(number: int, trial: Trial) -> str:
    """One row of the table ``spimflow tune`` prints (columns of :data:`TRIAL_HEADER`).

    Parameters
    ----------
    number : int
        Row number.
    trial : Trial

    Returns
    -------
    str
    """
    m = trial.metrics
    return (
        f"{number:>4}  {trial.stage:<6}  {trial.diameter:>8g}  {trial.maxima_threshold:>9g}  {m['detected']:>8}  "
        f"{m['matched']:>7}  {m['precision']:>9.3f}  {m['recall']:>6.3f}  {m['f1']:>6.3f}  {trial.seconds:>5.1f}  "
        f"{format_ranges(trial.ranges)}"
    )


def tuned_snippet(
    config: Mapping,
    detect: DetectParams,
    threshold: ThresholdParams,
    tuned_detect: DetectParams,
    tuned_threshold: ThresholdParams,
) -> dict:
    """The smallest config snippet that turns ``config`` into the tuned parameters.

    Like :func:`params_snippet`, but a size that ``cell_diameter_um`` derives is left
    out unless the config gives it explicitly (an explicit value would win over the
    derived one, so it is overridden). Merged into ``config`` (:func:`apply_snippet`),
    the snippet gives exactly ``tuned_detect`` and ``tuned_threshold``.

    Parameters
    ----------
    config : mapping
        The sample config as written (e.g. the YAML file's mapping).
    detect, threshold : DetectParams, ThresholdParams
        Its ``steps.detect`` and ``steps.threshold``.
    tuned_detect, tuned_threshold : DetectParams, ThresholdParams
        The tuned parameters.

    Returns
    -------
    dict

    Raises
    ------
    ValueError
        If not even the full difference reproduces the tuned parameters.

    Examples
    --------
    >>> base = DetectParams()
    >>> tuned = DetectParams.model_validate({"cell_diameter_um": 16.0})
    >>> tuned_snippet({"steps": {}}, base, ThresholdParams(), tuned, ThresholdParams())
    {'steps': {'detect': {'cell_diameter_um': 16.0}}}
    >>> tuned_snippet({"steps": {"detect": {"dog": {"sigma_inner_um": 3.0}}}}, base, ThresholdParams(), tuned,
    ...               ThresholdParams())
    {'steps': {'detect': {'cell_diameter_um': 16.0, 'dog': {'sigma_inner_um': 4.0}}}}
    """
    full = params_snippet(detect, threshold, tuned_detect, tuned_threshold)
    user = ((config.get("steps") or {}).get("detect") or {}) if isinstance(config, Mapping) else {}
    small = copy.deepcopy(full)
    section_keys = small.get("steps", {}).get("detect", {})
    if tuned_detect.cell_diameter_um is not None:
        for section, key in SIZE_FORMULAS:
            given = user.get(section) if isinstance(user.get(section), Mapping) else {}
            if key in given or key not in section_keys.get(section, {}):
                continue
            del section_keys[section][key]
            if not section_keys[section]:
                del section_keys[section]

    def gives_tuned(snippet: Mapping) -> bool:
        steps = apply_snippet(config, snippet).get("steps") or {}
        d = DetectParams.model_validate(steps.get("detect") or {})
        t = ThresholdParams.model_validate(steps.get("threshold") or {})
        return d.model_dump() == tuned_detect.model_dump() and t.model_dump() == tuned_threshold.model_dump()

    for snippet in (small, full):
        if gives_tuned(snippet):
            return snippet
    raise ValueError("the tuned parameters cannot be written as a snippet of this config")


# -- spimflow tune -------------------------------------------------------------------------------------


def tune_config(
    config_path: str | Path,
    markers_path: str | Path,
    *,
    box: str | None = None,
    base: str | Path = ".",
    radius_um: float = DEFAULT_RADIUS_UM,
    marker_type: str | None = None,
    out: str | Path | None = None,
    rounds: int = 3,
    threads: int = 2,
    stream: TextIO | None = None,
) -> TuneResult:
    """``spimflow tune``: tune a sample config's detection on its ingested signal against markers.

    Prints the trials as a table while they run, then the best setting and the config
    snippet (YAML, written to ``out`` when given).

    Parameters
    ----------
    config_path : str or Path
        The brain's sample config.
    markers_path : str or Path
        Hand-clicked cells: ``.cdb`` project, Cell Counter ``.xml``, ``.csv`` or
        ``.parquet`` (z, y, x voxels of the raw signal).
    box : str, optional
        ``z0:z1,y0:y1,x0:x1`` (voxels): the annotated region; default the markers' extent
        (:func:`~spimflow.steps.detect.evaluate.marker_box`).
    base : str or Path, optional
        The folder the config's relative paths are taken from (the run's working directory).
    radius_um : float, optional
        Largest distance of a matched pair, µm.
    marker_type : str, optional
        Only markers of this type.
    out : str or Path, optional
        Write the snippet here (atomically) instead of printing it.
    rounds : int, optional
        Refinement rounds of :func:`tune_detection`.
    threads : int, optional
        Threads of :func:`tune_detection`.
    stream : file, optional
        Where to print (default ``sys.stdout``).

    Returns
    -------
    TuneResult

    Raises
    ------
    ConfigError
        For a cohort config, a bad ``box``, a box outside the volume or without markers.
    InputFileError
        If the signal is not ingested (the message names the Snakemake target), the
        flat-field is missing while illumination correction is on, or the marker file
        cannot be read or holds no markers.
    """
    stream = stream or sys.stdout

    def say(text: str = "") -> None:
        print(text, file=stream, flush=True)

    config_path, base = Path(config_path), Path(base)
    data = read_config_file(config_path)
    run = load_run(data, str(config_path), base)
    if run.cohort is not None or len(run.samples) != 1:
        raise ConfigError(f"{config_path}: tune takes one brain's sample config, not a cohort")
    cfg = next(iter(run.samples.values()))
    results_dir = base / cfg.sample_dir()
    signal = results_dir / SIGNAL_ZARR
    if not signal.exists():
        raise InputFileError(
            f"{signal}: the ingested signal is not there; run the ingest first: "
            f"snakemake --configfile {config_path} --cores 2 {cfg.sample_dir() / SIGNAL_ZARR}"
        )
    source = open_source(results_dir, cfg)
    if source.illumination_off:
        raise InputFileError(
            f"{results_dir / ILLUMINATION_FIELD}: steps.detect.illumination is enabled but the flat-field is not "
            f"there; make it first: snakemake --configfile {config_path} --cores 2 "
            f"{cfg.sample_dir() / ILLUMINATION_FIELD}"
        )
    markers = read_points(markers_path)
    if marker_type and "type" in markers.columns:
        markers = markers[markers["type"].astype(str) == marker_type]
    if not len(markers):
        raise InputFileError(f"{markers_path}: no markers" + (f" of type {marker_type!r}" if marker_type else ""))
    points = markers[["z", "y", "x"]].to_numpy(float)
    try:
        asked = parse_box(box) if box else marker_box(points)
        region = clip_box(asked, source.shape)
    except ValueError as exc:
        raise ConfigError(f"--box: {exc}") from None
    inside = int(in_box(points, region).sum())
    if not inside:
        raise ConfigError(
            f"--box {format_box(region)}: none of the {len(points)} markers of {markers_path} lies in it "
            f"(markers span {format_box(marker_box(points))})"
        )
    detect, threshold = cfg.steps.detect, cfg.steps.threshold
    for note in source.notes:
        say(f"note: {note}")
    if region != tuple((float(a), float(b)) for a, b in asked):
        say(f"note: box {format_box(asked)} cut to the volume: {format_box(region)}")
    say(
        f"spimflow tune: {inside} markers of {markers_path} in box {format_box(region)} of {signal} "
        f"(shape {source.shape}, voxels {source.voxel_size} µm); matched within {radius_um:g} µm"
    )
    say(TRIAL_HEADER)
    count = iter(range(1 << 30))
    user_detect = (data.get("steps") or {}).get("detect") or {}
    result = tune_detection(
        source.array,
        source.voxel_size,
        detect,
        threshold,
        points,
        region,
        user_detect=user_detect,
        radius_um=radius_um,
        illumination=source.illumination,
        rounds=rounds,
        threads=threads,
        report=lambda trial: say(format_trial(next(count), trial)),
    )
    best, config_trial = result.best, result.baseline
    say()
    say(
        f"best: F1 {best.f1:.3f} (precision {best.metrics['precision']:.3f}, recall {best.metrics['recall']:.3f}); "
        f"the config's: F1 {config_trial.f1:.3f}; {len(result.trials)} settings in {result.seconds:.1f} s"
    )
    snippet = tuned_snippet(data, detect, threshold, result.detect, result.threshold)
    comment = [
        f"spimflow tune {config_path} --markers {markers_path} --box {format_box(region)} --radius-um {radius_um:g}",
        f"F1 {best.f1:.4f} (precision {best.metrics['precision']:.4f}, recall {best.metrics['recall']:.4f}, "
        f"{best.metrics['matched']} of {best.metrics['markers']} markers); the config's F1 {config_trial.f1:.4f}",
    ]
    if snippet:
        comment.append("merge into the sample config (or pass as a second --configfile)")
    else:
        comment.append("nothing beat the config: keep it as it is")
    problems = snippet_problems(result.detect, result.threshold, source.voxel_size)
    if problems:
        comment += ["WARNING, the workflow would refuse these values:", *problems]
    text = snippet_yaml(snippet, "\n".join(comment))
    if out is None:
        say()
        stream.write(text)
        stream.flush()
    else:
        with atomic_path(out) as tmp:
            tmp.write_text(text)
        say(f"wrote {out}")
    return result
