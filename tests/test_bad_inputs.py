"""The bad-input corpus: bad configs (tests/bad_inputs/configs.yaml) and bad data built here.

Every case must exit non-zero with a message naming its culprit (config key or file) and
leave no output behind. Config cases and data visible in headers or in the atlas go
through ``spimflow validate`` (the CLI's own entry point, in process); data whose
problem only shows in the pixels goes through the ingest rule's task, called the way
Snakemake calls it (``spimflow.tasks.dispatch``). A hypothesis test fuzzes the config
models: no input may produce anything but a clean config error.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import tifffile
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spimflow.cli import main as spimflow
from spimflow.config import parse_config
from spimflow.errors import ConfigError
from spimflow.tasks import dispatch

HERE = Path(__file__).parent
CASES = yaml.safe_load((HERE / "bad_inputs" / "configs.yaml").read_text())
PLANE = (24, 28)
N_PLANES = 6
ATLAS_SHAPE = (8, 10, 12)

BASE = {
    "sample": "b1",
    "results": "results",
    "channels": {
        "signal": {
            "source": {"format": "pattern", "path": r"signal/Z\d{4}.tif"},
            "voxel_size": [10.0, 5.0, 5.0],
            "orientation": "ipl",
        },
        "autofluorescence": {
            "source": {"format": "pattern", "path": r"auto/Z\d{4}.tif"},
            "voxel_size": [10.0, 5.0, 5.0],
            "orientation": "ipl",
        },
    },
    "atlas": {"format": "brainglobe", "path": "atlas"},
}


def write_planes(folder: Path, n: int = N_PLANES, dtype=np.uint16) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for z in range(n):
        tifffile.imwrite(folder / f"Z{z:04d}.tif", rng.integers(100, 2000, PLANE).astype(dtype))


def structures() -> list[dict]:
    def region(i, acronym, path):
        return {
            "id": i,
            "acronym": acronym,
            "name": acronym,
            "structure_id_path": path,
            "rgb_triplet": [i % 256, 80, 120],
        }

    return [region(997, "root", [997]), region(8, "grey", [997, 8]), region(15, "A", [997, 8, 15])]


def write_atlas(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    ann = np.zeros(ATLAS_SHAPE, np.uint32)
    ann[2:6, 2:8, 2:10] = 15
    ann[1:7, 1:9, 1:3] = 8
    meta = {"name": "tiny_25um", "resolution": [25.0, 25.0, 25.0], "orientation": "asr", "shape": list(ATLAS_SHAPE)}
    (folder / "metadata.json").write_text(json.dumps({**meta, "symmetric": True}))
    (folder / "structures.json").write_text(json.dumps(structures()))
    tifffile.imwrite(folder / "annotation.tiff", ann)
    tifffile.imwrite(folder / "reference.tiff", (ann > 0).astype(np.uint16) * 1000)


@pytest.fixture(scope="module")
def good_inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("good")
    write_planes(root / "signal")
    write_planes(root / "auto")
    write_atlas(root / "atlas")
    return root


@pytest.fixture
def inputs(good_inputs, tmp_path) -> Path:
    """A fresh copy of the good inputs (data cases break files in it)."""
    work = tmp_path / "w"
    shutil.copytree(good_inputs, work)
    return work


def patched(config: dict, case: dict) -> dict:
    out = copy.deepcopy(config)
    for dotted, value in (case.get("set") or {}).items():
        *parents, last = dotted.split(".")
        node = out
        for key in parents:
            if not isinstance(node.get(key), dict):
                node[key] = {}  # a later key replaces what an earlier one set (the fuzz sets both)
            node = node[key]
        node[last] = value
    for dotted in case.get("delete") or []:
        *parents, last = dotted.split(".")
        node = out
        for key in parents:
            node = node[key]
        del node[last]
    return out


def validate(work: Path, config: dict, capsys) -> tuple[int, str]:
    path = work / "sample.yaml"
    path.write_text(yaml.safe_dump(config))
    code = spimflow(["validate", str(path), "--base", str(work)])
    err = capsys.readouterr().err
    return code, err


def no_outputs(work: Path) -> bool:
    return not any(p.name == "results" or p.name == "out" for p in work.rglob("*"))


def test_the_base_config_and_data_are_good(good_inputs, capsys):
    code, err = validate(good_inputs, BASE, capsys)
    assert code == 0, err


def test_the_corpus_is_large_and_unique():
    ids = [c["id"] for c in CASES]
    assert len(ids) >= 40 and len(set(ids)) == len(ids)
    assert all(c.get("expect") for c in CASES)
    assert len(DATA_CASES) >= 20


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_config(good_inputs, tmp_path, case, capsys):
    work = tmp_path / "w"
    work.mkdir()
    for name in ("signal", "auto", "atlas"):  # the good data, read-only for these cases
        (work / name).symlink_to(good_inputs / name)
    code, err = validate(work, patched(BASE, case), capsys)
    assert code != 0, f"accepted: {case}"
    assert case["expect"] in err, err
    assert "Traceback" not in err
    assert no_outputs(work)


# -- bad data ------------------------------------------------------------------------------


def _plane(work: Path, z: int, channel: str = "signal") -> Path:
    return work / channel / f"Z{z:04d}.tif"


def truncated_plane(work):
    f = _plane(work, 3)
    f.write_bytes(f.read_bytes()[:100])
    return {}, "Z0003.tif: not a readable TIFF file"


def plane_not_a_tiff(work):
    _plane(work, 2).write_text("not an image")
    return {}, "Z0002.tif: not a readable TIFF file"


def plane_of_another_shape(work):
    tifffile.imwrite(_plane(work, 4), np.zeros((PLANE[0], PLANE[1] + 1), np.uint16))
    return {}, "Z0004.tif: plane has shape (24, 29)"


def plane_of_another_dtype(work):
    tifffile.imwrite(_plane(work, 1), np.zeros(PLANE, np.float32))
    return {}, "Z0001.tif: plane has shape (24, 28) and dtype float32"


def gap_in_the_planes(work):
    _plane(work, 2).unlink()
    return {}, "gaps (missing 2)"


def two_files_for_one_plane(work):
    shutil.copy(_plane(work, 2), work / "signal" / "Z002.tif")
    return {"channels.signal.source.path": r"signal/Z\d+.tif"}, "both have plane number 2"


def empty_plane_folder(work):
    for f in (work / "signal").iterdir():
        f.unlink()
    return {}, "matches no file"


def one_plane_only(work):
    for z in range(1, N_PLANES):
        _plane(work, z).unlink()
    return {}, "1 z plane(s)"


def stack_with_a_garbage_header(work):
    (work / "stack.tif").write_bytes(b"II*\x00" + b"\xff" * 64)
    return {"channels.signal.source": {"format": "tiff", "path": "stack.tif"}}, "stack.tif: no image in this TIFF file"


def nrrd_with_a_bad_header(work):
    (work / "v.nrrd").write_text("NRRD0004\ntype: float\ndimension: 3\nsizes: 4 4\nencoding: raw\n\n")
    return {"channels.signal.source": {"format": "nrrd", "path": "v.nrrd"}}, "v.nrrd"


def mhd_without_its_data(work):
    (work / "v.mhd").write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_USHORT\nElementDataFile = v.raw\n"
    )
    return {"channels.signal.source": {"format": "mhd", "path": "v.mhd"}}, "v.mhd: its data file"


def zarr_without_the_array(work):
    import zarr

    zarr.open_group(str(work / "v.zarr"), mode="w")
    return {"channels.signal.source": {"format": "zarr", "path": "v.zarr"}}, "v.zarr"


def imaris_without_a_dataset(work):
    with h5py.File(work / "v.ims", "w") as f:
        f.create_group("Nothing")
    return {"channels.signal.source": {"format": "ims", "path": "v.ims"}}, "v.ims: no 'DataSet' group"


def crop_beyond_the_planes(work):
    return {"channels.signal.crop": {"z": [2, 40]}}, "crop.z = [2, 40) is outside the volume"


def empty_atlas_folder(work):
    shutil.rmtree(work / "atlas")
    (work / "atlas").mkdir()
    return {}, "is not a BrainGlobe atlas folder: no metadata.json"


def atlas_without_annotation(work):
    (work / "atlas" / "annotation.tiff").unlink()
    return {}, "atlas folder: no annotation.tiff"


def atlas_without_ontology(work):
    (work / "atlas" / "structures.json").unlink()
    return {}, "atlas folder: no structures.json"


def atlas_metadata_not_json(work):
    (work / "atlas" / "metadata.json").write_text("{resolution: 25")
    return {}, "metadata.json: not valid JSON"


def atlas_metadata_without_resolution(work):
    meta = json.loads((work / "atlas" / "metadata.json").read_text())
    del meta["resolution"]
    (work / "atlas" / "metadata.json").write_text(json.dumps(meta))
    return {}, "metadata.json: missing key(s) resolution"


def atlas_shape_differs_from_metadata(work):
    tifffile.imwrite(work / "atlas" / "annotation.tiff", np.zeros((8, 10, 11), np.uint32))
    return {}, "annotation.tiff: shape (8, 10, 11) differs from metadata.json shape"


def atlas_labels_missing_from_the_ontology(work):
    ann = tifffile.imread(work / "atlas" / "annotation.tiff")
    ann[ann == 15] = 4242
    tifffile.imwrite(work / "atlas" / "annotation.tiff", ann)
    return {}, "4242 (168 voxels); expected at most 1%"


def atlas_hemispheres_out_of_range(work):
    tifffile.imwrite(work / "atlas" / "hemispheres.tiff", np.full(ATLAS_SHAPE, 3, np.uint8))
    return {}, "hemispheres.tiff: BrainGlobe hemispheres must hold 0, 1 (left) or 2 (right)"


def atlas_structures_not_json(work):
    (work / "atlas" / "structures.json").write_text("[{")
    return {}, "structures.json: not valid JSON"


DATA_CASES = {
    f.__name__: f
    for f in (
        truncated_plane,
        plane_not_a_tiff,
        plane_of_another_shape,
        plane_of_another_dtype,
        gap_in_the_planes,
        two_files_for_one_plane,
        empty_plane_folder,
        one_plane_only,
        stack_with_a_garbage_header,
        nrrd_with_a_bad_header,
        mhd_without_its_data,
        zarr_without_the_array,
        imaris_without_a_dataset,
        crop_beyond_the_planes,
        empty_atlas_folder,
        atlas_without_annotation,
        atlas_without_ontology,
        atlas_metadata_not_json,
        atlas_metadata_without_resolution,
        atlas_shape_differs_from_metadata,
        atlas_labels_missing_from_the_ontology,
        atlas_hemispheres_out_of_range,
        atlas_structures_not_json,
    )
}


@pytest.mark.parametrize("name", list(DATA_CASES))
def test_bad_data_is_refused_by_validate(inputs, name, capsys):
    changes, expect = DATA_CASES[name](inputs)
    code, err = validate(inputs, patched(BASE, {"set": changes}), capsys)
    assert code != 0, f"accepted: {name}"
    assert expect in err, err
    assert "Traceback" not in err
    assert no_outputs(inputs)


# -- bad pixels: found while ingesting ----------------------------------------------------


def ingest(work: Path, channel: dict, monkeypatch) -> tuple[int, Path]:
    monkeypatch.chdir(work)
    out = Path("results/b1/raw/signal.ome.zarr")
    smk = SimpleNamespace(
        params=SimpleNamespace(task="ingest", channel=channel, ingest={"chunks": [2, 16, 16], "pyramid_levels": 1}),
        output=[str(out)],
        log=[str(work / "ingest.log")],
        wildcards=SimpleNamespace(channel="signal"),
        rule="ingest",
    )
    with pytest.raises(SystemExit) as exit_:
        dispatch(smk)
    return exit_.value.code, work / out


def test_a_nan_plane_stops_the_ingest_naming_the_plane(inputs, monkeypatch):
    for z in range(N_PLANES):
        plane = np.full(PLANE, 500.0, np.float32)
        if z == 4:
            plane[:] = np.nan
        tifffile.imwrite(_plane(inputs, z), plane)
    code, out = ingest(inputs, BASE["channels"]["signal"], monkeypatch)
    assert code == 1 and not out.exists()
    assert "Z0004.tif: plane z=4 holds 672 NaN" in (inputs / "ingest.log").read_text()


def test_corrupt_pixels_stop_the_ingest_naming_the_file(inputs, monkeypatch):
    f = _plane(inputs, 3)
    tifffile.imwrite(f, np.arange(np.prod(PLANE), dtype=np.uint16).reshape(PLANE), compression="zlib")
    raw = bytearray(f.read_bytes())
    start = tifffile.TiffFile(f).pages[0].dataoffsets[0]
    raw[start : start + 40] = b"\x00" * 40  # the header is fine, the compressed pixels are not
    f.write_bytes(bytes(raw))
    code, out = ingest(inputs, BASE["channels"]["signal"], monkeypatch)
    assert code == 1 and not out.exists()
    assert "Z0003.tif" in (inputs / "ingest.log").read_text()


# -- fuzz ------------------------------------------------------------------------------------

_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
_value = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_KEYS = [
    "sample",
    "results",
    "channels.signal.voxel_size",
    "channels.signal.orientation",
    "channels.signal.source",
    "channels.signal.crop",
    "atlas",
    "atlas.hemisphere",
    "demo",
    "ingest.chunks",
    "steps.detect.cell_diameter_um",
    "steps.detect.blocks",
    "steps.detect.dog",
    "steps.detect.background.size_um",
    "steps.detect.maxima.threshold",
    "steps.detect.border",
    "steps.threshold.ranges",
    "steps.registration",
    "steps.resample",
    "steps.voxelize",
    "steps.regions",
    "steps.annotate",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_KEYS), _value), min_size=1, max_size=4))
def test_no_config_gives_a_traceback(changes):
    config = patched(BASE, {"set": dict(changes)})
    try:
        parse_config(config, "fuzz.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml: ")


def test_a_full_disk_is_one_line_naming_the_path(tmp_path, monkeypatch, capsys):
    """A task whose write fails with ENOSPC (a real one: /dev/full) ends with a message, not a traceback."""
    import sys
    import types

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")

    def run(smk):
        with open("/dev/full", "wb") as fh:
            fh.write(b"x" * 65536)
            fh.flush()

    monkeypatch.setitem(sys.modules, "spimflow.tasks.fill_the_disk", types.SimpleNamespace(run=run))
    out = str(tmp_path / "results" / "b1" / "table.parquet")
    smk = SimpleNamespace(
        params=SimpleNamespace(task="fill_the_disk"), output=[out], log=[str(tmp_path / "t.log")], rule="t"
    )
    with pytest.raises(SystemExit) as exit_:
        dispatch(smk)
    assert exit_.value.code == 1
    text = (tmp_path / "t.log").read_text()
    assert f"{out}: no space left on the device" in text and "Traceback" not in text
