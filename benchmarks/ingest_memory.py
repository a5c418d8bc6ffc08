"""Ingest throughput and peak memory on a synthetic ~2 GB uint16 stack.

Writes the stack plane by plane (as a numbered TIFF pattern and/or one multi-page
TIFF) into a temporary folder (or ``--dir``), then ingests each in a fresh subprocess
(``open_source`` + ``ingest_channel``, exactly what the ``ingest`` rule runs) while
polling the child's RSS, and prints throughput and peak RSS. The target is a peak RSS
well below the data size (< ~300 MB for 1024×1024 planes with 16-plane slabs).

    python benchmarks/ingest_memory.py                       # 2 GB, both layouts
    python benchmarks/ingest_memory.py --gb 0.5 --format tiff
    python benchmarks/ingest_memory.py --dir /scratch/bench --keep

Throughput is measured with the input in the page cache (it was just written), so it
is the cost of parsing, compressing and writing, not of a cold disk.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# -- synthetic data ------------------------------------------------------------------------------


def synthetic_plane(z: int, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A plausible light-sheet plane: smooth tissue background, bright blobs, shot noise."""
    ny, nx = shape
    y = np.linspace(-1, 1, ny, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, nx, dtype=np.float32)[None, :]
    tissue = 300.0 * np.exp(-(x * x + y * y) * (1.5 + 0.5 * np.sin(z / 50)))
    plane = 100.0 + tissue + rng.normal(0, 12, shape).astype(np.float32)
    for cy, cx in rng.integers(8, min(shape) - 8, size=(40, 2)):
        plane[cy - 2 : cy + 3, cx - 2 : cx + 3] += 1500.0
    return np.clip(plane, 0, 65535).astype(np.uint16)


def write_data(folder: Path, fmt: str, n_planes: int, shape: tuple[int, int]) -> dict:
    """Write the stack plane by plane; return the source config (JSON) pointing at it."""
    rng = np.random.default_rng(0)
    import tifffile

    if fmt == "pattern":
        planes = folder / "planes"
        planes.mkdir(parents=True, exist_ok=True)
        for z in range(n_planes):
            tifffile.imwrite(planes / f"Z{z:04d}.tif", synthetic_plane(z, shape, rng))
        return {"format": "pattern", "path": str(planes / r"Z\d{4}.tif")}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "stack.tif"
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for z in range(n_planes):
            tw.write(synthetic_plane(z, shape, rng), contiguous=True)
    return {"format": "tiff", "path": str(path)}


# -- the measured child ------------------------------------------------------------------------


def child(source: dict, out: str, voxel: list[float], chunks: list[int], levels: int) -> None:
    """Runs in the subprocess: ingest and print timings as one JSON line."""
    import psutil

    from spimflow.config import Channel
    from spimflow.io.readers import open_source
    from spimflow.steps.ingest import ingest_channel

    base_rss = psutil.Process().memory_info().rss
    channel = Channel(source=source, voxel_size=voxel, orientation="ipl")
    t0 = time.perf_counter()
    with open_source(channel.source) as reader:
        t_open = time.perf_counter() - t0
        ingest_channel(reader, out, voxel, chunks, levels, "bench")
        nbytes, shape = reader.nbytes, reader.shape
    total = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "seconds": total,
                "open_seconds": t_open,
                "nbytes": nbytes,
                "shape": shape,
                "base_rss": base_rss,
                "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            }
        )
    )


def measure(source: dict, out: Path, args) -> dict:
    """Run the child, polling its RSS every 20 ms; return its report plus the polled peak."""
    import psutil

    cmd = [
        sys.executable,
        __file__,
        "--child",
        json.dumps(source),
        str(out),
        "--voxel",
        *map(str, args.voxel),
        "--chunks",
        *map(str, args.chunks),
        "--levels",
        str(args.levels),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    stdout = proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"ingest child failed with exit code {proc.returncode}")
    report = json.loads(stdout.strip().splitlines()[-1])
    report["polled_peak_rss"] = peak
    return report


def verify(source: dict, out: Path) -> None:
    """Spot-check that level 0 equals the source on a few planes."""
    import zarr

    from spimflow.config import Channel
    from spimflow.io.readers import open_source

    level0 = zarr.open_group(str(out), mode="r")["0"]
    with open_source(Channel(source=source, voxel_size=(1, 1, 1), orientation="ipl").source) as r:
        for z in (0, r.shape[0] // 2, r.shape[0] - 1):
            if not np.array_equal(level0[z], r.read(z, z + 1)[0]):
                raise SystemExit(f"mismatch at plane {z} between {out} and the source")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=2.0, help="stack size in GB (10^9 bytes), default 2")
    ap.add_argument("--plane", type=int, nargs=2, default=(1024, 1024), metavar=("Y", "X"))
    ap.add_argument("--format", nargs="+", choices=("pattern", "tiff"), default=("pattern", "tiff"))
    ap.add_argument("--dir", type=Path, help="where to write the data (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the data and outputs")
    ap.add_argument("--voxel", type=float, nargs=3, default=(5.0, 3.0, 3.0), metavar=("Z", "Y", "X"))
    ap.add_argument("--chunks", type=int, nargs=3, default=(16, 256, 256), metavar=("Z", "Y", "X"))
    ap.add_argument("--levels", type=int, default=4)
    ap.add_argument("--child", nargs=2, metavar=("SOURCE_JSON", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(json.loads(args.child[0]), args.child[1], args.voxel, args.chunks, args.levels)
        return

    shape = tuple(args.plane)
    n_planes = max(1, int(round(args.gb * 1e9 / (2 * shape[0] * shape[1]))))
    root = args.dir or Path(tempfile.mkdtemp(prefix="spimflow-ingest-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    print(
        f"stack: {n_planes} planes of {shape[0]}x{shape[1]} uint16 = "
        f"{n_planes * 2 * shape[0] * shape[1] / 1e6:.0f} MB; "
        f"chunks {tuple(args.chunks)}, {args.levels} levels; data in {root}"
    )
    print(
        f"{'format':8} {'write s':>8} {'ingest s':>9} {'MB/s':>7} {'base RSS MB':>12} {'peak RSS MB':>12} "
        f"{'polled MB':>10}"
    )
    try:
        for fmt in args.format:
            t0 = time.perf_counter()
            source = write_data(root / fmt, fmt, n_planes, shape)
            t_write = time.perf_counter() - t0
            out = root / fmt / "out.ome.zarr"
            rep = measure(source, out, args)
            verify(source, out)
            mb = rep["nbytes"] / 1e6
            print(
                f"{fmt:8} {t_write:8.1f} {rep['seconds']:9.1f} {mb / rep['seconds']:7.1f} "
                f"{rep['base_rss'] / 1e6:12.0f} {rep['ru_maxrss'] / 1e6:12.0f} {rep['polled_peak_rss'] / 1e6:10.0f}",
                flush=True,
            )
            if not args.keep:
                shutil.rmtree(root / fmt)
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
