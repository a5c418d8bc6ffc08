"""The whole atlas registration step: guard, register the atlas reference to the resampled
autofluorescence (elastix), optional channel correction, warp the annotation and the
reference into sample space, score the result. Pure: arrays in, arrays and numbers out
(the task writes files, including the QC pictures of a rejected registration).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spimflow.errors import OrientationError
from spimflow.params.register import RegisterParams
from spimflow.steps.elastix import load_itk, parameter_maps, register, stage_map
from spimflow.steps.orientation_guard import (
    GuardContext,
    all_relative_orientations,
    coarse_ranking,
    extent_guard,
    flip_check,
    matching_permutations,
    ncc,
    overlap_ncc,
    similarity_guard_message,
)
from spimflow.steps.warp import warp_to_fixed

__all__ = ["AtlasRegistration", "GuardContext", "RegistrationRejected", "register_to_atlas"]


class RegistrationRejected(OrientationError):
    """The similarity guard rejected a finished registration; ``registration`` holds it.

    Parameters
    ----------
    message : str
        Explanation, with the likely fix.
    registration : AtlasRegistration
        The rejected result, so the caller can show it.
    """

    def __init__(self, message: str, registration: AtlasRegistration):
        super().__init__(message)
        self.registration = registration


@dataclass
class AtlasRegistration:
    """Everything the register step produces (arrays (z, y, x) on the resampled sample grid).

    Attributes
    ----------
    atlas_maps : list of dict of str to list of str
        Elastix transform maps, sample (fixed) → atlas (moving) physical points.
    correction_maps : list of dict of str to list of str or None
        Affine maps of the signal → autofluorescence channel correction, if run.
    annotation_in_sample : ndarray
        Atlas labels warped onto the resampled sample grid.
    reference_in_sample : ndarray of float32
        Atlas reference image warped onto the resampled sample grid.
    similarity_before, similarity_after : float
        NCC of sample and atlas reference before registration and after it (inside the brain).
    seconds : dict of str to float
        Wall time per part, s.
    guard : dict
        Measurements of the orientation guard.
    cpu_seconds : dict of str to float
        CPU time (all threads) per part, s.
    """

    atlas_maps: list[dict[str, list[str]]]
    correction_maps: list[dict[str, list[str]]] | None
    annotation_in_sample: np.ndarray
    reference_in_sample: np.ndarray
    similarity_before: float
    similarity_after: float
    seconds: dict[str, float]
    guard: dict
    cpu_seconds: dict[str, float] = field(default_factory=dict)


def register_to_atlas(
    sample: np.ndarray,
    reference: np.ndarray,
    annotation: np.ndarray,
    voxel_size: Sequence[float],
    params: RegisterParams,
    ctx: GuardContext,
    signal: np.ndarray | None = None,
    base: str | Path = ".",
    log_dir: str | Path | None = None,
) -> AtlasRegistration:
    """Register the atlas to the sample and warp the atlas into sample space.

    Steps: orientation guard, register atlas reference → resampled autofluorescence,
    optional signal → autofluorescence correction, warp annotation/reference into sample
    space, score the result.

    Parameters
    ----------
    sample : ndarray
        Resampled autofluorescence (z, y, x), atlas orientation and voxel size.
    reference : ndarray
        Atlas reference image (z, y, x).
    annotation : ndarray
        Atlas label image (z, y, x).
    voxel_size : sequence of float
        Atlas voxel size (z, y, x), µm (also the resampled sample's).
    params : RegisterParams
        Registration config.
    ctx : GuardContext
        What the orientation guard needs to explain a failure.
    signal : ndarray, optional
        Resampled signal channel; when given, a signal → autofluorescence affine
        correction is computed.
    base : str or Path, optional
        Folder that relative ``parameter_files`` are relative to.
    log_dir : str or Path, optional
        Where elastix writes its logs.

    Returns
    -------
    AtlasRegistration

    Raises
    ------
    OrientationError
        When the extent or flip guard fails before the registration.
    RegistrationRejected
        When the similarity guard fails after it; carries the rejected result.
    ConfigError
        If the parameter maps are invalid.
    """
    t_all = time.perf_counter()
    cpu = {"start": time.process_time()}
    seconds: dict[str, float] = {"itk_load": load_itk()}
    cpu["itk_load"] = time.process_time()
    guard: dict = {}
    t0 = time.perf_counter()
    guard["extent"] = extent_guard(sample, reference, annotation, voxel_size, params, ctx)
    if params.orientation_check:
        guard["flips"] = flip_check(sample, reference, annotation, voxel_size, params, ctx)
    seconds["guard_before"] = time.perf_counter() - t0
    cpu["guard_before"] = time.process_time()

    logs = (lambda name: Path(log_dir) / name) if log_dir else (lambda name: None)
    maps = parameter_maps(params, base)
    reg = register(sample, reference, voxel_size, maps, ctx.threads, logs("elastix_atlas.log"), result_image=False)
    seconds["atlas_registration"] = reg.seconds
    cpu["atlas_registration"] = time.process_time()
    correction = None
    if signal is not None:
        cmaps = [stage_map("affine", params.correction)]
        creg = register(
            sample, signal, voxel_size, cmaps, ctx.threads, logs("elastix_correction.log"), result_image=False
        )
        correction = creg.transform_maps
        seconds["channel_correction"] = creg.seconds
        cpu["channel_correction"] = time.process_time()
    t0 = time.perf_counter()
    labels, warped_reference = warp_to_fixed(
        [annotation, reference], [True, False], sample.shape, voxel_size, reg.transform_maps, threads=ctx.threads
    )
    seconds["warp"] = time.perf_counter() - t0
    cpu["warp"] = time.process_time()
    mask = labels > 0
    before = overlap_ncc(sample, reference)
    after = ncc(warped_reference, sample, mask) if mask.sum() > 50 else float("nan")
    guard["similarity"] = {
        "ncc_after": after,
        "ncc_before": before,
        "min_similarity": params.min_similarity,
        "passed": bool(after >= params.min_similarity),
    }
    result = AtlasRegistration(reg.transform_maps, correction, labels, warped_reference, before, after, seconds, guard)
    if not guard["similarity"]["passed"]:
        ranking = coarse_ranking(
            sample,
            reference,
            annotation,
            voxel_size,
            ctx.current,
            ctx.atlas_code,
            all_relative_orientations(
                matching_permutations(
                    np.array(sample.shape) * voxel_size, np.array(reference.shape) * voxel_size, params.extent_tolerance
                )[:2]
            ),
            ctx.threads,
        )
        message = similarity_guard_message(
            after, before, params.min_similarity, ctx.current, ctx.atlas_code, ctx.keys, ctx.user_value, ranking
        )
        raise RegistrationRejected(message, result)
    seconds["total"] = time.perf_counter() - t_all
    cpu["total"] = time.process_time()
    marks = list(cpu)
    result.cpu_seconds = {k: cpu[k] - cpu[prev] for prev, k in zip(marks, marks[1:]) if k != "total"}
    result.cpu_seconds["total"] = cpu["total"] - cpu["start"]
    return result
