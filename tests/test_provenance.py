"""Provenance: results/<sample>/provenance.json records the software and every input file's
size, time and hash; a rerun says which input changed, and the rule re-runs when one does."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
import yaml
from conftest import REPO, run_snakemake
from test_atlas import write_brainglobe

import spimflow.provenance as prov
from spimflow.config import SampleConfig
from spimflow.tasks import provenance as task


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def brain(tmp_path: Path, extra: dict | None = None) -> SampleConfig:
    """A sample of three numbered planes per channel, a BrainGlobe atlas folder and one
    elastix parameter file, all small files under ``tmp_path``."""
    rng = np.random.default_rng(0)
    for ch in ("sig", "af"):
        (tmp_path / ch).mkdir()
        for z in range(3):
            tifffile.imwrite(tmp_path / ch / f"Z{z:04d}.tif", rng.integers(0, 500, (8, 8), dtype=np.uint16))
        (tmp_path / ch / "notes.txt").write_text("not a plane")  # not matched by the pattern
    write_brainglobe(tmp_path / "atlas")
    (tmp_path / "affine.txt").write_text('(Transform "AffineTransform")\n')
    data = {
        "sample": "b1",
        "channels": {
            ch: {
                "source": {"format": "pattern", "path": rf"{d}/Z\d{{4}}.tif"},
                "voxel_size": [4, 2, 2],
                "orientation": "ipl",
            }
            for ch, d in (("signal", "sig"), ("autofluorescence", "af"))
        },
        "atlas": {"format": "brainglobe", "path": "atlas"},
        "steps": {"registration": {"parameter_files": ["affine.txt"]}},
        **(extra or {}),
    }
    return SampleConfig.model_validate(data)


def test_every_input_file_is_recorded_with_size_time_and_hash(tmp_path):
    cfg = brain(tmp_path)
    inputs = prov.sample_inputs(cfg, tmp_path)
    rel = [(key, str(p.relative_to(tmp_path))) for key, p in inputs]
    assert rel == [
        *[("channels.signal", f"sig/Z000{z}.tif") for z in range(3)],
        *[("channels.autofluorescence", f"af/Z000{z}.tif") for z in range(3)],
        *[
            ("atlas", f"atlas/{n}")
            for n in ("metadata.json", "structures.json", "annotation.tiff", "reference.tiff", "hemispheres.tiff")
        ],
        ("steps.registration.parameter_files", "affine.txt"),
    ]
    records = prov.input_records(inputs)
    for (_, path), rec in zip(inputs, records):
        st = path.stat()
        assert rec["path"] == str(path) and rec["size"] == st.st_size and rec["mtime_ns"] == st.st_mtime_ns
        assert rec["hash"] == "sha256" and rec["sha256"] == sha(path.read_bytes())


def test_a_folder_stands_for_its_files_and_a_metaimage_header_brings_its_data(tmp_path):
    (tmp_path / "planes").mkdir()
    for name in ("b.tif", "a.tif"):
        (tmp_path / "planes" / name).write_bytes(b"x")
    (tmp_path / "vol.mhd").write_text(
        "NDims = 3\nDimSize = 2 2 2\nElementType = MET_USHORT\nElementDataFile = vol.raw\n"
    )
    (tmp_path / "vol.raw").write_bytes(bytes(16))
    cfg = SampleConfig.model_validate(
        {
            "sample": "f",
            "channels": {
                "signal": {"source": {"format": "folder", "path": "planes"}, "voxel_size": [1, 1, 1]},
                "autofluorescence": {"source": {"format": "mhd", "path": "vol.mhd"}, "voxel_size": [1, 1, 1]},
            },
        }
    )
    assert [(k, p.relative_to(tmp_path).as_posix()) for k, p in prov.sample_inputs(cfg, tmp_path)] == [
        ("channels.signal", "planes/a.tif"),
        ("channels.signal", "planes/b.tif"),
        ("channels.autofluorescence", "vol.mhd"),
        ("channels.autofluorescence", "vol.raw"),
    ]


def test_large_files_are_hashed_by_size_and_both_ends(tmp_path, monkeypatch):
    monkeypatch.setattr(prov, "FULL_HASH_LIMIT", 1000)
    monkeypatch.setattr(prov, "ENDS_BYTES", 100)
    data = bytearray(np.random.default_rng(1).bytes(5000))
    big = tmp_path / "big.raw"
    big.write_bytes(bytes(data))
    rec = prov.file_record(big)
    assert rec["hash"] == "sha256-ends" and rec["sha256"] == sha(b"5000\n" + data[:100] + data[-100:])
    data[2500] ^= 0xFF  # the documented blind spot: the middle of a large file
    big.write_bytes(bytes(data))
    assert prov.file_record(big)["sha256"] == rec["sha256"]
    data[-1] ^= 0xFF
    big.write_bytes(bytes(data))
    assert prov.file_record(big)["sha256"] != rec["sha256"]
    small = tmp_path / "small.raw"
    small.write_bytes(bytes(data[:1000]))
    assert prov.file_record(small)["hash"] == "sha256"


def test_a_hash_is_reused_only_for_an_unchanged_size_and_time(tmp_path):
    f = tmp_path / "plane.tif"
    f.write_bytes(b"abc")
    rec = prov.file_record(f)
    planted = {**rec, "sha256": "0" * 64}  # a hash the file does not have
    assert prov.file_record(f, previous=planted)["sha256"] == "0" * 64  # not read again
    os.utime(f, ns=(rec["mtime_ns"], rec["mtime_ns"] - 10**9))  # an older time: read again
    assert prov.file_record(f, previous=planted)["sha256"] == sha(b"abc")


def test_a_zarr_store_is_one_entry_with_its_listing(tmp_path):
    store = tmp_path / "raw.zarr"
    (store / "0" / "c").mkdir(parents=True)
    (store / "zarr.json").write_text("{}")
    (store / "0" / "c" / "0").write_bytes(b"x" * 10)
    cfg = SampleConfig.model_validate(
        {
            "sample": "z",
            "channels": {"signal": {"source": {"format": "zarr", "path": "raw.zarr"}, "voxel_size": [1, 1, 1]}},
        }
    )
    assert prov.sample_inputs(cfg, tmp_path) == [("channels.signal", store)]  # the store, not its chunks
    rec = prov.file_record(store)
    assert rec["files"] == 2 and rec["size"] == 12 and rec["hash"] == "listing-sha256"
    (store / "0" / "c" / "1").write_bytes(b"y")
    assert prov.compare_inputs([rec], [prov.file_record(store)]) == [
        f"input changed: {store} (size 12 → 13 bytes; modified {rec['mtime']} → "
        f"{prov.file_record(store)['mtime']}; files 2 → 3; listing-sha256 {rec['sha256'][:12]}… → "
        f"{prov.file_record(store)['sha256'][:12]}…)"
    ]


def test_changes_name_the_input_and_what_changed(tmp_path):
    cfg = brain(tmp_path)
    before = prov.input_records(prov.sample_inputs(cfg, tmp_path))
    plane = tmp_path / "sig" / "Z0001.tif"
    st = plane.stat()
    raw = bytearray(plane.read_bytes())
    raw[-1] ^= 0xFF  # same size, one second older: size and time, and the content hash
    plane.write_bytes(bytes(raw))
    os.utime(plane, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))
    (tmp_path / "atlas" / "structures.json").write_text("[]")
    (tmp_path / "af" / "Z0002.tif").unlink()
    tifffile.imwrite(tmp_path / "af" / "Z0003.tif", np.zeros((8, 8), np.uint16))
    after = prov.input_records(prov.sample_inputs(cfg, tmp_path), before)
    lines = prov.compare_inputs(before, after)
    assert [line.split(" (")[0] for line in lines] == [
        f"input removed: {tmp_path}/af/Z0002.tif",
        f"input added: {tmp_path}/af/Z0003.tif",
        f"input changed: {tmp_path}/atlas/structures.json",
        f"input changed: {tmp_path}/sig/Z0001.tif",
    ]
    assert "size" in lines[2] and "modified" in lines[2]
    old, new = before[1], after[1]
    assert lines[3] == (
        f"input changed: {plane} (modified {old['mtime']} → {new['mtime']}; "
        f"sha256 {old['sha256'][:12]}… → {sha(bytes(raw))[:12]}…)"
    )
    # the documented limit: a change keeping size and time to the nanosecond reuses the hash
    raw[0] ^= 0xFF
    plane.write_bytes(bytes(raw))
    os.utime(plane, ns=(st.st_atime_ns, new["mtime_ns"]))
    assert prov.compare_inputs(after, prov.input_records(prov.sample_inputs(cfg, tmp_path), after)) == []
    # the start-of-run check sees sizes and times only (no hashing)
    out = tmp_path / "results" / "b1"
    out.mkdir(parents=True)
    (out / "provenance.json").write_text(json.dumps({"inputs": before}))
    quick = prov.changed_since(out / "provenance.json", cfg, tmp_path)
    assert [line.split(" (")[0] for line in quick] == [line.split(" (")[0] for line in lines]
    assert "sha256" not in quick[3]
    assert prov.changed_since(out / "absent.json", cfg, tmp_path) == []


def test_the_fingerprint_follows_size_and_time_even_backwards(tmp_path):
    f = tmp_path / "a.tif"
    f.write_bytes(b"1234")
    first = prov.inputs_fingerprint([f, tmp_path / "missing.tif"])
    assert prov.inputs_fingerprint([tmp_path / "missing.tif", f]) == first  # order does not matter
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns - 10**10))  # an older time (rsync -t, cp -p)
    assert prov.inputs_fingerprint([f, tmp_path / "missing.tif"]) != first


def test_software_versions_and_no_failure_without_git(tmp_path, monkeypatch):
    import numpy
    import snakemake

    sw = prov.software_versions()
    assert set(prov.PACKAGES) <= set(sw["packages"])
    assert sw["packages"]["numpy"] == numpy.__version__ and sw["packages"]["snakemake"] == snakemake.__version__
    assert sw["python"] and sw["platform"] and sw["spimflow"]
    (tmp_path / "src" / "spimflow").mkdir(parents=True)
    assert prov.git_revision(tmp_path / "src" / "spimflow") is None  # not a checkout
    monkeypatch.setenv("PATH", str(tmp_path))  # no git at all
    (tmp_path / ".git").mkdir()
    assert prov.git_revision(tmp_path / "src" / "spimflow") is None


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_git_revision_of_a_checkout(tmp_path):
    repo = tmp_path / "repo"
    (repo / "src" / "spimflow").mkdir(parents=True)
    (repo / "src" / "spimflow" / "__init__.py").write_text("")

    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    rev = prov.git_revision(repo / "src" / "spimflow")
    assert rev["commit"] == git("rev-parse", "HEAD").strip() and not rev["dirty"]
    (repo / "src" / "spimflow" / "__init__.py").write_text("x = 1\n")
    assert prov.git_revision(repo / "src" / "spimflow")["dirty"]
    # a package inside some other repository's tree is not that repository's revision
    (repo / "vendor" / "src" / "spimflow").mkdir(parents=True)
    (repo / "vendor" / ".git").write_text("")  # not a checkout either
    assert prov.git_revision(repo / "vendor" / "src" / "spimflow") is None


def test_the_task_says_which_input_changed(tmp_path, monkeypatch, caplog):
    cfg = brain(tmp_path, {"results": "out"})
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out" / "b1" / "provenance.json"
    smk = SimpleNamespace(
        params=SimpleNamespace(resolved=cfg.model_dump(mode="json")), output=SimpleNamespace(json=str(out))
    )
    task.run(smk)
    first = json.loads(out.read_text())
    assert first["sample"] == "b1" and first["changes"] == [] and len(first["inputs"]) == 12
    assert first["software"]["packages"]["itk-elastix"] and "hashing" in first
    assert {r["path"] for r in first["inputs"]} >= {"sig/Z0000.tif", "atlas/annotation.tiff", "affine.txt"}
    (tmp_path / "affine.txt").write_text('(Transform "EulerTransform")\n')
    with caplog.at_level(logging.WARNING, logger="spimflow.tasks.provenance"):
        task.run(smk)
    second = json.loads(out.read_text())
    assert second["changes"] == [line for line in second["changes"] if line.startswith("input changed: affine.txt (")]
    assert len(second["changes"]) == 1 and "sha256" in second["changes"][0]
    assert any(r.getMessage() == second["changes"][0] for r in caplog.records)
    assert not list(out.parent.glob(".*.tmp-*"))


# -- the rule in a real run ------------------------------------------------------------------------


def test_the_provenance_rule_reruns_when_an_input_changes(tmp_path, demo_dir):
    """A small detection-only brain (20 of the demo's planes, cropped) run for real; an input
    then changed with an older time re-runs the provenance alone, which names it."""
    planes = tmp_path / "planes"
    planes.mkdir()
    for z in range(20):
        shutil.copy2(demo_dir / "sample" / "signal" / f"Z{40 + z:04d}.tif", planes / f"Z{z:04d}.tif")
    demo_steps = yaml.safe_load((REPO / "config" / "sample.yaml").read_text())["steps"]
    data = {
        "sample": "slab",
        "channels": {
            "signal": {
                "source": {"format": "pattern", "path": r"planes/Z\d{4}.tif"},
                "voxel_size": [10.0, 5.0, 5.0],
                "crop": {"y": [100, 196], "x": [80, 176]},
            }
        },
        "steps": {"detect": {**demo_steps["detect"], "blocks": {"size": [32, 128, 128], "overlap": None}}},
    }
    (tmp_path / "slab.yaml").write_text(yaml.safe_dump(data))
    res = run_snakemake(tmp_path, tmp_path / "slab.yaml")
    assert res.returncode == 0, res.stderr[-4000:]
    out = tmp_path / "results" / "slab"
    first = json.loads((out / "provenance.json").read_text())
    assert [r["path"] for r in first["inputs"]] == [f"planes/Z{z:04d}.tif" for z in range(20)]
    assert first["software"]["packages"]["snakemake"] and first["changes"] == []
    # a plane replaced by another with an older time: no job re-reads it, the provenance says so
    plane = planes / "Z0007.tif"
    st = plane.stat()
    shutil.copy(planes / "Z0008.tif", plane)
    os.utime(plane, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))
    res = run_snakemake(tmp_path, tmp_path / "slab.yaml")
    assert res.returncode == 0, res.stderr[-4000:]
    assert "spimflow: [slab] input changed: planes/Z0007.tif (" in res.stderr  # before anything runs
    jobs = [
        line.split(":")[0].split()[-1] for line in res.stderr.splitlines() if line.startswith(("rule ", "localrule "))
    ]
    assert [j for j in jobs if j != "all"] == ["provenance"], res.stderr[-3000:]
    second = json.loads((out / "provenance.json").read_text())
    assert len(second["changes"]) == 1 and second["changes"][0].startswith("input changed: planes/Z0007.tif (")
    assert "sha256" in second["changes"][0]
    assert "input changed: planes/Z0007.tif" in (out / "logs" / "provenance.log").read_text()
    res = run_snakemake(tmp_path, tmp_path / "slab.yaml", "-n")
    assert "Nothing to be done" in res.stdout + res.stderr
    assert "input changed" not in res.stderr
