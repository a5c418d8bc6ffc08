"""Registration QC pictures: atlas region boundaries drawn over the sample.

One PNG per atlas axis: the plane through the brain's centre perpendicular to that
axis (coronal / horizontal / sagittal depending on the atlas orientation code),
the resampled autofluorescence in grey, and the boundaries of the warped atlas
annotation in colour. Pixels are scaled by the voxel size so anatomy is not squashed.
Pure numpy + Pillow (a scikit-image dependency); no plotting library.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spimflow.io.atomic import atomic_path

PLANE_NAMES = {"ap": "coronal", "si": "horizontal", "lr": "sagittal"}
_PAIR = {"a": "ap", "p": "ap", "s": "si", "i": "si", "l": "lr", "r": "lr"}
BOUNDARY_RGB = (255, 210, 0)
OUTLINE_RGB = (0, 200, 255)


def plane_name(axis: int, atlas_code: str) -> str:
    """Anatomical name of the plane perpendicular to ``axis`` for an atlas code (e.g. 'asr')."""
    return PLANE_NAMES[_PAIR[atlas_code[axis]]]


def boundaries(labels: np.ndarray) -> np.ndarray:
    """2-D mask of pixels whose label differs from the pixel below or to the right
    (one-sided, so borders are one pixel wide)."""
    b = np.zeros(labels.shape, bool)
    b[:-1, :] |= labels[1:, :] != labels[:-1, :]
    b[:, :-1] |= labels[:, 1:] != labels[:, :-1]
    return b


def to_grey(image: np.ndarray, low: float = 1.0, high: float = 99.5) -> np.ndarray:
    """Percentile-stretched uint8 grey values."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return np.zeros(image.shape, np.uint8)
    lo, hi = np.percentile(finite, [low, high])
    scaled = (np.nan_to_num(image, nan=lo) - lo) / (hi - lo if hi > lo else 1.0)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def _upscale(a: np.ndarray, reps: Sequence[int]) -> np.ndarray:
    return np.repeat(np.repeat(a, reps[0], axis=0), reps[1], axis=1)


def overlay(image2d: np.ndarray, labels2d: np.ndarray, pixel_size: Sequence[float], min_side: int = 360) -> np.ndarray:
    """RGB picture: grey image, region borders in yellow, brain outline in cyan, upscaled
    (nearest) so a pixel is square in µm and the short side has ≥ ``min_side`` px; borders
    are drawn on the upscaled grid, one pixel wide."""
    unit = min(pixel_size)
    reps = np.array([max(1, int(round(p / unit))) for p in pixel_size])
    k = max(1, int(np.ceil(min_side / max(1, (np.array(image2d.shape) * reps).min()))))
    reps = reps * k
    rgb = np.repeat(_upscale(to_grey(image2d), reps)[:, :, None], 3, axis=2)
    labels = _upscale(labels2d, reps)
    rgb[boundaries(labels) & (labels > 0)] = BOUNDARY_RGB
    rgb[boundaries(labels > 0)] = OUTLINE_RGB
    return rgb


def centre_planes(mask: np.ndarray) -> tuple[int, int, int]:
    """Plane indices through the centroid of ``mask`` (the middle when it is empty)."""
    total = int(np.count_nonzero(mask))
    if not total:
        return tuple(s // 2 for s in mask.shape)
    centre = []
    for axis, n in enumerate(mask.shape):  # mean index from the per-plane counts (no (n, 3) index array)
        counts = np.count_nonzero(mask, axis=tuple(a for a in range(mask.ndim) if a != axis))
        centre.append(int(round(float(np.dot(np.arange(n, dtype=np.float64), counts)) / total)))
    return tuple(centre)


def write_qc_pngs(
    sample: np.ndarray,
    labels: np.ndarray,
    voxel_size: Sequence[float],
    atlas_code: str,
    paths: Sequence[str | Path],
    title: str = "",
) -> list[dict]:
    """Write one overlay PNG per axis (``paths[axis]``); returns what each shows."""
    from PIL import Image, ImageDraw

    if sample.shape != labels.shape:
        raise ValueError(f"sample {sample.shape} and labels {labels.shape} must share one grid")
    centre = centre_planes(labels > 0)
    info = []
    for axis, path in enumerate(paths):
        index = [slice(None)] * 3
        index[axis] = centre[axis]
        img2d, lab2d = sample[tuple(index)], labels[tuple(index)]
        rest = [a for a in range(3) if a != axis]
        if _PAIR[atlas_code[rest[1]]] == "si":  # dorsal/ventral runs down the picture
            img2d, lab2d, rest = img2d.T, lab2d.T, rest[::-1]
        px = [voxel_size[a] for a in rest]
        rgb = overlay(img2d, lab2d, px)
        name = plane_name(axis, atlas_code)
        caption = f"{name} plane, atlas axis {axis} = {centre[axis]}" + (f"  |  {title}" if title else "")
        canvas = Image.new("RGB", (rgb.shape[1], rgb.shape[0] + 18), (0, 0, 0))
        canvas.paste(Image.fromarray(rgb), (0, 18))
        ImageDraw.Draw(canvas).text((4, 3), caption, fill=(255, 255, 255))
        with atomic_path(path) as tmp:
            canvas.save(tmp, format="PNG")
        info.append({"axis": axis, "plane": name, "index": centre[axis], "file": Path(path).name})
    return info
