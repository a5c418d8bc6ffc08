"""Memory requests of the workflow's jobs (spimflow.resources, workflow/rules/common.smk):
computed from what each job reads, capped by the volume, and never below what the job uses
(checked on the real demo and cohort runs against Snakemake's measured peak of every job)."""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import tifffile

from spimflow import resources as mem
from spimflow.config import AtlasConfig, Channel, IngestParams
from spimflow.io.omezarr import write_ome_zarr
from spimflow.io.tables import write_table

# -- sizes read from headers agree with the data -------------------------------------------


@pytest.mark.parametrize("suffix", [".tif", ".tif.lzma", ".nrrd", ".mhd"])
def test_volume_headers_give_the_shape_and_dtype(tmp_path, suffix):
    vol = np.zeros((7, 11, 13), np.uint16)
    path = tmp_path / f"annotation{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(path, vol)
    elif suffix == ".tif.lzma":
        tifffile.imwrite(tmp_path / "a.tif", vol)
        path.write_bytes(lzma.compress((tmp_path / "a.tif").read_bytes()))
    else:
        sitk.WriteImage(sitk.GetImageFromArray(vol), str(path))
    assert mem.volume_file_size(path) == ((7, 11, 13), 2)


def test_zarr_and_table_sizes_come_from_metadata(tmp_path):
    write_ome_zarr(tmp_path / "img.ome.zarr", np.zeros((9, 20, 30), np.float32), (1, 1, 1), chunks=(4, 20, 30))
    assert mem.zarr_image_size(tmp_path / "img.ome.zarr") == ((9, 20, 30), 4, (4, 20, 30))
    write_table(pd.DataFrame({"z": np.arange(1000.0), "y": 0.0, "x": 0.0}), tmp_path / "t.parquet")
    assert mem.table_size(tmp_path / "t.parquet") == (1000, 3)
    assert mem.tables_bytes([tmp_path / "t.parquet"] * 2) == 2 * 1000 * 3 * 8


def brainglobe_atlas(folder: Path, shape=(40, 50, 60), resolution=(25.0, 25.0, 25.0)) -> AtlasConfig:
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"name": "t", "resolution": list(resolution), "orientation": "asr", "shape": list(shape)}
    (folder / "metadata.json").write_text(json.dumps(meta))
    return AtlasConfig(format="brainglobe", path=folder)


def test_atlas_grid_of_both_atlas_formats(tmp_path):
    bg = brainglobe_atlas(tmp_path / "bg", (40, 50, 60), (10.0, 20.0, 30.0))
    assert mem.atlas_grid(bg) == (40 * 50 * 60, (10.0, 20.0, 30.0))
    tifffile.imwrite(tmp_path / "ann.tif", np.zeros((5, 6, 7), np.uint32))
    (tmp_path / "onto.json").write_text("{}")
    allen = AtlasConfig(
        format="allen",
        annotation=tmp_path / "ann.tif",
        ontology=tmp_path / "onto.json",
        voxel_size=(25, 25, 25),
        orientation="asr",
    )
    assert mem.atlas_grid(allen) == (5 * 6 * 7, (25.0, 25.0, 25.0))


# -- the estimates follow what is read, capped by the volume ------------------------------


def test_ingest_request_follows_the_planes_read_and_is_capped_by_the_volume(tmp_path):
    folder = tmp_path / "planes"
    folder.mkdir()
    for z in range(6):
        tifffile.imwrite(folder / f"Z{z:04d}.tif", np.zeros((2000, 3000), np.uint16))
    channel = Channel.model_validate(
        {"source": {"format": "pattern", "path": str(folder / r"Z\d{4}.tif")}, "voxel_size": [4, 2, 2]}
    )
    slab16 = mem.ingest_request(channel, IngestParams(chunks=(16, 256, 256)))
    slab1000 = mem.ingest_request(channel, IngestParams(chunks=(1000, 256, 256)))
    slab2 = mem.ingest_request(channel, IngestParams(chunks=(2, 256, 256)))
    # a slab taller than the 6-plane volume costs what the volume costs
    assert slab16 == slab1000 == mem.ingest_mb((2000, 3000), 2, 6, 6)
    # 6 planes of 2000 x 3000 uint16 = 72 MB, held a few times over
    assert 72 * 4 < slab16 - mem.PROCESS_MB < 72 * 12
    assert slab2 < slab16
    cropped = Channel.model_validate({**channel.model_dump(mode="json"), "crop": {"y": [0, 1000]}})
    assert mem.ingest_request(cropped, IngestParams(chunks=(16, 256, 256))) < slab16


def test_registration_and_atlas_jobs_scale_with_the_atlas_grid():
    small, large = 1_000_000, 80_000_000  # a 50 µm and a 25 µm Allen grid, roughly
    assert mem.register_mb(small, small) < mem.register_mb(large, large)
    # the Allen 25 µm brain: several GB, as elastix needs (never the old fixed 8 GB for every size)
    assert 4000 < mem.register_mb(77_000_000, 90_000_000) < 12000
    assert mem.register_mb(small, small) < 2000
    assert mem.maps_mb(large, 3, 0) > mem.maps_mb(small, 3, 0)
    assert mem.maps_mb(small, 5, 0) > mem.maps_mb(small, 1, 0)
    six, twenty = mem.voxel_stats_mb(large, 6), mem.voxel_stats_mb(large, 20)
    # each further brain's map adds 8 bytes per voxel (×1.5 margin)
    assert twenty - six == pytest.approx(14 * large * 8 * 1.5 / 1e6, abs=50)


def test_resample_request_is_set_by_the_output_grid(tmp_path):
    atlas = brainglobe_atlas(tmp_path / "bg", resolution=(25.0, 25.0, 25.0))
    raw = tmp_path / "raw.ome.zarr"
    write_ome_zarr(raw, np.zeros((100, 256, 256), np.uint16), (5, 5, 5), chunks=(16, 256, 256))
    channel = Channel.model_validate({"source": {"format": "tiff", "path": "x.tif"}, "voxel_size": [5, 5, 5]})
    coarse = mem.resample_request(channel, atlas, raw)
    fine_atlas = brainglobe_atlas(tmp_path / "bg10", resolution=(2.5, 2.5, 2.5))
    # the output holds 8 voxels per raw voxel instead of 1/125: two 4-byte copies of it (x1.5)
    fine = mem.resample_request(channel, fine_atlas, raw)
    n_raw = 100 * 256 * 256
    assert fine - coarse == pytest.approx(1.5 * 2 * 4 * n_raw * (8 - 1 / 125) / 1e6, abs=60)


def test_slab_jobs_read_one_chunk_slab_capped_by_the_volume(tmp_path):
    tall = tmp_path / "tall.ome.zarr"
    write_ome_zarr(tall, np.zeros((8, 2048, 2048), np.uint16), (1, 1, 1), chunks=(64, 1024, 1024))
    thin = tmp_path / "thin.ome.zarr"
    write_ome_zarr(thin, np.zeros((8, 2048, 2048), np.uint16), (1, 1, 1), chunks=(2, 1024, 1024))
    # a chunk 64 planes tall on an 8-plane volume reads the 8 planes
    assert mem.slab_request(thin) < mem.slab_request(tall) == mem.slab_job_mb(8 * 2048 * 2048, 2)


def test_retries_ask_for_more():
    assert [mem.for_attempt(1000, a) for a in (1, 2, 3, 4)] == [1000, 1500, 2000, 2500]


# -- the real runs: every job asked for at least what it used -------------------------------


def check_requests(work: Path) -> set[str]:
    rows = mem.requests_and_peaks(work)
    assert rows, f"no job with a benchmark in {work}/.snakemake/log"
    over = [r for r in rows if r[3] > r[2]]
    assert not over, "jobs used more memory than they asked for (rule, benchmark, mem_mb, max_rss):\n" + "\n".join(
        map(str, over)
    )
    # and a request is not a blind guess: within a few times the measured peak
    far = [r for r in rows if r[3] > 0 and r[2] > max(4 * r[3], r[3] + 1500)]
    assert not far, "requests far above the measured peak:\n" + "\n".join(map(str, far))
    return {r[0] for r in rows}


def test_every_demo_job_asks_for_what_it_uses(demo_workflow):
    work, _ = demo_workflow
    rules = check_requests(work)
    assert {"ingest", "resample", "register", "detect_batch", "cells_atlas", "density_maps", "region_tables"} <= rules


def test_every_cohort_job_asks_for_what_it_uses(cohort_workflow):
    work, _ = cohort_workflow
    rules = check_requests(work)
    assert {"cohort_voxel_stats", "cohort_region_stats", "cohort_plots"} <= rules


def test_an_unreadable_source_still_runs_to_the_message_naming_it(tmp_path):
    """A source whose header cannot be read: the memory request falls back to
    FALLBACK_MB (no traceback from the request), the ingest job runs and fails with the
    message naming the file, and nothing complete-looking is left."""
    import yaml
    from conftest import run_snakemake

    (tmp_path / "signal.tif").write_bytes(b"not a TIFF at all" * 100)
    cfg = {
        "sample": "s1",
        "results": "results",
        "channels": {"signal": {"source": {"format": "tiff", "path": "signal.tif"}, "voxel_size": [4, 2, 2]}},
    }
    (tmp_path / "sample.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tmp_path, tmp_path / "sample.yaml", "results/s1/raw/signal.ome.zarr", timeout=300)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert f"mem_mb={mem.FALLBACK_MB}" in out
    assert "InputFunctionException" not in out and "Traceback" not in out
    assert "signal.tif" in (tmp_path / "results/s1/logs/ingest_signal.log").read_text()
    assert not (tmp_path / "results/s1/raw/signal.ome.zarr").exists()
