"""Shared test fixtures: repo paths, the read-only reference data, headless Qt."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` next to the repo; tests needing it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not available: {SHARED_DATA} is absent (fresh clone)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """The small demo (seed 0), generated once per test session."""
    from spimflow.demo import make_demo

    out = tmp_path_factory.mktemp("demo") / "demo"
    make_demo(out, preset="small", seed=0)
    return out


def run_snakemake(workdir: Path, config: Path, *args: str, timeout: int = 900):
    """Run the real workflow (`python -m snakemake`) in ``workdir``; returns CompletedProcess."""
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        *args,
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(config),
        "--cores",
        "2",
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def demo_workflow(tmp_path_factory):
    """The whole demo pipeline (README command 1's Snakemake run), once per test session.

    Returns (workdir, wall seconds). Tests read results from it and must not modify it.
    """
    import time

    work = tmp_path_factory.mktemp("demo_workflow")
    (work / "config.yaml").write_text((REPO / "config" / "sample.yaml").read_text())
    t0 = time.perf_counter()
    res = run_snakemake(work, work / "config.yaml")
    wall = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr[-6000:]
    return work, wall
