"""The demo end to end through the real Snakemake workflow, checked against its ground truth."""

import json

import numpy as np
import pandas as pd
import tifffile
import yaml
import zarr
from conftest import REPO, run_snakemake
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from spimflow.config import parse_config


def matched_pairs(found_um: np.ndarray, true_um: np.ndarray, radius: float):
    """Optimal one-to-one matching of points within ``radius`` (µm)."""
    tree = cKDTree(true_um)
    pairs = tree.sparse_distance_matrix(cKDTree(found_um), radius, output_type="coo_matrix")
    cost = np.full((len(found_um), len(true_um)), 1e6)
    cost[pairs.col, pairs.row] = pairs.data
    rows, cols = linear_sum_assignment(cost)
    keep = cost[rows, cols] <= radius
    return rows[keep], cols[keep]


def test_demo_runs_end_to_end(demo_workflow):
    work, wall = demo_workflow
    print(f"demo pipeline: {wall:.0f} s wall on 2 cores")
    sd = work / "results" / "demo"
    cfg = parse_config(yaml.safe_load((REPO / "config" / "sample.yaml").read_text()))
    for name, ch in cfg.channels.all().items():
        group = zarr.open_group(str(sd / "raw" / f"{name}.ome.zarr"), mode="r")
        ms = group.attrs["ome"]["multiscales"][0]
        assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
        scale = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
        assert tuple(scale) == ch.voxel_size
        assert len(ms["datasets"]) >= 2
    # level 0 is the source, voxel for voxel
    plane = tifffile.imread(work / "resources/demo/sample/signal/Z0050.tif")
    assert np.array_equal(zarr.open_group(str(sd / "raw/signal.ome.zarr"), mode="r")["0"][50], plane)
    # the resolved config round-trips to the same model
    resolved = parse_config(yaml.safe_load((sd / "config.resolved.yaml").read_text()))
    assert resolved == cfg
    # every job left a log
    logs = {p.stem for p in (sd / "logs").glob("*.log")}
    assert {
        "ingest_signal",
        "ingest_autofluorescence",
        "resample_signal",
        "register",
        "detect_plan",
        "detect_gather",
        "threshold_cells",
        "cells_atlas",
        "qc_cells",
    } <= logs


def test_nothing_to_redo_after_a_complete_run(demo_workflow):
    work, _ = demo_workflow
    res = run_snakemake(work, work / "config.yaml", "-n")
    assert res.returncode == 0
    assert "Nothing to be done" in res.stdout + res.stderr


def test_cells_in_atlas_space_match_the_truth(demo_workflow):
    work, _ = demo_workflow
    cells = pd.read_parquet(work / "results/demo/cells/cells_atlas.parquet")
    truth = pd.read_csv(work / "resources/demo/truth/cells.csv")
    assert {"z", "y", "x", "az", "ay", "ax", "region_id", "region_acronym", "hemisphere"} <= set(cells.columns)
    vs = np.array([10.0, 5.0, 5.0])
    found, true = matched_pairs(cells[["z", "y", "x"]].to_numpy() * vs, truth[["z", "y", "x"]].to_numpy() * vs, 6.0)
    precision, recall = len(found) / len(cells), len(true) / len(truth)
    a = cells.iloc[found]
    t = truth.iloc[true]
    err = np.linalg.norm(a[["az", "ay", "ax"]].to_numpy() - t[["az", "ay", "ax"]].to_numpy(), axis=1)
    region_agree = float((a.region_id.to_numpy() == t.region_id.to_numpy()).mean())
    side_agree = float((a.hemisphere.to_numpy() == t.hemisphere.to_numpy()).mean())
    print(
        f"precision {precision:.3f} recall {recall:.3f}; atlas error mean {err.mean():.2f} voxels "
        f"(p95 {np.percentile(err, 95):.2f}); region agreement {region_agree:.3f}; hemisphere {side_agree:.3f}"
    )
    assert precision >= 0.95 and recall >= 0.95
    assert err.mean() < 1.0
    assert region_agree >= 0.9 and side_agree >= 0.95


def test_region_counts_follow_the_truth(demo_workflow):
    work, _ = demo_workflow
    cells = pd.read_parquet(work / "results/demo/cells/cells_atlas.parquet")
    truth = pd.read_csv(work / "resources/demo/truth/region_counts.csv").groupby("region_id")["count"].sum()
    counted = cells[cells.region_id > 0].groupby("region_id").size().reindex(truth.index, fill_value=0)
    big = truth[truth >= 50].index
    rel = np.abs(counted[big] - truth[big]) / truth[big]
    print("per-region relative count error (regions with >= 50 cells):", rel.round(3).to_dict())
    assert rel.max() < 0.15
    assert counted[truth == 0].sum() <= 0.02 * len(cells)
    assert np.corrcoef(counted, truth)[0, 1] > 0.98


def test_registration_summary_is_sane(demo_workflow):
    work, _ = demo_workflow
    meta = json.loads((work / "results/demo/registration/registration.json").read_text())
    assert meta["similarity"]["after"] >= 0.9
