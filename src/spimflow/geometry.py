"""Voxel grids and the index conventions shared by resampling, the demo and point transforms.

Voxel centres sit at integer indices (napari's convention). Physical position of
voxel ``k`` along an axis with voxel size ``v`` is ``k * v`` µm from the centre of
voxel 0. Resampling keeps that physical frame: resampled voxel ``r`` (size ``v_t``)
sits where source voxel ``r * v_t / v_s`` sits, so points move between the grids by a
pure per-axis scale, the same one the image resampling uses.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def resampled_shape(shape: Sequence[int], voxel_size: Sequence[float],
                    target_voxel_size: Sequence[float]) -> tuple[int, ...]:
    """Number of target voxels whose centres fall inside the source extent (centre to centre)."""
    return tuple(int(np.floor((n - 1) * v / t + 1e-9)) + 1
                 for n, v, t in zip(shape, voxel_size, target_voxel_size))


def scale_points(points: np.ndarray, from_voxel_size: Sequence[float],
                 to_voxel_size: Sequence[float]) -> np.ndarray:
    """Voxel coordinates in one grid → the same physical points in another grid's voxels."""
    factor = np.asarray(from_voxel_size, float) / np.asarray(to_voxel_size, float)
    return np.asarray(points, float) * factor


def to_physical(points: np.ndarray, voxel_size: Sequence[float]) -> np.ndarray:
    return np.asarray(points, float) * np.asarray(voxel_size, float)


def to_voxels(points_um: np.ndarray, voxel_size: Sequence[float]) -> np.ndarray:
    return np.asarray(points_um, float) / np.asarray(voxel_size, float)
