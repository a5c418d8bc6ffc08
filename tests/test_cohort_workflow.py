"""The demo cohort end to end (3 control + 3 treated brains, CTXa3's density raised 4x in
the treated group) as one Snakemake DAG, checked against the truth it was built with."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import zarr
from conftest import COHORT_TARGETS, run_snakemake
from PIL import Image

from spimflow.atlas import load_brainglobe
from spimflow.steps.regions import hierarchy_violations

pytestmark = pytest.mark.slow

CHANGED = 113  # CTXa3
ANCESTORS = (110, 100, 997)  # CTXa, CTX, root
COHORT = "results/cohorts/demo_cohort"


def test_one_dag_builds_every_brain_and_the_statistics(cohort_workflow):
    work, wall = cohort_workflow
    print(f"demo cohort (6 brains + statistics): {wall:.0f} s wall on 2 cores")
    for sample in ("c1", "c2", "c3", "t1", "t2", "t3"):
        table = pd.read_csv(work / f"results/{sample}/regions/counts.csv")
        assert hierarchy_violations(table) == []
    samples = pd.read_csv(work / COHORT / "samples.csv")
    assert samples.to_dict("list") == {
        "sample": ["c1", "c2", "c3", "t1", "t2", "t3"],
        "group": ["control"] * 3 + ["treated"] * 3,
    }


def test_the_changed_region_and_its_ancestors_are_found(cohort_workflow):
    work, _ = cohort_workflow
    stats = pd.read_csv(work / COHORT / "regions/region_stats.csv").set_index("region_id")
    print(stats.loc[[CHANGED, *ANCESTORS], ["acronym", "fold_change", "p", "p_bh", "q"]])
    for rid in (CHANGED, *ANCESTORS):
        assert stats.loc[rid, "p_bh"] < 0.05, stats.loc[rid]
        assert stats.loc[rid, "fold_change"] > 1
    assert 2.0 < stats.loc[CHANGED, "fold_change"] < 4.5  # truly 4 (the demo thins crowded cells)


def test_unchanged_leaf_regions_are_rarely_called(cohort_workflow):
    work, _ = cohort_workflow
    stats = pd.read_csv(work / COHORT / "regions/region_stats.csv")
    atlas = load_brainglobe(work / "resources/cohort_demo/c1/atlas")
    leaves = [r for r in atlas.ontology.ids if not atlas.ontology.children(r) and r != CHANGED]
    called = stats[stats["region_id"].isin(leaves) & (stats["q"] < 0.05)]
    print(f"unchanged leaves called at q < 0.05: {len(called)} of {len(leaves)}: {list(called['acronym'])}")
    assert len(called) <= 0.05 * len(leaves)


def test_voxel_maps_show_the_effect_where_it_is(cohort_workflow):
    work, _ = cohort_workflow
    atlas = load_brainglobe(work / "resources/cohort_demo/c1/atlas")
    p_signed = np.asarray(zarr.open_group(str(work / COHORT / "voxels/p_signed.ome.zarr"), mode="r")["0"])
    mean_b = np.asarray(zarr.open_group(str(work / COHORT / "voxels/mean_b.ome.zarr"), mode="r")["0"])
    mean_a = np.asarray(zarr.open_group(str(work / COHORT / "voxels/mean_a.ome.zarr"), mode="r")["0"])
    assert p_signed.shape == atlas.shape
    assert np.all(np.isnan(p_signed[atlas.annotation == 0]))  # NaN outside the brain
    inside_changed = atlas.annotation == CHANGED
    # the treated brains' mean density is higher where the truth raised it
    assert mean_b[inside_changed].mean() > 1.5 * mean_a[inside_changed].mean()
    assert np.median(p_signed[inside_changed]) > 0  # positive: treated > control
    colour = np.asarray(Image.open(work / COHORT / "voxels/p_colour.tif"))
    assert colour.dtype == np.uint8


def test_plots_are_pictures(cohort_workflow):
    work, _ = cohort_workflow
    for name in ("volcano", "top_regions", "sample_scatter", "p_map_slices"):
        with Image.open(work / COHORT / f"plots/{name}.png") as img:
            assert img.size[0] > 300 and img.size[1] > 300


def test_one_html_report(cohort_workflow):
    work, _ = cohort_workflow
    res = run_snakemake(work, work / "config" / "cohort.yaml", *COHORT_TARGETS, "--report", str(work / "report.html"))
    assert res.returncode == 0, res.stderr[-3000:]
    html = (work / "report.html").read_text(errors="replace")
    assert len(html) > 100_000
    for needle in ("volcano.png", "region_stats.csv", "qc_cells.png", "qc_0.png"):
        assert needle in html, needle
