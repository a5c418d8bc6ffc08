"""itk-elastix (no external binaries): numpy ↔ ITK images, parameter maps, registration,
warping with transformix.

FIXED = resampled autofluorescence, MOVING = atlas reference, both handed to elastix
with spacing = atlas voxel size (x, y, z order for ITK) and origin 0, so elastix's
physical frame is exactly the resampled-voxel × voxel-size frame of
:class:`spimflow.geometry.ResampleGrid`. The resulting transform maps sample (fixed)
physical points to atlas (moving) physical points: that is the sample → atlas direction
for points (:mod:`spimflow.transforms`) and the direction transformix needs to warp the
atlas annotation/reference into sample space.

Everything here takes and returns numpy (z, y, x) arrays; ITK images exist only inside
these functions. ``itk`` is imported inside them on purpose: it loads lazily and takes
about 10 s, which only the registration job should pay.
"""

from __future__ import annotations

import gc
import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spimflow.errors import ConfigError
from spimflow.params.register import ElastixStage, RegisterParams
from spimflow.steps.warp import warp_to_fixed
from spimflow.transforms import ParameterMap, read_parameter_file

RANDOM_SEED = 121212  # elastix samplers are random: fix the seed for reproducible runs


# -- images ------------------------------------------------------------------------------


def _itk():
    """The itk module, with ITK's thread pool as the default threader (once per process).

    itk's wheels default to the TBB threader, under which elastix's metric ran on one
    thread whatever ``NumberOfThreads`` said (measured: 11.0 s of CPU on one thread, 0.2 s
    on the others, for two threads); with the pool threader the metric's work is shared.
    ``ITK_GLOBAL_DEFAULT_THREADER`` in the environment still wins.
    """
    import itk

    global _THREADER_SET
    if not _THREADER_SET:
        if not os.environ.get("ITK_GLOBAL_DEFAULT_THREADER"):
            itk.MultiThreaderBase.SetGlobalDefaultThreader(itk.MultiThreaderBaseEnums.Threader_Pool)
        _THREADER_SET = True
    return itk


_THREADER_SET = False


def load_itk() -> float:
    """Import itk-elastix now (it loads lazily: 12-18 s the first time, on one core).

    Call it before timing a registration so the timing is not polluted by the import.

    Returns
    -------
    float
        Seconds spent loading.
    """
    t0 = time.perf_counter()
    collecting = gc.isenabled()
    gc.disable()  # the import builds ~17 000 wrapper classes: the cyclic collector only slows it (~1 s)
    try:
        itk = _itk()
        itk.ElastixRegistrationMethod, itk.TransformixFilter, itk.ParameterObject  # noqa: B018 - force the lazy load
    finally:
        if collecting:
            gc.enable()
    return time.perf_counter() - t0


def to_itk(arr: np.ndarray, voxel_size_zyx: Sequence[float]):
    """Convert a numpy (z, y, x) array to an ITK float image with origin 0.

    Parameters
    ----------
    arr : ndarray
        Image (z, y, x); converted to float32.
    voxel_size_zyx : sequence of float
        Voxel size (z, y, x), µm; set as ITK spacing in (x, y, z) order.

    Returns
    -------
    itk.Image
        3-D float image.
    """
    itk = _itk()

    img = itk.image_from_array(np.ascontiguousarray(arr, dtype=np.float32))
    img.SetSpacing([float(v) for v in voxel_size_zyx[::-1]])
    img.SetOrigin([0.0, 0.0, 0.0])
    return img


def from_itk(img) -> np.ndarray:
    """Convert an ITK image to a numpy array (z, y, x); spacing and origin are dropped.

    Parameters
    ----------
    img : itk.Image
        3-D image.

    Returns
    -------
    ndarray
        Pixel values (z, y, x).
    """
    itk = _itk()

    return np.asarray(itk.array_from_image(img))


# -- parameter maps ------------------------------------------------------------------------


def _as_strings(v) -> list[str]:
    if isinstance(v, (list, tuple)):
        return [str(x).lower() if isinstance(x, bool) else str(x) for x in v]
    return [str(v).lower() if isinstance(v, bool) else str(v)]


def stage_map(kind: str, stage: ElastixStage, grid_spacing_um: float | None = None) -> dict[str, list[str]]:
    """Build one elastix parameter map for an affine or B-spline stage from its config.

    Based on ClearMap's align_affine/align_bspline files (multi-resolution, Mattes MI,
    adaptive stochastic gradient descent, random sampling), with the
    resolutions/iterations/samples/pyramid schedule/metric from config and ``stage.extra``
    on top. Chosen for speed on a realistic brain (``benchmarks/register_time.py allen``,
    docs/registration.md), each measured not to lower the Dice: shrinking pyramids (the
    images are already smoothed to the atlas voxel size; building smoothed pyramids cost
    seconds per stage), the ``Random`` voxel sampler, and for the B-spline stage
    ``RecursiveBSplineTransform`` (the same cubic B-spline, evaluated faster) with the
    step size estimated from 1000 Jacobian measurements (elastix's default, one per
    B-spline parameter, took seconds at the finest level).

    Parameters
    ----------
    kind : {'affine', 'bspline'}
        Transform of the stage.
    stage : ElastixStage
        Config of the stage.
    grid_spacing_um : float, optional
        Final B-spline control point spacing, µm; required for 'bspline'.

    Returns
    -------
    dict of str to list of str
        Elastix parameter map (every value a list of strings, booleans lower-case).

    Raises
    ------
    ValueError
        If ``kind`` is unknown, or 'bspline' lacks ``grid_spacing_um``.

    Examples
    --------
    >>> from spimflow.params.register import ElastixStage
    >>> m = stage_map("affine", ElastixStage(resolutions=3, extra={"NumberOfHistogramBins": 64}))
    >>> m["Transform"], m["NumberOfResolutions"], m["NumberOfHistogramBins"]
    (['AffineTransform'], ['3'], ['64'])
    >>> m = stage_map("affine", ElastixStage(resolutions=2, iterations=[100, 200], pyramid_schedule=[4, 2]))
    >>> m["MaximumNumberOfIterations"], m["FixedImagePyramidSchedule"]
    (['100', '200'], ['4', '4', '4', '2', '2', '2'])
    >>> b = stage_map("bspline", ElastixStage(resolutions=3), grid_spacing_um=625.0)
    >>> b["Transform"], b["FinalGridSpacingInPhysicalUnits"], b["GridSpacingSchedule"]
    (['RecursiveBSplineTransform'], ['625.0'], ['4.0', '2.0', '1.0'])
    """
    m: dict[str, list[str]] = {
        "Registration": ["MultiResolutionRegistration"],
        "FixedImagePyramid": ["FixedShrinkingImagePyramid"],
        "MovingImagePyramid": ["MovingShrinkingImagePyramid"],
        "Interpolator": ["LinearInterpolator"],
        "ResampleInterpolator": ["FinalBSplineInterpolator"],
        "FinalBSplineInterpolationOrder": ["1"],
        "Resampler": ["DefaultResampler"],
        "Optimizer": ["AdaptiveStochasticGradientDescent"],
        "AutomaticParameterEstimation": ["true"],
        "Metric": [stage.metric],
        "NumberOfHistogramBins": ["32"],
        "ImageSampler": ["Random"],
        "NewSamplesEveryIteration": ["true"],
        "CheckNumberOfSamples": ["true"],
        "MaximumNumberOfSamplingAttempts": ["10"],
        "NumberOfResolutions": [str(stage.resolutions)],
        "MaximumNumberOfIterations": _as_strings(stage.iterations),
        "NumberOfSpatialSamples": _as_strings(stage.spatial_samples),
        "HowToCombineTransforms": ["Compose"],
        "DefaultPixelValue": ["0"],
        "WriteResultImage": ["false"],  # register() warps the result itself
        "ResultImagePixelType": ["float"],
        "RandomSeed": [str(RANDOM_SEED)],
        "UseDirectionCosines": ["true"],
    }
    if stage.pyramid_schedule is not None:
        schedule = [str(f) for f in stage.pyramid_schedule for _ in range(3)]  # the same factor along x, y, z
        m["FixedImagePyramidSchedule"] = schedule
        m["MovingImagePyramidSchedule"] = list(schedule)
    if kind == "affine":
        m.update(
            {
                "Transform": ["AffineTransform"],
                "AutomaticTransformInitialization": ["true"],
                "AutomaticTransformInitializationMethod": ["CenterOfGravity"],
                "AutomaticScalesEstimation": ["true"],
            }
        )
    elif kind == "bspline":
        if grid_spacing_um is None:
            raise ValueError("bspline stage needs grid_spacing_um")
        m.update(
            {
                "Transform": ["RecursiveBSplineTransform"],
                # step size estimated from 1000 Jacobian measurements, the floor of elastix's default
                # max(1000, number of parameters), which took seconds at the finest level
                "NumberOfJacobianMeasurements": ["1000"],
                "FinalGridSpacingInPhysicalUnits": [str(float(grid_spacing_um))],
                "GridSpacingSchedule": [str(2.0**k) for k in reversed(range(stage.resolutions))],
            }
        )
    else:
        raise ValueError(f"unknown stage kind {kind!r}")
    for key, value in stage.extra.items():
        m[key] = _as_strings(value)
    return m


def parameter_maps(params: RegisterParams, base: str | Path = ".") -> list[dict[str, list[str]]]:
    """Collect the elastix parameter maps of the atlas registration, in order.

    The user's own ``parameter_files`` when given (applied in order), else the enabled
    stages of affine then B-spline (:func:`stage_map`).

    Parameters
    ----------
    params : RegisterParams
        Registration config.
    base : str or Path, optional
        Folder that relative ``parameter_files`` paths are relative to.

    Returns
    -------
    list of dict of str to list of str
        Parameter maps, applied in order.

    Raises
    ------
    ConfigError
        If a parameter file is unreadable or names no ``Transform``, or no stage is enabled.

    Examples
    --------
    >>> from spimflow.params.register import RegisterParams
    >>> [m["Transform"] for m in parameter_maps(RegisterParams())]
    [['AffineTransform'], ['RecursiveBSplineTransform']]
    """
    if params.parameter_files:
        maps = []
        for p in params.parameter_files:
            path = Path(base) / p
            try:
                maps.append(read_parameter_file(path))
            except Exception as exc:  # noqa: BLE001
                raise ConfigError(f"steps.registration.parameter_files: {exc}") from None
            if "Transform" not in maps[-1]:
                raise ConfigError(f"steps.registration.parameter_files: {path} names no (Transform ...)")
        return maps
    maps = []
    if params.affine.enabled:
        maps.append(stage_map("affine", params.affine))
    if params.bspline.enabled:
        maps.append(stage_map("bspline", params.bspline, params.bspline_grid_spacing_um))
    if not maps:
        raise ConfigError(
            "steps.registration: both affine and bspline are disabled and no parameter_files are given; "
            "enable at least one stage"
        )
    return maps


def _parameter_object(maps: Sequence[ParameterMap]):
    itk = _itk()

    po = itk.ParameterObject.New()
    for m in maps:
        po.AddParameterMap({k: list(v) for k, v in m.items()})
    return po


# -- registration ---------------------------------------------------------------------------


@dataclass
class Registration:
    """Result of one elastix run.

    Attributes
    ----------
    transform_maps : list of dict of str to list of str
        Elastix transform parameter maps (fixed → moving physical points), in order.
    warped_moving : ndarray of float32 or None
        The moving image resampled onto the fixed grid (z, y, x), if asked for.
    seconds : float
        Wall time, s.
    """

    transform_maps: list[dict[str, list[str]]]
    warped_moving: np.ndarray | None
    seconds: float


def register(
    fixed: np.ndarray,
    moving: np.ndarray,
    voxel_size: Sequence[float],
    maps: Sequence[ParameterMap],
    threads: int = 1,
    log_file: str | Path | None = None,
    moving_voxel_size: Sequence[float] | None = None,
    result_image: bool = True,
) -> Registration:
    """Run elastix: find T with moving(T(x)) ≈ fixed(x), x in fixed physical space (µm).

    Both images are (z, y, x) with origin 0. Elastix itself never resamples a result
    image (``WriteResultImage`` is turned off in every map: with a log folder it would
    resample it twice, once into memory and once to disk, and an intermediate stage's
    image is never used); the moving image is warped onto the fixed grid afterwards by
    :func:`spimflow.steps.warp.warp_to_fixed` (trilinear), only when ``result_image``.

    Parameters
    ----------
    fixed : ndarray
        Fixed image (z, y, x).
    moving : ndarray
        Moving image (z, y, x).
    voxel_size : sequence of float
        Voxel size (z, y, x) of the fixed image (and of the moving one unless
        ``moving_voxel_size`` is given), µm.
    maps : sequence of mapping
        Elastix parameter maps, applied in order (see :func:`parameter_maps`).
    threads : int, optional
        Threads elastix may use.
    log_file : str or Path, optional
        Where to copy elastix's log.
    moving_voxel_size : sequence of float, optional
        Voxel size (z, y, x) of the moving image, µm.
    result_image : bool, optional
        Also warp the moving image onto the fixed grid (``Registration.warped_moving``).

    Returns
    -------
    Registration
    """
    itk = _itk()

    t0 = time.perf_counter()
    maps = [{**{k: list(v) for k, v in m.items()}, "WriteResultImage": ["false"]} for m in maps]
    method = itk.ElastixRegistrationMethod[itk.Image[itk.F, 3], itk.Image[itk.F, 3]].New()
    method.SetFixedImage(to_itk(fixed, voxel_size))
    method.SetMovingImage(to_itk(moving, moving_voxel_size or voxel_size))
    method.SetParameterObject(_parameter_object(maps))
    method.SetNumberOfThreads(int(max(1, threads)))
    method.SetLogToConsole(False)
    with tempfile.TemporaryDirectory(prefix="spimflow-elastix-") as tmp:
        if log_file is not None:
            method.SetOutputDirectory(tmp)
            method.SetLogToFile(True)
            method.SetLogFileName("elastix.log")
        try:
            method.Update()
        finally:
            if log_file is not None and (Path(tmp) / "elastix.log").exists():
                Path(log_file).write_text((Path(tmp) / "elastix.log").read_text(errors="replace"))
    tpo = method.GetTransformParameterObject()
    out_maps = []
    for i in range(tpo.GetNumberOfParameterMaps()):
        m = tpo.GetParameterMap(i)
        out_maps.append({k: list(m[k]) for k in m.keys()})
    warped = None
    if result_image:
        [warped] = warp_to_fixed([moving], [False], fixed.shape, voxel_size, out_maps, moving_voxel_size, threads)
    return Registration(out_maps, warped, time.perf_counter() - t0)


def warp(
    moving: np.ndarray,
    moving_voxel_size: Sequence[float],
    transform_maps: Sequence[ParameterMap],
    labels: bool = False,
    threads: int = 1,
) -> np.ndarray:
    """Resample ``moving`` onto the fixed grid the transform maps describe (transformix).

    Parameters
    ----------
    moving : ndarray
        Image (z, y, x) to warp.
    moving_voxel_size : sequence of float
        Its voxel size (z, y, x), µm.
    transform_maps : sequence of mapping
        Elastix transform parameter maps (e.g. ``Registration.transform_maps``).
    labels : bool, optional
        Nearest neighbour, exact for any integer ids (they are mapped to consecutive
        small integers for elastix's float pipeline and back); outside the moving image
        gives 0. Otherwise linear interpolation.
    threads : int, optional
        Threads transformix may use.

    Returns
    -------
    ndarray
        Warped image on the fixed grid (z, y, x): labels with ``moving``'s dtype, else float32.

    Raises
    ------
    ValueError
        If ``labels`` and there are more than 2**24 distinct labels.
    """
    itk = _itk()

    maps = [{k: list(v) for k, v in m.items()} for m in transform_maps]
    if labels:
        ids, inverse = np.unique(moving, return_inverse=True)
        if len(ids) > 2**24:
            raise ValueError("more than 2^24 distinct labels cannot pass through elastix's float images")
        moving_f = inverse.reshape(moving.shape).astype(np.float32)
        for m in maps:
            m["ResampleInterpolator"] = ["FinalNearestNeighborInterpolator"]
            m["FinalBSplineInterpolationOrder"] = ["0"]
            m["DefaultPixelValue"] = ["-1"]  # outside the atlas -> label 0 below
    else:
        moving_f = moving.astype(np.float32)
        for m in maps:
            m["ResampleInterpolator"] = ["FinalBSplineInterpolator"]
            m["FinalBSplineInterpolationOrder"] = ["1"]
            m["DefaultPixelValue"] = ["0"]
    for m in maps:
        m["ResultImagePixelType"] = ["float"]
    f = itk.TransformixFilter[itk.Image[itk.F, 3]].New()
    f.SetMovingImage(to_itk(moving_f, moving_voxel_size))
    f.SetTransformParameterObject(_parameter_object(maps))
    f.SetLogToConsole(False)
    f.SetNumberOfWorkUnits(int(max(1, threads)))
    f.Update()
    out = from_itk(f.GetOutput())
    if labels:
        k = np.rint(out).astype(np.int64)
        res = ids[np.clip(k, 0, len(ids) - 1)]
        res[k < 0] = 0
        return res
    return out.astype(np.float32)


def transformix_points(
    points_xyz_um: np.ndarray,
    transform_maps: Sequence[ParameterMap],
    moving: np.ndarray | None = None,
    moving_voxel_size: Sequence[float] = (1, 1, 1),
) -> np.ndarray:
    """Transform physical points with transformix itself (for checks; slow, text I/O).

    Parameters
    ----------
    points_xyz_um : (n, 3) array_like of float
        Fixed physical points in elastix order (x, y, z), µm.
    transform_maps : sequence of mapping
        Elastix transform parameter maps.
    moving : ndarray, optional
        A moving image transformix needs; a 2 × 2 × 2 dummy by default.
    moving_voxel_size : sequence of float, optional
        Its voxel size (z, y, x), µm.

    Returns
    -------
    (n, 3) ndarray of float
        Moving physical points (x, y, z), µm.
    """
    itk = _itk()

    pts = np.asarray(points_xyz_um, float)
    moving = np.zeros((2, 2, 2), np.float32) if moving is None else moving
    with tempfile.TemporaryDirectory(prefix="spimflow-transformix-") as tmp:
        pfile = Path(tmp) / "points.txt"
        pfile.write_text(f"point\n{len(pts)}\n" + "\n".join(" ".join(f"{v:.9f}" for v in p) for p in pts) + "\n")
        f = itk.TransformixFilter[itk.Image[itk.F, 3]].New()
        f.SetMovingImage(to_itk(moving, moving_voxel_size))
        f.SetTransformParameterObject(_parameter_object(transform_maps))
        f.SetFixedPointSetFileName(str(pfile))
        f.SetOutputDirectory(tmp)
        f.SetLogToConsole(False)
        f.Update()
        text = (Path(tmp) / "outputpoints.txt").read_text()
    rows = re.findall(r"OutputPoint = \[([^\]]*)\]", text)
    return np.array([[float(v) for v in r.split()] for r in rows]).reshape(-1, 3)
