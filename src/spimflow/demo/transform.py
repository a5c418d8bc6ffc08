"""The demo's true sample → atlas transform, exactly reproducible from ``transform.json``.

Conventions (all arrays (z, y, x), voxel centres at integer indices):

* raw sample voxel ``s`` → oriented voxel ``o = Orientation.apply_to_points(s, raw shape)``
  with ``Orientation.from_codes(sample_orientation, atlas_orientation)``;
* oriented physical position ``p = o * oriented_voxel_size`` (µm, atlas-aligned axes);
* atlas physical position ``a = A @ p + t + d(p)`` with
  ``d_i(p) = sum_k amp[i][k] * sin(2π * wavevector[i][k] · p + phase[i][k])``;
* atlas voxel ``a / atlas_voxel_size``.

``A`` = rotation (a few degrees about each axis) @ anisotropic scale. The resampled
sample (voxel size = atlas voxel size, same oriented frame) has voxel ``r`` at
``p = r * atlas_voxel_size``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from spimflow.errors import InputFileError
from spimflow.orientation import Orientation


def rotation_matrix(angles_deg: np.ndarray) -> np.ndarray:
    """R = R0 @ R1 @ R2, R_k a rotation by angles_deg[k] about array axis k."""
    R = np.eye(3)
    for axis, ang in enumerate(np.deg2rad(np.asarray(angles_deg, float))):
        i, j = [k for k in range(3) if k != axis]
        Rk = np.eye(3)
        c, s = np.cos(ang), np.sin(ang)
        Rk[i, i], Rk[i, j], Rk[j, i], Rk[j, j] = c, -s, s, c
        R = R @ Rk
    return R


def draw_transform_parameters(rng: np.random.Generator, max_rotation_deg: float = 7.0,
                              scale_range: tuple[float, float] = (0.93, 1.07),
                              displacement_um: float = 40.0, n_terms: int = 3,
                              period_um: tuple[float, float] = (1200.0, 3000.0)) -> dict:
    """Random linear part and smooth displacement (translation is set later from the FOV)."""
    mags = rng.uniform(2.0, max_rotation_deg, 3)
    angles = mags * rng.choice([-1.0, 1.0], 3)
    scale = rng.uniform(*scale_range, 3)
    A = rotation_matrix(angles) @ np.diag(scale)
    amps = rng.dirichlet(np.ones(n_terms), size=3) * displacement_um
    dirs = rng.standard_normal((3, n_terms, 3))
    dirs /= np.linalg.norm(dirs, axis=2, keepdims=True)
    periods = rng.uniform(*period_um, (3, n_terms))
    wave = dirs / periods[..., None]
    phase = rng.uniform(0, 2 * np.pi, (3, n_terms))
    return {"rotation_deg": angles.tolist(), "scale": scale.tolist(), "matrix": A.tolist(),
            "displacement": {"amplitude_um": amps.tolist(), "wavevector_per_um": wave.tolist(),
                             "phase_rad": phase.tolist()}}


def displacement_um(p_um: np.ndarray, displacement: Mapping[str, Any]) -> np.ndarray:
    """d(p) for (n, 3) oriented physical points (µm)."""
    amp = np.asarray(displacement["amplitude_um"], float)
    wave = np.asarray(displacement["wavevector_per_um"], float)
    phase = np.asarray(displacement["phase_rad"], float)
    out = np.zeros_like(p_um, dtype=np.float64)
    for i in range(3):
        for k in range(amp.shape[1]):
            out[:, i] += amp[i, k] * np.sin(2 * np.pi * (p_um @ wave[i, k]) + phase[i, k])
    return out


def oriented_um_to_atlas_um(p_um: np.ndarray, truth: Mapping[str, Any]) -> np.ndarray:
    """a = A @ p + t + d(p) for (n, 3) oriented physical points."""
    p = np.asarray(p_um, np.float64).reshape(-1, 3)
    A = np.asarray(truth["matrix"], float)
    t = np.asarray(truth["translation_um"], float)
    return p @ A.T + t + displacement_um(p, truth["displacement"])


def orientation_of(truth: Mapping[str, Any]) -> Orientation:
    return Orientation.from_codes(truth["sample_orientation"], truth["atlas_orientation"])


def sample_to_oriented_um(points_zyx_raw: np.ndarray, truth: Mapping[str, Any]) -> np.ndarray:
    """Raw sample voxels (n, 3) → oriented physical positions p (µm)."""
    ori = orientation_of(truth)
    o = ori.apply_to_points(np.asarray(points_zyx_raw, float).reshape(-1, 3), truth["sample_shape"])
    return o * np.asarray(ori.oriented_values(truth["sample_voxel_size_um"]))


def true_sample_to_atlas(points_zyx_raw: np.ndarray, truth: Mapping[str, Any]) -> np.ndarray:
    """Raw sample voxel coordinates (n, 3; z, y, x) → true atlas voxel coordinates (n, 3).

    ``truth`` is the content of ``<demo>/truth/transform.json`` (see :func:`load_truth`).
    """
    p = sample_to_oriented_um(points_zyx_raw, truth)
    return oriented_um_to_atlas_um(p, truth) / np.asarray(truth["atlas_voxel_size_um"], float)


def true_resampled_to_atlas(points_resampled: np.ndarray, truth: Mapping[str, Any]) -> np.ndarray:
    """Resampled-sample voxels (oriented frame, atlas voxel size) → true atlas voxels."""
    av = np.asarray(truth["atlas_voxel_size_um"], float)
    p = np.asarray(points_resampled, float).reshape(-1, 3) * av
    return oriented_um_to_atlas_um(p, truth) / av


def load_truth(demo_dir: str | Path) -> dict:
    """Read ``<demo_dir>/truth/transform.json`` (accepts the file itself too)."""
    path = Path(demo_dir)
    if path.is_dir():
        path = path / "truth" / "transform.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputFileError(f"{path}: demo truth transform not found (run `spimflow demo`)") from None
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{path}: not valid JSON: {exc}") from None
