"""Atlases by name: ``atlas: {format: brainglobe, name: ...}`` found in a BrainGlobe cache
folder the tests build from the demo atlas (nothing is downloaded)."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from conftest import run_snakemake

from spimflow.atlas import load_atlas
from spimflow.atlas.cache import atlas_versions, default_cache_dir, resolve_brainglobe_atlas, version_key
from spimflow.checks import validate_config_file
from spimflow.cli import main
from spimflow.config import AtlasConfig, parse_config
from spimflow.demo import write_demo_atlas
from spimflow.errors import ConfigError

NAME = "demo_mouse_25um"


@pytest.fixture(scope="module")
def demo_atlas(tmp_path_factory) -> Path:
    """The demo atlas as a BrainGlobe folder, written once (a few seconds)."""
    return write_demo_atlas(tmp_path_factory.mktemp("demo_atlas") / "atlas")


def fill_cache(cache: Path, demo_atlas: Path, versions=("1.2", "1.10", "1.9"), name=NAME) -> dict[str, Path]:
    """``cache/<name>_v<version>/`` for each version: copies of the demo atlas whose
    metadata.json records the version (so a test can tell them apart after loading)."""
    out = {}
    for v in versions:
        folder = cache / f"{name}_v{v}"
        shutil.copytree(demo_atlas, folder)
        meta = json.loads((folder / "metadata.json").read_text())
        (folder / "metadata.json").write_text(json.dumps({**meta, "name": f"{name}", "version": v}))
        out[v] = folder
    return out


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """An empty home folder (no BrainGlobe config, no cache) for the test."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("BRAINGLOBE_CONFIG_DIR", raising=False)
    monkeypatch.setitem(sys.modules, "brainglobe_atlasapi", None)  # "not installed", whatever this machine has
    return home


def signal_config(tmp_path: Path, atlas: dict, autofluorescence: bool = True) -> Path:
    """A sample config with tiny signal (and autofluorescence) planes and the given atlas."""
    for ch in ("sig", "auto"):
        d = tmp_path / "raw" / ch
        d.mkdir(parents=True, exist_ok=True)
        for z in range(3):
            tifffile.imwrite(d / f"Z{z:04d}.tif", np.full((6, 7), 100 + z, np.uint16))

    def chan(ch):
        return {
            "source": {"format": "pattern", "path": f"raw/{ch}/Z\\d{{4}}.tif"},
            "voxel_size": [25.0] * 3,
            "orientation": "asr",
        }

    channels = {"signal": chan("sig"), **({"autofluorescence": chan("auto")} if autofluorescence else {})}
    path = tmp_path / "sample.yaml"
    path.write_text(yaml.safe_dump({"sample": "b1", "channels": channels, "atlas": atlas}))
    return path


# -- versions and the cache folder ----------------------------------------------------------------


def test_versions_compare_numerically():
    assert sorted(["1.10", "1.2", "1.9", "2.0"], key=version_key) == ["1.2", "1.9", "1.10", "2.0"]
    assert version_key("v1.2") == (1, 2)
    with pytest.raises(ValueError, match="not a version"):
        version_key("latest")


def test_newest_version_is_found_in_the_home_cache(home, demo_atlas):
    cache = home / ".brainglobe"
    folders = fill_cache(cache, demo_atlas)
    (cache / f"{NAME}_v2.0").mkdir()  # an interrupted download: no metadata.json, never used
    fill_cache(cache, demo_atlas, versions=("9.9",), name=f"{NAME}_other")  # another atlas with a longer name
    assert list(atlas_versions(cache, NAME)) == ["1.2", "1.9", "1.10"]
    assert default_cache_dir() == (cache, "the BrainGlobe default")
    cfg = AtlasConfig(format="brainglobe", name=NAME)
    assert cfg.folder() == folders["1.10"]  # 1.10 > 1.9 > 1.2, not text order
    atlas = load_atlas(cfg)
    reference = load_atlas(AtlasConfig(format="brainglobe", path=demo_atlas))
    assert np.array_equal(atlas.annotation, reference.annotation) and atlas.voxel_size == (25.0, 25.0, 25.0)
    assert json.loads((cfg.folder() / "metadata.json").read_text())["version"] == "1.10"
    # a given version is found by its number
    assert AtlasConfig(format="brainglobe", name=NAME, version="1.9").folder() == folders["1.9"]
    assert AtlasConfig(format="brainglobe", name=NAME, version="v1.2").folder() == folders["1.2"]


def test_the_brainglobe_config_file_names_the_cache(home, tmp_path, demo_atlas, monkeypatch):
    elsewhere = tmp_path / "atlases"
    folders = fill_cache(elsewhere, demo_atlas, versions=("1.2",))
    fill_cache(home / ".brainglobe", demo_atlas, versions=("1.3",))  # not used: the config names another folder
    conf = home / ".config" / "brainglobe"
    conf.mkdir(parents=True)
    (conf / "bg_config.conf").write_text(
        f"[default_dirs]\nbrainglobe_dir = {elsewhere}\ninterm_download_dir = {elsewhere}\n"
    )
    assert resolve_brainglobe_atlas(NAME) == folders["1.2"]
    # BRAINGLOBE_CONFIG_DIR moves the config file, as it does for brainglobe-atlasapi
    moved = tmp_path / "bgconf"
    moved.mkdir()
    (moved / "bg_config.conf").write_text(f"[default_dirs]\nbrainglobe_dir = {home / '.brainglobe'}\n")
    monkeypatch.setenv("BRAINGLOBE_CONFIG_DIR", str(moved))
    assert resolve_brainglobe_atlas(NAME).name == f"{NAME}_v1.3"
    # atlas.cache_dir wins over both (relative to the working folder)
    assert AtlasConfig(format="brainglobe", name=NAME, cache_dir="atlases").folder(tmp_path) == folders["1.2"]


def test_a_missing_atlas_names_the_folder_searched_and_how_to_get_it(home, demo_atlas):
    cache = home / ".brainglobe"
    fill_cache(cache, demo_atlas, versions=("1.2", "1.10"))
    with pytest.raises(ConfigError) as err:
        resolve_brainglobe_atlas(NAME, version="1.3")
    msg = str(err.value)
    assert f"{NAME} version 1.3 not found in the cache folder {cache}" in msg
    assert "Versions found there: 1.2, 1.10" in msg
    assert "brainglobe-atlasapi is not installed" in msg and f"brainglobe install -a {NAME}" in msg
    with pytest.raises(ConfigError) as err:
        resolve_brainglobe_atlas("allen_mouse_25um")
    assert f"{cache}/allen_mouse_25um_v<version>/" in str(err.value) and "No version of it is there" in str(err.value)


def test_a_missing_atlas_stops_validate(home, tmp_path):
    config = signal_config(tmp_path, {"format": "brainglobe", "name": "allen_mouse_25um"})
    with pytest.raises(ConfigError, match=r"allen_mouse_25um not found in the cache folder .*\.brainglobe"):
        validate_config_file(config, tmp_path)
    assert main(["validate", str(config), "--base", str(tmp_path)]) == 2


@pytest.mark.slow
def test_a_missing_atlas_stops_snakemake_before_any_job(home, tmp_path):
    config = signal_config(tmp_path, {"format": "brainglobe", "name": "allen_mouse_25um"})
    res = run_snakemake(tmp_path, config)
    assert res.returncode != 0
    assert f"allen_mouse_25um not found in the cache folder {home / '.brainglobe'}" in res.stderr
    assert "brainglobe install -a allen_mouse_25um" in res.stderr
    assert not (tmp_path / "results").exists()


# -- fetching through brainglobe-atlasapi (a stand-in module: nothing is downloaded) ------------------


def fake_atlasapi(version: str, demo_atlas: Path, calls: list) -> types.ModuleType:
    """A module standing in for brainglobe_atlasapi: ``BrainGlobeAtlas(name, brainglobe_dir=...)``
    'downloads' the demo atlas as version 1.3 into the folder it is given, as 2.x does."""
    module = types.ModuleType("brainglobe_atlasapi")
    module.__version__ = version

    class BrainGlobeAtlas:
        def __init__(self, atlas_name, brainglobe_dir=None, check_latest=True, **kwargs):
            calls.append({"name": atlas_name, "brainglobe_dir": Path(brainglobe_dir), "check_latest": check_latest})
            fill_cache(Path(brainglobe_dir), demo_atlas, versions=("1.3",), name=atlas_name)

    module.BrainGlobeAtlas = BrainGlobeAtlas
    return module


def test_a_missing_atlas_is_fetched_with_brainglobe_atlasapi(home, tmp_path, demo_atlas, monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "brainglobe_atlasapi", fake_atlasapi("2.3.1", demo_atlas, calls))
    config = signal_config(tmp_path, {"format": "brainglobe", "name": NAME, "cache_dir": "cache"})
    run = validate_config_file(config, tmp_path)
    folder = tmp_path / "cache" / f"{NAME}_v1.3"
    assert calls == [{"name": NAME, "brainglobe_dir": tmp_path / "cache", "check_latest": False}]
    # the run reads the folder that was found: the config handed to the rules names it
    atlas = run.samples["b1"].atlas
    assert atlas.path == folder.resolve() and atlas.name is None
    assert [p.name for p in atlas.files(tmp_path)] == [
        "metadata.json",
        "structures.json",
        "annotation.tiff",
        "reference.tiff",
        "hemispheres.tiff",
    ]
    # found now: no second fetch
    validate_config_file(config, tmp_path)
    assert len(calls) == 1


def test_brainglobe_atlasapi_3_is_not_used(home, tmp_path, demo_atlas, monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "brainglobe_atlasapi", fake_atlasapi("3.0.2", demo_atlas, calls))
    with pytest.raises(ConfigError) as err:
        resolve_brainglobe_atlas(NAME)
    assert not calls
    assert "brainglobe-atlasapi 3.0.2 is installed" in str(err.value) and "OME-Zarr" in str(err.value)


# -- the config keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "atlas,words",
    [
        ({"format": "brainglobe"}, "needs either 'path'"),
        ({"format": "brainglobe", "path": "a", "name": NAME}, "not both"),
        ({"format": "brainglobe", "path": "a", "version": "1.2"}, "go with 'name'"),
        ({"format": "brainglobe", "name": NAME, "version": 1.2}, "write the version as text"),
        ({"format": "brainglobe", "name": NAME, "version": "newest"}, "not a version"),
        ({"format": "brainglobe", "name": "../up"}, "atlas.name"),
        (
            {
                "format": "allen",
                "name": NAME,
                "annotation": "a",
                "ontology": "o",
                "voxel_size": [1, 1, 1],
                "orientation": "asr",
            },
            "takes no name",
        ),
    ],
)
def test_bad_atlas_keys_are_refused(atlas, words):
    data = {
        "sample": "b1",
        "channels": {
            "signal": {"source": {"format": "tiff", "path": "s.tif"}, "voxel_size": [1, 1, 1], "orientation": "asr"}
        },
        "atlas": atlas,
    }
    with pytest.raises(ConfigError, match=words):
        parse_config(data)


def test_a_brainglobe_folder_must_hold_its_files(tmp_path, demo_atlas):
    shutil.copytree(demo_atlas, tmp_path / "atlas")
    (tmp_path / "atlas" / "annotation.tiff").unlink()
    config = signal_config(tmp_path, {"format": "brainglobe", "path": "atlas"})
    with pytest.raises(ConfigError, match=r"atlas.path: .*atlas is not a BrainGlobe atlas folder: no annotation.tiff"):
        validate_config_file(config, tmp_path)


@pytest.mark.slow
def test_the_rules_depend_on_the_files_of_the_named_atlas(home, tmp_path, demo_atlas):
    """A Snakemake dry run: the resample and register jobs read the cache folder's files."""
    folders = fill_cache(home / ".brainglobe", demo_atlas, versions=("1.2", "1.10"))
    config = signal_config(tmp_path, {"format": "brainglobe", "name": NAME})
    res = run_snakemake(tmp_path, config, "-n", "results/b1/registration/registration.json")
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    for name in ("metadata.json", "structures.json", "annotation.tiff", "reference.tiff", "hemispheres.tiff"):
        assert str(folders["1.10"] / name) in out, name
    assert str(folders["1.2"]) not in out
