"""Tune cell detection by eye: run the workflow's detection chain on a box of the signal and
compare it with hand-clicked markers while changing the main parameters.

The detection on a box is exactly the workflow's (block independence, see
:mod:`spimflow.blocks`): :func:`~spimflow.tuning.detect_in_box` reads the box plus the
:func:`~spimflow.steps.detect.required_overlap` margin and reports the cells whose
centre lies in the box, the same cells (same floats) a whole-volume run finds there with
the same parameters. The thresholds of ``steps.threshold`` are then applied, as the
workflow does before counting.

Everything the widget computes is a plain function: the headless ones (detection on a
box, metrics, the YAML snippet) in :mod:`spimflow.tuning`, shared with ``spimflow
tune``; the view and layer ones here. :class:`TuningWidget` only wires them to Qt
controls.

Coordinates: boxes and cells are (z, y, x) voxels of the raw signal volume, half-open
boxes ``[start, stop)`` as in ``spimflow evaluate --box``; napari world coordinates are
micrometres (the signal layer's scale is its voxel size).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from napari.layers import Points
from napari.utils.transforms import Affine
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from spimflow.errors import InputFileError, SpimflowError
from spimflow.napari._layers import points_layer, results_dir_of, sample_config
from spimflow.params.detect import DetectParams, ThresholdParams
from spimflow.steps.detect import threshold_cells
from spimflow.steps.detect.evaluate import parse_box
from spimflow.tuning import (  # noqa: F401 - the widget's functions, importable from here too
    DEFAULT_RADIUS_UM,
    ILLUMINATION_FIELD,
    Box,
    IntBox,
    TuningSource,
    apply_snippet,
    box_metrics,
    detect_in_box,
    format_box,
    open_source,
    params_snippet,
    read_region,
    read_voxels,
    snippet_problems,
    snippet_yaml,
)

#: Name of the Points layer showing the candidates.
CANDIDATES_LAYER = "tuning candidates"
#: The widget refuses boxes whose read region (box + overlap) has more voxels than this.
MAX_READ_VOXELS = 40_000_000
CANDIDATE_COLOUR = np.array([1.0, 0.85, 0.0, 1.0])


# -- the source: a results folder ---------------------------------------------------------------


def load_source(results_dir: str | Path) -> TuningSource:
    """Open a results folder for tuning.

    Parameters
    ----------
    results_dir : str or Path
        ``results/<sample>``, or any file or folder inside it.

    Returns
    -------
    TuningSource

    Raises
    ------
    InputFileError
        If the folder has no ``config.resolved.yaml`` or no ``raw/signal.ome.zarr``.
    """
    path = Path(results_dir)
    folder = results_dir_of(path)
    if folder is None:
        raise InputFileError(f"{path}: not in a results folder (no config.resolved.yaml in it or above it)")
    return open_source(folder, sample_config(folder))


def find_results_dir(layers: Iterable) -> Path | None:
    """The results folder the first layer with a ``spimflow_path`` in its metadata comes from.

    Parameters
    ----------
    layers : iterable of napari layers
        E.g. ``viewer.layers``.

    Returns
    -------
    Path or None
    """
    for layer in layers:
        path = getattr(layer, "metadata", {}).get("spimflow_path")
        if path:
            folder = results_dir_of(Path(path))
            if folder is not None:
                return folder
    return None


# -- boxes ----------------------------------------------------------------------------------------


def box_from_view(
    point_um: Sequence[float],
    displayed: Sequence[int],
    center_um: Sequence[float],
    zoom: float,
    canvas_size: Sequence[float],
    voxel_size: Sequence[float],
    volume_shape: Sequence[int],
    planes: int = 2,
) -> IntBox:
    """The voxels visible in a 2D view: the current plane ± ``planes`` and the camera's extent.

    Parameters
    ----------
    point_um : sequence of float
        Current world position (z, y, x), µm (``viewer.dims.point``).
    displayed : sequence of int
        The two displayed axes (indices into z, y, x), vertical first (``viewer.dims.displayed``).
    center_um : sequence of float
        World position of the canvas centre along the displayed axes, µm.
    zoom : float
        Canvas pixels per µm (``camera.zoom``).
    canvas_size : sequence of float
        Canvas (height, width), pixels.
    voxel_size : sequence of float
        Voxel size (z, y, x), µm; world = voxel index × voxel size.
    volume_shape : sequence of int
        Volume shape (z, y, x); the box is clipped to it.
    planes : int, optional
        Planes taken on each side of the current one along the sliced axis.

    Returns
    -------
    tuple of three (int, int)
        Half-open voxel ranges (z, y, x): the voxels whose centre is on the canvas.

    Raises
    ------
    ValueError
        If the view shows no voxel of the volume.

    Examples
    --------
    A 400 × 600 pixel canvas at zoom 2 shows 200 × 300 µm around its centre:

    >>> box_from_view((40.0, 0, 0), (1, 2), (100.0, 150.0), 2.0, (400, 600), (4.0, 2.0, 2.0), (50, 500, 500), 2)
    ((8, 13), (0, 101), (0, 151))
    """
    vs = [float(v) for v in voxel_size]
    out = []
    for axis in range(3):
        n = int(volume_shape[axis])
        if axis in displayed:
            i = list(displayed).index(axis)
            half = float(canvas_size[i]) / float(zoom) / 2.0
            lo = math.ceil((float(center_um[i]) - half) / vs[axis])
            hi = math.floor((float(center_um[i]) + half) / vs[axis]) + 1
        else:
            c = int(math.floor(float(point_um[axis]) / vs[axis] + 0.5))
            lo, hi = c - int(planes), c + int(planes) + 1
        lo, hi = max(lo, 0), min(hi, n)
        if hi <= lo:
            raise ValueError("the view shows no part of the signal volume; pan or zoom onto it, or type a box")
        out.append((lo, hi))
    return tuple(out)  # type: ignore[return-value]


# -- markers and metrics -------------------------------------------------------------------------------


def layer_world_matrix(layer) -> np.ndarray:
    """The (ndim + 1) × (ndim + 1) affine matrix from a layer's data to world coordinates.

    ``affine ∘ (rotate · shear · scale + translate)``, napari's order, from public layer
    properties (grid-mode offsets are not included).

    Parameters
    ----------
    layer : napari.layers.Layer
        Any layer.

    Returns
    -------
    ndarray of float
    """
    inner = Affine(scale=layer.scale, translate=layer.translate, rotate=layer.rotate, shear=layer.shear)
    return np.asarray(layer.affine.affine_matrix, float) @ np.asarray(inner.affine_matrix, float)


def points_to_voxels(data: np.ndarray, matrix: np.ndarray, voxel_size: Sequence[float]) -> np.ndarray:
    """Points in a layer's data coordinates → (z, y, x) voxels of the signal (world ÷ voxel size).

    When the layer's transform is exactly the signal's (scale = voxel size, nothing
    else), the data are returned unchanged (no rounding).

    Parameters
    ----------
    data : (n, d) array_like
        Points; the last three columns are (z, y, x) of the layer's data.
    matrix : (d + 1, d + 1) array_like
        Data → world affine of the layer (:func:`layer_world_matrix`).
    voxel_size : sequence of float
        Voxel size (z, y, x) of the signal, µm.

    Returns
    -------
    (n, 3) ndarray of float

    Examples
    --------
    >>> points_to_voxels([[2.0, 3.0, 4.0]], np.diag([8.0, 4.0, 4.0, 1.0]), (4.0, 2.0, 2.0)).tolist()
    [[4.0, 6.0, 8.0]]
    """
    data = np.asarray(data, float)
    if data.ndim != 2 or data.shape[1] < 3:
        raise ValueError(f"expected points with at least 3 coordinates (z, y, x), got shape {data.shape}")
    m = np.asarray(matrix, float)
    d = data.shape[1]
    vs = np.asarray(voxel_size, float)
    sub = m[d - 3 : d, d - 3 : d]
    shift = m[d - 3 : d, d]
    rows = m[d - 3 : d, : d - 3]
    pts = data[:, d - 3 :]
    if np.array_equal(sub, np.diag(vs)) and not np.any(shift) and not np.any(rows):
        return pts.copy()
    world = pts @ sub.T + shift + (data[:, : d - 3] @ rows.T if d > 3 else 0.0)
    return world / vs


def layer_markers(layer, voxel_size: Sequence[float]) -> np.ndarray:
    """A Points layer's points as (z, y, x) voxels of the signal, through world coordinates.

    Parameters
    ----------
    layer : napari.layers.Points
        The reference markers.
    voxel_size : sequence of float
        Voxel size (z, y, x) of the signal, µm.

    Returns
    -------
    (n, 3) ndarray of float
    """
    data = np.asarray(layer.data, float).reshape(-1, layer.ndim)
    return points_to_voxels(data, layer_world_matrix(layer), voxel_size)


# -- parameters and the snippet ---------------------------------------------------------------------


@dataclass(frozen=True)
class TunedValues:
    """The parameters the widget exposes.

    Attributes
    ----------
    sigma_inner_um, sigma_outer_um : float
        ``steps.detect.dog`` sigmas, µm.
    background_um : float
        ``steps.detect.background.size_um`` (both in-plane axes), µm.
    maxima_threshold : float
        ``steps.detect.maxima.threshold``.
    shape_threshold : float
        ``steps.detect.shape.threshold``.
    volume_min_um3 : float
        Lower end of ``steps.threshold.ranges.volume_um3`` (0: none), µm³.
    """

    sigma_inner_um: float
    sigma_outer_um: float
    background_um: float
    maxima_threshold: float
    shape_threshold: float
    volume_min_um3: float


def tuned_values(detect: DetectParams, threshold: ThresholdParams) -> TunedValues:
    """Read the exposed parameters from a config's ``steps.detect`` and ``steps.threshold``.

    Parameters
    ----------
    detect : DetectParams
        Detection parameters.
    threshold : ThresholdParams
        Threshold ranges.

    Returns
    -------
    TunedValues

    Examples
    --------
    >>> from spimflow.params.detect import DetectParams, ThresholdParams
    >>> v = tuned_values(DetectParams(), ThresholdParams())
    >>> v.sigma_inner_um, v.background_um, v.maxima_threshold, v.volume_min_um3
    (3.0, 30.0, 80.0, 200.0)
    """
    vol = threshold.ranges.get("volume_um3", (None, None))[0]
    return TunedValues(
        float(detect.dog.sigma_inner_um),
        float(detect.dog.sigma_outer_um),
        float(detect.background.size_um[0]),
        float(detect.maxima.threshold),
        float(detect.shape.threshold),
        float(vol or 0.0),
    )


def apply_values(
    detect: DetectParams, threshold: ThresholdParams, values: TunedValues
) -> tuple[DetectParams, ThresholdParams]:
    """Set the exposed parameters; everything else stays as given.

    A value equal to what :func:`tuned_values` reads leaves the parameter untouched (so
    an anisotropic background size or a missing volume range survive).

    Parameters
    ----------
    detect : DetectParams
        Starting detection parameters.
    threshold : ThresholdParams
        Starting threshold ranges.
    values : TunedValues
        The new values.

    Returns
    -------
    detect, threshold : DetectParams, ThresholdParams
        New, validated models.

    Raises
    ------
    pydantic.ValidationError
        If the values are not valid (e.g. outer sigma not above the inner one).

    Examples
    --------
    >>> from dataclasses import replace
    >>> from spimflow.params.detect import DetectParams, ThresholdParams
    >>> d, t = DetectParams(), ThresholdParams()
    >>> d2, t2 = apply_values(d, t, replace(tuned_values(d, t), maxima_threshold=120.0, volume_min_um3=300.0))
    >>> d2.maxima.threshold, t2.ranges["volume_um3"]
    (120.0, (300.0, None))
    """
    old = tuned_values(detect, threshold)
    d = detect.model_dump(mode="json")
    d["dog"]["sigma_inner_um"] = values.sigma_inner_um
    d["dog"]["sigma_outer_um"] = values.sigma_outer_um
    if values.background_um != old.background_um:
        d["background"]["size_um"] = [values.background_um, values.background_um]
    d["maxima"]["threshold"] = values.maxima_threshold
    d["shape"]["threshold"] = values.shape_threshold
    t = threshold.model_dump(mode="json")
    if values.volume_min_um3 != old.volume_min_um3:
        hi = t["ranges"].get("volume_um3", [None, None])[1]
        t["ranges"]["volume_um3"] = [values.volume_min_um3, hi]
    return DetectParams.model_validate(d), ThresholdParams.model_validate(t)


# -- the widget -------------------------------------------------------------------------------------------


def _camera(viewer):
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def _canvas_size(viewer) -> tuple[float, float]:
    size = getattr(getattr(viewer, "canvas", None), "size", None)
    if size is None:
        size = getattr(viewer, "_canvas_size", (600, 800))
    return float(size[0]), float(size[1])


def view_box(viewer, voxel_size: Sequence[float], volume_shape: Sequence[int], planes: int = 2) -> IntBox:
    """The box of :func:`box_from_view` for a napari viewer's current 2D view.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer; its last three world axes are the signal's (z, y, x).
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    volume_shape : sequence of int
        Volume shape (z, y, x).
    planes : int, optional
        Planes on each side of the current one.

    Returns
    -------
    tuple of three (int, int)

    Raises
    ------
    ValueError
        In the 3D view, or when the view shows no voxel of the volume.
    """
    dims = viewer.dims
    if dims.ndisplay != 2:
        raise ValueError("the box from the view needs the 2D view; switch to 2D or type a box")
    if dims.ndim < 3:
        raise ValueError("the viewer has fewer than 3 dimensions; open the signal volume first")
    skip = dims.ndim - 3
    displayed = [a - skip for a in dims.displayed]
    if min(displayed) < 0:
        raise ValueError("the displayed axes are not the signal's (z, y, x); type a box")
    camera = _camera(viewer)
    point = np.asarray(dims.point, float)[skip:]
    return box_from_view(
        point,
        displayed,
        np.asarray(camera.center, float)[-2:],
        float(camera.zoom),
        _canvas_size(viewer),
        voxel_size,
        volume_shape,
        planes,
    )


class TuningWidget(QWidget):
    """Dock widget: run the detection chain on a box of a results folder and tune it by eye.

    Pick a results folder (found from the layers, or typed), a box (the visible region or
    typed ``z0:z1,y0:y1,x0:x1``), change the parameters: the candidates (the workflow's
    cells in the box after ``steps.threshold``) appear as the ``tuning candidates`` Points
    layer. With a reference Points layer (hand-clicked markers) chosen, precision, recall
    and F1 in the box are shown, as ``spimflow evaluate`` computes them. The tuned
    parameters can be saved as a YAML snippet of the sample config.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer the widget docks into.
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.source: TuningSource | None = None
        self.box: Box | None = None
        self.candidates: pd.DataFrame | None = None
        self.detected: pd.DataFrame | None = None  # before thresholding
        self.metrics: dict | None = None
        self.max_read_voxels = MAX_READ_VOXELS
        self._cache_key: tuple | None = None
        self._layer: Points | None = None
        self._building = False
        self._start: TunedValues | None = None  # the config's values ...
        self._shown: dict[str, float] = {}  # ... as the spin boxes show them (rounded, clipped)

        self.results_edit = QLineEdit()
        self.results_edit.setPlaceholderText("results/<sample>")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        load = QPushButton("Load")
        load.clicked.connect(lambda: self.set_results_dir(self.results_edit.text()))
        self.results_edit.returnPressed.connect(lambda: self.set_results_dir(self.results_edit.text()))
        src_row = QHBoxLayout()
        for w in (self.results_edit, browse, load):
            src_row.addWidget(w)

        self.box_edit = QLineEdit()
        self.box_edit.setPlaceholderText("z0:z1,y0:y1,x0:x1 (voxels; empty: the view)")
        self.planes_spin = QSpinBox()
        self.planes_spin.setRange(0, 100)
        self.planes_spin.setValue(2)
        self.planes_spin.setToolTip("planes taken on each side of the current one for the box from the view")
        from_view = QPushButton("From view")
        from_view.clicked.connect(self.box_from_current_view)
        box_row = QHBoxLayout()
        box_row.addWidget(self.box_edit)
        box_row.addWidget(QLabel("±"))
        box_row.addWidget(self.planes_spin)
        box_row.addWidget(from_view)

        self.spins: dict[str, QDoubleSpinBox] = {}
        params = QFormLayout()
        for name, label, lo, hi, step, tip in (
            ("sigma_inner_um", "DoG σ inner (µm)", 0.1, 200.0, 0.5, "steps.detect.dog.sigma_inner_um"),
            ("sigma_outer_um", "DoG σ outer (µm)", 0.1, 400.0, 0.5, "steps.detect.dog.sigma_outer_um"),
            ("background_um", "background size (µm)", 1.0, 2000.0, 5.0, "steps.detect.background.size_um (y and x)"),
            ("maxima_threshold", "maxima threshold", -1e9, 1e9, 5.0, "steps.detect.maxima.threshold"),
            ("shape_threshold", "shape threshold", -1e9, 1e9, 5.0, "steps.detect.shape.threshold"),
            ("volume_min_um3", "min volume (µm³)", 0.0, 1e9, 50.0, "steps.threshold.ranges.volume_um3 (min)"),
        ):
            spin = QDoubleSpinBox()
            spin.setRange(lo, hi)
            spin.setDecimals(2)
            spin.setSingleStep(step)
            spin.setToolTip(tip)
            spin.valueChanged.connect(self._params_changed)
            self.spins[name] = spin
            params.addRow(label, spin)
        self.auto_run = QCheckBox("run on change")
        self.auto_run.setChecked(True)
        run = QPushButton("Run")
        run.clicked.connect(self.run)
        run_row = QHBoxLayout()
        run_row.addWidget(self.auto_run)
        run_row.addWidget(run)
        params.addRow(run_row)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(400)
        self._timer.timeout.connect(self.run)

        self.reference_combo = QComboBox()
        self.reference_combo.currentIndexChanged.connect(self.update_metrics)
        self.radius_spin = QDoubleSpinBox()
        self.radius_spin.setRange(0.1, 1000.0)
        self.radius_spin.setValue(DEFAULT_RADIUS_UM)
        self.radius_spin.setSingleStep(1.0)
        self.radius_spin.valueChanged.connect(self.update_metrics)
        self.metrics_label = QLabel("no reference markers")
        self.metrics_label.setWordWrap(True)
        ref = QFormLayout()
        ref.addRow("markers", self.reference_combo)
        ref.addRow("radius (µm)", self.radius_spin)
        ref.addRow(self.metrics_label)

        self.snippet_text = QPlainTextEdit()
        self.snippet_text.setReadOnly(True)
        self.snippet_text.setMaximumHeight(140)
        save = QPushButton("Save snippet…")
        save.clicked.connect(self._save_dialog)
        copy_button = QPushButton("Copy")
        copy_button.clicked.connect(self._copy)
        snip_row = QHBoxLayout()
        snip_row.addWidget(save)
        snip_row.addWidget(copy_button)

        self.status = QLabel("")
        self.status.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("results folder"))
        layout.addLayout(src_row)
        layout.addWidget(QLabel("box"))
        layout.addLayout(box_row)
        for title, inner in (("parameters", params), ("hand-clicked markers", ref)):
            group = QGroupBox(title)
            group.setLayout(inner)
            layout.addWidget(group)
        layout.addWidget(QLabel("config snippet (only what differs from the run's config)"))
        layout.addWidget(self.snippet_text)
        layout.addLayout(snip_row)
        layout.addWidget(self.status)
        layout.addStretch(1)

        events = self.viewer.layers.events
        events.inserted.connect(self._layers_changed)
        events.removed.connect(self._layers_changed)
        for layer in self.viewer.layers:
            self._watch(layer)
        self._refresh_references()
        found = find_results_dir(self.viewer.layers)
        if found is not None:
            self.set_results_dir(found)

    # -- source --------------------------------------------------------------------------------

    def set_results_dir(self, path: str | Path) -> bool:
        """Load a results folder; its config's parameters become the starting values.

        Parameters
        ----------
        path : str or Path
            ``results/<sample>`` or anything inside it.

        Returns
        -------
        bool
            Whether it loaded (else the reason is in the status line).
        """
        try:
            source = load_source(path)
        except (SpimflowError, ValueError, OSError, yaml.YAMLError) as exc:
            self._say(str(exc), error=True)
            return False
        self.source = source
        self._cache_key = None
        self.detected = self.candidates = self.box = None
        self.update_metrics()
        self.results_edit.setText(str(source.results_dir))
        values = tuned_values(source.config.steps.detect, source.config.steps.threshold)
        self._building = True
        try:
            for name, spin in self.spins.items():
                spin.setValue(getattr(values, name))
        finally:
            self._building = False
        self._start = values
        self._shown = {name: spin.value() for name, spin in self.spins.items()}
        detect = source.config.steps.detect
        self.spins["sigma_inner_um"].setEnabled(detect.dog.enabled)
        self.spins["sigma_outer_um"].setEnabled(detect.dog.enabled)
        self.spins["background_um"].setEnabled(detect.background.enabled)
        self.spins["shape_threshold"].setEnabled(detect.shape.enabled)
        self._update_snippet()
        self._say(
            " ".join(
                [f"loaded {source.results_dir} (signal {source.shape}, voxels {source.voxel_size} µm)", *source.notes]
            )
        )
        return True

    def _browse(self):
        path = QFileDialog.getExistingDirectory(self, "results/<sample> folder", self.results_edit.text())
        if path:
            self.set_results_dir(path)

    # -- parameters ----------------------------------------------------------------------------

    def values(self) -> TunedValues:
        """The values of the parameter spin boxes (the config's exact value where a box was not changed).

        Returns
        -------
        TunedValues
        """
        out = {}
        for name, spin in self.spins.items():
            value = float(spin.value())
            if self._start is not None and value == self._shown.get(name):
                value = getattr(self._start, name)  # not the spin box's rounding of it
            out[name] = value
        return TunedValues(**out)

    def params(self) -> tuple[DetectParams, ThresholdParams]:
        """The tuned parameters: the config's with the spin boxes' values.

        Returns
        -------
        detect, threshold : DetectParams, ThresholdParams

        Raises
        ------
        ValueError
            Without a results folder, or when the values are invalid.
        """
        if self.source is None:
            raise ValueError("choose a results folder first")
        steps = self.source.config.steps
        return apply_values(steps.detect, steps.threshold, self.values())

    def snippet(self) -> dict:
        """The config keys the tuning changed (see :func:`params_snippet`).

        Returns
        -------
        dict
        """
        detect, threshold = self.params()
        steps = self.source.config.steps
        return params_snippet(steps.detect, steps.threshold, detect, threshold)

    def snippet_text_value(self) -> str:
        """The snippet as YAML, with a comment saying where it comes from.

        Returns
        -------
        str
        """
        snippet = self.snippet()
        comment = f"detection tuned in napari on {self.source.results_dir}"
        if self.box is not None:
            comment += f", box {format_box(self.box)}"
        comment += "\nmerge into the sample config (or pass as a second --configfile)"
        problems = snippet_problems(*self.params(), self.source.voxel_size)
        if problems:
            comment += "\nWARNING, the workflow would refuse these values:\n" + "\n".join(problems)
        return snippet_yaml(snippet, comment)

    def save_snippet(self, path: str | Path) -> Path:
        """Write the snippet YAML to a file.

        Parameters
        ----------
        path : str or Path
            Output file.

        Returns
        -------
        Path
        """
        path = Path(path)
        path.write_text(self.snippet_text_value())
        self._say(f"wrote {path}")
        return path

    def _save_dialog(self):
        if self.source is None:
            self._say("choose a results folder first", error=True)
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save the config snippet", "detect_tuned.yaml", "YAML (*.yaml)")
        if path:
            try:
                self.save_snippet(path)
            except (OSError, ValueError) as exc:
                self._say(str(exc), error=True)

    def _copy(self):
        QApplication.clipboard().setText(self.snippet_text.toPlainText())

    def _update_snippet(self):
        try:
            self.snippet_text.setPlainText(self.snippet_text_value())
        except ValueError as exc:
            self.snippet_text.setPlainText(f"# invalid parameters: {exc}")

    def _params_changed(self, *_):
        if self._building or self.source is None:
            return
        self._update_snippet()
        if self.auto_run.isChecked():
            self._timer.start()

    # -- box and run ---------------------------------------------------------------------------

    def box_from_current_view(self) -> IntBox | None:
        """Fill the box field with the visible region of the current 2D view.

        Returns
        -------
        tuple of three (int, int) or None
            The box, or None (reason in the status line).
        """
        if self.source is None:
            self._say("choose a results folder first", error=True)
            return None
        try:
            box = view_box(self.viewer, self.source.voxel_size, self.source.shape, self.planes_spin.value())
        except ValueError as exc:
            self._say(str(exc), error=True)
            return None
        self.box_edit.setText(format_box(box))
        return box

    def current_box(self) -> Box:
        """The typed box, or the visible region when the field is empty.

        Returns
        -------
        tuple of three (start, stop) pairs

        Raises
        ------
        ValueError
            If the text is not a box, or the view shows nothing.
        """
        text = self.box_edit.text().strip()
        if not text:
            box = view_box(self.viewer, self.source.voxel_size, self.source.shape, self.planes_spin.value())
            self.box_edit.setText(format_box(box))
            return tuple((float(a), float(b)) for a, b in box)  # type: ignore[return-value]
        return parse_box(text)

    def run(self) -> pd.DataFrame | None:
        """Detect in the box with the current parameters and show the candidates.

        Detection reruns only when the box or the detection parameters changed; a
        threshold change only re-filters.

        Returns
        -------
        pandas.DataFrame or None
            The candidates, or None when it could not run (reason in the status line).
        """
        self._timer.stop()
        if self.source is None:
            self._say("choose a results folder first", error=True)
            return None
        src = self.source
        try:
            detect, threshold = self.params()
            box = self.current_box()
            run_detect = detect
            if src.illumination_off:
                run_detect = detect.model_copy(
                    update={"illumination": detect.illumination.model_copy(update={"enabled": False})}
                )
            _, read = read_region(box, src.shape, src.voxel_size, run_detect)
            if read_voxels(read) > self.max_read_voxels:
                raise ValueError(
                    f"the box needs {read_voxels(read) / 1e6:.0f} M voxels with its margin (limit "
                    f"{self.max_read_voxels / 1e6:.0f} M); zoom in or type a smaller box"
                )
            key = (box, run_detect.model_dump_json())
            if key != self._cache_key or self.detected is None:
                self.detected = detect_in_box(src.array, box, src.voxel_size, run_detect, illumination=src.illumination)
                self._cache_key = key
            cells = threshold_cells(self.detected, threshold.ranges)
        except (SpimflowError, ValueError) as exc:
            self._say(str(exc), error=True)
            return None
        self.box = box
        self.candidates = cells
        self._show(cells)
        self._update_snippet()
        self.update_metrics()
        dropped = len(self.detected) - len(cells)
        self._say(
            " ".join([f"{len(cells)} candidates in {format_box(box)} ({dropped} below the thresholds)", *src.notes])
        )
        return cells

    def _show(self, cells: pd.DataFrame):
        data, kw, _ = points_layer(
            cells, self.source.voxel_size, CANDIDATES_LAYER, CANDIDATE_COLOUR, metadata={"spimflow_role": "tuning"}
        )
        layer = self._layer if self._layer is not None and self._layer in self.viewer.layers else None
        if layer is None:
            self._layer = self.viewer.add_points(data, **kw)
            return
        layer.data = data
        layer.features = kw["features"]
        layer.size = kw["size"]
        layer.face_color = kw["face_color"]
        layer.scale = kw["scale"]

    # -- reference markers and metrics -----------------------------------------------------------

    def _layers_changed(self, event=None):
        layer = getattr(event, "value", None)
        if event is not None and getattr(event, "type", "") == "inserted" and layer is not None:
            self._watch(layer)
            if self.source is None:
                found = find_results_dir([layer])
                if found is not None:
                    self.set_results_dir(found)
        self._refresh_references()

    def _watch(self, layer):
        layer.events.name.connect(self._refresh_references)
        if isinstance(layer, Points):
            layer.events.data.connect(self._markers_changed)

    def _markers_changed(self, event=None):
        if getattr(event, "source", None) is self.reference_layer() and self.candidates is not None:
            self.update_metrics()  # live while clicking markers

    def _reference_layers(self) -> list:
        return [ly for ly in self.viewer.layers if isinstance(ly, Points) and ly is not self._layer]

    def _refresh_references(self, *_):
        current = self.reference_combo.currentText()
        names = ["(none)"] + [ly.name for ly in self._reference_layers()]
        self.reference_combo.blockSignals(True)
        self.reference_combo.clear()
        self.reference_combo.addItems(names)
        self.reference_combo.setCurrentIndex(names.index(current) if current in names else 0)
        self.reference_combo.blockSignals(False)
        if self.reference_combo.currentText() != current:
            self.update_metrics()

    def set_reference(self, name: str | None) -> None:
        """Choose the reference Points layer by name (None: no reference).

        Parameters
        ----------
        name : str or None
            Layer name.
        """
        self._refresh_references()
        index = self.reference_combo.findText(name) if name else 0
        if index < 0:
            raise ValueError(f"no Points layer named {name!r}")
        self.reference_combo.setCurrentIndex(index)
        self.update_metrics()

    def reference_layer(self):
        """The chosen reference Points layer, or None.

        Returns
        -------
        napari.layers.Points or None
        """
        name = self.reference_combo.currentText()
        return next((ly for ly in self._reference_layers() if ly.name == name), None)

    def update_metrics(self, *_) -> dict | None:
        """Recompute precision, recall and F1 of the candidates against the reference in the box.

        Returns
        -------
        dict or None
            See :func:`box_metrics`; None without a reference, candidates or source.
        """
        layer = self.reference_layer()
        if layer is None or self.candidates is None or self.source is None or self.box is None:
            self.metrics = None
            self.metrics_label.setText("no reference markers" if layer is None else "run the detection first")
            return None
        try:
            markers = layer_markers(layer, self.source.voxel_size)
        except ValueError as exc:
            self.metrics = None
            self.metrics_label.setText(str(exc))
            return None
        radius = float(self.radius_spin.value())
        m = box_metrics(self.candidates, markers, self.source.voxel_size, radius, self.box)
        self.metrics = m
        self.metrics_label.setText(
            f"precision {m['precision']:.3f}  recall {m['recall']:.3f}  F1 {m['f1']:.3f}\n"
            f"detected {m['detected']}, markers {m['markers']}, matched {m['matched']} "
            f"(within {radius:g} µm, in {format_box(self.box)})"
        )
        return m

    # -- messages --------------------------------------------------------------------------------

    def _say(self, text: str, error: bool = False):
        self.status.setStyleSheet("color: #e06c75;" if error else "")
        self.status.setText(text)
