"""``spimflow tune``: a parameter search against hand-clicked markers, on a synthetic brain whose
true cells are the markers. Its numbers are checked against the workflow's own detection of the
whole volume; its shortcuts (one chain run per cell size, thresholds re-applied afterwards)
against the chain run at each setting. Also ``refine.center: centroid`` against cells built to
have a known shape centroid."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import ndimage

from spimflow.blocks import detect_volume
from spimflow.checks import detection_problems
from spimflow.cli import main
from spimflow.config import parse_config
from spimflow.io.omezarr import write_ome_zarr
from spimflow.params.detect import DetectParams, ThresholdParams
from spimflow.steps.detect import CELL_COLUMNS, detect_cells, filter_chain, find_maxima, threshold_cells
from spimflow.steps.detect.evaluate import (
    candidate_pairs,
    evaluate_against_markers,
    match_pairs,
    match_points,
    parse_box,
)
from spimflow.steps.detect.synthetic import make_synthetic_cells
from spimflow.tuning import (
    _Search,
    apply_snippet,
    detect_in_box,
    maxima_above,
    sized_params,
    snippet_problems,
    tune_config,
)

VOX = (10.0, 5.0, 5.0)
SHAPE = (36, 140, 150)
BOX = "3:33,12:128,10:140"
# sizes for cells twice as large as the synthetic ones (FWHM 10-14 µm), given explicitly
MISSIZED = {"blocks": {"size": [16, 64, 64]}, "dog": {"sigma_inner_um": 6.0, "sigma_outer_um": 12.0}}
COLUMNS = [c for c in CELL_COLUMNS if c != "block"]


def sample_dict(detect: dict) -> dict:
    """A detection-only config (no atlas, no autofluorescence) on the ingested signal of ``case``."""
    signal = {"source": {"format": "zarr", "path": "results/s1/raw/signal.ome.zarr"}, "voxel_size": list(VOX)}
    ranges = {"volume_um3": [200.0, None]}
    return {
        "sample": "s1",
        "channels": {"signal": signal},
        "steps": {"detect": detect, "threshold": {"ranges": ranges}},
    }


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """base/ with config.yaml (mis-sized detection), an ingested signal and truth.csv (the true cells)."""
    base = tmp_path_factory.mktemp("tune")
    volume, truth = make_synthetic_cells(SHAPE, VOX, density_per_mm3=20000, seed=7)
    results = base / "results" / "s1"
    (results / "raw").mkdir(parents=True)
    write_ome_zarr(results / "raw" / "signal.ome.zarr", volume, VOX, chunks=(8, 64, 64), n_levels=1, name="signal")
    config = sample_dict(MISSIZED)
    (base / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    truth[["z", "y", "x"]].to_csv(base / "truth.csv", index=False)
    return {"base": base, "volume": volume, "truth": truth, "config": config}


@pytest.fixture(scope="module")
def tuned(case):
    out = io.StringIO()
    result = tune_config(
        case["base"] / "config.yaml",
        case["base"] / "truth.csv",
        box=BOX,
        base=case["base"],
        out=case["base"] / "tuned.yaml",
        stream=out,
    )
    return result, out.getvalue()


def workflow_f1(case, config: dict) -> dict:
    """What the workflow counts with this config (whole volume, block grid, thresholds), in the box."""
    cfg = parse_config(config)
    cells = threshold_cells(detect_volume(case["volume"], VOX, cfg.steps.detect), cfg.steps.threshold.ranges)
    truth = case["truth"][["z", "y", "x"]].to_numpy()
    return evaluate_against_markers(cells[["z", "y", "x"]].to_numpy(), truth, VOX, 10.0, parse_box(BOX))


def test_tune_beats_the_config_and_its_snippet_reproduces_the_reported_f1(case, tuned):
    result, printed = tuned
    default = workflow_f1(case, case["config"])
    assert result.baseline.f1 == default["f1"]  # the first row is the config as the workflow runs it
    assert result.best.f1 >= default["f1"] + 0.02 and result.best.f1 >= 0.97
    text = (case["base"] / "tuned.yaml").read_text()
    assert f"F1 {result.best.f1:.4f}" in text and f"the config's F1 {default['f1']:.4f}" in text
    snippet = yaml.safe_load(text)
    merged = apply_snippet(case["config"], snippet)
    cfg = parse_config(merged)  # a valid config fragment ...
    assert detection_problems(cfg) == []  # ... that the workflow accepts
    again = workflow_f1(case, merged)
    assert again["f1"] == result.best.f1 and again["matched"] == result.best.metrics["matched"]
    assert result.check == result.best.metrics
    # only what differs: the diameter, and the sigmas the config gave explicitly (they would win)
    detect = snippet["steps"]["detect"]
    assert set(detect) <= {"cell_diameter_um", "dog", "maxima", "blocks"}
    assert detect["cell_diameter_um"] == cfg.steps.detect.cell_diameter_um
    assert set(detect["dog"]) == {"sigma_inner_um", "sigma_outer_um"}
    # the table: every setting tried, with its numbers
    lines = printed.splitlines()
    assert lines[1].split()[:3] == ["#", "stage", "diameter"]
    rows = [line for line in lines if line.split()[1:2] in (["grid"], ["refine"], ["config"])]
    assert len(rows) == len(result.trials) >= 20
    assert f"{result.best.f1:.3f}" in printed.split("best:")[1]


def test_tune_keeps_a_config_nothing_beats(case, tmp_path):
    """Markers exactly where the config's cells are: F1 1.0, nothing can beat it (the grid point equal to
    the config ties), the snippet is empty."""
    config = sample_dict({"cell_diameter_um": 12.0})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    cfg = parse_config(config)
    cells = threshold_cells(detect_volume(case["volume"], VOX, cfg.steps.detect), cfg.steps.threshold.ranges)
    cells[["z", "y", "x"]].to_csv(tmp_path / "own.csv", index=False)
    out = tmp_path / "same.yaml"
    stream = io.StringIO()
    result = tune_config(
        tmp_path / "config.yaml", tmp_path / "own.csv", box=BOX, base=case["base"], out=out, stream=stream
    )
    assert result.baseline.f1 == 1.0 and result.best is result.baseline
    assert sum(t.f1 == 1.0 for t in result.trials) > 1 and len(result.trials) > 20  # ties keep the config
    assert yaml.safe_load(out.read_text()) == {} and "nothing beat the config" in out.read_text()
    assert result.detect == cfg.steps.detect and result.threshold == cfg.steps.threshold


@pytest.mark.parametrize("h_max", [None, 60.0])
def test_maxima_at_a_higher_threshold_are_those_found_at_a_lower_one_above_it(case, h_max):
    p = DetectParams.model_validate({"maxima": {"h_max": h_max}})
    dog = filter_chain(case["volume"], VOX, p).dog
    low = find_maxima(dog, VOX, p.model_copy(update={"maxima": p.maxima.model_copy(update={"threshold": 5.0})}))
    if h_max:
        assert len(low.rejected) > 100  # the h-max test rejects candidates: the lists are filtered too
    for t in (20.0, 80.0, 300.0):
        direct = find_maxima(dog, VOX, p.model_copy(update={"maxima": p.maxima.model_copy(update={"threshold": t})}))
        got = maxima_above(low, dog, t)
        for field in ("peaks", "deltas", "rejected", "targets"):
            np.testing.assert_array_equal(getattr(got, field), getattr(direct, field))


@pytest.mark.parametrize(
    "user",
    [
        {"split": {"enabled": False}},
        {},
        {"maxima": {"h_max": 60.0}},
        {"refine": {"center": "centroid"}, "maxima": {"h_max": 60.0}},
    ],
)
def test_cells_at_a_threshold_equal_the_chain_run_at_that_threshold(case, user):
    """The search's shortcut (one chain run per size; the cells at a higher maxima threshold taken from its
    table, the objects run again only where the threshold could change them) gives the chain's cells exactly."""
    box = parse_box(BOX)
    truth = case["truth"][["z", "y", "x"]].to_numpy()
    s = _Search(case["volume"], VOX, user, DetectParams.model_validate(user), ThresholdParams(), truth, box, 10.0, None)
    measured = s._cells
    again = []
    for diameter in (9.0, 13.0):
        run = s.size_run(diameter)
        # counts the maxima measured again (the base, the first threshold, is measured in full)
        s._cells = lambda *a, only=None, **k: again.append(only) or measured(*a, only=only, **k)  # noqa: B023
        ts = sorted({run.t_low, *s.count_thresholds(run.values), 150.0})
        for t in ts[len(ts) // 2 :] + ts[: len(ts) // 2]:  # from the middle up, then below the base
            got = s.cells_at(diameter, t)
            expected = detect_in_box(case["volume"], box, VOX, sized_params(user, diameter, t))
            assert len(expected) > 50
            pd.testing.assert_frame_equal(
                got[COLUMNS].reset_index(drop=True), expected[COLUMNS].reset_index(drop=True), check_exact=True
            )
        s._cells = measured
    again = [only for only in again if only is not None]
    if "maxima" in user:  # h-max: candidates are rejected, and some thresholds need the objects again
        assert len(s.runs[13.0].rejected) > 100 and len(again) > 0
    if user == {"split": {"enabled": False}}:  # plain maxima: every threshold is a filter of one table
        assert not again


def test_tune_on_a_demo_box_with_the_demo_cells_as_markers(demo_dir, repo_root, tmp_path):
    """The embedded demo (config/sample.yaml, default detection): the tuned F1 is at least the default's."""
    import tifffile

    volume = np.stack([tifffile.imread(p) for p in sorted((demo_dir / "sample" / "signal").glob("Z*.tif"))])
    config = yaml.safe_load((repo_root / "config" / "sample.yaml").read_text())
    config.pop("demo")
    for channel in ("signal", "autofluorescence"):
        config["channels"][channel]["source"]["path"] = str(demo_dir / "sample" / channel / r"Z\d{4}.tif")
    config["atlas"]["path"] = str(demo_dir / "atlas")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    vox = tuple(config["channels"]["signal"]["voxel_size"])
    write_ome_zarr(tmp_path / "results" / "demo" / "raw" / "signal.ome.zarr", volume, vox, n_levels=1)
    box = "30:90,80:280,60:260"
    out = io.StringIO()
    result = tune_config(tmp_path / "config.yaml", demo_dir / "truth" / "cells.csv", box=box, base=tmp_path, stream=out)
    print(out.getvalue())
    assert result.baseline.metrics["markers"] > 300
    assert result.best.f1 >= result.baseline.f1 >= 0.95
    assert result.check == result.best.metrics
    assert f"best: F1 {result.best.f1:.3f}" in out.getvalue()
    assert f"the config's: F1 {result.baseline.f1:.3f}" in out.getvalue()
    assert snippet_problems(result.detect, result.threshold, vox) == []


def test_matching_a_subset_of_the_candidate_pairs_is_matching_the_subset():
    """The metrics of a threshold setting match its cells' share of the pairs found once."""
    rng = np.random.default_rng(2)
    det, ref = rng.random((400, 3)) * [20, 60, 60], rng.random((300, 3)) * [20, 60, 60]
    vox = (4.0, 2.0, 2.0)
    row, col, dist = candidate_pairs(det, ref, 6.0, vox)
    for keep in (np.ones(len(det), bool), rng.random(len(det)) < 0.5, np.zeros(len(det), bool)):
        sel = keep[row]
        got = match_pairs(int(keep.sum()), len(ref), row[sel], col[sel], dist[sel], 6.0)
        direct = match_points(det[keep], ref, 6.0, vox)
        assert (got.n_detected, got.n_matched, got.f1) == (direct.n_detected, direct.n_matched, direct.f1)
        np.testing.assert_array_equal(
            got.pairs, np.column_stack([np.flatnonzero(keep)[direct.pairs[:, 0]], direct.pairs[:, 1]]).reshape(-1, 2)
        )
    assert len(row) > 50 and 0 < match_points(det, ref, 6.0, vox).f1 < 1


# -- the command line ------------------------------------------------------------------------------------


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["tune", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_prints_the_table_and_the_snippet(case, capsys):
    base = case["base"]
    code, out, err = run_cli(
        capsys,
        base / "config.yaml",
        "--markers",
        base / "truth.csv",
        "--box",
        "28:40,20:80,20:80",
        "--rounds",
        "0",
        "--base",
        base,
    )
    assert code == 0, err
    assert "spimflow tune:" in out and "best: F1" in out
    assert f"box 28:40,20:80,20:80 cut to the volume: 28:{SHAPE[0] - 0.5:g},20:80,20:80" in out
    snippet = yaml.safe_load(out.split("\n\n")[-1])  # the YAML after the table (comments included)
    assert "steps" in snippet and parse_config(apply_snippet(case["config"], snippet))


def test_cli_errors_are_clear_and_exit_non_zero(case, capsys, tmp_path):
    base = case["base"]
    config, truth = base / "config.yaml", base / "truth.csv"
    code, _, err = run_cli(capsys, config, "--markers", base / "missing.csv", "--base", base)
    assert code != 0 and "missing.csv" in err and "no such point file" in err
    code, _, err = run_cli(capsys, config, "--markers", truth, "--box", "0:10,500:600,0:10", "--base", base)
    assert code != 0 and "--box" in err and "outside the signal volume along y" in err
    pd.DataFrame({"z": [1.0], "y": [2.0], "x": [3.0]}).to_csv(tmp_path / "one.csv", index=False)
    code, _, err = run_cli(
        capsys, config, "--markers", tmp_path / "one.csv", "--box", "10:20,50:60,50:60", "--base", base
    )
    assert code != 0 and "none of the 1 markers" in err
    code, _, err = run_cli(capsys, config, "--markers", truth, "--box", "10:5,0:1,0:1", "--base", base)
    assert code != 0 and "z0:z1,y0:y1,x0:x1" in err
    # not ingested: the message names the Snakemake target that makes the signal
    other = sample_dict(MISSIZED)
    other["sample"] = "s2"
    (tmp_path / "s2.yaml").write_text(yaml.safe_dump(other))
    code, _, err = run_cli(capsys, tmp_path / "s2.yaml", "--markers", truth, "--base", base)
    assert code != 0 and "run the ingest first" in err
    assert f"snakemake --configfile {tmp_path / 's2.yaml'} --cores 2 results/s2/raw/signal.ome.zarr" in err


# -- refine.center ---------------------------------------------------------------------------------------

ASYM_VOX = (4.0, 2.0, 2.0)


def asymmetric_cells(shape, centres_um, lobe_um=(12.0, 0.0, 0.0)) -> np.ndarray:
    """Cells made of a bright core (σ 4 µm) and a dimmer, wider lobe 12 µm further along z:
    one maximum each, their thresholded shape reaching further towards the lobe."""
    grids = [np.arange(n) * v for n, v in zip(shape, ASYM_VOX)]
    img = np.full(shape, 100.0, np.float32)
    for c in np.asarray(centres_um, float):
        for centre, sigma, amp in ((c, 4.0, 2000.0), (c + lobe_um, 5.0, 1200.0)):
            d2 = sum(
                ((g - x) ** 2).reshape([-1 if i == a else 1 for i in range(3)])
                for a, (g, x) in enumerate(zip(grids, centre))
            )
            img += (amp * np.exp(-d2 / (2 * sigma**2))).astype(np.float32)
    return img.astype(np.uint16)


def test_centroid_centre_is_the_centroid_of_the_thresholded_shape():
    img = asymmetric_cells((40, 40, 40), [(70.0, 40.0, 40.0)])
    peak_p = DetectParams.model_validate({"background": {"enabled": False}})
    cen_p = DetectParams.model_validate({"background": {"enabled": False}, "refine": {"center": "centroid"}})
    peak = detect_cells(img, ASYM_VOX, peak_p)
    cen = detect_cells(img, ASYM_VOX, cen_p)
    assert len(peak) == len(cen) == 1
    # the shape, computed here independently: the voxels above the shape threshold connected
    # to the peak inside the ball of shape.max_radius_um (one maximum: they all climb to it)
    dog = filter_chain(img, ASYM_VOX, cen_p).dog
    p = np.unravel_index(np.argmax(dog), dog.shape)
    grid = np.indices(dog.shape).astype(float)
    dist2 = sum(((grid[a] - p[a]) * ASYM_VOX[a]) ** 2 for a in range(3))
    mask = (dog > cen_p.shape.threshold) & (dist2 <= cen_p.shape.max_radius_um**2)
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    shape = labels == labels[p]
    assert shape.sum() == cen["size"].iloc[0] == peak["size"].iloc[0]
    expected = [grid[a][shape].mean() for a in range(3)]
    np.testing.assert_allclose(cen[["z", "y", "x"]].to_numpy()[0], expected, rtol=0, atol=1e-9)
    # the peak sits at the bright core; the centroid towards the lobe, along z only
    assert abs(peak["z"].iloc[0] - 70.0 / 4.0) < 0.5
    assert cen["z"].iloc[0] - peak["z"].iloc[0] > 0.3
    assert abs(cen["y"].iloc[0] - peak["y"].iloc[0]) < 1e-6
    # everything but the centre is the same
    same = [c for c in COLUMNS if c not in ("z", "y", "x", "edge")]
    pd.testing.assert_frame_equal(cen[same], peak[same])


def test_centroid_needs_the_shape():
    with pytest.raises(ValueError, match="refine.center: centroid needs the cell shape"):
        DetectParams.model_validate({"refine": {"center": "centroid"}, "shape": {"enabled": False}})
