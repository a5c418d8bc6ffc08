"""Memory requests against measured peaks, job by job (spimflow.resources).

Runs the workflow on a config (default: the large demo, 8x the voxels of the small one) in a
work folder and prints, for every job with a benchmark table, the ``mem_mb`` it asked the
scheduler for and the peak RSS Snakemake measured, with their ratio. A request below its
peak is marked ``UNDER``.

    python benchmarks/job_memory.py [--config config/demo_large.yaml] [--work benchmarks/out/job_memory]
        [--cores 2]

An existing work folder is reused (Snakemake runs only what is missing); pass ``--fresh`` to
start over.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from spimflow.resources import requests_and_peaks

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config" / "demo_large.yaml"))
    ap.add_argument("--work", default=str(REPO / "benchmarks" / "out" / "job_memory"))
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--fresh", action="store_true", help="delete the work folder first")
    args = ap.parse_args()
    work = Path(args.work)
    if args.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(work)]
    cmd += ["--configfile", str(Path(args.config).resolve()), "--cores", str(args.cores)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"snakemake failed:\n{proc.stderr[-4000:]}")
    by_rule: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for rule, _, asked, peak in requests_and_peaks(work):
        by_rule[rule].append((asked, peak))
    print(f"{'rule':<22} {'jobs':>4} {'asked MB':>9} {'peak MB':>8} {'asked/peak':>10}")
    for rule, rows in sorted(by_rule.items()):
        asked, peak = max(rows, key=lambda r: r[1])  # the job with the highest peak
        flag = "  UNDER" if any(p > a for a, p in rows) else ""
        ratio = asked / peak if peak else float("nan")
        print(f"{rule:<22} {len(rows):>4} {asked:>9.0f} {peak:>8.0f} {ratio:>10.2f}{flag}")


if __name__ == "__main__":
    main()
