"""Atlas registration: parameter maps, orientation guard helpers, QC pictures, and the
demo brain registered once through the real Snakemake rules (Dice, point errors,
round trip, guard messages, run time)."""

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from spimflow.errors import ConfigError, OrientationError
from spimflow.orientation import Orientation
from spimflow.params.register import ElastixStage, RegisterParams
from spimflow.steps.register import (GuardContext, all_relative_orientations, compose, extent_guard,
                                     matching_permutations, orientation_code, parameter_maps, stage_map)

REPO = Path(__file__).resolve().parents[1]
CODES = ["".join(p[s] for p, s in zip(pairs, signs))
         for pairs in itertools.permutations(["ap", "si", "lr"]) for signs in itertools.product([0, 1], repeat=3)]


# -- pure helpers --------------------------------------------------------------------------------

@pytest.mark.parametrize("atlas_code", ["asr", "lpi"])
def test_orientation_code_inverts_from_codes(atlas_code):
    for code in CODES:
        assert orientation_code(Orientation.from_codes(code, atlas_code), atlas_code) == code


def test_compose_equals_applying_in_turn():
    arr = np.random.default_rng(0).random((3, 4, 5))
    for inner in all_relative_orientations():
        for outer in all_relative_orientations()[::5]:
            expected = outer.apply_to_array(inner.apply_to_array(arr))
            np.testing.assert_array_equal(compose(outer, inner).apply_to_array(arr), expected)


def test_matching_permutations_finds_the_swap():
    atlas = [1800.0, 1200.0, 1600.0]
    sample = [1200.0, 1800.0, 1600.0]  # z and y swapped
    assert matching_permutations(sample, atlas, 0.1)[0] == (1, 0, 2)
    assert matching_permutations(atlas, atlas, 0.1)[0] == (0, 1, 2)


def test_stage_maps_carry_config_and_extra_keys():
    st = ElastixStage(resolutions=3, iterations=123, spatial_samples=999, extra={"NumberOfHistogramBins": 64,
                                                                                 "UseRandomSampleRegion": True})
    m = stage_map("bspline", st, 300.0)
    assert m["Transform"] == ["BSplineTransform"] and m["MaximumNumberOfIterations"] == ["123"]
    assert m["NumberOfResolutions"] == ["3"] and m["NumberOfSpatialSamples"] == ["999"]
    assert m["FinalGridSpacingInPhysicalUnits"] == ["300.0"] and len(m["GridSpacingSchedule"]) == 3
    assert m["NumberOfHistogramBins"] == ["64"] and m["UseRandomSampleRegion"] == ["true"]
    maps = parameter_maps(RegisterParams())
    assert [x["Transform"][0] for x in maps] == ["AffineTransform", "BSplineTransform"]


def test_user_parameter_files(tmp_path):
    (tmp_path / "a.txt").write_text('// my affine\n(Transform "AffineTransform")\n(MaximumNumberOfIterations 7)\n'
                                    '(Metric "AdvancedMattesMutualInformation") // trailing comment\n')
    p = RegisterParams(parameter_files=[Path("a.txt")])
    maps = parameter_maps(p, tmp_path)
    assert maps == [{"Transform": ["AffineTransform"], "MaximumNumberOfIterations": ["7"],
                     "Metric": ["AdvancedMattesMutualInformation"]}]
    with pytest.raises(ConfigError, match="parameter_files.*missing.txt"):
        parameter_maps(RegisterParams(parameter_files=[Path("missing.txt")]), tmp_path)
    with pytest.raises(ConfigError, match="enable at least one stage"):
        parameter_maps(RegisterParams(affine=ElastixStage(enabled=False), bspline=ElastixStage(enabled=False)))


def test_extent_guard_passes_and_fails_with_numbers():
    vs = (25.0, 25.0, 25.0)
    ref = np.zeros((72, 48, 64), np.float32)
    lab = np.zeros(ref.shape, np.int32)
    ctx = GuardContext(Orientation.from_codes("pil", "asr"), "asr", "channels.autofluorescence.orientation", "pil")
    params = RegisterParams(suggest_orientation=False)
    assert extent_guard(np.zeros((70, 50, 60)), ref, lab, vs, params, ctx)["passed"]
    with pytest.raises(OrientationError) as exc:
        extent_guard(np.zeros((50, 70, 60)), ref, lab, vs, params, ctx)
    msg = str(exc.value)
    assert "channels.autofluorescence.orientation = 'pil'" in msg
    assert "1250 × 1750 × 1500" in msg and "1800 × 1200 × 1600" in msg
    assert "current axes [1, 0, 2]" in msg and "extent_tolerance = 0.35" in msg


def test_qc_pngs_show_boundaries(tmp_path):
    from PIL import Image

    from spimflow.qc import BOUNDARY_RGB, OUTLINE_RGB, write_qc_pngs

    lab = np.zeros((20, 30, 40), np.int32)
    lab[5:15, 5:25, 5:35] = 1
    lab[5:15, 5:25, 20:35] = 2
    img = np.random.default_rng(0).random(lab.shape).astype(np.float32)
    paths = [tmp_path / f"qc_{a}.png" for a in range(3)]
    info = write_qc_pngs(img, lab, (50.0, 25.0, 25.0), "asr", paths)
    assert [i["plane"] for i in info] == ["coronal", "horizontal", "sagittal"]
    for axis, p in enumerate(paths):
        rgb = np.asarray(Image.open(p).convert("RGB"))
        assert rgb.shape[0] >= 360 or rgb.shape[1] >= 360
        n_out = np.all(rgb == OUTLINE_RGB, axis=2).sum()
        n_in = np.all(rgb == BOUNDARY_RGB, axis=2).sum()
        assert n_out > 0
        assert (n_in > 0) == (axis != 2)  # the 1|2 border is cut by the coronal and horizontal planes only
