#!/usr/bin/env python
"""Write and read back 100,000 markers in a ClickPoints project (``spimflow.annotate``).

    python benchmarks/annotate_speed.py
    python benchmarks/annotate_speed.py --n 1000000 --planes 2000 --repeat 1

Makes a fresh ``.cdb`` in a temporary folder with one image per plane, then times

- ``write``: ``frame_to_markers`` of an n-row point table (one transaction, creating the
  marker types, +0.5 conversion) — target <= 2 s for 100,000;
- ``read``: ``markers_to_frame`` of the whole project (-0.5 conversion) — target <= 1 s;
- ``write_raw`` / ``read_raw``: the same through ``Project.set_markers`` / ``get_markers``.

Each is the best of ``--repeat`` runs (a new file each time); all times are printed in
seconds, followed by one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from spimflow.annotate import Project, frame_to_markers, markers_to_frame


def _table(n: int, planes: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "z": rng.integers(0, planes, n),
            "y": rng.uniform(0, 2000, n),
            "x": rng.uniform(0, 2000, n),
            "type": rng.choice(["neuron", "glia", "other"], n),
        }
    )


def _once(folder: Path, table: pd.DataFrame, planes: int, k: int) -> dict[str, float]:
    times = {}
    with Project.create(folder / f"table{k}.cdb") as p:
        p.add_volume_planes(folder / "volume.ome.zarr", planes, width=2000, height=2000)
        t = time.perf_counter()
        frame_to_markers(p, table)
        times["write"] = time.perf_counter() - t
    with Project.open(folder / f"table{k}.cdb", "r") as p:
        t = time.perf_counter()
        back = markers_to_frame(p)
        times["read"] = time.perf_counter() - t
        assert len(back) == len(table)
    with Project.create(folder / f"raw{k}.cdb") as p:
        p.add_volume_planes(folder / "volume.ome.zarr", planes)
        p.set_marker_type("cell")
        t = time.perf_counter()
        p.set_markers(table["x"].to_numpy(), table["y"].to_numpy(), z=table["z"].to_numpy(), type="cell")
        times["write_raw"] = time.perf_counter() - t
        t = time.perf_counter()
        assert len(p.get_markers()) == len(table)
        times["read_raw"] = time.perf_counter() - t
    return times


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="markers (default 100000)")
    parser.add_argument("--planes", type=int, default=500, help="z planes (default 500)")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is reported (default 3)")
    parser.add_argument("--dir", type=Path, default=None, help="folder for the files (default: a temporary one)")
    args = parser.parse_args(argv)
    table = _table(args.n, args.planes)
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        runs = [_once(Path(folder), table, args.planes, k) for k in range(args.repeat)]
    best = {key: min(r[key] for r in runs) for key in runs[0]}
    for key, seconds in best.items():
        print(f"{key:>10}: {seconds:.3f} s  ({args.n / seconds:,.0f} markers/s)")
    print(json.dumps({"n": args.n, "planes": args.planes, **{k: round(v, 4) for k, v in best.items()}}))
    return best


if __name__ == "__main__":
    main()
