"""Curation logic (markers vs the detections they came from) and `spimflow evaluate`, on
tables and volumes built here."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from test_config import real_config

from spimflow.annotate import Project, frame_to_markers, markers_to_frame
from spimflow.blocks import detect_volume
from spimflow.cli import main
from spimflow.params.detect import DetectParams
from spimflow.steps.curate import (
    KEPT,
    REJECTED,
    curate,
    curated_cells,
    detections_as_markers,
    kept_mask,
    measure_at,
)
from spimflow.steps.detect.synthetic import make_synthetic_cells

VOX = (4.0, 2.0, 2.0)


@pytest.fixture(scope="module")
def volume_and_cells():
    vol, truth = make_synthetic_cells((24, 96, 96), VOX, density_per_mm3=20000, seed=2)
    cells = detect_volume(vol, VOX, DetectParams())
    return vol, cells


def project_with(tmp_path, cells_raw, kept):
    path = tmp_path / "cells.cdb"
    with Project.create(path) as project:
        project.add_volume_planes(tmp_path / "signal.ome.zarr", 24, layer="signal")
        frame_to_markers(project, detections_as_markers(cells_raw, kept))
    return path


def test_round_trip_without_edits_gives_the_kept_cells(tmp_path, volume_and_cells):
    vol, raw = volume_and_cells
    kept = np.arange(len(raw)) % 4 != 0
    path = project_with(tmp_path, raw, kept)
    with Project.open(path) as project:
        markers = markers_to_frame(project)
    table = curated_cells(raw, markers, kept, vol, VOX, DetectParams())
    assert set(table["curation"]) == {"detected"}
    pd.testing.assert_frame_equal(
        table.drop(columns=["cell_id", "curation"]), raw[kept].reset_index(drop=True), check_dtype=True
    )
    assert kept_mask(raw, raw[kept]).tolist() == kept.tolist()


def test_every_kind_of_edit(tmp_path, volume_and_cells):
    vol, raw = volume_and_cells
    kept = np.arange(len(raw)) % 4 != 0
    path = project_with(tmp_path, raw, kept)
    with Project.open(path, "r+") as project:
        m = project.get_markers().set_index("id")
        cell_ids = m.index[m["type"] == KEPT].to_numpy()
        rejected_ids = m.index[m["type"] == REJECTED].to_numpy()
        move, delete, retype = cell_ids[:3], cell_ids[3:6], cell_ids[6:8]
        accept = rejected_ids[:2]
        project.update_markers(move, y=m.loc[move, "y"].to_numpy() + 2.0)
        project.remove_markers(delete.tolist())
        project.update_markers(retype, type=REJECTED)
        project.update_markers(accept, type=KEPT)
        added_at = raw.iloc[0][["z", "y", "x"]].to_numpy()  # a real cell the "detector missed"
        project.set_markers([added_at[2] + 0.5], [added_at[1] + 0.5], z=[round(added_at[0])], type=KEPT, layer="signal")
        markers = markers_to_frame(project)
    table = curated_cells(raw, markers, kept, vol, VOX, DetectParams())
    counts = table["curation"].value_counts().to_dict()
    assert counts == {"detected": int(kept.sum()) - 8, "moved": 3, "accepted": 2, "added": 1}
    assert len(table) == int(kept.sum()) - 3 - 2 + 2 + 1
    moved = table[table["curation"] == "moved"]
    assert (moved["block"] == -1).all()
    added = table[table["curation"] == "added"].iloc[0]
    assert added["cell_id"] == -1
    # an added cell on a real cell is measured like the detector measured that cell
    first = raw.iloc[0]
    assert added["size"] > 0 and abs(added["intensity_raw"] - first["intensity_raw"]) <= 0.05 * first["intensity_raw"]


def test_measure_at_a_detected_centre_reproduces_the_detection(volume_and_cells):
    vol, raw = volume_and_cells
    some = raw.iloc[:5]
    # centres on their peak voxel (the detector measures around the peak voxel)
    peaks = np.floor(some[["z", "y", "x"]].to_numpy() + 0.5)
    fresh = measure_at(vol, peaks, VOX, DetectParams())
    np.testing.assert_allclose(fresh["intensity_raw"], some["intensity_raw"], rtol=1e-6)
    np.testing.assert_allclose(fresh["intensity_dog"], some["intensity_dog"], rtol=1e-5)


def test_markers_from_other_detections_are_refused():
    raw = pd.DataFrame({"z": [1.0], "y": [1.0], "x": [1.0]})
    markers = pd.DataFrame({"z": [1], "y": [1.0], "x": [1.0], "type": [KEPT], "style": ['{"spimflow_cell": 9}']})
    with pytest.raises(ValueError, match="other detections"):
        curate(raw, markers)


def test_evaluate_cli(tmp_path, capsys):
    cfg = real_config(tmp_path)
    (tmp_path / "brain.yaml").write_text(yaml.safe_dump(cfg))
    from test_atlas import write_brainglobe

    write_brainglobe(tmp_path / "atlas")
    cells_dir = tmp_path / "results" / "brain1" / "cells"
    cells_dir.mkdir(parents=True)
    cells = pd.DataFrame({"z": [1.0, 1.0, 1.0, 9.0], "y": [1.0, 2.0, 2.0, 9.0], "x": [1.0, 2.0, 0.0, 9.0]})
    cells.to_parquet(cells_dir / "cells.parquet")
    # markers: two match (within 3 µm at 4x2x2 µm voxels), one is missed; the far cell is outside the box
    pd.DataFrame({"z": [1, 1, 2], "y": [1.0, 2.5, 0.0], "x": [1.0, 2.0, 0.0]}).to_csv(tmp_path / "m.csv", index=False)
    args = ["evaluate", str(tmp_path / "brain.yaml"), "--base", str(tmp_path), "--markers", str(tmp_path / "m.csv")]
    assert main([*args, "--radius-um", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["detected"], result["markers"], result["matched"]) == (3, 3, 2)
    assert result["precision"] == pytest.approx(2 / 3) and result["f1"] == pytest.approx(2 / 3)
    assert main([*args, "--box", "0:20,0:20,0:20", "--radius-um", "3"]) == 0
    assert "detected 4, markers 3, matched 2" in capsys.readouterr().out
    assert main([*args, "--box", "5:1,0:2,0:2"]) == 2
    assert "--box" in capsys.readouterr().err
