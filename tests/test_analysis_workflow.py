"""The atlas-space analysis of the demo brain (density maps, region tables) against its
ground truth, read from the shared demo run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr

from spimflow.atlas import load_brainglobe
from spimflow.steps.regions import hierarchy_violations
from spimflow.steps.voxelize import voxelize

pytestmark = pytest.mark.slow  # uses the demo pipeline run


def test_leaf_counts_follow_the_truth(demo_workflow):
    work, _ = demo_workflow
    table = pd.read_csv(work / "results/demo/regions/counts.csv")
    truth = pd.read_csv(work / "resources/demo/truth/region_counts.csv").groupby("region_id")["count"].sum()
    leaves = pd.read_csv(work / "results/demo/regions/leaves.csv").set_index("region_id")
    common = truth[truth >= 20].index
    r = np.corrcoef(truth[common], leaves.loc[common, "total"])[0, 1]
    print(f"leaf regions with >= 20 true cells: {len(common)}, Pearson r = {r:.4f}")
    assert len(common) >= 15 and r >= 0.98
    assert hierarchy_violations(table) == []
    # nothing dropped: the root, outside and unknown rows account for every cell
    cells = pd.read_parquet(work / "results/demo/cells/cells_atlas.parquet")
    roots = table[table["parent_id"].isna() & table["in_ontology"]]["total"].sum()
    assert roots + table[~table["in_ontology"]]["total"].sum() == len(cells)
    summary = (work / "results/demo/regions/summary.txt").read_text()
    assert summary.startswith(f"{len(cells)} cells")


def test_collapsed_tables_keep_every_cell(demo_workflow):
    work, _ = demo_workflow
    counts = pd.read_csv(work / "results/demo/regions/counts.csv")
    roots = counts["in_ontology"] & counts["parent_id"].isna()
    every_cell = counts.loc[roots, "total"].sum() + counts.loc[~counts["in_ontology"], "total"].sum()
    for depth in (1, 2):
        collapsed = pd.read_csv(work / f"results/demo/regions/counts_depth{depth}.csv")
        assert collapsed["total"].sum() == every_cell
        # a region at that depth pools its whole subtree: its total as in the full table
        at_depth = collapsed[collapsed["depth"] == depth].set_index("region_id")["total"]
        full = counts.set_index("region_id").loc[at_depth.index, "total"]
        assert len(at_depth) and (at_depth == full).all()


def test_density_map_is_the_voxelized_cells(demo_workflow):
    work, _ = demo_workflow
    atlas = load_brainglobe(work / "resources/demo/atlas")
    cells = pd.read_parquet(work / "results/demo/cells/cells_atlas.parquet")
    group = zarr.open_group(str(work / "results/demo/maps/density.ome.zarr"), mode="r")
    density = np.asarray(group["0"])
    assert density.shape == atlas.shape and density.dtype == np.float32
    ms = group.attrs["ome"]["multiscales"][0]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == list(atlas.voxel_size)
    assert group.attrs["spimflow"]["atlas_orientation"] == atlas.orientation
    assert group.attrs["spimflow"]["space"] == "atlas"
    expected = voxelize(cells[["az", "ay", "ax"]].to_numpy(), atlas.shape, atlas.voxel_size, "sphere", 375.0)
    np.testing.assert_array_equal(density, expected)
    # one cell alone in the grid counts in every voxel of its sphere: the map's sum is
    # (cells in the grid) x (sphere voxels) minus what the grid edges cut off
    assert density.sum() <= len(cells) * np.count_nonzero(
        voxelize(np.array([[30.0, 30.0, 30.0]]), (61, 61, 61), atlas.voxel_size, "sphere", 375.0)
    )
    np.testing.assert_array_equal(tifffile.imread(work / "results/demo/maps/density.tif"), density)
