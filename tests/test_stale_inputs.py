"""Rules depend on the files they read: fixing a file inside a BrainGlobe atlas folder re-runs
what used it (the folder's own mtime does not change when a file in it is rewritten)."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import tifffile
import yaml
from conftest import run_snakemake
from test_atlas import write_brainglobe

pytestmark = pytest.mark.slow  # runs Snakemake

TARGET = "results/b1/resampled/signal.ome.zarr"


@pytest.fixture(scope="module")
def resampled(tmp_path_factory):
    work = tmp_path_factory.mktemp("stale")
    write_brainglobe(work / "atlas")
    rng = np.random.default_rng(0)
    tifffile.imwrite(work / "signal.tif", rng.integers(100, 900, (16, 40, 50)).astype(np.uint16))
    config = {
        "sample": "b1",
        "channels": {
            "signal": {
                "source": {"format": "tiff", "path": "signal.tif"},
                "voxel_size": [10, 5, 5],
                "orientation": "asr",
            }
        },
        "atlas": {"format": "brainglobe", "path": "atlas"},
    }
    (work / "sample.yaml").write_text(yaml.safe_dump(config))
    res = run_snakemake(work, work / "sample.yaml", TARGET)
    assert res.returncode == 0, res.stderr[-3000:]
    return work


def corrected(path):
    """Rewrite an atlas file in place with new bytes and the same meaning (as a fix would)."""
    if path.suffix == ".json":
        path.write_text(json.dumps(json.loads(path.read_text()), indent=1))
    else:
        tifffile.imwrite(path, tifffile.imread(path), compression="zlib")


def test_every_file_of_the_atlas_folder_is_an_input(resampled):
    from pathlib import Path

    from spimflow.config import AtlasConfig

    files = AtlasConfig(format="brainglobe", path="atlas").files(resampled)
    names = ["metadata.json", "structures.json", "annotation.tiff", "reference.tiff", "hemispheres.tiff"]
    assert sorted(Path(f).name for f in files) == sorted(names)


def test_a_corrected_atlas_file_reruns_what_read_it(resampled):
    """One file stands for all: each is an input of every rule that reads the atlas (above)."""
    path = resampled / "atlas" / "structures.json"
    folder_mtime = os.stat(path.parent).st_mtime_ns
    original, before = path.read_bytes(), os.stat(path).st_mtime
    assert "Nothing to be done" in run_snakemake(resampled, resampled / "sample.yaml", "-n", TARGET).stdout
    try:
        time.sleep(0.01)
        corrected(path)
        assert os.stat(path.parent).st_mtime_ns == folder_mtime  # all a folder dependency would see
        res = run_snakemake(resampled, resampled / "sample.yaml", "-n", TARGET)
        assert res.returncode == 0, res.stderr[-2000:]
        assert "rule resample:" in res.stdout + res.stderr
    finally:
        path.write_bytes(original)
        os.utime(path, (before, before))  # back to what the outputs were made from
