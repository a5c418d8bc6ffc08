"""The demo's ground truth is consistent with the images it ships (checked independently)."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage

from spimflow.config import load_config
from spimflow.demo import load_truth, make_demo, true_sample_to_atlas
from spimflow.demo.sample import PRESETS
from spimflow.geometry import resampled_shape
from spimflow.orientation import Orientation

REPO = Path(__file__).resolve().parents[1]


def folder_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != "demo.json":
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def truth(demo_dir):
    return load_truth(demo_dir)


@pytest.fixture(scope="module")
def cells(demo_dir):
    return pd.read_csv(demo_dir / "truth" / "cells.csv")


@pytest.fixture(scope="module")
def structures(demo_dir):
    return json.loads((demo_dir / "atlas" / "structures.json").read_text())


def test_config_matches_demo_geometry(demo_dir):
    cfg = load_config(REPO / "config" / "sample.yaml")
    manifest = json.loads((demo_dir / "demo.json").read_text())
    for ch in (cfg.channels.signal, cfg.channels.autofluorescence):
        assert list(ch.voxel_size) == manifest["sample_voxel_size_um"]
        assert ch.orientation == manifest["sample_orientation"]
    assert len(list((demo_dir / "sample" / "signal").glob("Z*.tif"))) == manifest["sample_shape"][0]
    assert 1000 <= manifest["n_cells"] <= 5000


def test_deterministic_from_seed(demo_dir, tmp_path):
    again = tmp_path / "again"
    make_demo(again, seed=0)
    assert folder_digest(again) == folder_digest(demo_dir)
    other = tmp_path / "other"
    make_demo(other, seed=1)
    a = pd.read_csv(demo_dir / "truth" / "cells.csv")
    b = pd.read_csv(other / "truth" / "cells.csv")
    assert len(a) != len(b) or not np.allclose(a[["z", "y", "x"]], b[["z", "y", "x"]])
    # the atlas is the same for every seed, like a real atlas
    assert folder_digest(other / "atlas") == folder_digest(demo_dir / "atlas")


def test_ontology_shape(structures, demo_dir):
    by_id = {s["id"]: s for s in structures}
    ann = tifffile.imread(demo_dir / "atlas" / "annotation.tiff")
    labels = set(np.unique(ann).tolist()) - {0}
    assert labels <= set(by_id), "every label must be in structures.json"
    assert len(labels) >= 20
    depths = {len(s["structure_id_path"]) - 1 for s in structures}
    assert max(depths) >= 3
    for s in structures:
        path = s["structure_id_path"]
        assert path[-1] == s["id"] and path[0] == 997
        if len(path) > 1:
            assert by_id[path[-2]]["structure_id_path"] == path[:-1]
    assert len({s["acronym"] for s in structures}) == len(structures)
    # leaves only in the volume; mirror-symmetric across left/right (atlas axis 2)
    parents = {p for s in structures for p in s["structure_id_path"][:-1]}
    assert not (labels & parents)
    assert np.array_equal(ann, ann[:, :, ::-1])
    hemi = tifffile.imread(demo_dir / "atlas" / "hemispheres.tiff")
    assert set(np.unique(hemi[ann > 0]).tolist()) == {1, 2}
    assert np.all(hemi[:, :, : ann.shape[2] // 2][ann[:, :, : ann.shape[2] // 2] > 0] == 2), "asr: low axis-2 is right"


def test_cells_sit_in_their_regions(demo_dir, truth, cells):
    ann = tifffile.imread(demo_dir / "atlas" / "annotation.tiff")
    atlas_vox = true_sample_to_atlas(cells[["z", "y", "x"]].to_numpy(), truth)
    assert np.allclose(atlas_vox, cells[["az", "ay", "ax"]].to_numpy(), atol=1e-9)
    idx = np.rint(atlas_vox).astype(int)
    assert np.all(ann[tuple(idx.T)] == cells.region_id.to_numpy())
    counts = pd.read_csv(demo_dir / "truth" / "region_counts.csv")
    recount = cells.groupby(["region_id", "hemisphere"]).size()
    for row in counts.itertuples():
        assert row.count == recount.get((row.region_id, row.hemisphere), 0)
    assert counts["count"].sum() == len(cells)


def test_region_densities_differ(demo_dir):
    counts = pd.read_csv(demo_dir / "truth" / "region_counts.csv").groupby("region_id")["count"].sum()
    assert (counts == 0).sum() >= 3
    nonzero = counts[counts > 0]
    assert nonzero.max() >= 10 * nonzero.min()


def test_signal_has_a_maximum_at_each_cell(demo_dir, cells):
    """A local maximum of the (lightly smoothed) signal lies within ~1 voxel of true centres."""
    rng = np.random.default_rng(0)
    chosen = cells.iloc[rng.choice(len(cells), 60, replace=False)]
    files = sorted((demo_dir / "sample" / "signal").glob("Z*.tif"))
    hits = 0
    for c in chosen.itertuples():
        z0, y0, x0 = max(0, int(round(c.z)) - 2), int(round(c.y)) - 4, int(round(c.x)) - 4
        planes = [tifffile.imread(files[z])[y0 : y0 + 9, x0 : x0 + 9] for z in range(z0, min(len(files), z0 + 5))]
        vol = ndimage.gaussian_filter(np.stack(planes).astype(float), (0.5, 1, 1))
        maxima = np.argwhere(vol == ndimage.maximum_filter(vol, size=3)) + [z0, y0, x0]
        hits += np.any(np.all(np.abs(maxima - [c.z, c.y, c.x]) <= [1.0, 1.0, 1.0], axis=1))
    assert hits >= 0.9 * len(chosen)


def test_autofluorescence_is_the_reference_through_the_transform(demo_dir, truth):
    """Autofluorescence at random brain voxels correlates with reference(T(p))."""
    ref = tifffile.imread(demo_dir / "atlas" / "reference.tiff").astype(float)
    files = sorted((demo_dir / "sample" / "autofluorescence").glob("Z*.tif"))
    rng = np.random.default_rng(1)
    zs = rng.choice(len(files), 8, replace=False)
    auto_vals, ref_vals = [], []
    for z in zs:
        plane = tifffile.imread(files[z]).astype(float)
        yx = rng.integers(0, plane.shape, size=(400, 2))
        pts = np.column_stack([np.full(len(yx), z), yx])
        a = true_sample_to_atlas(pts, truth)
        r = ndimage.map_coordinates(ref, a.T, order=1)
        auto_vals.append(plane[yx[:, 0], yx[:, 1]])
        ref_vals.append(r)
    auto_vals, ref_vals = np.concatenate(auto_vals), np.concatenate(ref_vals)
    brain = ref_vals > 500
    assert brain.sum() > 200
    assert np.corrcoef(auto_vals[brain], ref_vals[brain])[0, 1] > 0.8


def test_annotation_in_resampled_has_the_resampled_shape(demo_dir, truth):
    ann = tifffile.imread(demo_dir / "truth" / "annotation_in_resampled.tif")
    orient = Orientation.from_codes(truth["sample_orientation"], truth["atlas_orientation"])
    shape = resampled_shape(
        orient.oriented_shape(truth["sample_shape"]),
        orient.oriented_values(truth["sample_voxel_size_um"]),
        truth["atlas_voxel_size_um"],
    )
    assert ann.shape == shape
    atlas_ann = tifffile.imread(demo_dir / "atlas" / "annotation.tiff")
    assert set(np.unique(ann).tolist()) <= set(np.unique(atlas_ann).tolist())
    # the transform is near volume-preserving: brain volume agrees within 25 %
    assert abs((ann > 0).sum() / (atlas_ann > 0).sum() - 1) < 0.25


@pytest.mark.slow
def test_cli_writes_the_manifest_last(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "spimflow", "demo", "--out", str(tmp_path / "d"), "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "d" / "demo.json").read_text())
    for rel in manifest["truth"].values():
        assert (tmp_path / "d" / rel).is_file()
    assert manifest["seed"] == 3 and set(PRESETS) >= {manifest["preset"]}


def test_large_config_matches_large_preset():
    cfg = load_config(REPO / "config" / "demo_large.yaml")
    assert cfg.demo.preset == "large"
    assert cfg.channels.signal.voxel_size == PRESETS["large"].voxel_size_um
    assert cfg.channels.autofluorescence.voxel_size == PRESETS["large"].voxel_size_um
    assert str(cfg.demo.out_dir) in cfg.channels.signal.source.path
