"""The synthetic sample: field of view, true cells, and plane-by-plane image synthesis.

Raw sample arrays are (z, y, x) in the sample's own axes (orientation code "ipl" for the
demo). Memory is bounded by the slab of planes rendered at once, never by the volume.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import tifffile
from scipy import ndimage
from scipy.spatial import cKDTree

from spimflow.demo.transform import oriented_um_to_atlas_um, orientation_of, true_sample_to_atlas

log = logging.getLogger("spimflow.demo")

CAMERA_OFFSET = 100.0          # dark level added to both channels
READ_NOISE = 5.0               # Gaussian read noise (grey levels)
SIGNAL_BACKGROUND_FRACTION = 0.10
ILLUMINATION_SPAN = 0.20       # ±20 % linear ramp along raw x
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def design_field_of_view(brain_voxels: np.ndarray, atlas_voxel_um: float, matrix: np.ndarray,
                         oriented_voxel_um: np.ndarray, rng: np.random.Generator,
                         margin_um: tuple[float, float] = (120.0, 250.0)) -> tuple[np.ndarray, list[int], list[float], list[float]]:
    """Translation t and oriented sample shape so the field of view holds the whole brain
    (mapped back through the affine part) plus a random margin on every side.

    The brain (atlas voxel centres ± half a voxel) is mapped to oriented µm with t = 0,
    its bounding box [lo, hi] padded by margins ``m_lo``/``m_hi`` drawn in ``margin_um``
    (≥ 3× the displacement amplitude), and t chosen so that ``lo - m_lo`` lands on p = 0.
    """
    a_um = brain_voxels.astype(float) * atlas_voxel_um
    half = 0.5 * atlas_voxel_um
    corners = np.array([[i, j, k] for i in (-half, half) for j in (-half, half) for k in (-half, half)])
    a_um = (a_um[:, None, :] + corners[None]).reshape(-1, 3)
    p0 = np.linalg.solve(matrix, a_um.T).T
    lo, hi = p0.min(axis=0), p0.max(axis=0)
    m_lo, m_hi = rng.uniform(*margin_um, 3), rng.uniform(*margin_um, 3)
    t = matrix @ (lo - m_lo)
    extent = hi - lo + m_lo + m_hi
    oriented_shape = [int(np.floor(e / v)) + 1 for e, v in zip(extent, oriented_voxel_um)]
    return t, oriented_shape, m_lo.tolist(), m_hi.tolist()


def illumination(nx: int) -> np.ndarray:
    """Multiplicative light-sheet illumination profile along raw x: 0.8 → 1.2."""
    return (1.0 + ILLUMINATION_SPAN * (2.0 * np.arange(nx) / max(nx - 1, 1) - 1.0)).astype(np.float32)


def place_cells(truth: Mapping[str, Any], annotation: np.ndarray, hemispheres: np.ndarray,
                density_per_mm3: Mapping[int, float], acronyms: Mapping[int, str],
                rng: np.random.Generator, density_factor: float = 1.0,
                sigma_um: tuple[float, float] = (4.0, 6.0),
                amplitude: tuple[float, float] = (800.0, 3000.0),
                min_distance_sigmas: float = 3.5) -> pd.DataFrame:
    """True cells: uniform candidates in the sample volume, accepted with the density of the
    atlas leaf at their true atlas position, then thinned so no two centres are closer than
    ``min_distance_sigmas`` × the largest sigma (µm). Positions are rounded to 1e-4 voxel
    before the atlas position is computed, so the table is exactly self-consistent."""
    shape = np.asarray(truth["sample_shape"])
    vs = np.asarray(truth["sample_voxel_size_um"], float)
    lut = np.zeros(int(annotation.max()) + 1)
    for lid, d in density_per_mm3.items():
        lut[lid] = d * density_factor
    lam = lut.max()                                            # cells / mm³
    volume_mm3 = float(np.prod((shape - 1) * vs)) / 1e9
    n = rng.poisson(lam * volume_mm3)
    pts = np.round(rng.uniform(0.0, 1.0, (n, 3)) * (shape - 1), 4)
    av = true_sample_to_atlas(pts, truth)
    region = _lookup(annotation, av)
    keep = rng.uniform(size=n) * lam < lut[region]
    pts, av, region = pts[keep], av[keep], region[keep]
    keep = _thin(pts * vs, min_distance_sigmas * sigma_um[1])
    pts, av, region = pts[keep], av[keep], region[keep]
    m = len(pts)
    sig = rng.uniform(*sigma_um, m)
    amp = np.exp(rng.uniform(np.log(amplitude[0]), np.log(amplitude[1]), m))
    hemi = _lookup(hemispheres, av)
    df = pd.DataFrame({
        "z": pts[:, 0], "y": pts[:, 1], "x": pts[:, 2],
        "az": av[:, 0], "ay": av[:, 1], "ax": av[:, 2],
        "region_id": region.astype(np.int64),
        "region_acronym": [acronyms[int(r)] for r in region],
        "hemisphere": np.where(hemi == 1, "left", np.where(hemi == 2, "right", "")),
        "intensity": np.round(amp, 2),
        "radius_um": np.round(sig * FWHM_PER_SIGMA / 2.0, 4),
        "sigma_um": np.round(sig, 4),
    })
    return df.sort_values(["z", "y", "x"], kind="stable").reset_index(drop=True)


def _lookup(volume: np.ndarray, voxels: np.ndarray) -> np.ndarray:
    """Volume value at the nearest voxel (np.rint) of each point; 0 outside the volume."""
    idx = np.rint(voxels).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.asarray(volume.shape)), axis=1)
    out = np.zeros(len(idx), dtype=volume.dtype)
    out[inside] = volume[tuple(idx[inside].T)]
    return out


def _thin(points_um: np.ndarray, min_distance_um: float) -> np.ndarray:
    """Greedy sequential thinning: keep a point unless an earlier kept point is too close."""
    keep = np.ones(len(points_um), dtype=bool)
    if len(points_um) < 2:
        return keep
    pairs = cKDTree(points_um).query_pairs(min_distance_um, output_type="ndarray")
    neighbours: dict[int, list[int]] = {}
    for i, j in pairs:
        a, b = (i, j) if i < j else (j, i)
        neighbours.setdefault(int(a), []).append(int(b))
    for i in range(len(points_um)):
        if keep[i]:
            for j in neighbours.get(i, ()):
                keep[j] = False
    return keep


def resampled_annotation(truth: Mapping[str, Any], annotation: np.ndarray) -> np.ndarray:
    """The atlas annotation pulled into the resampled sample grid (nearest neighbour):
    resampled voxel r sits at oriented p = r * atlas voxel size (µm)."""
    shape = truth["resampled_shape"]
    av = np.asarray(truth["atlas_voxel_size_um"], float)
    out = np.zeros(shape, dtype=annotation.dtype)
    for i in range(shape[0]):                               # plane by plane: bounded memory
        r = np.stack(np.meshgrid(*(np.arange(n, dtype=float) for n in (1, *shape[1:])),
                                 indexing="ij"), axis=-1).reshape(-1, 3)
        r[:, 0] = i
        a = oriented_um_to_atlas_um(r * av, truth) / av
        out[i] = _lookup(annotation, a).reshape(shape[1:])
    return out


def _slab_oriented_um(truth: Mapping[str, Any], z0: int, z1: int) -> np.ndarray:
    """Oriented physical positions p (N, 3) of raw voxels in planes [z0, z1), C order."""
    ori = orientation_of(truth)
    shape = truth["sample_shape"]
    ovs = ori.oriented_values(truth["sample_voxel_size_um"])
    slab = (z1 - z0, shape[1], shape[2])
    starts = (z0, 0, 0)
    cols = []
    for i, (j, flip) in enumerate(zip(ori.perm, ori.flip)):
        idx = np.arange(starts[j], starts[j] + slab[j], dtype=np.float64)
        if flip:
            idx = (shape[j] - 1) - idx
        view = [1, 1, 1]
        view[j] = slab[j]
        cols.append(np.broadcast_to((idx * ovs[i]).reshape(view), slab).ravel())
    return np.stack(cols, axis=1)


def _render_cells(cells: pd.DataFrame, z0: int, z1: int, ny: int, nx: int,
                  voxel_um: np.ndarray) -> np.ndarray:
    """Sum of 3D Gaussians (sigma in µm, isotropic physically) on planes [z0, z1)."""
    out = np.zeros((z1 - z0, ny, nx), dtype=np.float32)
    reach = 4.0
    zc = cells["z"].to_numpy()
    sz = cells["sigma_um"].to_numpy() / voxel_um[0]
    sel = np.nonzero((zc + reach * sz >= z0) & (zc - reach * sz <= z1 - 1))[0]
    c = cells[["z", "y", "x"]].to_numpy()
    sig = cells["sigma_um"].to_numpy()
    amp = cells["intensity"].to_numpy()
    bounds = (z0, 0, 0), (z1, ny, nx)
    for k in sel:
        axes = []
        for ax in range(3):
            s = sig[k] / voxel_um[ax]
            lo = max(bounds[0][ax], int(np.ceil(c[k, ax] - reach * s)))
            hi = min(bounds[1][ax] - 1, int(np.floor(c[k, ax] + reach * s)))
            if hi < lo:
                break
            g = np.arange(lo, hi + 1, dtype=np.float64)
            axes.append((lo - bounds[0][ax], np.exp(-0.5 * ((g - c[k, ax]) / s) ** 2)))
        else:
            (oz, gz), (oy, gy), (ox, gx) = axes
            blob = amp[k] * gz[:, None, None] * gy[None, :, None] * gx[None, None, :]
            out[oz:oz + len(gz), oy:oy + len(gy), ox:ox + len(gx)] += blob.astype(np.float32)
    return out


def _noisy_uint16(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shot noise (Gaussian approximation, unit gain) plus read noise; rounded to uint16."""
    noise = rng.standard_normal(clean.shape, dtype=np.float32)
    noisy = clean + np.sqrt(np.maximum(clean, 0) + READ_NOISE ** 2) * noise
    return np.clip(np.rint(noisy), 0, 65535).astype(np.uint16)


def write_sample_planes(folder: Path, truth: Mapping[str, Any], reference: np.ndarray,
                        cells: pd.DataFrame, rng: np.random.Generator,
                        slab_voxels: int = 1_500_000) -> dict[str, int]:
    """Render both channels slab by slab and write one uint16 TIFF per raw z plane:
    ``autofluorescence/Z0000.tif`` … and ``signal/Z0000.tif`` …

    autofluorescence = reference(T(p)) · illumination + offset (+ noise);
    signal = 10 % of that reference term + cells, both · illumination, + offset (+ noise).
    """
    nz, ny, nx = truth["sample_shape"]
    vs = np.asarray(truth["sample_voxel_size_um"], float)
    av = np.asarray(truth["atlas_voxel_size_um"], float)
    ref = reference.astype(np.float32)
    illum = illumination(nx)[None, None, :]
    dirs = {name: folder / name for name in ("autofluorescence", "signal")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    step = max(1, slab_voxels // (ny * nx))
    for z0 in range(0, nz, step):
        z1 = min(nz, z0 + step)
        p = _slab_oriented_um(truth, z0, z1)
        a_vox = oriented_um_to_atlas_um(p, truth) / av
        del p
        tissue = ndimage.map_coordinates(ref, a_vox.T, order=1, mode="constant", cval=0.0,
                                         prefilter=False).reshape(z1 - z0, ny, nx) * illum
        del a_vox
        af = _noisy_uint16(tissue + CAMERA_OFFSET, rng)
        spots = _render_cells(cells, z0, z1, ny, nx, vs)
        sig = _noisy_uint16((SIGNAL_BACKGROUND_FRACTION * tissue + spots * illum) + CAMERA_OFFSET, rng)
        for k in range(z1 - z0):
            tifffile.imwrite(dirs["autofluorescence"] / f"Z{z0 + k:04d}.tif", af[k])
            tifffile.imwrite(dirs["signal"] / f"Z{z0 + k:04d}.tif", sig[k])
        log.debug("planes %d-%d written", z0, z1 - 1)
    return {name: nz for name in dirs}
