"""Atlas registration with itk-elastix (no external binaries), warping, similarity.

FIXED = resampled autofluorescence, MOVING = atlas reference, both handed to elastix
with spacing = atlas voxel size (x, y, z order for ITK) and origin 0, so elastix's
physical frame is exactly the resampled-voxel × voxel-size frame of
:mod:`spimflow.steps.resample`. The resulting transform maps sample (fixed) physical
points to atlas (moving) physical points: that is the sample → atlas direction for
points (:mod:`spimflow.transforms`) and the direction transformix needs to warp the
atlas annotation/reference into sample space.

Everything here takes and returns numpy (z, y, x) arrays; ITK images exist only
inside these functions.
"""

from __future__ import annotations

import itertools
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from spimflow.errors import ConfigError
from spimflow.orientation import Orientation
from spimflow.params.register import ElastixStage, RegisterParams
from spimflow.transforms import ParameterMap, read_parameter_file

log = logging.getLogger(__name__)

RANDOM_SEED = 121212  # elastix samplers are random: fix the seed for reproducible runs


# -- images ------------------------------------------------------------------------------

def load_itk() -> float:
    """Import itk-elastix (it loads lazily, ~10 s the first time); returns the seconds spent,
    so timings of the registration itself are not polluted by it."""
    t0 = time.perf_counter()
    import itk

    itk.ElastixRegistrationMethod, itk.TransformixFilter, itk.ParameterObject  # noqa: B018 - force the lazy load
    return time.perf_counter() - t0


def to_itk(arr: np.ndarray, voxel_size_zyx: Sequence[float]):
    """numpy (z, y, x) → itk float image with spacing (x, y, z) and origin 0."""
    import itk

    img = itk.image_from_array(np.ascontiguousarray(arr, dtype=np.float32))
    img.SetSpacing([float(v) for v in voxel_size_zyx[::-1]])
    img.SetOrigin([0.0, 0.0, 0.0])
    return img


def from_itk(img) -> np.ndarray:
    import itk

    return np.asarray(itk.array_from_image(img))


# -- parameter maps ------------------------------------------------------------------------

def _as_strings(v) -> list[str]:
    if isinstance(v, (list, tuple)):
        return [str(x).lower() if isinstance(x, bool) else str(x) for x in v]
    return [str(v).lower() if isinstance(v, bool) else str(v)]


def stage_map(kind: str, stage: ElastixStage, grid_spacing_um: float | None = None) -> dict[str, list[str]]:
    """One elastix parameter map for ``kind`` ('affine' or 'bspline') from a config stage.

    Based on ClearMap's align_affine/align_bspline files (multi-resolution, Mattes MI,
    adaptive stochastic gradient descent, random coordinate sampling), with the
    resolutions/iterations/samples/metric from config and ``stage.extra`` on top.
    """
    m: dict[str, list[str]] = {
        "Registration": ["MultiResolutionRegistration"],
        "FixedImagePyramid": ["FixedSmoothingImagePyramid"],
        "MovingImagePyramid": ["MovingSmoothingImagePyramid"],
        "Interpolator": ["LinearInterpolator"],
        "ResampleInterpolator": ["FinalBSplineInterpolator"],
        "FinalBSplineInterpolationOrder": ["1"],
        "Resampler": ["DefaultResampler"],
        "Optimizer": ["AdaptiveStochasticGradientDescent"],
        "AutomaticParameterEstimation": ["true"],
        "Metric": [stage.metric],
        "NumberOfHistogramBins": ["32"],
        "ImageSampler": ["RandomCoordinate"],
        "NewSamplesEveryIteration": ["true"],
        "CheckNumberOfSamples": ["true"],
        "MaximumNumberOfSamplingAttempts": ["10"],
        "NumberOfResolutions": [str(stage.resolutions)],
        "MaximumNumberOfIterations": [str(stage.iterations)],
        "NumberOfSpatialSamples": [str(stage.spatial_samples)],
        "HowToCombineTransforms": ["Compose"],
        "DefaultPixelValue": ["0"],
        "WriteResultImage": ["true"],
        "ResultImagePixelType": ["float"],
        "RandomSeed": [str(RANDOM_SEED)],
        "UseDirectionCosines": ["true"],
    }
    if kind == "affine":
        m.update({
            "Transform": ["AffineTransform"],
            "AutomaticTransformInitialization": ["true"],
            "AutomaticTransformInitializationMethod": ["CenterOfGravity"],
            "AutomaticScalesEstimation": ["true"],
        })
    elif kind == "bspline":
        if grid_spacing_um is None:
            raise ValueError("bspline stage needs grid_spacing_um")
        m.update({
            "Transform": ["BSplineTransform"],
            "FinalGridSpacingInPhysicalUnits": [str(float(grid_spacing_um))],
            "GridSpacingSchedule": [str(2.0 ** k) for k in reversed(range(stage.resolutions))],
        })
    else:
        raise ValueError(f"unknown stage kind {kind!r}")
    for key, value in stage.extra.items():
        m[key] = _as_strings(value)
    return m


def parameter_maps(params: RegisterParams, base: str | Path = ".") -> list[dict[str, list[str]]]:
    """The elastix parameter maps for the atlas registration, in order: the user's own
    ``parameter_files`` when given (applied in order), else affine then B-spline."""
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
        raise ConfigError("steps.registration: both affine and bspline are disabled and no parameter_files are given; "
                          "enable at least one stage")
    return maps


def _parameter_object(maps: Sequence[ParameterMap]):
    import itk

    po = itk.ParameterObject.New()
    for m in maps:
        po.AddParameterMap({k: list(v) for k, v in m.items()})
    return po


# -- registration ---------------------------------------------------------------------------

@dataclass
class Registration:
    """Result of one elastix run: the transform maps (fixed → moving), the moving image
    resampled onto the fixed grid, and the wall time."""

    transform_maps: list[dict[str, list[str]]]
    warped_moving: np.ndarray
    seconds: float


def register(fixed: np.ndarray, moving: np.ndarray, voxel_size: Sequence[float],
             maps: Sequence[ParameterMap], threads: int = 1, log_file: str | Path | None = None,
             moving_voxel_size: Sequence[float] | None = None) -> Registration:
    """Run elastix: find T with moving(T(x)) ≈ fixed(x), x in fixed physical space (µm).

    Both images are (z, y, x) with origin 0 and spacing ``voxel_size`` (the moving image
    may have its own ``moving_voxel_size``).
    """
    import itk

    t0 = time.perf_counter()
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
    warped = from_itk(method.GetOutput()).astype(np.float32)
    return Registration(out_maps, warped, time.perf_counter() - t0)


def warp(moving: np.ndarray, moving_voxel_size: Sequence[float], transform_maps: Sequence[ParameterMap],
         labels: bool = False, threads: int = 1) -> np.ndarray:
    """Resample ``moving`` onto the fixed grid the transform maps describe (transformix).

    ``labels=True``: nearest neighbour, exact for any integer ids (they are mapped to
    consecutive small integers for elastix's float pipeline and back)."""
    import itk

    maps = [{k: list(v) for k, v in m.items()} for m in transform_maps]
    if labels:
        ids, inverse = np.unique(moving, return_inverse=True)
        if len(ids) > 2 ** 24:
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


def transformix_points(points_xyz_um: np.ndarray, transform_maps: Sequence[ParameterMap],
                       moving: np.ndarray | None = None, moving_voxel_size: Sequence[float] = (1, 1, 1)) -> np.ndarray:
    """Transform physical (x, y, z) points with transformix itself (for checks; slow, text I/O)."""
    import itk
    import re

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


# -- similarity ---------------------------------------------------------------------------------

def ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Normalised cross-correlation (Pearson r) of two images, optionally inside a mask."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if mask is not None:
        a, b = a[mask], b[mask]
    else:
        a, b = a.ravel(), b.ravel()
    if a.size < 2:
        return float("nan")
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


def overlap_ncc(fixed: np.ndarray, moving: np.ndarray) -> float:
    """NCC of two images on the same voxel grid origin, over their common box (no registration)."""
    box = tuple(slice(0, min(s, t)) for s, t in zip(fixed.shape, moving.shape))
    return ncc(fixed[box], moving[box])


# -- orientation guard -----------------------------------------------------------------------

_OPPOSITE = {"a": "p", "p": "a", "s": "i", "i": "s", "l": "r", "r": "l"}


def compose(outer: Orientation, inner: Orientation) -> Orientation:
    """The orientation that applies ``inner`` (sample → oriented) and then ``outer``
    (oriented → re-oriented)."""
    perm = tuple(inner.perm[outer.perm[i]] for i in range(3))
    flip = tuple(bool(outer.flip[i]) ^ bool(inner.flip[outer.perm[i]]) for i in range(3))
    return Orientation(perm, flip)


def orientation_code(o: Orientation, atlas_code: str) -> str:
    """The BrainGlobe code of a sample whose orientation relative to ``atlas_code`` is ``o``
    (inverse of :meth:`Orientation.from_codes`)."""
    letters = [""] * 3
    for i, j in enumerate(o.perm):
        letters[j] = _OPPOSITE[atlas_code[i]] if o.flip[i] else atlas_code[i]
    return "".join(letters)


def describe(o: Orientation, atlas_code: str) -> str:
    return f"'{orientation_code(o, atlas_code)}' (ClearMap {list(o.to_clearmap())})"


def relative_extent_difference(sample_extent: Sequence[float], atlas_extent: Sequence[float]) -> np.ndarray:
    """|sample - atlas| / atlas per axis (extents in µm, atlas axes)."""
    s, a = np.asarray(sample_extent, float), np.asarray(atlas_extent, float)
    return np.abs(s - a) / a


def matching_permutations(sample_extent: Sequence[float], atlas_extent: Sequence[float],
                          tolerance: float) -> list[tuple[int, int, int]]:
    """Axis permutations P (new axis i = current axis P[i]) that bring the sample's extents
    within ``tolerance`` of the atlas's, best first (all six, ranked, if none fits)."""
    perms = list(itertools.permutations(range(3)))
    score = {p: relative_extent_difference([sample_extent[k] for k in p], atlas_extent) for p in perms}
    ranked = sorted(perms, key=lambda p: (score[p].max(), p != (0, 1, 2)))
    good = [p for p in ranked if score[p].max() <= tolerance]
    return good or ranked


@dataclass
class Candidate:
    orientation: Orientation  # sample -> atlas, full
    code: str
    similarity: float


def coarse_ranking(sample: np.ndarray, reference: np.ndarray, annotation: np.ndarray,
                   voxel_size: Sequence[float], current: Orientation, atlas_code: str,
                   relatives: Sequence[Orientation], threads: int = 1,
                   coarse_voxel_um: float | None = None) -> list[Candidate]:
    """Rank candidate orientations by a cheap low-resolution affine registration.

    ``sample`` is the resampled autofluorescence under ``current``; each candidate is
    ``compose(R, current)`` for R in ``relatives``, obtained by re-orienting the sample
    image (spacing permuted along, so anisotropic atlas voxels stay right). Scores are
    the NCC of the warped atlas reference and the sample inside the warped brain mask.
    """
    from spimflow.params.resample import ResampleParams
    from spimflow.steps.resample import ResampleGrid, resample_image

    vs = np.asarray(voxel_size, float)
    if coarse_voxel_um is None:  # ~40 voxels along the longest atlas axis, at least 2 atlas voxels
        coarse_voxel_um = max(2 * vs.max(), (np.array(reference.shape) * vs).max() / 40)
    coarse = (coarse_voxel_um,) * 3

    def shrink(img, spacing):
        grid = ResampleGrid(img.shape, tuple(spacing), Orientation(), coarse)
        return resample_image(img.astype(np.float32), grid, ResampleParams())

    ref_c = shrink(reference, vs)
    lab_grid = ResampleGrid(annotation.shape, tuple(vs), Orientation(), coarse)
    lab_c = annotation[tuple(np.ix_(*[np.clip(np.rint(lab_grid.sample_coordinates(a)).astype(int), 0, n - 1)
                                       for a, n in enumerate(annotation.shape)]))]
    stage = ElastixStage(resolutions=2, iterations=150, spatial_samples=2000)
    maps = [stage_map("affine", stage)]
    out = []
    for rel in relatives:
        moved = np.ascontiguousarray(rel.apply_to_array(sample))
        spacing = rel.oriented_values(vs)
        fixed_c = shrink(moved, spacing)
        try:
            reg = register(fixed_c, ref_c, coarse, maps, threads=threads)
            lab_w = warp(lab_c, coarse, reg.transform_maps, labels=True, threads=threads)
            score = ncc(reg.warped_moving, fixed_c, lab_w > 0) if (lab_w > 0).sum() > 50 else -1.0
        except RuntimeError as exc:  # elastix gives up (e.g. too few samples overlap)
            log.info("orientation candidate %s: elastix failed (%s)", rel, str(exc).splitlines()[0] if str(exc) else exc)
            score = -1.0
        full = compose(rel, current)
        out.append(Candidate(full, orientation_code(full, atlas_code), float(score)))
    return prefer_configured_left_right(sorted(out, key=lambda c: -c.similarity), current, atlas_code)


def all_relative_orientations(perms: Iterable[tuple[int, int, int]] | None = None) -> list[Orientation]:
    perms = list(perms) if perms is not None else list(itertools.permutations(range(3)))
    return [Orientation(tuple(p), tuple(f)) for p in perms for f in itertools.product([False, True], repeat=3)]


def prefer_configured_left_right(cands: Sequence[Candidate], current: Orientation, atlas_code: str,
                                 tie: float = 0.05) -> list[Candidate]:
    """Image similarity cannot tell left from right in a near-symmetric brain: when two
    candidates differ only by a left/right flip and score within ``tie``, rank first the
    one that keeps the configured left/right direction."""
    out = list(cands)
    lr = next(i for i, ch in enumerate(atlas_code) if ch in "lr")
    for k in range(len(out) - 1):
        a, b = out[k], out[k + 1]
        twins = a.orientation.perm == b.orientation.perm and \
            [x != y for x, y in zip(a.orientation.flip, b.orientation.flip)] == [i == lr for i in range(3)]
        keeps = b.orientation.perm[lr] == current.perm[lr] and b.orientation.flip[lr] == current.flip[lr]
        if twins and keeps and a.similarity - b.similarity < tie:
            out[k], out[k + 1] = b, a
    return out


def _ranking_lines(cands: Sequence[Candidate], current: Orientation, atlas_code: str, n: int = 5) -> list[str]:
    lines = []
    for k, c in enumerate(cands[:n], 1):
        mark = "  <- configured" if c.orientation == current else ""
        lines.append(f"    {k}. {describe(c.orientation, atlas_code)}: NCC {c.similarity:.2f}{mark}")
    return lines


def _lr_note(cands: Sequence[Candidate], atlas_code: str) -> list[str]:
    """A left/right flip is invisible to image similarity in a symmetric brain: say so."""
    if len(cands) < 2:
        return []
    a, b = cands[0].orientation, cands[1].orientation
    lr = next(i for i, ch in enumerate(atlas_code) if ch in "lr")
    if a.perm == b.perm and [x != y for x, y in zip(a.flip, b.flip)] == [i == lr for i in range(3)] \
            and cands[0].similarity - cands[1].similarity < 0.05:
        return ["  Note: the two best differ only by a left/right flip, which image similarity cannot tell apart "
                "in a near-symmetric brain; check left/right with a known asymmetric landmark (e.g. the injected "
                "or imaged-first side)."]
    return []


def extent_guard_message(sample_extent, atlas_extent, tolerance, current: Orientation, atlas_code: str,
                         keys: str, user_value, perms, ranking: Sequence[Candidate] | None) -> str:
    diff = relative_extent_difference(sample_extent, atlas_extent)
    fmt = lambda e: " × ".join(f"{v:.0f}" for v in e)  # noqa: E731
    lines = [
        "orientation guard: the resampled sample does not have the atlas's shape.",
        f"  {keys} = {user_value!r} (atlas orientation '{atlas_code}'), i.e. {describe(current, atlas_code)}",
        f"  sample extent along the atlas axes (z, y, x): {fmt(sample_extent)} µm",
        f"  atlas extent (z, y, x):                        {fmt(atlas_extent)} µm",
        f"  relative difference: {', '.join(f'{d:.2f}' for d in diff)} "
        f"(limit steps.registration.extent_tolerance = {tolerance})",
    ]
    best = perms[0]
    if tuple(best) != (0, 1, 2):
        moved = [sample_extent[k] for k in best]
        lines.append(f"  Re-assigning the sample axes would fit the atlas: atlas axes (z, y, x) ← current axes "
                     f"{list(best)} gives {fmt(moved)} µm.")
    if ranking:
        lines.append("  A coarse affine registration of the candidate orientations ranks them (NCC, higher is better):")
        lines += _ranking_lines(ranking, current, atlas_code)
        lines.append(f"  Likely fix: set {keys} to {describe(ranking[0].orientation, atlas_code)}.")
        lines += _lr_note(ranking, atlas_code)
    lines.append("  If the sample is deliberately partial (e.g. one hemisphere), crop the atlas with "
                 "atlas.hemisphere: left/right, or raise steps.registration.extent_tolerance.")
    return "\n".join(lines)


def similarity_guard_message(score: float, before: float, threshold: float, current: Orientation, atlas_code: str,
                             keys: str, user_value, ranking: Sequence[Candidate], qc_note: str = "") -> str:
    lines = [
        f"orientation guard: after registration the atlas and the sample do not match: NCC {score:.2f} inside the brain "
        f"(before registration {before:.2f}; limit steps.registration.min_similarity = {threshold}).",
        f"  {keys} = {user_value!r} (atlas orientation '{atlas_code}'), i.e. {describe(current, atlas_code)}",
        "  A coarse affine registration of candidate orientations ranks them (NCC, higher is better):",
        *_ranking_lines(ranking, current, atlas_code),
    ]
    if ranking and ranking[0].orientation != current:
        lines.append(f"  Likely fix: set {keys} to {describe(ranking[0].orientation, atlas_code)}.")
    else:
        lines.append("  The configured orientation ranks best, so the orientation is probably right: check the "
                     "autofluorescence image (contrast, cropping, empty planes), the voxel sizes and the elastix "
                     "parameters (steps.registration).")
    lines += _lr_note(ranking, atlas_code)
    if qc_note:
        lines.append(f"  {qc_note}")
    return "\n".join(lines)


# -- the whole registration step -----------------------------------------------------------------

@dataclass
class GuardContext:
    """What the guard needs to explain itself in the user's own terms."""

    current: Orientation       # configured sample -> atlas orientation (autofluorescence)
    atlas_code: str
    keys: str                  # config keys holding the orientation, e.g. "channels.autofluorescence.orientation"
    user_value: object         # the value the user wrote ('ipl' or [1, -2, 3])
    threads: int = 1


def extent_guard(sample: np.ndarray, reference: np.ndarray, annotation: np.ndarray,
                 voxel_size: Sequence[float], params: RegisterParams, ctx: GuardContext) -> dict:
    """Before registration: the resampled sample's extent must match the atlas's along every
    atlas axis within ``params.extent_tolerance``. Raises :class:`OrientationError` with the
    best axis assignment and a coarse ranking of its flips; returns the measurements."""
    from spimflow.errors import OrientationError

    vs = np.asarray(voxel_size, float)
    s_ext, a_ext = np.array(sample.shape) * vs, np.array(reference.shape) * vs
    diff = relative_extent_difference(s_ext, a_ext)
    info = {"sample_extent_um": s_ext.tolist(), "atlas_extent_um": a_ext.tolist(),
            "relative_difference": diff.tolist(), "tolerance": params.extent_tolerance,
            "passed": bool(diff.max() <= params.extent_tolerance)}
    if info["passed"]:
        return info
    perms = matching_permutations(s_ext, a_ext, params.extent_tolerance)
    ranking = None
    if params.suggest_orientation:
        fitting = [p for p in perms if relative_extent_difference([s_ext[k] for k in p], a_ext).max()
                   <= params.extent_tolerance][:2]
        if fitting:
            ranking = coarse_ranking(sample, reference, annotation, vs, ctx.current, ctx.atlas_code,
                                     all_relative_orientations(fitting), ctx.threads)
    raise OrientationError(extent_guard_message(s_ext, a_ext, params.extent_tolerance, ctx.current,
                                                ctx.atlas_code, ctx.keys, ctx.user_value, perms, ranking))


def flip_check(sample: np.ndarray, reference: np.ndarray, annotation: np.ndarray,
               voxel_size: Sequence[float], params: RegisterParams, ctx: GuardContext) -> dict:
    """Cheap pre-registration check of the configured orientation against its 7 flipped
    variants (coarse affine). Raises when a variant that is not a pure left/right flip
    beats the configured one by ``params.orientation_margin`` NCC."""
    from spimflow.errors import OrientationError

    ranking = coarse_ranking(sample, reference, annotation, voxel_size, ctx.current, ctx.atlas_code,
                             all_relative_orientations([(0, 1, 2)]), ctx.threads)
    mine = next(c for c in ranking if c.orientation == ctx.current)
    lr = next(i for i, ch in enumerate(ctx.atlas_code) if ch in "lr")
    lr_twin = Orientation(ctx.current.perm, tuple(f ^ (i == lr) for i, f in enumerate(ctx.current.flip)))
    rivals = [c for c in ranking if c.orientation not in (ctx.current, lr_twin)]
    info = {"configured": mine.code, "configured_ncc": mine.similarity,
            "ranking": [{"code": c.code, "clearmap": list(c.orientation.to_clearmap()), "ncc": c.similarity}
                        for c in ranking],
            "margin": params.orientation_margin}
    best = rivals[0] if rivals else None
    info["passed"] = not (best is not None and best.similarity > mine.similarity + params.orientation_margin)
    if not info["passed"]:
        raise OrientationError("\n".join([
            "orientation guard: a flipped orientation fits the atlas clearly better than the configured one "
            f"(coarse affine registration, NCC {best.similarity:.2f} vs {mine.similarity:.2f}; "
            f"margin steps.registration.orientation_margin = {params.orientation_margin}).",
            f"  {ctx.keys} = {ctx.user_value!r} (atlas orientation '{ctx.atlas_code}'), i.e. "
            f"{describe(ctx.current, ctx.atlas_code)}",
            "  Ranking (NCC, higher is better):",
            *_ranking_lines(ranking, ctx.current, ctx.atlas_code, n=8),
            f"  Likely fix: set {ctx.keys} to {describe(best.orientation, ctx.atlas_code)}.",
            *_lr_note(ranking, ctx.atlas_code),
            "  (Set steps.registration.orientation_check: false to skip this check.)",
        ]))
    return info


@dataclass
class AtlasRegistration:
    """Everything the register step produces (arrays on the resampled sample grid)."""

    atlas_maps: list[dict[str, list[str]]]
    correction_maps: list[dict[str, list[str]]] | None
    annotation_in_sample: np.ndarray
    reference_in_sample: np.ndarray
    similarity_before: float
    similarity_after: float
    seconds: dict[str, float]
    guard: dict


def register_to_atlas(sample: np.ndarray, reference: np.ndarray, annotation: np.ndarray,
                      voxel_size: Sequence[float], params: RegisterParams, ctx: GuardContext,
                      signal: np.ndarray | None = None, base: str | Path = ".",
                      log_dir: str | Path | None = None) -> AtlasRegistration:
    """Guard, register atlas reference → resampled autofluorescence, optional signal →
    autofluorescence correction, warp annotation/reference into sample space, score.

    Raises :class:`~spimflow.errors.OrientationError` when a guard fails (the similarity
    guard only after the registration)."""
    from spimflow.errors import OrientationError

    t_all = time.perf_counter()
    seconds: dict[str, float] = {"itk_load": load_itk()}
    guard: dict = {}
    t0 = time.perf_counter()
    guard["extent"] = extent_guard(sample, reference, annotation, voxel_size, params, ctx)
    if params.orientation_check:
        guard["flips"] = flip_check(sample, reference, annotation, voxel_size, params, ctx)
    seconds["guard_before"] = time.perf_counter() - t0

    logs = (lambda name: Path(log_dir) / name) if log_dir else (lambda name: None)
    maps = parameter_maps(params, base)
    reg = register(sample, reference, voxel_size, maps, ctx.threads, logs("elastix_atlas.log"))
    seconds["atlas_registration"] = reg.seconds
    correction = None
    if signal is not None:
        cmaps = [stage_map("affine", params.correction)]
        creg = register(sample, signal, voxel_size, cmaps, ctx.threads, logs("elastix_correction.log"))
        correction = creg.transform_maps
        seconds["channel_correction"] = creg.seconds
    t0 = time.perf_counter()
    labels = warp(annotation, voxel_size, reg.transform_maps, labels=True, threads=ctx.threads)
    seconds["warp"] = time.perf_counter() - t0
    mask = labels > 0
    before = overlap_ncc(sample, reference)
    after = ncc(reg.warped_moving, sample, mask) if mask.sum() > 50 else float("nan")
    guard["similarity"] = {"ncc_after": after, "ncc_before": before, "min_similarity": params.min_similarity,
                           "passed": bool(after >= params.min_similarity)}
    result = AtlasRegistration(reg.transform_maps, correction, labels, reg.warped_moving, before, after,
                               seconds, guard)
    if not guard["similarity"]["passed"]:
        ranking = coarse_ranking(sample, reference, annotation, voxel_size, ctx.current, ctx.atlas_code,
                                 all_relative_orientations(matching_permutations(
                                     np.array(sample.shape) * voxel_size, np.array(reference.shape) * voxel_size,
                                     params.extent_tolerance)[:2]), ctx.threads)
        qc_note = ""
        if log_dir:
            from spimflow.qc import write_qc_pngs

            pngs = [Path(log_dir) / f"register_failed_qc_{a}.png" for a in range(3)]
            write_qc_pngs(sample, labels, voxel_size, ctx.atlas_code, pngs, title=f"NCC {after:.2f} (FAILED)")
            qc_note = f"QC pictures of the failed registration: {', '.join(str(p) for p in pngs)}"
        raise OrientationError(similarity_guard_message(after, before, params.min_similarity, ctx.current,
                                                        ctx.atlas_code, ctx.keys, ctx.user_value, ranking, qc_note))
    seconds["total"] = time.perf_counter() - t_all
    return result
