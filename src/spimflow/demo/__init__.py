"""The embedded synthetic demo: a BrainGlobe-layout atlas, a light-sheet-like sample
(autofluorescence + signal planes) made from it through a known transform, and the
ground truth (cells, region counts, transform, annotation in resampled space).

``make_demo(out_dir, preset="small", seed=0)`` writes::

    <out>/atlas/{metadata.json, structures.json, annotation.tiff, reference.tiff, hemispheres.tiff}
    <out>/sample/{autofluorescence,signal}/Z0000.tif ...   (uint16, one file per raw z plane)
    <out>/truth/{cells.csv, region_counts.csv, transform.json, annotation_in_resampled.tif}
    <out>/demo.json                                            (manifest, written last)

The atlas is identical for every seed; the seed drives the sample (transform, field of
view, cells, noise). Everything is deterministic: same preset + seed → identical files.
See docs/demo.md and :mod:`spimflow.demo.transform` for the exact conventions.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tifffile

from spimflow.demo.atlas import (ATLAS_NAME, ATLAS_ORIENTATION, ATLAS_VOXEL_UM, DemoAtlas,
                                 Structure, build_atlas)
from spimflow.demo.sample import (CAMERA_OFFSET, ILLUMINATION_SPAN, SIGNAL_BACKGROUND_FRACTION,
                                  design_field_of_view, place_cells, resampled_annotation,
                                  write_sample_planes)
from spimflow.demo.transform import (draw_transform_parameters, load_truth, oriented_um_to_atlas_um,
                                     sample_to_oriented_um, true_resampled_to_atlas,
                                     true_sample_to_atlas)
from spimflow.errors import ConfigError
from spimflow.geometry import resampled_shape
from spimflow.io.atomic import atomic_path
from spimflow.orientation import Orientation

__all__ = ["make_demo", "true_sample_to_atlas", "true_resampled_to_atlas", "load_truth",
           "oriented_um_to_atlas_um", "sample_to_oriented_um", "build_atlas", "PRESETS",
           "DemoPreset", "DEMO_VERSION", "PLANE_PATTERN"]

log = logging.getLogger("spimflow.demo")

DEMO_VERSION = "1"
SAMPLE_ORIENTATION = "ipl"
PLANE_PATTERN = r"Z\d{4}.tif"
CHANNEL_NAMES = ("autofluorescence", "signal")


@dataclass(frozen=True)
class DemoPreset:
    """Sample voxel size (z, y, x) µm and cell-density multiplier; the atlas is shared."""

    name: str
    sample_voxel_um: tuple[float, float, float]
    density_factor: float
    slab_voxels: int = 1_500_000


PRESETS = {
    "small": DemoPreset("small", (10.0, 5.0, 5.0), 1.0),
    "large": DemoPreset("large", (5.0, 2.5, 2.5), 3.0),   # 8x the voxels, 3x the cells
}


def make_demo(out_dir: str | os.PathLike, preset: str = "small", seed: int = 0) -> dict:
    """Write the demo atlas, sample planes and ground truth under ``out_dir``; return the
    manifest (also written to ``<out_dir>/demo.json``, last, as the completion marker).

    Everything is built in a hidden sibling folder and moved into place at the end; the
    old ``demo.json`` is removed first, so an interrupted run never looks complete.
    """
    if preset not in PRESETS:
        raise ConfigError(f"demo.preset: unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"demo.seed: expected a non-negative integer, got {seed!r}")
    p = PRESETS[preset]
    out = Path(out_dir)
    t_start = time.perf_counter()
    manifest_path = out / "demo.json"
    manifest_path.unlink(missing_ok=True)
    build = out.parent / f".{out.name}.build-{uuid.uuid4().hex[:8]}"
    try:
        build.mkdir(parents=True)
        atlas = build_atlas()
        write_brainglobe_atlas(build / "atlas", atlas)
        rng_transform, rng_cells, rng_noise = (np.random.default_rng(s)
                                               for s in np.random.SeedSequence(int(seed)).spawn(3))
        truth = design_truth(atlas, p, rng_transform)
        acronyms = {s.id: s.acronym for s in atlas.structures}
        cells = place_cells(truth, atlas.annotation, atlas.hemispheres, atlas.leaf_density_per_mm3,
                            acronyms, rng_cells, density_factor=p.density_factor)
        log.info("demo %s seed %d: sample %s, %d cells", preset, seed, truth["sample_shape"], len(cells))
        write_sample_planes(build / "sample", truth, atlas.reference, cells, rng_noise, p.slab_voxels)
        write_truth(build / "truth", truth, cells, atlas)
        out.mkdir(parents=True, exist_ok=True)
        for name in ("atlas", "sample", "truth"):
            target = out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(build / name, target)
        manifest = build_manifest(p, int(seed), truth, cells, atlas)
        with atomic_path(manifest_path) as tmp:
            tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    finally:
        shutil.rmtree(build, ignore_errors=True)
    log.info("demo written to %s in %.1f s", out, time.perf_counter() - t_start)
    return manifest


def design_truth(atlas: DemoAtlas, preset: DemoPreset, rng: np.random.Generator) -> dict:
    """All parameters of the true transform and the sample geometry (JSON-able)."""
    ori = Orientation.from_codes(SAMPLE_ORIENTATION, ATLAS_ORIENTATION)
    params = draw_transform_parameters(rng)
    A = np.asarray(params["matrix"])
    ovs = np.asarray(ori.oriented_values(preset.sample_voxel_um))
    t, oshape, m_lo, m_hi = design_field_of_view(np.argwhere(atlas.annotation > 0), ATLAS_VOXEL_UM,
                                                 A, ovs, rng)
    raw_shape = [0, 0, 0]
    for i, j in enumerate(ori.perm):
        raw_shape[j] = oshape[i]
    av = [ATLAS_VOXEL_UM] * 3
    return {
        "description": "true transform of the spimflow demo: raw sample voxel -> atlas voxel",
        "formula": ("o = Orientation.from_codes(sample_orientation, atlas_orientation)"
                    ".apply_to_points(raw voxel, sample_shape); p = o * oriented_voxel_size_um; "
                    "a_um = matrix @ p + translation_um + d(p), d_i(p) = sum_k amplitude_um[i][k] * "
                    "sin(2*pi*dot(wavevector_per_um[i][k], p) + phase_rad[i][k]); "
                    "atlas voxel = a_um / atlas_voxel_size_um; resampled voxel r has p = r * atlas_voxel_size_um"),
        "version": DEMO_VERSION,
        "sample_orientation": SAMPLE_ORIENTATION,
        "atlas_orientation": ATLAS_ORIENTATION,
        "orientation_perm": list(ori.perm),
        "orientation_flip": [bool(f) for f in ori.flip],
        "sample_shape": raw_shape,
        "sample_voxel_size_um": list(preset.sample_voxel_um),
        "oriented_shape": oshape,
        "oriented_voxel_size_um": ovs.tolist(),
        "atlas_shape": list(atlas.annotation.shape),
        "atlas_voxel_size_um": av,
        "resampled_shape": list(resampled_shape(oshape, ovs, av)),
        "matrix": params["matrix"],
        "translation_um": t.tolist(),
        "rotation_deg": params["rotation_deg"],
        "scale": params["scale"],
        "displacement": params["displacement"],
        "fov_margin_low_um": m_lo,
        "fov_margin_high_um": m_hi,
        "illumination": f"multiplicative, linear along raw x from {1 - ILLUMINATION_SPAN} to {1 + ILLUMINATION_SPAN}",
        "camera_offset": CAMERA_OFFSET,
        "signal_background_fraction": SIGNAL_BACKGROUND_FRACTION,
    }


def write_brainglobe_atlas(folder: Path, atlas: DemoAtlas) -> None:
    """BrainGlobe atlas folder layout (metadata, structures, annotation/reference/hemispheres)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.json").write_text(json.dumps(atlas.metadata(), indent=2) + "\n")
    (folder / "structures.json").write_text(json.dumps([s.to_json() for s in atlas.structures], indent=2) + "\n")
    tifffile.imwrite(folder / "annotation.tiff", atlas.annotation)
    tifffile.imwrite(folder / "reference.tiff", atlas.reference)
    tifffile.imwrite(folder / "hemispheres.tiff", atlas.hemispheres)


def region_counts(cells: pd.DataFrame, leaves: list[Structure]) -> pd.DataFrame:
    """Cells per (leaf, hemisphere), zeros included, leaves in ontology order."""
    n = cells.groupby(["region_id", "hemisphere"]).size()
    rows = [{"region_id": s.id, "acronym": s.acronym, "hemisphere": h,
             "count": int(n.get((s.id, h), 0))}
            for s in leaves for h in ("left", "right")]
    return pd.DataFrame(rows, columns=["region_id", "acronym", "hemisphere", "count"])


def write_truth(folder: Path, truth: dict, cells: pd.DataFrame, atlas: DemoAtlas) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "transform.json").write_text(json.dumps(truth, indent=2) + "\n")
    cells.to_csv(folder / "cells.csv", index=False, float_format="%.6f")
    region_counts(cells, atlas.leaves).to_csv(folder / "region_counts.csv", index=False)
    tifffile.imwrite(folder / "annotation_in_resampled.tif", resampled_annotation(truth, atlas.annotation))


def build_manifest(preset: DemoPreset, seed: int, truth: dict, cells: pd.DataFrame,
                   atlas: DemoAtlas) -> dict[str, Any]:
    nz = truth["sample_shape"][0]
    return {
        "name": "spimflow synthetic demo",
        "version": DEMO_VERSION,
        "preset": preset.name,
        "seed": seed,
        "paths_relative_to": "the folder holding this file",
        "atlas": {
            "path": "atlas", "name": ATLAS_NAME, "shape": list(atlas.annotation.shape),
            "voxel_size_um": [ATLAS_VOXEL_UM] * 3, "orientation": ATLAS_ORIENTATION,
            "files": [f"atlas/{n}" for n in ("metadata.json", "structures.json", "annotation.tiff",
                                              "reference.tiff", "hemispheres.tiff")],
            "n_leaf_regions": len(atlas.leaves),
        },
        "sample": {
            "shape": truth["sample_shape"], "voxel_size_um": truth["sample_voxel_size_um"],
            "orientation": SAMPLE_ORIENTATION, "dtype": "uint16",
            "channels": {name: {"folder": f"sample/{name}", "pattern": PLANE_PATTERN, "n_planes": nz,
                                "first": f"sample/{name}/Z0000.tif",
                                "last": f"sample/{name}/Z{nz - 1:04d}.tif"}
                         for name in CHANNEL_NAMES},
        },
        "resampled_shape": truth["resampled_shape"],
        "truth": {"cells": "truth/cells.csv", "region_counts": "truth/region_counts.csv",
                  "transform": "truth/transform.json",
                  "annotation_in_resampled": "truth/annotation_in_resampled.tif"},
        "n_cells": int(len(cells)),
    }
