"""Detection-only runs: no atlas and no autofluorescence channel (and no orientation). The
workflow builds what it can (ingest, detection, thresholding, QC, annotation projects),
says first which stages it skips and why, and `spimflow validate` says the same."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml
from conftest import REPO, run_snakemake
from test_atlas import write_brainglobe

from spimflow.checks import ATLAS_STAGES, REGISTRATION_STAGES, skip_notice, skipped_stages, validate_config_file
from spimflow.cli import main
from spimflow.cohort import load_run
from spimflow.config import parse_config
from spimflow.errors import ConfigError
from spimflow.steps.detect.evaluate import evaluate_against_markers

NOTICE = (
    "spimflow: detection only — no atlas configured: skipping resample, register, atlas_overlay, cells_atlas, "
    "density_maps, region_tables"
)


def first_line(stderr: str) -> str:
    """The first line of a run's output after Snakemake's own note on the profile it uses
    (printed while Snakemake reads its command line, before the workflow is read)."""
    lines = [line for line in stderr.splitlines() if not line.startswith("Using workflow specific profile")]
    return lines[0]


def signal_only(path: str = "signal.tif", **extra) -> dict:
    """A config with nothing but the signal channel: no atlas, no autofluorescence, no orientation."""
    return {
        "sample": "crop",
        "channels": {"signal": {"source": {"format": "tiff", "path": path}, "voxel_size": [4.0, 2.0, 2.0]}},
        **extra,
    }


# -- the config -------------------------------------------------------------------------------------


def test_atlas_autofluorescence_and_orientation_are_optional():
    cfg = parse_config(signal_only())
    assert cfg.atlas is None and cfg.channels.autofluorescence is None and cfg.channels.signal.orientation is None
    assert list(cfg.channels.all()) == ["signal"]
    assert skipped_stages(cfg) == (ATLAS_STAGES, "detection only — no atlas configured")
    assert skip_notice(cfg) == NOTICE


def test_an_atlas_needs_the_orientation_of_every_channel():
    data = signal_only(atlas={"format": "brainglobe", "path": "atlas"})
    with pytest.raises(ConfigError) as err:
        parse_config(data, "s.yaml")
    assert "s.yaml: channels.signal.orientation: required with an atlas" in str(err.value)
    data["channels"]["signal"]["orientation"] = "ipl"
    data["channels"]["extra"] = {"dapi": copy.deepcopy(data["channels"]["signal"])}
    del data["channels"]["extra"]["dapi"]["orientation"]
    with pytest.raises(ConfigError, match="channels.extra.dapi.orientation: required with an atlas"):
        parse_config(data)


def test_an_atlas_without_autofluorescence_skips_the_registration():
    data = signal_only(atlas={"format": "brainglobe", "path": "atlas"})
    data["channels"]["signal"]["orientation"] = "ipl"
    cfg = parse_config(data)
    stages, why = skipped_stages(cfg)
    assert stages == REGISTRATION_STAGES and "resample" not in stages
    assert skip_notice(cfg) == f"spimflow: {why}: skipping {', '.join(REGISTRATION_STAGES)}"
    assert "channels.autofluorescence" in why and "registration" in why
    # without density maps there are none to skip
    data["steps"] = {"voxelize": {"enabled": False}}
    assert "density_maps" not in skipped_stages(parse_config(data))[0]
    # a full config skips nothing
    data["channels"]["autofluorescence"] = copy.deepcopy(data["channels"]["signal"])
    assert skipped_stages(parse_config(data)) == ((), "") and skip_notice(parse_config(data)) is None


def test_validate_says_first_which_stages_it_skips(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "signal.tif", np.ones((4, 8, 8), np.uint16), photometric="minisblack")
    path = tmp_path / "crop.yaml"
    path.write_text(yaml.safe_dump(signal_only()))
    assert main(["validate", str(path), "--base", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == NOTICE
    assert lines[1] == f"{path}: OK (sample 'crop'; channels: signal; atlas: none)"


def test_a_cohort_needs_an_atlas_and_autofluorescence_in_every_sample(tmp_path):
    tifffile.imwrite(tmp_path / "signal.tif", np.ones((4, 8, 8), np.uint16), photometric="minisblack")
    write_brainglobe(tmp_path / "atlas")
    full = signal_only(atlas={"format": "brainglobe", "path": "atlas"})
    full["sample"] = "{sample}"
    full["channels"]["signal"]["orientation"] = "ipl"
    full["channels"]["autofluorescence"] = copy.deepcopy(full["channels"]["signal"])
    (tmp_path / "brain.yaml").write_text(yaml.safe_dump(full))
    samples = {n: {"config": "brain.yaml", "group": g} for n, g in (("a1", "c"), ("a2", "c"), ("b1", "t"), ("b2", "t"))}
    assert len(load_run({"cohort": "x", "samples": samples}, "cohort.yaml", tmp_path).samples) == 4
    samples["a2"]["set"] = {"atlas": None}
    samples["b1"]["set"] = {"channels": {"autofluorescence": None}}
    (tmp_path / "cohort.yaml").write_text(yaml.safe_dump({"cohort": "x", "samples": samples}))
    with pytest.raises(ConfigError) as err:
        validate_config_file(tmp_path / "cohort.yaml", tmp_path)
    msg = str(err.value)
    assert "samples.a2: no atlas; a cohort compares brains in atlas space" in msg
    assert "samples.b1: no channels.autofluorescence; a cohort compares brains in atlas space" in msg
    assert "samples.a1" not in msg and "samples.b2" not in msg


# -- the workflow ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_atlas_without_autofluorescence_resamples_but_does_not_register(tmp_path):
    """A dry run: the DAG has ingest, detection and resample jobs, no registration job."""
    tifffile.imwrite(tmp_path / "signal.tif", np.random.default_rng(0).poisson(100, (8, 40, 40)).astype(np.uint16))
    write_brainglobe(tmp_path / "atlas")
    data = signal_only(atlas={"format": "brainglobe", "path": "atlas"})
    data["channels"]["signal"]["orientation"] = "ipl"
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    res = run_snakemake(tmp_path, tmp_path / "s.yaml", "-n")
    assert res.returncode == 0, res.stderr[-3000:]
    assert first_line(res.stderr) == skip_notice(parse_config(data))
    jobs = {line.split()[0] for line in res.stdout.splitlines() if line.strip() and line.split()[-1].isdigit()}
    assert {"ingest", "resample", "detect_plan", "threshold_cells", "qc_cells"} <= jobs
    assert not jobs & set(REGISTRATION_STAGES)
    assert not (tmp_path / "results").exists()


# a slab of the demo brain (source voxels [start, stop) per axis): "counting cells in a crop"
CROP = {"z": [0, 119], "y": [100, 260], "x": [80, 240]}


@pytest.fixture(scope="module")
def detection_only_run(demo_dir, tmp_path_factory):
    """A slab of the demo's signal planes as a detection-only brain (no atlas, no
    autofluorescence, no orientation), run by real Snakemake with the default target and
    annotation projects on."""
    work = tmp_path_factory.mktemp("detection_only")
    demo_steps = yaml.safe_load((REPO / "config" / "sample.yaml").read_text())["steps"]
    data = signal_only(path=str(demo_dir / "sample" / "signal" / "Z\\d{4}.tif"))
    data["channels"]["signal"]["source"]["format"] = "pattern"
    data["channels"]["signal"]["voxel_size"] = [10.0, 5.0, 5.0]
    data["channels"]["signal"]["crop"] = CROP
    data["steps"] = {"detect": demo_steps["detect"], "annotate": {"enabled": True}}
    (work / "crop.yaml").write_text(yaml.safe_dump(data))
    res = run_snakemake(work, work / "crop.yaml")
    assert res.returncode == 0, res.stderr[-6000:]
    return work, res


def test_a_detection_only_run_goes_end_to_end(detection_only_run, demo_dir):
    work, res = detection_only_run
    assert first_line(res.stderr) == NOTICE  # the first thing the run says
    out = work / "results" / "crop"
    # the cells are there and right: the demo's true cells, in the slab's voxels, compared
    # inside the slab less a margin of 1.5 cell diameters (demo cells: sigma 4-6 µm)
    cells = pd.read_parquet(out / "cells" / "cells.parquet")
    start = np.array([CROP[a][0] for a in "zyx"], float)
    truth = pd.read_csv(demo_dir / "truth" / "cells.csv")[["z", "y", "x"]].to_numpy() - start
    shape = [CROP[a][1] - CROP[a][0] for a in "zyx"]
    margin = (2, 3, 3)  # voxels of (10, 5, 5) µm
    box = tuple((m, n - m) for m, n in zip(margin, shape))
    r = evaluate_against_markers(cells[["z", "y", "x"]].to_numpy(), truth, (10.0, 5.0, 5.0), 6.0, box)
    print(
        f"detection only: {r['markers']} true cells, {r['detected']} found, P {r['precision']:.3f} R {r['recall']:.3f}"
    )
    assert r["markers"] > 300 and r["f1"] >= 0.95 and r["precision"] >= 0.95 and r["recall"] >= 0.95
    assert len(pd.read_csv(out / "cells" / "cells.csv")) == len(cells)
    for made in ("cells/cells_raw.parquet", "cells/qc_cells.png", "cells/qc_overlay.ome.zarr", "config.resolved.yaml"):
        assert (out / made).exists(), made
    assert yaml.safe_load((out / "config.resolved.yaml").read_text())["atlas"] is None
    # nothing of the atlas stages
    assert sorted(p.name for p in (out / "raw").iterdir()) == ["signal.ome.zarr"]
    for absent in ("resampled", "registration", "maps", "regions", "cells/cells_atlas.parquet"):
        assert not (out / absent).exists(), absent
    assert not any(f"rule {stage}:" in res.stderr for stage in ATLAS_STAGES)


def test_annotation_projects_and_layers_work_without_an_atlas(detection_only_run):
    from spimflow.annotate import Project, markers_to_frame
    from spimflow.napari._layers import raw_space_layers

    work, _ = detection_only_run
    out = work / "results" / "crop"
    raw = pd.read_parquet(out / "cells" / "cells_raw.parquet")
    with Project.open(out / "annotation" / "cells.cdb") as project:
        markers = markers_to_frame(project)
    assert len(markers) == len(raw)
    assert markers["text"].str.startswith("I=").all()  # measurements only: no region acronym without an atlas
    assert len(pd.read_parquet(out / "cells" / "cells_curated.parquet")) == len(
        pd.read_parquet(out / "cells" / "cells.parquet")
    )
    names = [kw["name"] for _, kw, _ in raw_space_layers(out)]
    assert "signal" in names and "cells" in names and "atlas regions" not in names
