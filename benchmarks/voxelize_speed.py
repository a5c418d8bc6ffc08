"""Benchmark of the density maps (run by hand; prints numbers).

    NUMBA_NUM_THREADS=1 python benchmarks/voxelize_speed.py [--n 1000000] [--methods sphere,pixel] [--weighted] [--cold]

1,000,000 cells uniformly random in the Allen 25 µm grid (456 x 528 x 320, 25 µm voxels),
375 µm sphere radius / rectangle half-width / gaussian sigma (``--sigma`` to change the
latter). Prints the numba compile time (a warm-up on a tiny grid), then per method the
wall and CPU time (CPU time is the fairer number on a busy machine), the peak RSS
increase over the RSS just before the call (the output array is allocated inside the
call; the cells are not counted), the output bytes and their ratio. Target for the
sphere: <= 10 s on one core and peak RSS increase <= 2x the output bytes.

Each method runs in a fresh child process so that its peak RSS is its own. ``--cold``
gives the children an empty numba cache, so the warm-up time is the real compile time
(otherwise it is the time to load the cached machine code).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import tempfile
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402

SHAPE = (456, 528, 320)
VOXEL = (25.0, 25.0, 25.0)


def peak_rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def current_rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def run_one(method: str, n: int, size_um: float, weighted: bool, queue) -> None:
    from spimflow.steps.voxelize import voxelize

    t0 = time.perf_counter()
    voxelize(np.array([[1.0, 2.0, 3.0]]), (5, 6, 7), VOXEL, method, 25.0, np.ones(1) * 0.5 if weighted else None)
    compile_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.5, np.array(SHAPE) - 0.5, size=(n, 3))
    weights = rng.uniform(0.5, 2.0, n) if weighted else None
    base = current_rss_bytes()  # not the peak so far: the warm-up's transient memory is gone
    t0, c0 = time.perf_counter(), time.process_time()
    out = voxelize(points, SHAPE, VOXEL, method, size_um, weights)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    extra = peak_rss_bytes() - base
    queue.put((compile_s, seconds, cpu, extra, out.nbytes, float(out.sum(dtype=np.float64))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--size", type=float, default=375.0, help="sphere radius / rectangle half-width, µm")
    ap.add_argument("--sigma", type=float, default=375.0, help="gaussian sigma, µm")
    ap.add_argument("--methods", default="sphere,rectangle,gaussian,pixel")
    ap.add_argument("--weighted", action="store_true", help="random weights instead of counts")
    ap.add_argument("--cold", action="store_true", help="compile from scratch (empty numba cache)")
    args = ap.parse_args()
    if args.cold:
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="numba-cold-")
    print(
        f"{args.n:,} cells, grid {SHAPE}, voxel {VOXEL[0]} µm, NUMBA_NUM_THREADS={os.environ['NUMBA_NUM_THREADS']}"
        f"{', weighted' if args.weighted else ''}"
    )
    ctx = mp.get_context("spawn")
    for method in args.methods.split(","):
        size = args.sigma if method == "gaussian" else args.size
        queue = ctx.Queue()
        proc = ctx.Process(target=run_one, args=(method, args.n, size, args.weighted, queue))
        proc.start()
        compile_s, seconds, cpu, extra, nbytes, total = queue.get()
        proc.join()
        print(
            f"{method:9s} size {size:4.0f} µm: {seconds:5.2f} s wall, {cpu:5.2f} s CPU "
            f"(compile/warm-up {compile_s:4.2f} s); "
            f"peak RSS +{extra / 1e6:6.0f} MB, output {nbytes / 1e6:.0f} MB, ratio {extra / nbytes:.2f}; "
            f"sum {total:.4g}"
        )
    if args.cold:
        shutil.rmtree(os.environ["NUMBA_CACHE_DIR"], ignore_errors=True)


if __name__ == "__main__":
    main()
