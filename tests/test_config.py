"""Config validation: every bad input names its key and fails before anything is written."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from spimflow.checks import validate_config_file
from spimflow.cli import main as cli_main
from spimflow.config import load_config, parse_config
from spimflow.errors import ConfigError
from spimflow.orientation import Orientation

REPO = Path(__file__).resolve().parents[1]


def real_config(tmp_path: Path) -> dict:
    """A non-demo config whose input files exist (tiny TIFF planes written here)."""
    import numpy as np
    import tifffile

    for ch in ("sig", "auto"):
        d = tmp_path / "raw" / ch
        d.mkdir(parents=True)
        for z in range(3):
            tifffile.imwrite(d / f"Z{z:04d}.tif", np.zeros((4, 5), np.uint16))
    chan = lambda ch: {  # noqa: E731
        "source": {"format": "pattern", "path": f"raw/{ch}/Z\\d{{4}}.tif"},
        "voxel_size": [4.0, 2.0, 2.0],
        "orientation": "ipl",
    }
    from test_atlas import write_brainglobe

    write_brainglobe(tmp_path / "atlas")  # a BrainGlobe folder must hold its files to pass the checks
    return {
        "sample": "brain1",
        "channels": {"signal": chan("sig"), "autofluorescence": chan("auto")},
        "atlas": {"format": "brainglobe", "path": "atlas"},
    }


def write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_demo_config_is_valid():
    cfg = load_config(REPO / "config" / "sample.yaml")
    assert cfg.sample == "demo" and cfg.demo is not None
    assert cfg.channels.signal.voxel_size == (10.0, 5.0, 5.0)
    assert cfg.steps.detect.blocks.size[0] >= cfg.steps.detect.blocks.overlap[0]


def test_good_real_config_validates(tmp_path):
    p = write(tmp_path, real_config(tmp_path))
    run = validate_config_file(p, tmp_path)
    cfg = run.samples["s1"] if "s1" in run.samples else next(iter(run.samples.values()))
    assert run.cohort is None
    assert cfg.channels.signal.source.files(tmp_path)[0].name == "Z0000.tif"
    assert len(cfg.channels.signal.source.files(tmp_path)) == 3


def mutate(data, path, value):
    d = data
    for k in path[:-1]:
        d = d[k]
    if value is KeyError:
        del d[path[-1]]
    else:
        d[path[-1]] = value
    return data


BAD = [
    # (what, change, expected key in message, expected words)
    ("unknown key", (["channels", "signal", "voxelsize"], [1, 1, 1]), "channels.signal.voxelsize", "unknown key"),
    ("unknown top key", (["sampel"], "x"), "sampel", "unknown key"),
    ("wrong type", (["channels", "signal", "voxel_size"], "big"), "channels.signal.voxel_size", ""),
    (
        "negative voxel size",
        (["channels", "autofluorescence", "voxel_size"], [4.0, -2.0, 2.0]),
        "channels.autofluorescence.voxel_size",
        "positive",
    ),
    (
        "orientation not a permutation",
        (["channels", "signal", "orientation"], [1, 1, 3]),
        "channels.signal.orientation",
        "permutation",
    ),
    (
        "orientation code repeats an axis",
        (["channels", "signal", "orientation"], "aap"),
        "channels.signal.orientation",
        "same anatomical axis",
    ),
    ("bad source format", (["channels", "signal", "source", "format"], "jpeg"), "channels.signal.source", "format"),
    ("missing required", (["channels", "signal"], KeyError), "channels.signal", "required"),
    ("bad crop", (["channels", "signal", "crop"], {"z": [5, 2]}), "channels.signal.crop", "start < stop"),
]


@pytest.mark.parametrize("what,change,key,words", BAD, ids=[b[0] for b in BAD])
def test_bad_config_names_the_key(tmp_path, capsys, what, change, key, words):
    data = mutate(real_config(tmp_path), *change)
    p = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert key in msg, msg
    assert words in msg, msg
    assert str(p) in msg
    # the CLI says the same and exits non-zero
    assert cli_main(["validate", str(p), "--base", str(tmp_path)]) != 0
    assert key in capsys.readouterr().err


def test_missing_source_file_and_empty_pattern(tmp_path):
    data = real_config(tmp_path)
    data["channels"]["signal"]["source"] = {"format": "tiff", "path": "nope/stack.tif"}
    data["channels"]["autofluorescence"]["source"]["path"] = "raw/auto/Y\\d{4}.tif"
    p = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        validate_config_file(p, tmp_path)
    msg = str(err.value)
    assert "channels.signal.source.path: file not found" in msg and "nope/stack.tif" in msg
    assert "channels.autofluorescence.source.path: pattern" in msg and "matches no file" in msg


def test_every_error_is_listed_at_once(tmp_path):
    data = real_config(tmp_path)
    data["channels"]["signal"]["voxel_size"] = [0, 1, 1]
    data["channels"]["autofluorescence"]["orientation"] = "xyz"
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert "channels.signal.voxel_size" in str(err.value)
    assert "channels.autofluorescence.orientation" in str(err.value)


def test_orientation_both_notations_agree():
    # sample "ipl" against atlas "asr": atlas axis 0 (a->p) is sample axis 1 (p->a, flipped) ...
    o = Orientation.from_codes("ipl", "asr")
    assert o.perm == (1, 0, 2) and o.flip == (True, True, True)
    assert Orientation.from_clearmap(o.to_clearmap()) == o
    assert Orientation.resolve(list(o.to_clearmap()), None) == o


def test_schema_and_config_docs_are_in_sync():
    assert cli_main(["schema", "--check", "-o", str(REPO / "schemas" / "config.schema.json")]) == 0, (
        "schemas/config.schema.json is stale: run `spimflow schema`"
    )
    assert (
        cli_main(["schema", "--kind", "cohort", "--check", "-o", str(REPO / "schemas" / "cohort.schema.json")]) == 0
    ), "schemas/cohort.schema.json is stale: run `spimflow schema --kind cohort`"
    assert cli_main(["config-docs", "--check", "-o", str(REPO / "docs" / "configuration.md")]) == 0, (
        "docs/configuration.md is stale: run `spimflow config-docs`"
    )


def test_cohort_schema_validates_the_demo_cohort():
    import json

    import jsonschema

    schema = json.loads((REPO / "schemas" / "cohort.schema.json").read_text())
    jsonschema.validate(yaml.safe_load((REPO / "config" / "cohort.yaml").read_text()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"cohort": "c", "samples": {"a": {"group": "g"}}}, schema)


def test_schema_validates_demo_config():
    import json

    import jsonschema

    schema = json.loads((REPO / "schemas" / "config.schema.json").read_text())
    data = yaml.safe_load((REPO / "config" / "sample.yaml").read_text())
    jsonschema.validate(data, schema)
    bad = copy.deepcopy(data)
    bad["channels"]["signal"]["bogus"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


@pytest.mark.slow
def test_snakemake_refuses_bad_config_and_writes_nothing(tmp_path):
    data = real_config(tmp_path)
    data["channels"]["signal"]["orientation"] = [1, 2, 2]
    data["results"] = str(tmp_path / "results")
    p = write(tmp_path, data)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "--configfile",
            str(p),
            "--cores",
            "1",
            "-d",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "channels.signal.orientation" in proc.stderr + proc.stdout
    assert not (tmp_path / "results").exists()


def test_validate_refuses_what_the_workflow_refuses(tmp_path):
    """`spimflow validate` runs the same pre-run checks as the Snakefile (detection grid too)."""
    data = real_config(tmp_path)
    data["steps"] = {
        "detect": {"blocks": {"size": [64, 256, 256], "overlap": [1, 1, 1]}},
        "threshold": {"ranges": {"brightness": [1, None]}},
    }
    p = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        validate_config_file(p, tmp_path)
    assert "steps.detect.blocks.overlap" in str(err.value)
    assert "steps.threshold.ranges.brightness: no such cell column" in str(err.value)
