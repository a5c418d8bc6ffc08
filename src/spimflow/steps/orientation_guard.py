"""The orientation guard: catch a wrong sample orientation before (extent, flips) and after
(similarity) the atlas registration, and name the likely fix in the user's own config
terms (BrainGlobe code and ClearMap permutation), ranked by coarse affine registrations.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from spimflow.errors import OrientationError
from spimflow.orientation import Orientation, compose, orientation_code
from spimflow.params.register import ElastixStage, RegisterParams
from spimflow.steps.elastix import register, stage_map
from spimflow.steps.warp import warp_to_fixed

log = logging.getLogger(__name__)


# -- similarity ---------------------------------------------------------------------------------


def ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Normalised cross-correlation (Pearson r) of two images, optionally inside a mask.

    Parameters
    ----------
    a, b : ndarray
        Images of the same shape.
    mask : ndarray of bool, optional
        Voxels to compare; default all.

    Returns
    -------
    float
        In [-1, 1]; 0 when an image is constant, NaN with fewer than 2 voxels.

    Examples
    --------
    >>> a = np.array([1.0, 2.0, 3.0, 4.0])
    >>> ncc(a, 2 * a + 1), ncc(a, -a), ncc(a, np.ones(4))
    (1.0, -1.0, 0.0)
    """
    a, b = np.asarray(a), np.asarray(b)
    if mask is not None:
        a, b = a[mask], b[mask]  # select first, then convert: no float64 copies of whole volumes
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    if a.size < 2:
        return float("nan")
    a -= a.mean()
    b -= b.mean()
    den = np.sqrt(np.dot(a, a) * np.dot(b, b))
    return float(np.dot(a, b) / den) if den > 0 else 0.0


def overlap_ncc(fixed: np.ndarray, moving: np.ndarray) -> float:
    """NCC of two images sharing the voxel grid origin, over their common box (no registration).

    Parameters
    ----------
    fixed, moving : ndarray
        Images (z, y, x), possibly of different shapes.

    Returns
    -------
    float
        See :func:`ncc`.

    Examples
    --------
    >>> round(overlap_ncc(np.arange(6.0).reshape(1, 2, 3), np.arange(4.0).reshape(1, 2, 2)), 3)
    0.99
    """
    box = tuple(slice(0, min(s, t)) for s, t in zip(fixed.shape, moving.shape))
    return ncc(fixed[box], moving[box])


# -- orientation guard -----------------------------------------------------------------------


def describe(o: Orientation, atlas_code: str) -> str:
    """Name an orientation in both config notations, for messages.

    Parameters
    ----------
    o : Orientation
        Sample → atlas orientation.
    atlas_code : str
        BrainGlobe origin code of the atlas.

    Returns
    -------
    str
        BrainGlobe code and ClearMap permutation.

    Examples
    --------
    >>> print(describe(Orientation.from_codes("psr", "asr"), "asr"))
    'psr' (ClearMap [1, 2, -3])
    """
    return f"'{orientation_code(o, atlas_code)}' (ClearMap {list(o.to_clearmap())})"


def relative_extent_difference(sample_extent: Sequence[float], atlas_extent: Sequence[float]) -> np.ndarray:
    """Relative extent difference |sample - atlas| / atlas per axis.

    Parameters
    ----------
    sample_extent, atlas_extent : sequence of float
        Extents (z, y, x) along the atlas axes, µm.

    Returns
    -------
    (3,) ndarray of float

    Examples
    --------
    >>> relative_extent_difference([5000, 8000, 11000], [10000, 8000, 11400]).round(3).tolist()
    [0.5, 0.0, 0.035]
    """
    s, a = np.asarray(sample_extent, float), np.asarray(atlas_extent, float)
    return np.abs(s - a) / a


def matching_permutations(
    sample_extent: Sequence[float], atlas_extent: Sequence[float], tolerance: float
) -> list[tuple[int, int, int]]:
    """Find the axis permutations that bring the sample's extents within ``tolerance`` of the atlas's.

    Parameters
    ----------
    sample_extent, atlas_extent : sequence of float
        Extents (z, y, x) along the atlas axes, µm.
    tolerance : float
        Largest relative difference per axis (see :func:`relative_extent_difference`).

    Returns
    -------
    list of tuple of int
        Permutations P (new axis i = current axis P[i]), best first; all six, ranked, if
        none fits.

    Examples
    --------
    A sample whose z and y are swapped:

    >>> matching_permutations([8000, 5000, 11000], [5000, 8000, 11400], tolerance=0.1)
    [(1, 0, 2)]
    """
    perms = list(itertools.permutations(range(3)))
    score = {p: relative_extent_difference([sample_extent[k] for k in p], atlas_extent) for p in perms}
    ranked = sorted(perms, key=lambda p: (score[p].max(), p != (0, 1, 2)))
    good = [p for p in ranked if score[p].max() <= tolerance]
    return good or ranked


@dataclass
class Candidate:
    """One candidate sample orientation and how well it fits the atlas.

    Attributes
    ----------
    orientation : Orientation
        Full sample → atlas orientation.
    code : str
        Its BrainGlobe code.
    similarity : float
        NCC after a coarse affine registration (higher is better; -1 when elastix failed).
    """

    orientation: Orientation  # sample -> atlas, full
    code: str
    similarity: float


def block_mean(img: np.ndarray, k: Sequence[int]) -> np.ndarray:
    """Mean over blocks of k[0] × k[1] × k[2] voxels (a cheap, alias-free shrink); the last
    incomplete block along each axis is dropped.

    Parameters
    ----------
    img : ndarray
        Image (z, y, x).
    k : sequence of int
        Block size per axis, voxels.

    Returns
    -------
    ndarray of float32
        Shape ``img.shape // k``; block ``j`` is centred on voxel ``j * k + (k - 1) / 2``.

    Examples
    --------
    >>> block_mean(np.arange(8.0).reshape(2, 2, 2), (1, 2, 2)).tolist()
    [[[1.5]], [[5.5]]]
    """
    k = [int(b) for b in k]
    n = [s // b for s, b in zip(img.shape, k)]
    cropped = np.asarray(img[: n[0] * k[0], : n[1] * k[1], : n[2] * k[2]], np.float32)
    return cropped.reshape(n[0], k[0], n[1], k[1], n[2], k[2]).mean(axis=(1, 3, 5), dtype=np.float32)


def coarse_ranking(
    sample: np.ndarray,
    reference: np.ndarray,
    annotation: np.ndarray,
    voxel_size: Sequence[float],
    current: Orientation,
    atlas_code: str,
    relatives: Sequence[Orientation],
    threads: int = 1,
    coarse_voxel_um: float | None = None,
) -> list[Candidate]:
    """Rank candidate orientations by a cheap low-resolution affine registration.

    Each candidate is ``compose(R, current)`` for R in ``relatives``, obtained by
    re-orienting the sample image (spacing permuted along, so anisotropic atlas voxels
    stay right). Scores are the NCC of the warped atlas reference and the sample inside
    the warped brain mask.

    Parameters
    ----------
    sample : ndarray
        Resampled autofluorescence (z, y, x) under ``current``.
    reference : ndarray
        Atlas reference image (z, y, x).
    annotation : ndarray
        Atlas labels (z, y, x).
    voxel_size : sequence of float
        Atlas voxel size (z, y, x), µm.
    current : Orientation
        Configured sample → atlas orientation.
    atlas_code : str
        BrainGlobe origin code of the atlas.
    relatives : sequence of Orientation
        Re-orientations of the current result to try.
    threads : int, optional
        Threads elastix may use.
    coarse_voxel_um : float, optional
        Voxel size of the coarse images, µm (rounded to whole atlas voxels per axis); default
        ~40 voxels along the longest atlas axis, at least 2 atlas voxels.

    Returns
    -------
    list of Candidate
        Best first (see :func:`prefer_configured_left_right` for ties).
    """
    vs = np.asarray(voxel_size, float)
    if coarse_voxel_um is None:  # ~40 voxels along the longest atlas axis, at least 2 atlas voxels
        coarse_voxel_um = max(2 * vs.max(), (np.array(reference.shape) * vs).max() / 40)
    # coarse voxels: blocks of k atlas voxels (block means, one cheap pass per image); the
    # sample is shrunk once and each candidate re-orients the small image (spacing permuted along)
    k = np.maximum(1, np.rint(coarse_voxel_um / vs)).astype(int)
    coarse = tuple(float(v) for v in vs * k)
    ref_c = block_mean(reference, k)
    lab_c = annotation[tuple(np.ix_(*[np.arange(n // b) * b + (b - 1) // 2 for n, b in zip(annotation.shape, k)]))]
    sample_c = block_mean(sample, k)
    # 100 iterations of 1000 samples rank the candidates as 150 × 2000 did (benchmark: same order and
    # margins on the demo and the realistic case), in less than half the time
    stage = ElastixStage(resolutions=2, iterations=100, spatial_samples=1000)
    maps = [stage_map("affine", stage)]
    out = []
    for rel in relatives:
        fixed_c = np.ascontiguousarray(rel.apply_to_array(sample_c))
        spacing = rel.oriented_values(coarse)
        try:
            reg = register(fixed_c, ref_c, spacing, maps, threads, moving_voxel_size=coarse, result_image=False)
            lab_w, ref_w = warp_to_fixed(
                [lab_c, ref_c], [True, False], fixed_c.shape, spacing, reg.transform_maps, moving_voxel_size=coarse
            )
            score = ncc(ref_w, fixed_c, lab_w > 0) if (lab_w > 0).sum() > 50 else -1.0
        except RuntimeError as exc:  # elastix gives up (e.g. too few samples overlap)
            log.info(
                "orientation candidate %s: elastix failed (%s)", rel, str(exc).splitlines()[0] if str(exc) else exc
            )
            score = -1.0
        full = compose(rel, current)
        out.append(Candidate(full, orientation_code(full, atlas_code), float(score)))
    return prefer_configured_left_right(sorted(out, key=lambda c: -c.similarity), current, atlas_code)


def all_relative_orientations(perms: Iterable[tuple[int, int, int]] | None = None) -> list[Orientation]:
    """List every orientation with the given axis permutations and any flips.

    Parameters
    ----------
    perms : iterable of tuple of int, optional
        Axis permutations; default all six.

    Returns
    -------
    list of Orientation
        8 per permutation (all flip combinations).

    Examples
    --------
    >>> len(all_relative_orientations()), len(all_relative_orientations([(0, 1, 2)]))
    (48, 8)
    """
    perms = list(perms) if perms is not None else list(itertools.permutations(range(3)))
    return [Orientation(tuple(p), tuple(f)) for p in perms for f in itertools.product([False, True], repeat=3)]


def prefer_configured_left_right(
    cands: Sequence[Candidate], current: Orientation, atlas_code: str, tie: float = 0.05
) -> list[Candidate]:
    """Break left/right ties in favour of the configured left/right direction.

    Image similarity cannot tell left from right in a near-symmetric brain: when two
    neighbouring candidates differ only by a left/right flip and score within ``tie``,
    the one that keeps the configured left/right direction is ranked first.

    Parameters
    ----------
    cands : sequence of Candidate
        Candidates, best first.
    current : Orientation
        Configured sample → atlas orientation.
    atlas_code : str
        BrainGlobe origin code of the atlas.
    tie : float, optional
        NCC difference below which two candidates count as tied.

    Returns
    -------
    list of Candidate
        Re-ranked candidates.

    Examples
    --------
    >>> current = Orientation.from_codes("asr", "asr")
    >>> flipped = Candidate(Orientation.from_codes("asl", "asr"), "asl", 0.62)
    >>> configured = Candidate(current, "asr", 0.60)
    >>> [c.code for c in prefer_configured_left_right([flipped, configured], current, "asr")]
    ['asr', 'asl']
    """
    out = list(cands)
    lr = next(i for i, ch in enumerate(atlas_code) if ch in "lr")
    for k in range(len(out) - 1):
        a, b = out[k], out[k + 1]
        twins = a.orientation.perm == b.orientation.perm and [
            x != y for x, y in zip(a.orientation.flip, b.orientation.flip)
        ] == [i == lr for i in range(3)]
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
    if (
        a.perm == b.perm
        and [x != y for x, y in zip(a.flip, b.flip)] == [i == lr for i in range(3)]
        and cands[0].similarity - cands[1].similarity < 0.05
    ):
        return [
            "  Note: the two best differ only by a left/right flip, which image similarity cannot tell apart "
            "in a near-symmetric brain; check left/right with a known asymmetric landmark (e.g. the injected "
            "or imaged-first side)."
        ]
    return []


def uniform_scale(sample_extent: Sequence[float], atlas_extent: Sequence[float]) -> float | None:
    """The common size ratio when the sample is the atlas scaled alike along every axis.

    A wrong atlas resolution or voxel size scales every axis by the same factor; a wrong
    orientation permutes them, and a partial sample shortens only some.

    Parameters
    ----------
    sample_extent, atlas_extent : sequence of float
        Extents (z, y, x) along the atlas axes, µm.

    Returns
    -------
    float or None
        Sample / atlas size when all three ratios agree within 15% and differ from 1 by
        more than 30%; else None.

    Examples
    --------
    >>> round(uniform_scale((2500.0, 2000.0, 1250.0), (1000.0, 800.0, 500.0)), 2)
    2.5
    >>> uniform_scale((1000.0, 400.0, 500.0), (1000.0, 800.0, 500.0)) is None
    True
    """
    ratios = np.asarray(sample_extent, float) / np.maximum(np.asarray(atlas_extent, float), 1e-9)
    if ratios.min() <= 0 or ratios.max() / ratios.min() > 1.15:
        return None
    common = float(np.exp(np.log(ratios).mean()))
    return common if (common > 1.3 or common < 1 / 1.3) else None


def extent_guard_message(
    sample_extent,
    atlas_extent,
    tolerance,
    current: Orientation,
    atlas_code: str,
    keys: str,
    user_value,
    perms,
    ranking: Sequence[Candidate] | None,
) -> str:
    """Explain a failed extent guard in the user's config terms, with the likely fix.

    Parameters
    ----------
    sample_extent, atlas_extent : sequence of float
        Extents (z, y, x) along the atlas axes, µm.
    tolerance : float
        ``steps.registration.extent_tolerance``.
    current : Orientation
        Configured sample → atlas orientation.
    atlas_code : str
        BrainGlobe origin code of the atlas.
    keys : str
        Config key(s) holding the orientation.
    user_value : object
        The value the user wrote.
    perms : sequence of tuple of int
        Axis permutations from :func:`matching_permutations`, best first.
    ranking : sequence of Candidate or None
        Coarse ranking of candidate orientations, if computed.

    Returns
    -------
    str
        Multi-line message.
    """
    diff = relative_extent_difference(sample_extent, atlas_extent)
    fmt = lambda e: " × ".join(f"{v:.0f}" for v in e)  # noqa: E731
    scale = uniform_scale(sample_extent, atlas_extent)
    if scale is not None:
        return (
            f"the sample is {scale:.2f} times the atlas's size along every axis "
            f"({fmt(sample_extent)} µm against {fmt(atlas_extent)} µm along the atlas axes z, y, x): "
            "a voxel size is wrong, not the orientation. Check the atlas resolution (metadata.json 'resolution', "
            "or atlas.voxel_size) and channels.*.voxel_size (z, y, x, µm)."
        )
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
        lines.append(
            f"  Re-assigning the sample axes would fit the atlas: atlas axes (z, y, x) ← current axes "
            f"{list(best)} gives {fmt(moved)} µm."
        )
    if ranking:
        lines.append("  A coarse affine registration of the candidate orientations ranks them (NCC, higher is better):")
        lines += _ranking_lines(ranking, current, atlas_code)
        lines.append(f"  Likely fix: set {keys} to {describe(ranking[0].orientation, atlas_code)}.")
        lines += _lr_note(ranking, atlas_code)
    lines.append(
        "  If the sample is deliberately partial (e.g. one hemisphere), crop the atlas with "
        "atlas.hemisphere: left/right, or raise steps.registration.extent_tolerance."
    )
    return "\n".join(lines)


def similarity_guard_message(
    score: float,
    before: float,
    threshold: float,
    current: Orientation,
    atlas_code: str,
    keys: str,
    user_value,
    ranking: Sequence[Candidate],
    qc_note: str = "",
) -> str:
    """Explain a failed similarity guard in the user's config terms, with the likely fix.

    Parameters
    ----------
    score : float
        NCC after registration, inside the brain.
    before : float
        NCC before registration.
    threshold : float
        ``steps.registration.min_similarity``.
    current : Orientation
        Configured sample → atlas orientation.
    atlas_code : str
        BrainGlobe origin code of the atlas.
    keys : str
        Config key(s) holding the orientation.
    user_value : object
        The value the user wrote.
    ranking : sequence of Candidate
        Coarse ranking of candidate orientations, best first.
    qc_note : str, optional
        Extra line (e.g. where the QC pictures are).

    Returns
    -------
    str
        Multi-line message.
    """
    lines = [
        f"orientation guard: after registration the atlas and the sample do not match: NCC {score:.2f} inside the "
        "brain "
        f"(before registration {before:.2f}; limit steps.registration.min_similarity = {threshold}).",
        f"  {keys} = {user_value!r} (atlas orientation '{atlas_code}'), i.e. {describe(current, atlas_code)}",
        "  A coarse affine registration of candidate orientations ranks them (NCC, higher is better):",
        *_ranking_lines(ranking, current, atlas_code),
    ]
    if ranking and ranking[0].orientation != current:
        lines.append(f"  Likely fix: set {keys} to {describe(ranking[0].orientation, atlas_code)}.")
    else:
        lines.append(
            "  The configured orientation ranks best, so the orientation is probably right: check the "
            "autofluorescence image (contrast, cropping, empty planes), the voxel sizes and the elastix "
            "parameters (steps.registration)."
        )
    lines += _lr_note(ranking, atlas_code)
    if qc_note:
        lines.append(f"  {qc_note}")
    return "\n".join(lines)


@dataclass
class GuardContext:
    """What the guard needs to explain itself in the user's own terms.

    Attributes
    ----------
    current : Orientation
        Configured sample → atlas orientation (autofluorescence).
    atlas_code : str
        BrainGlobe origin code of the atlas.
    keys : str
        Config keys holding the orientation, e.g. "channels.autofluorescence.orientation".
    user_value : object
        The value the user wrote ('ipl' or [1, -2, 3]).
    threads : int
        Threads elastix may use.
    """

    current: Orientation  # configured sample -> atlas orientation (autofluorescence)
    atlas_code: str
    keys: str  # config keys holding the orientation, e.g. "channels.autofluorescence.orientation"
    user_value: object  # the value the user wrote ('ipl' or [1, -2, 3])
    threads: int = 1


def extent_guard(
    sample: np.ndarray,
    reference: np.ndarray,
    annotation: np.ndarray,
    voxel_size: Sequence[float],
    params: RegisterParams,
    ctx: GuardContext,
) -> dict:
    """Check before registration that the sample's extent matches the atlas's along every axis.

    Parameters
    ----------
    sample : ndarray
        Resampled autofluorescence (z, y, x).
    reference : ndarray
        Atlas reference image (z, y, x).
    annotation : ndarray
        Atlas labels (z, y, x).
    voxel_size : sequence of float
        Atlas voxel size (z, y, x), µm.
    params : RegisterParams
        Registration config (``extent_tolerance``, ``suggest_orientation``).
    ctx : GuardContext
        What the guard needs to explain a failure.

    Returns
    -------
    dict
        Measurements: extents (µm), relative differences, tolerance, ``passed``.

    Raises
    ------
    OrientationError
        If an axis differs by more than ``params.extent_tolerance``; the message names
        the best axis assignment and a coarse ranking of its flips.
    """
    vs = np.asarray(voxel_size, float)
    s_ext, a_ext = np.array(sample.shape) * vs, np.array(reference.shape) * vs
    diff = relative_extent_difference(s_ext, a_ext)
    info = {
        "sample_extent_um": s_ext.tolist(),
        "atlas_extent_um": a_ext.tolist(),
        "relative_difference": diff.tolist(),
        "tolerance": params.extent_tolerance,
        "passed": bool(diff.max() <= params.extent_tolerance),
    }
    if info["passed"]:
        return info
    perms = matching_permutations(s_ext, a_ext, params.extent_tolerance)
    ranking = None
    if params.suggest_orientation:
        fitting = [
            p
            for p in perms
            if relative_extent_difference([s_ext[k] for k in p], a_ext).max() <= params.extent_tolerance
        ][:2]
        if fitting:
            ranking = coarse_ranking(
                sample,
                reference,
                annotation,
                vs,
                ctx.current,
                ctx.atlas_code,
                all_relative_orientations(fitting),
                ctx.threads,
            )
    raise OrientationError(
        extent_guard_message(
            s_ext, a_ext, params.extent_tolerance, ctx.current, ctx.atlas_code, ctx.keys, ctx.user_value, perms, ranking
        )
    )


def flip_check(
    sample: np.ndarray,
    reference: np.ndarray,
    annotation: np.ndarray,
    voxel_size: Sequence[float],
    params: RegisterParams,
    ctx: GuardContext,
) -> dict:
    """Compare the configured orientation with its 7 flipped variants before registration (coarse affine).

    Parameters
    ----------
    sample : ndarray
        Resampled autofluorescence (z, y, x).
    reference : ndarray
        Atlas reference image (z, y, x).
    annotation : ndarray
        Atlas labels (z, y, x).
    voxel_size : sequence of float
        Atlas voxel size (z, y, x), µm.
    params : RegisterParams
        Registration config (``orientation_margin``).
    ctx : GuardContext
        What the guard needs to explain a failure.

    Returns
    -------
    dict
        The configured code and NCC, the ranking, the margin and ``passed``.

    Raises
    ------
    OrientationError
        If a variant that is not a pure left/right flip beats the configured one by more
        than ``params.orientation_margin`` NCC.
    """
    ranking = coarse_ranking(
        sample,
        reference,
        annotation,
        voxel_size,
        ctx.current,
        ctx.atlas_code,
        all_relative_orientations([(0, 1, 2)]),
        ctx.threads,
    )
    mine = next(c for c in ranking if c.orientation == ctx.current)
    lr = next(i for i, ch in enumerate(ctx.atlas_code) if ch in "lr")
    lr_twin = Orientation(ctx.current.perm, tuple(f ^ (i == lr) for i, f in enumerate(ctx.current.flip)))
    rivals = [c for c in ranking if c.orientation not in (ctx.current, lr_twin)]
    info = {
        "configured": mine.code,
        "configured_ncc": mine.similarity,
        "ranking": [
            {"code": c.code, "clearmap": list(c.orientation.to_clearmap()), "ncc": c.similarity} for c in ranking
        ],
        "margin": params.orientation_margin,
    }
    best = rivals[0] if rivals else None
    info["passed"] = not (best is not None and best.similarity > mine.similarity + params.orientation_margin)
    if not info["passed"]:
        raise OrientationError(
            "\n".join(
                [
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
                ]
            )
        )
    return info
