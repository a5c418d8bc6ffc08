#!/usr/bin/env python
"""Wall time of ``spimflow tune`` on a ~10 Mvoxel box.

    python benchmarks/tune_time.py                       # synthetic brain, a 64 x 400 x 400 box
    python benchmarks/tune_time.py --density 40000       # 4x denser cells
    python benchmarks/tune_time.py --box-shape 32 320 320
    python benchmarks/tune_time.py --demo resources/demo_large   # a box of a demo (its true cells as markers)

Builds what ``spimflow tune`` needs in a temporary folder: a sample config, the ingested
signal (``results/<sample>/raw/signal.ome.zarr``) and the true cells as markers (CSV);
by default a synthetic iDISCO+-like volume (:mod:`spimflow.steps.detect.synthetic`) at the
large demo's voxel size, or the signal planes and ``truth/cells.csv`` of a demo folder
(``spimflow demo --preset large --out DIR``). Then it runs ``python -m spimflow.cli tune``
in a fresh process (Python start-up, imports and numba's cached machine code included,
as a user sees it), with the config's sizes off by a factor 1.5 so there is something to
find, and prints one JSON line: box voxels, markers, settings tried, F1 of the config and
of the best setting, the wall time and the CPU time of the tune process (on a shared
machine the wall time depends on the load; the load average before the run is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

LARGE_DEMO_VOXEL = (5.0, 2.5, 2.5)


def synthetic(box_shape, voxel_size, density, seed):
    """A synthetic volume a little larger than the box (so the box has neighbours), and its cells."""
    from spimflow.steps.detect.synthetic import make_synthetic_cells

    margin = (8, 40, 40)
    shape = tuple(b + 2 * m for b, m in zip(box_shape, margin))
    volume, truth = make_synthetic_cells(shape, voxel_size, density_per_mm3=density, seed=seed)
    box = tuple((m, m + b) for m, b in zip(margin, box_shape))
    return volume, truth[["z", "y", "x"]], voxel_size, box


def from_demo(folder: Path, box_shape):
    """A demo's signal (TIFF planes) and true cells; the box in the middle of the volume."""
    import tifffile

    manifest = json.loads((folder / "demo.json").read_text())
    planes = sorted((folder / "sample" / "signal").glob("Z*.tif"))
    volume = np.stack([tifffile.imread(p) for p in planes])
    truth = pd.read_csv(folder / "truth" / "cells.csv")[["z", "y", "x"]]
    shape = volume.shape
    box = tuple(((n - min(b, n)) // 2, (n - min(b, n)) // 2 + min(b, n)) for n, b in zip(shape, box_shape))
    return volume, truth, tuple(manifest["sample_voxel_size_um"]), box


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--box-shape", type=int, nargs=3, default=(64, 400, 400), help="box (z, y, x) voxels")
    ap.add_argument("--demo", type=Path, default=None, help="a demo folder to take the signal and truth from")
    ap.add_argument("--voxel-size", type=float, nargs=3, default=LARGE_DEMO_VOXEL)
    ap.add_argument("--density", type=float, default=10000.0, help="synthetic cells per mm³")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from spimflow.io.omezarr import write_ome_zarr

    if args.demo:
        volume, truth, vs, box = from_demo(args.demo, args.box_shape)
    else:
        volume, truth, vs, box = synthetic(tuple(args.box_shape), tuple(args.voxel_size), args.density, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        write_ome_zarr(base / "results/s1/raw/signal.ome.zarr", volume, vs, n_levels=1, name="signal")
        truth.to_csv(base / "markers.csv", index=False)
        signal = {"source": {"format": "zarr", "path": "results/s1/raw/signal.ome.zarr"}, "voxel_size": list(vs)}
        config = {
            "sample": "s1",
            "channels": {"signal": signal},  # detection only: no atlas, no autofluorescence
            "steps": {"detect": {"cell_diameter_um": 18.0}},  # 1.5 x the cells' ~12 µm
        }
        (base / "config.yaml").write_text(yaml.safe_dump(config))
        box_text = ",".join(f"{a}:{b}" for a, b in box)
        cmd = [sys.executable, "-m", "spimflow.cli", "tune", "config.yaml", "--markers", "markers.csv"]
        cmd += ["--box", box_text, "--out", "tuned.yaml"]
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        run = subprocess.run(cmd, cwd=base, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        if run.returncode:
            sys.exit(run.stderr)
        best = re.search(r"best: F1 ([0-9.]+).*the config's: F1 ([0-9.]+); (\d+) settings", run.stdout)
        markers = re.search(r"spimflow tune: (\d+) markers", run.stdout)
        print(
            json.dumps(
                {
                    "source": str(args.demo) if args.demo else f"synthetic, {args.density:g} cells/mm³",
                    "voxel_size_um": list(vs),
                    "box": box_text,
                    "box_mvoxels": round(float(np.prod([b - a for a, b in box])) / 1e6, 2),
                    "markers": int(markers.group(1)),
                    "settings": int(best.group(3)),
                    "f1_config": float(best.group(2)),
                    "f1_tuned": float(best.group(1)),
                    "snippet": yaml.safe_load((base / "tuned.yaml").read_text()),
                    "wall_s": round(seconds, 1),
                    "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
                    "cores": os.cpu_count(),
                    "load_average_before": round(load, 2),
                }
            )
        )


if __name__ == "__main__":
    main()
