"""The annotation stage on the demo: detections → cells.cdb → edits made with the store API →
cells_curated.parquet and region counts that change by exactly those edits; a project with
edits is never replaced by a new export unless the config says so."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import run_snakemake

from spimflow.annotate import Project, markers_to_frame
from spimflow.steps.curate import KEPT, REJECTED, style_cell_id

pytestmark = pytest.mark.slow

CDB = "results/demo/annotation/cells.cdb"
CURATED = "results/demo/cells/cells_curated.parquet"


@pytest.fixture(scope="module")
def curated_demo(demo_workflow, tmp_path_factory):
    """A copy of the finished demo run with steps.annotate on (use_curated), run once."""
    work = tmp_path_factory.mktemp("annotate_demo")
    shutil.copytree(demo_workflow[0], work, dirs_exist_ok=True, symlinks=True)
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg["steps"]["annotate"] = {"enabled": True, "use_curated": True}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    res = run_snakemake(work, work / "config.yaml")
    assert res.returncode == 0, res.stderr[-5000:]
    return work


def test_export_holds_every_detection_and_reimports_unchanged(curated_demo):
    work = curated_demo
    raw = pd.read_parquet(work / "results/demo/cells/cells_raw.parquet")
    kept = pd.read_parquet(work / "results/demo/cells/cells.parquet")
    with Project.open(work / CDB) as project:
        markers = markers_to_frame(project)
        images = project.get_images()
    assert len(markers) == len(raw)
    assert (markers["type"] == KEPT).sum() == len(kept)
    assert len(images) == 119  # one image row per plane of the signal
    assert images["filename"].iloc[0].endswith(".tif")  # the demo's plane files, so ClickPoints can open them
    ids = np.array([style_cell_id(s) for s in markers["style"]])
    assert sorted(ids) == list(range(len(raw)))
    np.testing.assert_allclose(markers["x"].to_numpy(), raw["x"].to_numpy()[ids], atol=1e-9)
    assert (markers["z"].to_numpy() == np.floor(raw["z"].to_numpy()[ids] + 0.5)).all()
    curated = pd.read_parquet(work / CURATED)
    assert set(curated["curation"]) == {"detected"}
    pd.testing.assert_frame_equal(
        curated.drop(columns=["cell_id", "curation"]).reset_index(drop=True),
        kept.reset_index(drop=True),
        check_like=True,
    )


def region_own_counts(work) -> pd.Series:
    table = pd.read_csv(work / "results/demo/regions/counts.csv")
    return table.set_index("region_id")["own"]


def test_edits_come_back_exactly(curated_demo):
    work = curated_demo
    atlas_before = pd.read_parquet(work / "results/demo/cells/cells_atlas.parquet")
    own_before = region_own_counts(work)
    rng = np.random.default_rng(3)
    with Project.open(work / CDB, "r+") as project:
        markers = project.get_markers(type=KEPT)
        pick = rng.choice(markers["id"].to_numpy(), 25, replace=False)
        moved, deleted, retyped = pick[:10], pick[10:20], pick[20:25]
        before = markers.set_index("id")
        project.update_markers(moved, x=before.loc[moved, "x"].to_numpy() + 4.0)
        project.remove_markers(deleted.tolist())
        project.update_markers(retyped, type=REJECTED)
        # 10 added cells: in-plane neighbours of kept cells, where no detection is
        anchors = before.loc[rng.choice(markers["id"].to_numpy(), 10, replace=False)]
        project.set_markers(
            anchors["x"].to_numpy() + 9.0,
            anchors["y"].to_numpy() + 9.0,
            z=anchors["z"].to_numpy(),
            type=KEPT,
            layer="signal",
        )
        id_of = {m: style_cell_id(before.loc[m, "style"]) for m in pick}
    res = run_snakemake(work, work / "config.yaml")
    assert res.returncode == 0, res.stderr[-5000:]
    curated = pd.read_parquet(work / CURATED)
    kept_ids = set(atlas_before["cell_id"])
    gone = {id_of[m] for m in [*deleted, *retyped]}
    assert set(curated["cell_id"][curated["cell_id"] >= 0]) == kept_ids - gone
    assert (curated["curation"] == "added").sum() == 10
    assert set(curated.loc[curated["curation"] == "moved", "cell_id"]) == {id_of[m] for m in moved}
    added = curated[curated["curation"] == "added"]
    assert (added["cell_id"] == -1).all() and added["intensity_raw"].notna().all()
    moved_rows = curated[curated["curation"] == "moved"].set_index("cell_id")
    orig = atlas_before.set_index("cell_id")
    np.testing.assert_allclose(moved_rows["x"], orig.loc[moved_rows.index, "x"] + 4.0, atol=1e-9)
    # region counts change by exactly those cells
    atlas_after = pd.read_parquet(work / "results/demo/cells/cells_atlas.parquet")
    removed = orig.loc[[id_of[m] for m in [*deleted, *retyped, *moved]], "region_id"]
    new = atlas_after[atlas_after["curation"].isin(["moved", "added"])]["region_id"]
    expected = own_before.sub(removed.value_counts(), fill_value=0).add(new.value_counts(), fill_value=0)
    own_after = region_own_counts(work)
    pd.testing.assert_series_equal(
        own_after.sort_index(),
        expected.reindex(own_after.index).fillna(0).astype(own_after.dtype).sort_index(),
        check_names=False,
    )


def test_an_edited_project_is_not_replaced(curated_demo):
    work = curated_demo
    before = (work / CDB).read_bytes()
    res = run_snakemake(work, work / "config.yaml", "--forcerun", "annotation_export")
    assert res.returncode != 0
    log = (work / "results/demo/logs/annotation_export.log").read_text()
    assert "cells.cdb: not replaced: its markers were edited after the export" in log
    assert (work / CDB).read_bytes() == before
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg["steps"]["annotate"]["overwrite_edits"] = True
    (work / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    res = run_snakemake(work, work / "config.yaml", "--forcerun", "annotation_export")
    assert res.returncode == 0, res.stderr[-3000:]
    with Project.open(work / CDB) as project:
        assert len(project.get_markers()) == len(pd.read_parquet(work / "results/demo/cells/cells_raw.parquet"))
