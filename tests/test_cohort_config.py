"""Cohort configs: parsing, sample sheets, overrides, and every design or input problem
refused before any job runs (with `spimflow validate` and with Snakemake), naming the culprit."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_snakemake
from test_atlas import write_brainglobe
from test_config import real_config

from spimflow.checks import validate_config_file
from spimflow.cli import main
from spimflow.cohort import deep_merge, fill_sample, load_run
from spimflow.errors import ConfigError


def brain(tmp_path: Path) -> Path:
    """A valid one-brain config (tiny planes, tiny BrainGlobe atlas) as a cohort template."""
    data = real_config(tmp_path)
    write_brainglobe(tmp_path / "atlas")
    data["sample"] = "{sample}"
    path = tmp_path / "brain.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def cohort(tmp_path: Path, samples: dict | None = None, **extra) -> dict:
    brain(tmp_path)
    samples = samples or {
        name: {"config": "brain.yaml", "group": group}
        for name, group in (("a1", "ctrl"), ("a2", "ctrl"), ("b1", "ko"), ("b2", "ko"))
    }
    return {"cohort": "c", "samples": samples, **extra}


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "cohort.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_good_cohort_loads_with_groups_in_order(tmp_path):
    data = cohort(tmp_path, groups=["ko", "ctrl"])
    run = validate_config_file(write(tmp_path, data), tmp_path)
    assert list(run.samples) == ["a1", "a2", "b1", "b2"]
    assert run.samples["b1"].sample == "b1"  # '{sample}' filled in
    assert run.group_order() == ["ko", "ctrl"]
    assert run.groups == {"a1": "ctrl", "a2": "ctrl", "b1": "ko", "b2": "ko"}
    assert main(["validate", str(write(tmp_path, data)), "--base", str(tmp_path)]) == 0


def test_sample_sheet_with_covariates(tmp_path):
    brain(tmp_path)
    (tmp_path / "sheet.tsv").write_text(
        "sample\tconfig\tgroup\tage\n"
        "a1\tbrain.yaml\tctrl\t10\na2\tbrain.yaml\tctrl\t11\nb1\tbrain.yaml\tko\t12\nb2\tbrain.yaml\tko\t13\n"
    )
    run = load_run({"cohort": "c", "sample_sheet": "sheet.tsv"}, "cohort.yaml", tmp_path)
    assert run.groups["b2"] == "ko" and len(run.samples) == 4


def test_overrides_merge_and_fill_the_sample_id():
    base = {"a": {"b": 1, "c": "x/{sample}/y"}, "d": [1, "{sample}"]}
    merged = deep_merge(base, {"a": {"b": 2}})
    assert merged == {"a": {"b": 2, "c": "x/{sample}/y"}, "d": [1, "{sample}"]}
    assert fill_sample(merged, "s7") == {"a": {"b": 2, "c": "x/s7/y"}, "d": [1, "s7"]}
    assert base["a"]["b"] == 1  # the template is not modified


def bad_cases(tmp_path):
    good = cohort(tmp_path)
    missing = copy.deepcopy(good)
    missing["samples"]["a2"]["config"] = "nowhere.yaml"
    lonely = copy.deepcopy(good)
    lonely["samples"]["b2"]["group"] = "ctrl"
    invalid = copy.deepcopy(good)
    invalid["samples"]["b1"]["set"] = {"channels": {"signal": {"voxel_size": [0, 1, 1]}}}
    unknown = copy.deepcopy(good)
    for s in unknown["samples"].values():
        s["set"] = {"steps": {"voxelize": {"regions": {"cortex": ["NOPE"]}}}}
    three = copy.deepcopy(good)
    three["samples"]["c1"] = {"config": "brain.yaml", "group": "wt"}
    three["samples"]["c2"] = {"config": "brain.yaml", "group": "wt"}
    return {
        "a sample's config is missing": (missing, "samples.a2.config: sample config not found"),
        "a group with one sample": (lonely, "group 'ko': needs at least two samples"),
        "a sample config that fails validation": (invalid, "samples.b1.config"),
        "an unknown region acronym for isolation": (unknown, "steps.voxelize.regions.cortex: acronym 'NOPE'"),
        "three groups": (three, "exactly two groups"),
    }


CASES = [
    "a sample's config is missing",
    "a group with one sample",
    "a sample config that fails validation",
    "an unknown region acronym for isolation",
    "three groups",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_cohorts_are_refused_by_validate(tmp_path, case):
    data, fragment = bad_cases(tmp_path)[case]
    with pytest.raises(ConfigError) as exc:
        validate_config_file(write(tmp_path, data), tmp_path)
    assert fragment in str(exc.value)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES[:4])
def test_bad_cohorts_stop_snakemake_before_any_job(tmp_path, case):
    data, fragment = bad_cases(tmp_path)[case]
    res = run_snakemake(tmp_path, write(tmp_path, data), "-n")
    assert res.returncode != 0
    assert fragment in res.stderr
    assert not (tmp_path / "results").exists()


def test_the_demo_cohort_is_valid():
    run = load_run(yaml.safe_load((REPO / "config" / "cohort.yaml").read_text()), "cohort.yaml", REPO)
    assert run.group_order() == ["control", "treated"]
    assert [s.demo.density_factors for s in run.samples.values()] == [{}] * 3 + [{"CTXa3": 4.0}] * 3
    assert {str(s.demo.out_dir) for s in run.samples.values()} == {f"resources/cohort_demo/{n}" for n in run.samples}
