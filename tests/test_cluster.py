"""The cluster path: the shipped profiles, and the demo through
snakemake-executor-plugin-cluster-generic with a stand-in scheduler that starts every job as
its own detached process with a clean environment (profiles/cluster-generic as shipped),
giving the very tables of the local run."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import LIGHT_TABLES, LIGHT_TARGETS, REPO, light_demo_workdir, run_snakemake

PROFILES = REPO / "profiles"
GENERIC = PROFILES / "cluster-generic"


def uncommented_keys(path: Path) -> list[str]:
    """Keys of a profile (top level and nested) without a comment line right above them or
    above their parent's first entry."""
    lines = path.read_text().splitlines()
    missing = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or ":" not in stripped:
            continue
        above = lines[i - 1].strip() if i else ""
        if not above.startswith("#"):
            missing.append(stripped.split(":")[0])
    return missing


@pytest.mark.parametrize("name", ["slurm", "cluster-generic"])
def test_every_profile_key_is_explained(name):
    path = PROFILES / name / "config.yaml"
    assert yaml.safe_load(path.read_text())  # valid YAML
    assert uncommented_keys(path) == []


def test_the_slurm_profile_leaves_account_and_partition_to_the_user():
    text = (PROFILES / "slurm" / "config.yaml").read_text()
    profile = yaml.safe_load(text)
    assert profile["executor"] == "slurm"
    assert {"mem_mb", "runtime"} <= set(profile["default-resources"])
    assert not {"slurm_account", "slurm_partition"} & set(profile["default-resources"])
    assert "# slurm_account:" in text and "# slurm_partition:" in text  # shown, commented out


def test_the_cluster_generic_profile_names_its_scripts():
    profile = yaml.safe_load((GENERIC / "config.yaml").read_text())
    assert profile["executor"] == "cluster-generic"
    for key in ("cluster-generic-submit-cmd", "cluster-generic-status-cmd", "cluster-generic-cancel-cmd"):
        script = GENERIC / profile[key]
        assert script.is_file() and os.access(script, os.X_OK), key


def test_the_stand_in_scheduler_detaches_each_job_with_a_clean_environment(tmp_path):
    """local-submit.sh: own session, only PATH/HOME/LANG/TMPDIR, exit status for local-status.sh."""
    job = tmp_path / "job.sh"
    job.write_text(
        "#!/bin/sh\nenv > env.txt\nps -o sid= -p $$ > sid.txt 2>/dev/null || cut -d' ' -f6 /proc/$$/stat > sid.txt\n"
        "exit ${JOB_EXIT:-0}\n"
    )
    env = {**os.environ, "SPIMFLOW_NOT_ON_THE_NODE": "1"}

    def submit() -> str:
        out = subprocess.run([GENERIC / "local-submit.sh", job], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def status(job_id: str) -> str:
        out = subprocess.run([GENERIC / "local-status.sh", job_id], cwd=tmp_path, capture_output=True, text=True)
        assert out.returncode == 0 and len(out.stdout.splitlines()) == 1, out
        return out.stdout.strip()

    def wait(job_id: str) -> str:
        deadline = time.time() + 30
        while (s := status(job_id)) == "running" and time.time() < deadline:
            time.sleep(0.05)
        return s

    job_id = submit()
    assert wait(job_id) == "success"
    seen = dict(line.split("=", 1) for line in (tmp_path / "env.txt").read_text().splitlines() if "=" in line)
    assert "SPIMFLOW_NOT_ON_THE_NODE" not in seen and seen["PATH"] == os.environ["PATH"]
    assert set(seen) <= {"PATH", "HOME", "LANG", "TMPDIR", "PWD", "SHLVL", "OLDPWD", "_"}
    assert int((tmp_path / "sid.txt").read_text()) != os.getsid(0)  # its own session
    env["JOB_EXIT"] = "3"  # not passed to the job: it still succeeds
    assert wait(submit()) == "success"
    job.write_text("#!/bin/sh\nexit 3\n")
    assert wait(submit()) == "failed"
    job.write_text("#!/bin/sh\nsleep 300\n")
    job_id = submit()
    assert status(job_id) == "running"
    subprocess.run([GENERIC / "local-cancel.sh", job_id], cwd=tmp_path, check=True)
    assert wait(job_id) == "failed"  # killed: no exit status


def test_the_demo_through_cluster_generic_equals_the_local_run(tmp_path, demo_dir, light_demo_reference):
    ref, ref_wall = light_demo_reference
    work = light_demo_workdir(tmp_path, demo_dir)
    t0 = time.perf_counter()
    res = run_snakemake(
        work,
        work / "config.yaml",
        "--profile",
        str(GENERIC),
        "--jobs",
        "2",
        # registration runs elastix with the job's threads: the local run had 2 (--cores 2)
        "--max-threads",
        "2",
        "--seconds-between-status-checks",
        "1",
        "--latency-wait",
        "5",
        *LIGHT_TARGETS,
    )
    wall = time.perf_counter() - t0
    spool = work / ".snakemake" / "local-cluster"
    exits = sorted(spool.glob("*.exit"))
    print(f"cluster-generic: {len(exits)} submissions in {wall:.0f} s (local run: {ref_wall:.0f} s)")
    assert res.returncode == 0, res.stderr[-6000:]
    # every job went through the stand-in scheduler, detection batches grouped
    assert "Submitted group job" in res.stderr and "Submitted job" in res.stderr
    assert len(exits) >= 8 and all(p.read_text().strip() == "0" for p in exits)
    assert not list(work.rglob(".*.tmp-*"))
    for table in LIGHT_TABLES:
        assert (work / table).read_bytes() == (ref / table).read_bytes(), table
