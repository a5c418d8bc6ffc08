"""Benchmarks for the alignment stage (run by hand; prints numbers).

    python benchmarks/register_time.py resample [--planes 400 --size 1024]
    python benchmarks/register_time.py demo [--threads 2]
    python benchmarks/register_time.py points [--n 5000000]

* ``resample``: a synthetic raw OME-Zarr (uint16, 4×2×2 µm) resampled to 25 µm with the
  streaming resampler; prints throughput and peak RSS (which must stay near one slab of
  raw planes, not the volume).
* ``demo``: makes the demo (small preset) in a temp folder, resamples the
  autofluorescence from the raw planes and runs the full registration step (guard +
  affine + B-spline + warps); prints wall times, Dice against the demo's true
  annotation and the point error of the true cells.
* ``points``: sample→atlas and back for millions of points through a demo-like chain.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_resample(planes: int, size: int) -> None:
    from spimflow.geometry import ResampleGrid
    from spimflow.io.omezarr import create_ome_zarr, open_ome_zarr
    from spimflow.orientation import Orientation
    from spimflow.params.resample import ResampleParams
    from spimflow.steps.resample import resample_image

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "raw.ome.zarr"
        arr = create_ome_zarr(path, (planes, size, size), np.uint16, (4.0, 2.0, 2.0), chunks=(16, 256, 256), n_levels=1)
        rng = np.random.default_rng(0)
        for z in range(0, planes, 16):
            arr[z : z + 16] = rng.integers(0, 4000, (min(16, planes - z), size, size), dtype=np.uint16)
        raw_mb = planes * size * size * 2 / 1e6
        base = peak_rss_mb()
        img = open_ome_zarr(path)
        grid = ResampleGrid(img.shape, img.voxel_size, Orientation.from_codes("ipl", "asr"), (25.0, 25.0, 25.0))
        t0 = time.perf_counter()
        out = resample_image(img.array, grid, ResampleParams())
        dt = time.perf_counter() - t0
        print(
            f"resample: raw {img.shape} uint16 ({raw_mb:.0f} MB) -> {out.shape} in {dt:.1f} s "
            f"({raw_mb / dt:.0f} MB/s); peak RSS {peak_rss_mb():.0f} MB (before: {base:.0f} MB)"
        )


def bench_demo(threads: int) -> None:
    import pandas as pd
    import tifffile

    from spimflow.atlas import load_brainglobe
    from spimflow.demo import make_demo
    from spimflow.geometry import ResampleGrid
    from spimflow.orientation import Orientation
    from spimflow.params.register import RegisterParams
    from spimflow.params.resample import ResampleParams
    from spimflow.steps.register import GuardContext, register_to_atlas
    from spimflow.steps.resample import resample_image
    from spimflow.transforms import ElastixChain, SampleAtlasTransform

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        make_demo(Path(tmp), preset="small", seed=0)
        print(f"demo data: {time.perf_counter() - t0:.1f} s")
        atlas = load_brainglobe(Path(tmp) / "atlas")
        planes = sorted((Path(tmp) / "sample" / "autofluorescence").glob("Z*.tif"))
        raw = np.stack([tifffile.imread(p) for p in planes])
        grid = ResampleGrid(
            raw.shape, (10.0, 5.0, 5.0), Orientation.from_codes("ipl", atlas.orientation), atlas.voxel_size
        )
        t0 = time.perf_counter()
        sample = resample_image(raw, grid, ResampleParams())
        print(f"resample autofluorescence {raw.shape} -> {sample.shape}: {time.perf_counter() - t0:.2f} s")
        ctx = GuardContext(grid.orientation, atlas.orientation, "channels.autofluorescence.orientation", "ipl", threads)
        reg = register_to_atlas(
            sample, atlas.reference.astype(np.float32), atlas.annotation, atlas.voxel_size, RegisterParams(), ctx
        )
        print("registration seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in reg.seconds.items()))
        print(f"NCC before {reg.similarity_before:.3f} after {reg.similarity_after:.3f}")
        truth = tifffile.imread(Path(tmp) / "truth" / "annotation_in_resampled.tif")
        ids = [k for k in np.unique(truth) if k]
        w = reg.annotation_in_sample
        dice = {k: 2 * ((w == k) & (truth == k)).sum() / ((w == k).sum() + (truth == k).sum()) for k in ids}
        size = {k: (truth == k).sum() for k in ids}
        big = sorted(ids, key=lambda k: -size[k])[:5]
        print(
            f"Dice over {len(ids)} regions: mean {np.mean(list(dice.values())):.3f}, min {min(dice.values()):.3f}; "
            f"5 largest: " + ", ".join(f"{k}:{dice[k]:.3f}" for k in big)
        )
        T = SampleAtlasTransform(
            atlas.voxel_size, atlas.shape, {"signal": grid}, ElastixChain.from_maps(reg.atlas_maps)
        )
        cells = pd.read_csv(Path(tmp) / "truth" / "cells.csv")
        est = T.sample_to_atlas(cells[["z", "y", "x"]].to_numpy(), "signal")
        err = np.linalg.norm(est - cells[["az", "ay", "ax"]].to_numpy(), axis=1)
        print(
            f"true cells: {len(cells)}, point error mean {err.mean():.3f} median {np.median(err):.3f} "
            f"p95 {np.percentile(err, 95):.3f} atlas voxels"
        )


def bench_points(n: int) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_transforms import (
        full_chain,  # a demo-sized affine + B-spline chain with correction
    )

    T = full_chain(np.random.default_rng(0))
    rng = np.random.default_rng(1)
    raw = np.column_stack([rng.uniform(0, s - 1, n) for s in T.grids["signal"].raw_shape])
    base = peak_rss_mb()
    t0 = time.perf_counter()
    a = T.sample_to_atlas(raw, "signal")
    t1 = time.perf_counter()
    back = T.atlas_to_sample(a, "signal")
    t2 = time.perf_counter()
    err = np.linalg.norm(back - raw, axis=1)
    print(
        f"{n} points: sample->atlas {t1 - t0:.1f} s, atlas->sample {t2 - t1:.1f} s, round trip max error "
        f"{np.nanmax(err):.2e} raw voxels; peak RSS {peak_rss_mb():.0f} MB (points alone "
        f"{raw.nbytes * 3 / 1e6:.0f} MB, before {base:.0f} MB)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("resample")
    r.add_argument("--planes", type=int, default=400)
    r.add_argument("--size", type=int, default=1024)
    d = sub.add_parser("demo")
    d.add_argument("--threads", type=int, default=2)
    p = sub.add_parser("points")
    p.add_argument("--n", type=int, default=5_000_000)
    args = ap.parse_args()
    if args.what == "resample":
        bench_resample(args.planes, args.size)
    elif args.what == "demo":
        bench_demo(args.threads)
    else:
        bench_points(args.n)


if __name__ == "__main__":
    main()
