"""The detection stage run by real Snakemake: checkpoint, batch jobs, gather, threshold, QC."""

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml
from conftest import run_snakemake

from spimflow.blocks import detect_volume
from spimflow.io.omezarr import open_ome_zarr
from spimflow.params.detect import DetectParams
from spimflow.steps.detect import CELL_COLUMNS, MEASURED_COLUMNS
from spimflow.steps.detect.evaluate import match_points
from spimflow.steps.detect.synthetic import make_synthetic_cells

pytestmark = pytest.mark.slow  # every test here runs Snakemake

REPO = Path(__file__).resolve().parents[1]
VOX = (10.0, 5.0, 5.0)
STEPS = {
    "detect": {"blocks": {"size": [16, 64, 64], "batch": 3}},
    "threshold": {"ranges": {"volume_um3": [500.0, None], "intensity_dog": [100.0, None]}},
}


def write_sample(tmp_path: Path, volume: np.ndarray, steps: dict | None = None) -> Path:
    tifffile.imwrite(tmp_path / "signal.tif", volume, photometric="minisblack")
    chan = {"source": {"format": "tiff", "path": "signal.tif"}, "voxel_size": list(VOX), "orientation": "ipl"}
    cfg = {
        "sample": "s1",
        "results": "results",
        "channels": {"signal": chan},  # detection only: no atlas, no autofluorescence
        "ingest": {"chunks": [8, 64, 64]},
        "steps": steps if steps is not None else STEPS,
    }
    path = tmp_path / "sample.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def snakemake(tmp_path: Path, config: Path, *targets: str) -> subprocess.CompletedProcess:
    return run_snakemake(tmp_path, config, *targets, timeout=600)


CELL_TARGETS = ("results/s1/cells/cells.csv", "results/s1/cells/qc_cells.png", "results/s1/cells/qc_overlay.ome.zarr")


def test_snakemake_detects_thresholds_and_draws_qc(tmp_path):
    vol, truth = make_synthetic_cells(
        (24, 150, 140), VOX, density_per_mm3=15000, gradient=0.5, texture=120, background=250, seed=5
    )
    config = write_sample(tmp_path, vol)
    proc = snakemake(tmp_path, config, *CELL_TARGETS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cells_dir = tmp_path / "results" / "s1" / "cells"
    plan = json.loads((cells_dir / "blocks" / "plan.json").read_text())
    assert len(plan["batches"]) >= 3 and len(plan["blocks"]) > 6  # several batch jobs ran
    logs = tmp_path / "results" / "s1" / "logs"
    assert len(list(logs.glob("detect_batch_*.log"))) == len(plan["batches"])  # one job per batch
    assert not list((cells_dir / "blocks").glob("batch_*.parquet"))  # temp(): removed once gathered
    raw = pd.read_parquet(cells_dir / "cells_raw.parquet")
    assert dict(raw.dtypes.astype(str)) == CELL_COLUMNS
    # the Snakemake run gives exactly what the library gives on the ingested volume
    p = DetectParams.model_validate(STEPS["detect"])
    lib = detect_volume(open_ome_zarr(tmp_path / "results" / "s1" / "raw" / "signal.ome.zarr").array, VOX, p)
    assert raw.equals(lib)
    # thresholding: exactly the rows inside the ranges, CSV = parquet
    cells = pd.read_parquet(cells_dir / "cells.parquet")
    inside = (raw.volume_um3 >= 500) & (raw.intensity_dog >= 100)
    assert len(cells) == inside.sum() and len(cells) < len(raw)
    csv = pd.read_csv(cells_dir / "cells.csv")
    assert list(csv.columns) == list(CELL_COLUMNS) and np.allclose(csv[["z", "y", "x"]], cells[["z", "y", "x"]])
    m = match_points(cells[["z", "y", "x"]].to_numpy(), truth[["z", "y", "x"]].to_numpy(), 6.0, VOX)
    assert m.precision >= 0.95 and m.recall >= 0.95, (m.precision, m.recall)
    # QC: a picture, and a label overlay with each kept cell's label at its centre
    from PIL import Image

    with Image.open(cells_dir / "qc_cells.png") as im:
        assert im.width > 100 and im.height > 100
    labels = open_ome_zarr(cells_dir / "qc_overlay.ome.zarr")
    assert labels.shape == vol.shape and labels.voxel_size == VOX
    centre = np.rint(cells[["z", "y", "x"]].to_numpy()).astype(int).clip(0, np.array(vol.shape) - 1)
    got = np.asarray(labels.array[...])[tuple(centre.T)]
    assert (got == np.arange(1, len(cells) + 1)).mean() > 0.97  # touching spheres may overwrite a centre


def test_a_volume_without_cells_gives_empty_tables(tmp_path):
    rng = np.random.default_rng(0)
    vol = rng.poisson(200, (12, 70, 60)).astype(np.uint16)
    # blocks far larger than the volume: the block job asks for what it reads, not for the block
    config = write_sample(tmp_path, vol, {**STEPS, "detect": {"blocks": {"size": [1000, 8000, 8000]}}})
    proc = snakemake(tmp_path, config, *CELL_TARGETS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = proc.stdout + proc.stderr
    asked = [int(m) for m in re.findall(r"rule detect_batch:.*?mem_mb=(\d+)", jobs, re.S)]
    assert asked and max(asked) < 600, asked  # 12 x 70 x 60 voxels read: the task process (500 MB) + 1 MB
    for name in ("cells_raw.parquet", "cells.parquet"):
        t = pd.read_parquet(tmp_path / "results" / "s1" / "cells" / name)
        assert len(t) == 0 and dict(t.dtypes.astype(str)) == CELL_COLUMNS
    assert (tmp_path / "results" / "s1" / "cells" / "qc_cells.png").is_file()


def test_an_empty_volume_stops_at_the_plan_with_a_clear_error(tmp_path):
    config = write_sample(tmp_path, np.zeros((8, 40, 40), np.uint16))
    proc = snakemake(tmp_path, config, "results/s1/cells/cells_raw.parquet")
    assert proc.returncode != 0
    log = (tmp_path / "results" / "s1" / "logs" / "detect_plan.log").read_text()
    assert "signal.ome.zarr" in log and "only zeros" in log
    assert not list((tmp_path / "results" / "s1" / "cells").rglob("batch_*.parquet"))
    assert not (tmp_path / "results" / "s1" / "cells" / "blocks" / "plan.json").exists()


@pytest.mark.parametrize(
    "steps,message",
    [
        (
            {"threshold": {"ranges": {"brightness": [1, None]}}},
            "steps.threshold.ranges.brightness: no such cell column",
        ),
        (
            {"detect": {"blocks": {"size": [4, 64, 64]}}},
            "steps.detect.blocks.size: [4, 64, 64] is smaller than the overlap",
        ),
        (
            {"detect": {"blocks": {"size": [16, 64, 64], "overlap": [2, 2, 2]}}},
            "steps.detect.blocks.overlap: [2, 2, 2] is too small",
        ),
        (
            {"detect": {"blocks": {"size": [64, 64, 64]}, "dog": {"sigma_inner_um": 30, "sigma_outer_um": 60}}},
            "steps.detect.dog.sigma_outer_um: 60.0 µm needs a kernel of",
        ),
        ({"detect": {"shape": {"enabled": False}}}, "steps.threshold.ranges.volume_um3: needs the cell shape"),
    ],
)
def test_bad_detection_settings_fail_before_any_job(tmp_path, steps, message):
    config = write_sample(tmp_path, np.ones((4, 8, 8), np.uint16), steps)
    proc = snakemake(tmp_path, config, "results/s1/cells/cells.csv")
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not (tmp_path / "results").exists()


def test_measured_columns_are_the_documented_ones():
    text = (REPO / "docs" / "detection.md").read_text()
    for col in MEASURED_COLUMNS:
        assert f"`{col}`" in text
