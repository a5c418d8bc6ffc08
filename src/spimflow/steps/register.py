"""The whole atlas registration step: guard, register the atlas reference to the resampled
autofluorescence (elastix), optional channel correction, warp the annotation and the
reference into sample space, score the result. Pure: arrays in, arrays and numbers out
(the task writes files, including the QC pictures of a rejected registration).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spimflow.errors import OrientationError
from spimflow.params.register import RegisterParams
from spimflow.steps.elastix import load_itk, parameter_maps, register, stage_map, warp
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

__all__ = ["AtlasRegistration", "GuardContext", "RegistrationRejected", "register_to_atlas"]


class RegistrationRejected(OrientationError):
    """The similarity guard rejected a finished registration; ``registration`` holds it."""

    def __init__(self, message: str, registration: AtlasRegistration):
        super().__init__(message)
        self.registration = registration


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
    """Guard, register atlas reference → resampled autofluorescence, optional signal →
    autofluorescence correction, warp annotation/reference into sample space, score.

    Raises :class:`~spimflow.errors.OrientationError` when a guard fails (the similarity
    guard only after the registration, as :class:`RegistrationRejected`, which carries the
    rejected result so the caller can show it). ``log_dir``: where elastix writes its logs.
    """
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
    guard["similarity"] = {
        "ncc_after": after,
        "ncc_before": before,
        "min_similarity": params.min_similarity,
        "passed": bool(after >= params.min_similarity),
    }
    result = AtlasRegistration(reg.transform_maps, correction, labels, reg.warped_moving, before, after, seconds, guard)
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
    return result
