"""The embedded demo: a synthetic atlas, a synthetic brain derived from it, and the truth.

``make_demo(out_dir, preset, seed)`` writes (see docs/demo.md)::

    atlas/        BrainGlobe atlas folder (metadata.json, structures.json,
                  annotation.tiff, reference.tiff, hemispheres.tiff), 25 µm, "asr"
    sample/autofluorescence/Z0000.tif …   uint16 planes, voxel (10, 5, 5) µm, "ipl"
    sample/signal/Z0000.tif …
    truth/cells.csv, truth/region_counts.csv, truth/transform.json,
    truth/annotation_in_resampled.tif
    demo.json     manifest, written last

Deterministic from the seed; the atlas itself does not depend on the seed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tifffile

from spimflow.atlas.model import HEMISPHERE_NAMES
from spimflow.demo.atlas import (
    ATLAS_ORIENTATION,
    ATLAS_VOXEL_UM,
    DemoAtlas,
    build_atlas,
)
from spimflow.demo.sample import (
    PRESETS,
    SAMPLE_ORIENTATION,
    annotation_in_resampled,
    illumination,
    make_transform,
    place_cells,
    render_planes,
    sample_geometry,
)
from spimflow.demo.truth import true_resampled_to_atlas, true_sample_to_atlas
from spimflow.errors import ConfigError
from spimflow.geometry import ResampleGrid
from spimflow.io.atomic import atomic_path

__all__ = [
    "make_demo",
    "write_demo_atlas",
    "load_truth",
    "true_sample_to_atlas",
    "true_resampled_to_atlas",
    "PRESETS",
]
DEMO_VERSION = "1"


def _write_atlas(folder: Path, atlas: DemoAtlas) -> None:
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text(json.dumps(atlas.metadata(), indent=2))
    (folder / "structures.json").write_text(json.dumps([s.to_json() for s in atlas.structures], indent=1))
    tifffile.imwrite(folder / "annotation.tiff", atlas.annotation)
    tifffile.imwrite(folder / "reference.tiff", atlas.reference)
    tifffile.imwrite(folder / "hemispheres.tiff", atlas.hemispheres)


def _write_sample(folder: Path, atlas: DemoAtlas, tf: dict, geom: ResampleGrid, cells: dict, seed: int) -> None:
    (folder / "autofluorescence").mkdir(parents=True)
    (folder / "signal").mkdir(parents=True)
    flat = illumination(geom)
    for z in range(geom.raw_shape[0]):
        auto, signal = render_planes(z, atlas, tf, geom, cells, flat, seed)
        tifffile.imwrite(folder / "autofluorescence" / f"Z{z:04d}.tif", auto)
        tifffile.imwrite(folder / "signal" / f"Z{z:04d}.tif", signal)


def _cells_table(cells: dict) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "z": cells["raw"][:, 0],
            "y": cells["raw"][:, 1],
            "x": cells["raw"][:, 2],
            "az": cells["atlas"][:, 0],
            "ay": cells["atlas"][:, 1],
            "ax": cells["atlas"][:, 2],
            "region_id": cells["region"],
            "hemisphere": [HEMISPHERE_NAMES[int(h)] for h in cells["hemisphere"]],
            "intensity": cells["amplitude"],
            "radius_um": cells["sigma_um"],
        }
    )


def _region_counts(table: pd.DataFrame, atlas: DemoAtlas) -> pd.DataFrame:
    rows = []
    for s in atlas.leaves:
        for hemi in ("left", "right"):
            n = int(((table.region_id == s.id) & (table.hemisphere == hemi)).sum())
            rows.append(
                {
                    "region_id": s.id,
                    "acronym": s.acronym,
                    "hemisphere": hemi,
                    "count": n,
                    "density_per_mm3": atlas.leaf_density_per_mm3[s.id],
                }
            )
    return pd.DataFrame(rows)


def _write_truth(folder: Path, atlas: DemoAtlas, truth: dict, geom: ResampleGrid, cells: dict) -> pd.DataFrame:
    folder.mkdir(parents=True)
    table = _cells_table(cells)
    table.to_csv(folder / "cells.csv", index=False)
    _region_counts(table, atlas).to_csv(folder / "region_counts.csv", index=False)
    (folder / "transform.json").write_text(json.dumps(truth, indent=2))
    tifffile.imwrite(folder / "annotation_in_resampled.tif", annotation_in_resampled(atlas, truth["transform"], geom))
    return table


def scale_densities(atlas: DemoAtlas, factors: Mapping[str, float]) -> DemoAtlas:
    """The atlas with the cell density of every leaf under each named region multiplied by
    its factor (how the demo cohort gives one group a true effect)."""
    by_acronym = {s.acronym: s for s in atlas.structures}
    unknown = sorted(set(factors) - set(by_acronym))
    if unknown:
        raise ConfigError(
            f"demo.density_factors: unknown region acronym(s) {', '.join(unknown)}; "
            f"expected one of {', '.join(sorted(by_acronym))}"
        )
    dens = dict(atlas.leaf_density_per_mm3)
    for acronym, factor in factors.items():
        for leaf in atlas.leaves:
            if by_acronym[acronym].id in leaf.path:
                dens[leaf.id] *= float(factor)
    return dataclasses.replace(atlas, leaf_density_per_mm3=dens)


def make_demo(
    out_dir: str | Path, preset: str = "small", seed: int = 0, density_factors: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """Write the demo atlas, sample and ground truth under ``out_dir``; return the manifest.

    ``density_factors`` (region acronym → factor) multiplies the true cell density of
    those regions and all their descendants (the truth tables record the scaled densities).
    """
    if preset not in PRESETS:
        raise ConfigError(f"demo.preset: {preset!r} is not one of {sorted(PRESETS)}")
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo.json").unlink(missing_ok=True)  # the manifest marks a complete demo
    p = PRESETS[preset]
    rng = np.random.default_rng([seed, 1])
    atlas = build_atlas()
    if density_factors:
        atlas = scale_densities(atlas, density_factors)
    geom = sample_geometry(atlas.annotation.shape, p)
    tf = make_transform(geom, atlas.annotation.shape, rng)
    cells = place_cells(geom, atlas, tf, p, rng)
    truth = {
        "transform": tf,
        "sample_shape": list(geom.raw_shape),
        "sample_voxel_size_um": list(geom.raw_voxel_size),
        "sample_orientation": SAMPLE_ORIENTATION,
        "atlas_orientation": ATLAS_ORIENTATION,
        "atlas_shape": list(atlas.annotation.shape),
        "atlas_voxel_size_um": [ATLAS_VOXEL_UM] * 3,
        "convention": "a_um = c_atlas + A (p - c_sample) + t + sum amp*sin(2π wave·(p - c_sample) + phase); "
        "p = oriented sample voxel × oriented voxel size (see spimflow.demo.truth)",
    }
    with atomic_path(out / "atlas") as tmp:
        _write_atlas(tmp, atlas)
    with atomic_path(out / "sample") as tmp:
        _write_sample(tmp, atlas, tf, geom, cells, seed)
    with atomic_path(out / "truth") as tmp:
        table = _write_truth(tmp, atlas, truth, geom, cells)
    manifest = {
        "version": DEMO_VERSION,
        "preset": preset,
        "seed": seed,
        "atlas": "atlas",
        "sample": {"autofluorescence": "sample/autofluorescence/Z\\d{4}.tif", "signal": "sample/signal/Z\\d{4}.tif"},
        "truth": {
            "cells": "truth/cells.csv",
            "region_counts": "truth/region_counts.csv",
            "transform": "truth/transform.json",
            "annotation_in_resampled": "truth/annotation_in_resampled.tif",
        },
        "sample_shape": list(geom.raw_shape),
        "sample_voxel_size_um": list(geom.raw_voxel_size),
        "sample_orientation": SAMPLE_ORIENTATION,
        "atlas_shape": list(atlas.annotation.shape),
        "atlas_voxel_size_um": [ATLAS_VOXEL_UM] * 3,
        "atlas_orientation": ATLAS_ORIENTATION,
        "n_cells": int(len(table)),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if density_factors:
        manifest["density_factors"] = {k: float(v) for k, v in density_factors.items()}
    with atomic_path(out / "demo.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    return manifest


def write_demo_atlas(folder: str | Path) -> Path:
    """Write only the demo atlas, as a BrainGlobe atlas folder, to ``folder`` (a few
    seconds, no sample): e.g. to fill a BrainGlobe cache folder (``<name>_v<version>/``)
    without downloading anything. The same atlas :func:`make_demo` writes."""
    folder = Path(folder)
    with atomic_path(folder) as tmp:
        _write_atlas(tmp, build_atlas())
    return folder


def load_truth(demo_dir: str | Path) -> dict[str, Any]:
    """The ``truth/transform.json`` of a demo folder (input of :func:`true_sample_to_atlas`)."""
    return json.loads((Path(demo_dir) / "truth" / "transform.json").read_text())
