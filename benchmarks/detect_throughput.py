#!/usr/bin/env python
"""Throughput, memory and accuracy of the block-parallel cell detection.

    python benchmarks/detect_throughput.py --shape 128 1024 1024
    python benchmarks/detect_throughput.py --shape 64 512 512 --voxel-size 4 2 2 --block 64 384 384

Makes a synthetic iDISCO+-like volume with known cells (spimflow.steps.detect.synthetic),
writes it as an OME-Zarr (what ingest produces), then prints:

- Mvoxel/s of the whole detection chain reading blocks from the OME-Zarr, in one
  process and with all cores (a process pool over blocks), each in a fresh process
  after a warm-up (numba's compiled code is loaded from its cache, not timed);
- in the same run, Mvoxel/s of one ``scipy.ndimage.gaussian_filter`` pass (float32,
  sigma 2 voxels) on the same volume, and the ratio chain/gaussian per core, so the
  numbers compare across machines;
- peak RSS of the single-process run and of the pool's workers;
- peak RSS of ONE block job on this volume and on a volume 4x smaller (same block
  size): it depends on the block, not the volume;
- precision and recall against the known cells (match radius 6 µm).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _rss_mb(who=resource.RUSAGE_SELF) -> float:
    """Peak RSS (MB). For this process: VmHWM, the peak of its own address space (getrusage's
    ru_maxrss would include what the parent had when it forked us). For children: the
    largest ru_maxrss of the pool's workers (forked from this small process)."""
    if who == resource.RUSAGE_SELF:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux: kB


def _params(args):
    from spimflow.params.detect import DetectParams

    p = DetectParams()
    p.blocks.size = tuple(args.block)
    p.split.enabled = not args.no_split
    return p


def _warm_up(params, voxel_size):
    """Load numba's cached machine code (or compile it once) outside the timed region."""
    from spimflow.steps.detect import detect_cells
    from spimflow.steps.detect.synthetic import make_synthetic_cells

    vol, _ = make_synthetic_cells((24, 64, 64), voxel_size, seed=1)
    detect_cells(vol, voxel_size, params)


def _pool_warm(pool, n, params, voxel_size):
    futs = [pool.submit(_warm_up, params, voxel_size) for _ in range(n)]
    for f in futs:
        f.result()


def child(args) -> None:
    """Run inside a fresh process: the timed chain, or one block; prints one JSON line."""
    from spimflow.blocks import detect_blocks, make_plan
    from spimflow.io.omezarr import open_ome_zarr

    params = _params(args)
    img = open_ome_zarr(args.zarr)
    vs = img.voxel_size
    plan = make_plan(img.shape, vs, params)
    _warm_up(params, vs)
    out: dict = {"blocks": len(plan.blocks), "overlap": plan.overlap}
    if args.child == "one-block":
        # the block job with the largest read region
        b = max(plan.blocks, key=lambda b: b.n_read)
        rss0 = _rss_mb()
        t = time.perf_counter()
        cells = detect_blocks(args.zarr, plan, params, [b.id])
        out.update(
            seconds=time.perf_counter() - t,
            cells=len(cells),
            read_voxels=b.n_read,
            rss_before_mb=rss0,
            rss_mb=_rss_mb(),
        )
    else:
        n = int(args.child_processes)
        if n == 1:
            t = time.perf_counter()
            cells = detect_blocks(args.zarr, plan, params, processes=1)
            dt = time.perf_counter() - t
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("spawn")) as pool:
                _pool_warm(pool, n, params, vs)
                t = time.perf_counter()
                cells = detect_blocks(args.zarr, plan, params, processes=n, pool=pool)
                dt = time.perf_counter() - t
        cells.to_parquet(args.out)
        out.update(seconds=dt, cells=len(cells), rss_mb=_rss_mb(), children_rss_mb=_rss_mb(resource.RUSAGE_CHILDREN))
    print(json.dumps(out))


def run_child(args, zarr: Path, mode: str, processes: int = 1, out: Path | None = None) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--zarr",
        str(zarr),
        "--child-processes",
        str(processes),
        "--block",
        *map(str, args.block),
        "--out",
        str(out or ""),
        *(["--no-split"] if args.no_split else []),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"child failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def make_volume(shape, voxel_size, density, seed, path: Path):
    from spimflow.io.omezarr import write_ome_zarr
    from spimflow.steps.detect.synthetic import make_synthetic_cells

    vol, truth = make_synthetic_cells(
        shape, voxel_size, density_per_mm3=density, gradient=0.5, texture=120, background=250, seed=seed
    )
    write_ome_zarr(path, vol, voxel_size, chunks=(16, 256, 256), n_levels=1)
    return vol, truth


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=int, nargs=3, default=(128, 1024, 1024), metavar=("Z", "Y", "X"))
    ap.add_argument(
        "--voxel-size",
        type=float,
        nargs=3,
        default=(3.0, 4.0, 4.0),
        metavar=("Z", "Y", "X"),
        help="µm (default: ClearMap-like 3 x 4 x 4)",
    )
    ap.add_argument(
        "--block", type=int, nargs=3, default=(128, 512, 512), metavar=("Z", "Y", "X"), help="core block size in voxels"
    )
    ap.add_argument("--density", type=float, default=20000.0, help="cells per mm³")
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--skip-rss", action="store_true", help="skip the one-block RSS comparison")
    ap.add_argument("--no-split", action="store_true", help="switch the touching-cell split off (steps.detect.split)")
    # internal: child-process modes
    ap.add_argument("--child", choices=["chain", "one-block"], help=argparse.SUPPRESS)
    ap.add_argument("--zarr", help=argparse.SUPPRESS)
    ap.add_argument("--child-processes", default="1", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)

    import scipy.ndimage as ndi

    from spimflow.steps.detect.evaluate import match_points

    work = Path(args.workdir or tempfile.mkdtemp(prefix="detect_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    shape, vs = tuple(args.shape), tuple(args.voxel_size)
    nvox = int(np.prod(shape))
    print(f"load average before: {os.getloadavg()[0]:.2f} (other work on this machine slows both numbers)")
    print(
        f"volume {shape} voxels ({nvox / 1e6:.0f} Mvoxel), voxel size {vs} µm, block core {tuple(args.block)}, "
        f"{args.density:.0f} cells/mm³, {os.cpu_count()} cores"
    )
    t = time.perf_counter()
    vol, truth = make_volume(shape, vs, args.density, args.seed, work / "signal.ome.zarr")
    print(f"synthetic volume + OME-Zarr written in {time.perf_counter() - t:.1f} s: {len(truth)} cells")

    # the reference: one gaussian_filter pass, float32, sigma 2 voxels, same volume
    f32 = vol.astype(np.float32)
    del vol
    t_gauss = np.inf
    for _ in range(2):  # best of two: the machine may be busy with something else
        t = time.perf_counter()
        g = ndi.gaussian_filter(f32, 2.0)
        t_gauss = min(t_gauss, time.perf_counter() - t)
        del g
    del f32
    gauss = nvox / t_gauss / 1e6
    print(f"scipy.ndimage.gaussian_filter (float32, sigma 2 vox): {gauss:7.1f} Mvoxel/s")

    one = run_child(args, work / "signal.ome.zarr", "chain", 1, work / "cells_1.parquet")
    rate1 = nvox / one["seconds"] / 1e6
    print(
        f"detection chain, 1 process:   {rate1:7.1f} Mvoxel/s  ({one['seconds']:.1f} s, {one['blocks']} blocks, "
        f"overlap {tuple(one['overlap'])}, peak RSS {one['rss_mb']:.0f} MB)"
    )
    print(f"  ratio chain / gaussian_filter per core: {rate1 / gauss:.2f}")
    if args.processes > 1:
        many = run_child(args, work / "signal.ome.zarr", "chain", args.processes, work / "cells_n.parquet")
        rate_n = nvox / many["seconds"] / 1e6
        print(
            f"detection chain, {args.processes} processes: {rate_n:7.1f} Mvoxel/s  ({many['seconds']:.1f} s, "
            f"peak RSS per worker {many['children_rss_mb']:.0f} MB)"
        )

    import pandas as pd

    cells = pd.read_parquet(work / "cells_1.parquet")
    if args.processes > 1:
        other = pd.read_parquet(work / "cells_n.parquet")
        print(f"  1 vs {args.processes} processes: identical cells: {cells.equals(other)}")
    m = match_points(cells[["z", "y", "x"]].to_numpy(), truth[["z", "y", "x"]].to_numpy(), 6.0, vs)
    print(
        f"accuracy: {len(cells)} detected / {len(truth)} true cells, precision {m.precision:.4f}, "
        f"recall {m.recall:.4f} (match radius 6 µm)"
    )

    if not args.skip_rss:
        # a volume 4x smaller; a block size giving both volumes >= 3 blocks per axis, so the
        # largest block (core + overlap on both sides) is the same in both
        small_shape = (shape[0], shape[1] // 2, shape[2] // 2)
        ov = one["overlap"]
        rss_args = argparse.Namespace(**vars(args))
        rss_args.block = [max(o, -(-s // 3)) for s, o in zip(small_shape, ov)]
        make_volume(small_shape, vs, args.density, args.seed + 1, work / "small.ome.zarr")
        a = run_child(rss_args, work / "small.ome.zarr", "one-block")
        b = run_child(rss_args, work / "signal.ome.zarr", "one-block")
        print(f"one block job, core {tuple(rss_args.block)} + overlap:")
        print(
            f"  read {a['read_voxels'] / 1e6:.1f} / {b['read_voxels'] / 1e6:.1f} Mvoxel: peak RSS "
            f"{a['rss_mb']:.0f} MB on a "
            f"{np.prod(small_shape) / 1e6:.0f} Mvoxel volume, {b['rss_mb']:.0f} MB on the "
            f"{nvox / 1e6:.0f} Mvoxel volume (process baseline before the block: {b['rss_before_mb']:.0f} MB)"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}; work folder: {work}")


if __name__ == "__main__":
    main()
