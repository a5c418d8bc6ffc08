"""Kill, resume, clean up: temporaries of killed writers are removed by the next writer or
run (never one a live writer still uses), a stale Snakemake lock is named with the
command that removes it, and a run SIGKILLed at several stages resumes to the very tables
of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import LIGHT_TABLES, LIGHT_TARGETS, REPO, light_demo_workdir, run_snakemake

from spimflow.housekeeping import (
    snakemake_processes_in,
    stale_lock_notice,
    sweep_temporaries,
    temporaries_notice,
    unlock_command,
)
from spimflow.io.atomic import atomic_path, claimed_temporary, host_tag, remove_stale_temporaries

# a writer that is killed while it writes: prints its temporary, then waits
HOLD = """
import sys, time
from spimflow.io.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.mkdir()
    (tmp / "chunk").write_bytes(b"x" * 4096)
    print(tmp, flush=True)
    time.sleep(300)
"""


def start_writer(target: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(target)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line, "the writer did not start"
    return proc, Path(line)


def kill(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


def test_a_killed_writers_temporary_is_removed_by_the_next_writer(tmp_path):
    target = tmp_path / "raw" / "signal.ome.zarr"
    proc, left = start_writer(target)
    assert left.parent == target.parent and left.name.startswith(f".signal.ome.zarr.tmp-{host_tag()}-{proc.pid}-")
    kill(proc)
    assert (left / "chunk").is_file()  # what a SIGKILLed ingest leaves: the size of the raw data
    with atomic_path(target) as tmp:
        tmp.mkdir()
    assert target.is_dir() and not left.exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["signal.ome.zarr"]


def test_a_live_writers_temporary_is_never_removed(tmp_path):
    target = tmp_path / "cells.parquet"
    proc, busy = start_writer(target)
    try:
        with atomic_path(target) as tmp:  # a second writer of the same output, meanwhile
            tmp.write_text("mine")
        found = remove_stale_temporaries(tmp_path)
        assert busy.is_dir() and (busy / "chunk").is_file()  # still there, still whole
        assert found.removed == []
        assert target.read_text() == "mine"
    finally:
        kill(proc)
    assert remove_stale_temporaries(tmp_path).removed == [busy]
    assert not busy.exists()


def test_a_zombie_writer_counts_as_gone(tmp_path):
    """A SIGKILLed job nobody has reaped yet is a zombie: its pid exists, its writes are over."""
    target = tmp_path / "x.txt"
    proc, left = start_writer(target)
    proc.kill()
    deadline = time.time() + 10
    while time.time() < deadline:  # not waited for: a zombie until the end of the test
        state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        if state == "Z":
            break
        time.sleep(0.02)
    else:
        pytest.fail("the killed writer did not become a zombie")
    assert remove_stale_temporaries(tmp_path).removed == [left]
    proc.wait()


def test_the_sweep_keeps_what_it_cannot_check_and_says_so(tmp_path):
    pid = os.getpid()
    root = tmp_path / "results" / "s"
    (root / "raw").mkdir(parents=True)
    store = root / "raw" / "signal.ome.zarr"
    store.mkdir()
    # a temporary naming this very process that it is not writing: left by an earlier
    # process with the same pid (a container restarted on a rebooted node)
    mine_stale = root / "raw" / f".signal.ome.zarr.tmp-{host_tag()}-{pid}-0123abcd"
    mine_stale.mkdir()
    other_host = root / "raw" / f".autofluorescence.ome.zarr.tmp-node-17.cluster-{pid}-89abcdef"
    other_host.mkdir()
    legacy = root / f".config.resolved.yaml.tmp-{'a1b2c3d4'}"
    legacy.write_text("old")
    inside_store = store / ".zarr.json.tmp-x-1-00000000"  # never searched: not an output folder
    inside_store.write_text("")
    with claimed_temporary(root / "cells.csv") as active:
        active.write_text("being written")
        found = sweep_temporaries([root, tmp_path / "absent"])
        assert active.exists()
    assert found.removed == [mine_stale] and not mine_stale.exists()
    assert found.other_host == [other_host] and other_host.exists()
    assert found.unknown_writer == [legacy] and legacy.exists()
    assert inside_store.exists()
    notice = temporaries_notice(found)
    assert f"removed 1 temporary left by killed jobs: {mine_stale}" in notice
    assert f"left {other_host}: written by a job on another host" in notice
    assert f"left {legacy}: a temporary of an older spimflow" in notice
    assert temporaries_notice(sweep_temporaries([root])) is not None  # the two kept ones are named again
    assert temporaries_notice(sweep_temporaries([tmp_path / "absent"])) is None


def test_a_stale_lock_is_named_with_the_unlock_command(tmp_path):
    command = unlock_command(["my brain.yaml"], directory=tmp_path)
    assert command == f"snakemake --unlock --directory {tmp_path} --configfile 'my brain.yaml'"
    assert stale_lock_notice(tmp_path, command) is None  # no lock
    (tmp_path / ".snakemake" / "locks").mkdir(parents=True)
    assert stale_lock_notice(tmp_path, command) is None  # an empty lock folder
    (tmp_path / ".snakemake" / "locks" / "0.output.lock").write_text(str(tmp_path / "results/x") + "\n")
    assert snakemake_processes_in(tmp_path) == []
    notice = stale_lock_notice(tmp_path, command)
    assert "no Snakemake process runs in this folder" in notice and f"    {command}\n" in notice
    # a live Snakemake (here: a process whose command line names it) in the folder owns the lock
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "snakemake"], cwd=tmp_path, stdout=subprocess.DEVNULL
    )
    try:
        deadline = time.time() + 10
        while proc.pid not in (snakemake_processes_in(tmp_path) or []) and time.time() < deadline:
            time.sleep(0.05)
        assert snakemake_processes_in(tmp_path) == [proc.pid]
        assert stale_lock_notice(tmp_path, command) is None
    finally:
        kill(proc)


# -- real runs, SIGKILLed and resumed -------------------------------------------------------------

RAW = "results/demo/raw"


def _newer(path: Path, t0: float) -> bool:
    try:
        return path.stat().st_mtime >= t0
    except FileNotFoundError:
        return False


def stage_now(work: Path, t0: float, pending: list[str]) -> str | None:
    """Which of the pending stages the run started at ``t0`` is in the middle of."""
    sd = work / "results" / "demo"
    if "ingest" in pending and (work / RAW).is_dir() and any(p.name.startswith(".") for p in (work / RAW).iterdir()):
        return "ingest"  # a channel's temporary store is being written
    started = sd / "logs" / "register.log"
    if "register" in pending and _newer(started, t0) and not (sd / "registration" / "registration.json").exists():
        # elastix done, the warped atlas and transforms being written (or 20 s into the job)
        if _newer(sd / "logs" / "elastix_atlas.log", t0) or started.stat().st_mtime < time.time() - 20:
            return "register"
    if "detect" in pending and not (sd / "cells" / "cells_raw.parquet").exists():
        if any(_newer(p, t0) for p in (sd / "cells" / "blocks").glob("batch_*.parquet")):
            return "detect"  # at least one batch done, others to do
    return None


def temporaries(work: Path) -> list[Path]:
    return [p for p in work.rglob(".*.tmp-*") if ".snakemake" not in p.relative_to(work).parts]


def test_killed_runs_resume_to_the_tables_of_an_uninterrupted_run(tmp_path, demo_dir, light_demo_reference):
    ref, ref_wall = light_demo_reference
    work = light_demo_workdir(tmp_path, demo_dir)
    config = work / "config.yaml"
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(work),
        "--configfile",
        str(config),
        "--cores",
        "2",
        *LIGHT_TARGETS,
    ]
    pending, killed, runs = ["ingest", "register", "detect"], [], []
    t_start = time.perf_counter()
    while True:
        t0 = time.time()
        log = open(work / f"run{len(runs)}.err", "w")
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        stage = None
        while proc.poll() is None and stage is None:
            stage = stage_now(work, t0, pending)
            time.sleep(0.02)
        if stage is not None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
        runs.append((work / f"run{len(runs)}.err").read_text())
        if stage is None:
            break
        killed.append(stage)
        pending.remove(stage)
        if stage == "ingest":
            left = temporaries(work)
            assert left, "the killed ingest left no temporary (the test would check nothing)"
            # what a user sees next: Snakemake's lock error, and spimflow naming the command
            res = run_snakemake(work, config, *LIGHT_TARGETS)
            assert res.returncode != 0 and "Directory cannot be locked" in res.stderr
            assert "holds the lock of an earlier run" in res.stderr
            expected = f"    snakemake --unlock -s {REPO / 'Snakefile'} --directory {work} --configfile {config}\n"
            assert expected in res.stderr, res.stderr[-3000:]
        assert run_snakemake(work, config, "--unlock").returncode == 0
        assert len(runs) < 8, runs[-1][-3000:]
    wall = time.perf_counter() - t_start
    print(f"killed during {killed}; {len(runs)} runs in {wall:.0f} s (uninterrupted: {ref_wall:.0f} s)")
    assert proc.returncode == 0, runs[-1][-6000:]
    assert sorted(killed) == ["detect", "ingest", "register"]
    # the ingest's temporary was removed by the next run, and nothing is left anywhere
    assert "temporary left by killed jobs" in runs[1] or "temporaries left by killed jobs" in runs[1]
    assert temporaries(work) == []
    for table in LIGHT_TABLES:
        assert (work / table).read_bytes() == (ref / table).read_bytes(), table
