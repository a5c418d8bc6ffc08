"""Shared test fixtures: repo paths, the read-only reference data, headless Qt."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    """napari draws with OpenGL, which Qt's offscreen platform cannot give it: when
    pytest-xvfb has started a virtual X display (Xvfb installed), Qt uses it (xcb);
    without one, viewer tests skip (see ``needs_display``)."""
    if os.environ.get("DISPLAY"):
        os.environ["QT_QPA_PLATFORM"] = "xcb"


def has_display() -> bool:
    """A (virtual) X display for napari's OpenGL canvas."""
    return bool(os.environ.get("DISPLAY"))


REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
ALLEN = SHARED_DATA / "allen_ccf_2017_25um"
ALLEN_ANN = ALLEN / "ABA_25um_2017_annotation.tif.lzma"
ALLEN_HEM = ALLEN / "ABA_25um_2017_hemispheres.tif.lzma"
ALLEN_JSON = ALLEN / "ABA_annotation.json"
ALLEN_CSV = ALLEN / "ARA2_annotation_info_collapse.csv"
needs_allen = pytest.mark.skipif(
    not all(p.is_file() for p in (ALLEN_ANN, ALLEN_HEM, ALLEN_JSON, ALLEN_CSV)),
    reason=f"Allen CCF reference data not found in {ALLEN} (../shared is absent in a fresh clone)",
)


# Tests that use these fixtures run the demo generator, elastix, whole Snakemake pipelines
# or a napari viewer (Qt + OpenGL start-up per test): slow.
SLOW_FIXTURES = {
    "demo_dir",
    "demo_atlas_dir",
    "demo_run",
    "demo_workflow",
    "cohort_workflow",
    "small_registration",
    "make_napari_viewer",
    "light_demo_reference",
}


# The whole-pipeline runs, each made once per session: every test that reads one runs in the
# same pytest-xdist worker (so the run is made once, not once per worker).
SHARED_RUNS = ("cohort_workflow", "demo_workflow", "light_demo_reference")


def xdist_group_of(item) -> str:
    """The pytest-xdist group of a test (``--dist loadgroup``): the whole-pipeline run it
    reads, else its module (so module-scoped fixtures are made once)."""
    fixtures = set(getattr(item, "fixturenames", ()))
    return next((name for name in SHARED_RUNS if name in fixtures), item.nodeid.split("::")[0])


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Mark every test that needs a slow shared fixture as ``slow`` (``pytest -m "not slow"``
    is the fast day-to-day loop; CI runs everything), and group tests for the parallel
    workers (see :func:`xdist_group_of`)."""
    no_display = pytest.mark.skip(reason="napari needs an X display for OpenGL: install Xvfb (apt-get install xvfb)")
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if SLOW_FIXTURES & fixtures:
            item.add_marker(pytest.mark.slow)
        if "make_napari_viewer" in fixtures and not has_display():
            item.add_marker(no_display)
        item.add_marker(pytest.mark.xdist_group(xdist_group_of(item)))


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
def allen_atlas():
    """The real Allen CCF 2017 25 µm atlas from ``../shared`` (loaded once per session, as
    ``ras``: axis 0 crosses the hemispheres), with the warnings its loading logged.
    Tests must not modify it."""
    import logging

    from spimflow.atlas import load_atlas
    from spimflow.config import AtlasConfig

    folder = SHARED_DATA / "allen_ccf_2017_25um"
    files = {
        k: folder / v
        for k, v in (
            ("annotation", "ABA_25um_2017_annotation.tif.lzma"),
            ("hemispheres", "ABA_25um_2017_hemispheres.tif.lzma"),
            ("ontology", "ABA_annotation.json"),
        )
    }
    if not all(p.is_file() for p in files.values()):
        pytest.skip(f"Allen CCF reference data not found in {folder}")
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Keep(level=logging.WARNING)
    logger = logging.getLogger("spimflow.atlas")
    logger.addHandler(handler)
    try:
        atlas = load_atlas(AtlasConfig(format="allen", voxel_size=(25, 25, 25), orientation="ras", **files))
    finally:
        logger.removeHandler(handler)
    return atlas, records


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


# What the cohort tests read: the statistics and plots of the cohort (which pull in every
# brain's registration, cells, region table and density map) and each brain's detection QC
# (for the report); not the per-brain outputs nothing here reads (atlas overlay, resampled
# signal, provenance), which the demo run checks.
COHORT_TARGETS = (
    "cohort_plots",
    "cohort_p_map_plot",
    *(f"results/{s}/cells/qc_cells.png" for s in ("c1", "c2", "c3", "t1", "t2", "t3")),
)


@pytest.fixture(scope="session")
def cohort_workflow(tmp_path_factory):
    """The demo cohort (3 + 3 brains and the statistics) as one Snakemake run of
    :data:`COHORT_TARGETS`, once per session.

    Returns (workdir, wall seconds). Tests read results from it and must not modify it.
    """
    import shutil
    import time

    work = tmp_path_factory.mktemp("cohort_workflow")
    (work / "config").mkdir()
    for name in ("cohort.yaml", "cohort_brain.yaml"):
        shutil.copy(REPO / "config" / name, work / "config" / name)
    t0 = time.perf_counter()
    res = run_snakemake(work, work / "config" / "cohort.yaml", *COHORT_TARGETS, timeout=1800)
    wall = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr[-6000:]
    return work, wall


# The demo brain made light: a short registration (affine + one B-spline level, no
# orientation check) and 4 detection jobs of 2 large blocks: the runs that are killed and
# resumed, or sent through a cluster executor, and the uninterrupted local run they are
# compared with (tests/test_resume.py, tests/test_cluster.py).
LIGHT_STEPS = {
    "registration": {
        "affine": {"resolutions": 2, "iterations": 150},
        "bspline": {"resolutions": 1, "iterations": 100, "spatial_samples": 2000},
        "orientation_check": False,
    },
    "detect": {"blocks": {"size": [64, 256, 256], "overlap": None, "batch": 2}},
}
# what those runs build: every table (cells, cells in the atlas, region counts)
LIGHT_TARGETS = ("results/demo/cells/cells_atlas.parquet", "results/demo/regions/counts.csv")
# the tables compared byte for byte (paths relative to the work folder)
LIGHT_TABLES = (
    "results/demo/cells/cells_raw.parquet",
    "results/demo/cells/cells.parquet",
    "results/demo/cells/cells.csv",
    "results/demo/cells/cells_atlas.parquet",
    "results/demo/cells/cells_atlas.csv",
    "results/demo/regions/counts.csv",
    "results/demo/regions/counts.parquet",
    "results/demo/regions/leaves.csv",
    "results/demo/regions/counts_depth1.csv",
    "results/demo/regions/counts_depth2.csv",
    "results/demo/regions/summary.txt",
    "results/demo/registration/atlas_transform.0.txt",
    "results/demo/registration/atlas_transform.1.txt",
)


def light_demo_workdir(root: Path, demo_dir: Path) -> Path:
    """A work folder holding the session's demo data (so the demo rule has nothing to do)
    and ``config.yaml``: config/sample.yaml with :data:`LIGHT_STEPS`."""
    import shutil

    import yaml

    shutil.copytree(demo_dir, root / "resources" / "demo")
    cfg = yaml.safe_load((REPO / "config" / "sample.yaml").read_text())
    cfg["steps"].update(LIGHT_STEPS)
    (root / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root


@pytest.fixture(scope="session")
def light_demo_reference(tmp_path_factory, demo_dir):
    """The light demo run uninterrupted, locally with ``--cores 2`` (tables only).

    Returns (workdir, wall seconds). Tests read results from it and must not modify it.
    """
    import time

    work = light_demo_workdir(tmp_path_factory.mktemp("light_demo_reference"), demo_dir)
    t0 = time.perf_counter()
    res = run_snakemake(work, work / "config.yaml", *LIGHT_TARGETS)
    wall = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr[-6000:]
    return work, wall
