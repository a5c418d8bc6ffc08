"""Voxel grids and the index conventions shared by resampling, the demo and point transforms.

Voxel centres sit at integer indices (napari's convention). Physical position of
voxel ``k`` along an axis with voxel size ``v`` is ``k * v`` µm from the centre of
voxel 0. Resampling keeps that physical frame: resampled voxel ``r`` (size ``v_t``)
sits where source voxel ``r * v_t / v_s`` sits, so points move between the grids by a
pure per-axis scale, the same one the image resampling uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spimflow.orientation import Orientation


def resampled_shape(
    shape: Sequence[int], voxel_size: Sequence[float], target_voxel_size: Sequence[float]
) -> tuple[int, ...]:
    """Number of target voxels whose centres fall inside the source extent (centre to centre)."""
    return tuple(int(np.floor((n - 1) * v / t + 1e-9)) + 1 for n, v, t in zip(shape, voxel_size, target_voxel_size))


def scale_points(points: np.ndarray, from_voxel_size: Sequence[float], to_voxel_size: Sequence[float]) -> np.ndarray:
    """Voxel coordinates in one grid → the same physical points in another grid's voxels."""
    factor = np.asarray(from_voxel_size, float) / np.asarray(to_voxel_size, float)
    return np.asarray(points, float) * factor


def to_physical(points: np.ndarray, voxel_size: Sequence[float]) -> np.ndarray:
    return np.asarray(points, float) * np.asarray(voxel_size, float)


def to_voxels(points_um: np.ndarray, voxel_size: Sequence[float]) -> np.ndarray:
    return np.asarray(points_um, float) / np.asarray(voxel_size, float)


@dataclass(frozen=True)
class ResampleGrid:
    """The raw grid of one channel and its resampled (atlas-aligned) grid.

    ``raw_shape``/``raw_voxel_size`` are in the sample's own (z, y, x) axes;
    ``target_voxel_size`` is the atlas voxel size in atlas (z, y, x) axes.
    """

    raw_shape: tuple[int, int, int]
    raw_voxel_size: tuple[float, float, float]
    orientation: Orientation
    target_voxel_size: tuple[float, float, float]

    @classmethod
    def for_channel(
        cls,
        raw_shape: Sequence[int],
        voxel_size: Sequence[float],
        orientation: str | Sequence[int],
        atlas_voxel_size: Sequence[float],
        atlas_code: str,
    ) -> ResampleGrid:
        """The grid of one channel: its raw shape and voxel size, its configured orientation
        (BrainGlobe code or ClearMap permutation) resolved against the atlas code, and the
        atlas voxel size."""
        return cls(
            tuple(int(s) for s in raw_shape),
            tuple(float(v) for v in voxel_size),
            Orientation.resolve(orientation, atlas_code),
            tuple(float(v) for v in atlas_voxel_size),
        )

    # derived geometry --------------------------------------------------------
    @property
    def oriented_shape(self) -> tuple[int, int, int]:
        return self.orientation.oriented_shape(self.raw_shape)

    @property
    def oriented_voxel_size(self) -> tuple[float, float, float]:
        return self.orientation.oriented_values(self.raw_voxel_size)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the resampled image (atlas axes)."""
        return resampled_shape(self.oriented_shape, self.oriented_voxel_size, self.target_voxel_size)

    @property
    def scale(self) -> np.ndarray:
        """Oriented raw voxels per resampled voxel, per atlas axis (> 1 means downsampling)."""
        return np.asarray(self.target_voxel_size, float) / np.asarray(self.oriented_voxel_size, float)

    @property
    def shape_in_sample_axes(self) -> tuple[int, int, int]:
        """The resampled shape listed per *sample* axis (before the final transpose)."""
        out = [0, 0, 0]
        for i, j in enumerate(self.orientation.perm):
            out[j] = self.shape[i]
        return tuple(out)

    def sample_coordinates(self, sample_axis: int) -> np.ndarray:
        """Raw coordinates (along ``sample_axis``) of the resampled voxels along the atlas
        axis that sample axis becomes, in resampled index order (descending when flipped)."""
        i = self.orientation.perm.index(sample_axis)
        r = np.arange(self.shape[i], dtype=np.float64) * self.scale[i]
        if self.orientation.flip[i]:
            r = (self.raw_shape[sample_axis] - 1) - r
        return r

    def antialias_sigmas(self) -> tuple[float, float, float]:
        """Gaussian sigma per *sample* axis, in raw voxels: (factor - 1) / 2 when downsampling."""
        out = [0.0, 0.0, 0.0]
        for i, j in enumerate(self.orientation.perm):
            out[j] = max(0.0, (float(self.scale[i]) - 1.0) / 2.0)
        return tuple(out)

    # points ------------------------------------------------------------------------
    def sample_to_resampled(self, points: np.ndarray) -> np.ndarray:
        """(n, 3) raw voxel coordinates → resampled voxel coordinates (same mapping as the image)."""
        o = self.orientation.apply_to_points(_points(points), self.raw_shape)
        return o / self.scale

    def resampled_to_sample(self, points: np.ndarray) -> np.ndarray:
        """(n, 3) resampled voxel coordinates → raw voxel coordinates (exact inverse)."""
        o = _points(points) * self.scale
        return self.orientation.invert_points(o, self.raw_shape)

    # serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "raw_shape": list(self.raw_shape),
            "raw_voxel_size": list(self.raw_voxel_size),
            "perm": list(self.orientation.perm),
            "flip": list(self.orientation.flip),
            "clearmap_orientation": list(self.orientation.to_clearmap()),
            "target_voxel_size": list(self.target_voxel_size),
            "shape": list(self.shape),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ResampleGrid:
        return cls(
            tuple(int(v) for v in d["raw_shape"]),
            tuple(float(v) for v in d["raw_voxel_size"]),
            Orientation(tuple(int(v) for v in d["perm"]), tuple(bool(v) for v in d["flip"])),
            tuple(float(v) for v in d["target_voxel_size"]),
        )


def _points(points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must be an (n, 3) array of (z, y, x), got shape {pts.shape}")
    return pts
