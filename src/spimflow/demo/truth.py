"""The true sample → atlas transform of a demo brain (exact, reproducible from JSON).

With ``p`` the oriented sample position in µm (oriented voxel × oriented voxel size, see
:mod:`spimflow.geometry`), the atlas position in µm is::

    a = c_atlas + A @ (p - c_sample) + t + d(p)
    d_i(p) = sum_k amp[k][i] * sin(2π * wave[k] · (p - c_sample) + phase[k][i])

``A`` is a rotation times an anisotropic scale; ``d`` is a smooth displacement.
Atlas voxel = a / atlas voxel size. This is the direction elastix estimates when the
resampled sample is the fixed image and the atlas reference the moving one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spimflow.geometry import ResampleGrid
from spimflow.orientation import Orientation


def _rotation(angles_deg) -> np.ndarray:
    a, b, c = np.deg2rad(angles_deg)
    rz = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rx = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def random_transform(rng: np.random.Generator, c_sample, c_atlas, max_deformation_um: float = 40.0) -> dict:
    """Rotation ≤ 5° per axis, scales in [0.93, 1.07], translation ≤ 75 µm per axis, and a
    displacement of two low-frequency waves (wavelength 1.2–2.5 mm) with |d| ≤ max_deformation_um."""
    angles = rng.uniform(2.0, 5.0, 3) * rng.choice([-1, 1], 3)
    scales = rng.uniform(0.93, 1.07, 3)
    A = _rotation(angles) @ np.diag(scales)
    t = rng.uniform(-75.0, 75.0, 3)
    waves, amps, phases = [], [], []
    for _ in range(2):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        waves.append(direction / rng.uniform(1200.0, 2500.0))
        amps.append(rng.uniform(-1, 1, 3) * max_deformation_um / (2 * np.sqrt(3)))
        phases.append(rng.uniform(0, 2 * np.pi, 3))
    return {
        "A": A.tolist(),
        "rotation_deg": angles.tolist(),
        "scale": scales.tolist(),
        "t_um": t.tolist(),
        "c_sample_um": list(map(float, c_sample)),
        "c_atlas_um": list(map(float, c_atlas)),
        "waves_per_um": np.array(waves).tolist(),
        "amplitude_um": np.array(amps).tolist(),
        "phase": np.array(phases).tolist(),
    }


def oriented_um_to_atlas_um(p_um: np.ndarray, tf: dict[str, Any]) -> np.ndarray:
    """The true transform T on (n, 3) oriented sample positions in µm."""
    p = np.asarray(p_um, float) - np.asarray(tf["c_sample_um"])
    a = p @ np.asarray(tf["A"]).T + np.asarray(tf["c_atlas_um"]) + np.asarray(tf["t_um"])
    for wave, amp, phase in zip(tf["waves_per_um"], tf["amplitude_um"], tf["phase"]):
        arg = 2 * np.pi * (p @ np.asarray(wave))[:, None] + np.asarray(phase)[None, :]
        a += np.asarray(amp)[None, :] * np.sin(arg)
    return a


def sample_grid(truth: dict[str, Any]) -> ResampleGrid:
    """The resampling grid of the demo sample (raw voxels ↔ resampled/oriented voxels)."""
    orient = Orientation.from_codes(truth["sample_orientation"], truth["atlas_orientation"])
    return ResampleGrid(
        tuple(truth["sample_shape"]), tuple(truth["sample_voxel_size_um"]), orient, tuple(truth["atlas_voxel_size_um"])
    )


def raw_to_oriented_um(points_raw: np.ndarray, truth: dict[str, Any]) -> np.ndarray:
    grid = sample_grid(truth)
    return grid.sample_to_resampled(np.asarray(points_raw, float).reshape(-1, 3)) * np.asarray(grid.target_voxel_size)


def true_sample_to_atlas(points_raw: np.ndarray, truth: dict[str, Any]) -> np.ndarray:
    """(n, 3) raw sample voxels (z, y, x) → true atlas voxels (z, y, x)."""
    a_um = oriented_um_to_atlas_um(raw_to_oriented_um(points_raw, truth), truth["transform"])
    return a_um / np.asarray(truth["atlas_voxel_size_um"])


def true_resampled_to_atlas(points_resampled: np.ndarray, truth: dict[str, Any]) -> np.ndarray:
    """(n, 3) resampled-space voxels (atlas orientation, atlas voxel size) → atlas voxels."""
    vs = np.asarray(truth["atlas_voxel_size_um"])
    return oriented_um_to_atlas_um(np.asarray(points_resampled, float) * vs, truth["transform"]) / vs
