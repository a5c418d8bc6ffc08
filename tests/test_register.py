"""Atlas registration: parameter maps, orientation guard helpers, QC pictures, and the
demo brain registered once through the real Snakemake rules (Dice, point errors,
round trip, guard messages, run time)."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_snakemake

from spimflow.errors import ConfigError, OrientationError
from spimflow.orientation import Orientation, compose, orientation_code
from spimflow.params.register import ElastixStage, RegisterParams
from spimflow.steps.elastix import parameter_maps, stage_map
from spimflow.steps.orientation_guard import (
    Candidate,
    GuardContext,
    all_relative_orientations,
    extent_guard,
    matching_permutations,
    prefer_configured_left_right,
)
from spimflow.steps.register import RegistrationRejected, register_to_atlas
from spimflow.tasks.register import rejected_qc

REPO = Path(__file__).resolve().parents[1]
CODES = [
    "".join(p[s] for p, s in zip(pairs, signs))
    for pairs in itertools.permutations(["ap", "si", "lr"])
    for signs in itertools.product([0, 1], repeat=3)
]


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


def test_left_right_ties_keep_the_configured_side():
    cur = Orientation.from_codes("spl", "asr")
    c = lambda code, s: Candidate(Orientation.from_codes(code, "asr"), code, s)  # noqa: E731
    ranked = prefer_configured_left_right([c("ipr", 0.90), c("ipl", 0.89), c("spl", 0.6)], cur, "asr")
    assert [x.code for x in ranked] == ["ipl", "ipr", "spl"]
    # a clear winner is not overruled, and non-twins are never swapped
    assert [x.code for x in prefer_configured_left_right([c("ipr", 0.9), c("ipl", 0.7)], cur, "asr")] == ["ipr", "ipl"]
    assert [x.code for x in prefer_configured_left_right([c("ipr", 0.9), c("spl", 0.89)], cur, "asr")] == ["ipr", "spl"]


def test_stage_maps_carry_config_and_extra_keys():
    st = ElastixStage(
        resolutions=3,
        iterations=123,
        spatial_samples=999,
        extra={"NumberOfHistogramBins": 64, "UseRandomSampleRegion": True},
    )
    m = stage_map("bspline", st, 300.0)
    assert m["Transform"] == ["RecursiveBSplineTransform"] and m["MaximumNumberOfIterations"] == ["123"]
    assert m["NumberOfResolutions"] == ["3"] and m["NumberOfSpatialSamples"] == ["999"]
    assert m["FinalGridSpacingInPhysicalUnits"] == ["300.0"] and len(m["GridSpacingSchedule"]) == 3
    assert m["NumberOfHistogramBins"] == ["64"] and m["UseRandomSampleRegion"] == ["true"]
    maps = parameter_maps(RegisterParams())
    assert [x["Transform"][0] for x in maps] == ["AffineTransform", "RecursiveBSplineTransform"]


def test_per_resolution_iterations_samples_and_schedule():
    """The defaults: affine on the coarse levels only, B-spline effort at the finest level;
    lists must give one value per resolution."""
    affine, bspline = parameter_maps(RegisterParams())
    assert affine["NumberOfResolutions"] == ["3"]
    assert affine["FixedImagePyramidSchedule"] == ["8"] * 3 + ["4"] * 3 + ["2"] * 3
    assert affine["MovingImagePyramidSchedule"] == affine["FixedImagePyramidSchedule"]
    assert bspline["MaximumNumberOfIterations"] == ["200", "200", "500"]
    assert bspline["NumberOfSpatialSamples"] == ["2000", "3000", "5000"]
    assert "FixedImagePyramidSchedule" not in bspline  # elastix's default 4, 2, 1
    assert all(m["WriteResultImage"] == ["false"] for m in (affine, bspline))
    with pytest.raises(ValueError, match="iterations: 2 values for 3 resolutions"):
        ElastixStage(resolutions=3, iterations=[100, 200])
    with pytest.raises(ValueError, match="pyramid_schedule: 1 values for 2 resolutions"):
        ElastixStage(resolutions=2, pyramid_schedule=[4])
    with pytest.raises(ValueError, match="spatial_samples: every value must be at least 100"):
        ElastixStage(resolutions=2, spatial_samples=[50, 5000])
    with pytest.raises(ValueError, match="iterations: every value must be at least 1"):
        ElastixStage(iterations=0)


def test_user_parameter_files(tmp_path):
    (tmp_path / "a.txt").write_text(
        '// my affine\n(Transform "AffineTransform")\n(MaximumNumberOfIterations 7)\n'
        '(Metric "AdvancedMattesMutualInformation") // trailing comment\n'
    )
    p = RegisterParams(parameter_files=[Path("a.txt")])
    maps = parameter_maps(p, tmp_path)
    assert maps == [
        {
            "Transform": ["AffineTransform"],
            "MaximumNumberOfIterations": ["7"],
            "Metric": ["AdvancedMattesMutualInformation"],
        }
    ]
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


def test_a_wrong_voxel_size_is_not_called_an_orientation_problem():
    """An atlas whose metadata says 10 µm where it is 25 µm: the sample is 2.5 times the atlas
    along every axis, and the message names the resolution, not the orientation."""
    ref = np.zeros((72, 48, 64), np.float32)
    ctx = GuardContext(Orientation.from_codes("pil", "asr"), "asr", "channels.autofluorescence.orientation", "pil")
    with pytest.raises(OrientationError) as exc:
        extent_guard(np.zeros((180, 120, 160)), ref, ref.astype(np.int32), (10.0,) * 3, RegisterParams(), ctx)
    msg = str(exc.value)
    assert "2.50 times the atlas's size along every axis" in msg and "metadata.json 'resolution'" in msg
    assert "orientation guard" not in msg and "Likely fix: set" not in msg


def ellipsoid_atlas(shape=(36, 24, 32)):
    """A small brain-like atlas: an ellipsoid split into 4 labelled quadrants with distinct
    intensities, plus a bright asymmetric blob."""
    g = (np.indices(shape).T - (np.array(shape) - 1) / 2).T / (np.array(shape)[:, None, None, None] * 0.42)
    inside = (g**2).sum(0) < 1
    lab = np.where(inside, 1 + (g[0] > 0) + 2 * (g[1] > 0), 0).astype(np.int32)
    ref = np.array([0.0, 0.4, 0.7, 0.55, 0.9], np.float32)[lab]
    ref[(((g - np.array([-0.4, -0.3, 0.2])[:, None, None, None]) ** 2).sum(0) < 0.06)] = 1.5
    return lab, ref


@pytest.mark.slow
def test_similarity_guard_stops_with_ranking_and_failure_pictures(tmp_path):
    """A registration judged too poor (limit set above what any fit reaches) stops with the
    measured NCC and the ranking; the task draws QC pictures of the rejected attempt."""
    from scipy import ndimage

    lab, ref = ellipsoid_atlas()
    sample = ndimage.shift(ref, (1.0, -0.5, 0.5), order=1) + 0.05 * np.random.default_rng(0).random(ref.shape)
    stage = ElastixStage(resolutions=2, iterations=100, spatial_samples=1000)
    params = RegisterParams(
        affine=stage, bspline=ElastixStage(enabled=False), orientation_check=False, min_similarity=0.999
    )
    ctx = GuardContext(Orientation.from_codes("asr", "asr"), "asr", "channels.autofluorescence.orientation", "asr", 2)
    with pytest.raises(RegistrationRejected) as exc:
        register_to_atlas(sample.astype(np.float32), ref, lab, (25.0, 25.0, 25.0), params, ctx)
    assert isinstance(exc.value, OrientationError)
    msg = str(exc.value)
    assert "min_similarity = 0.999" in msg and "<- configured" in msg
    assert "The configured orientation ranks best" in msg  # the sample is not mis-oriented
    assert not list(tmp_path.iterdir())  # the pure step wrote nothing
    line = rejected_qc(exc.value.registration, sample, (25.0, 25.0, 25.0), "asr", tmp_path)
    assert all((tmp_path / f"register_failed_qc_{a}.png").is_file() for a in range(3))
    assert "register_failed_qc_0.png" in line


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


# -- the demo brain through the real Snakemake rules (registered once) -------------------------------


@pytest.fixture(scope="module")
def demo_run(demo_workflow):
    """Demo data → ingest → resample → register (→ detection …): the session's one real
    `snakemake --cores 2` run of the demo (see conftest.demo_workflow)."""
    return demo_workflow


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_demo_dice_against_true_annotation(demo_run):
    import tifffile

    from spimflow.io.omezarr import open_ome_zarr

    work, _ = demo_run
    warped = np.asarray(open_ome_zarr(work / "results/demo/registration/annotation_in_sample.ome.zarr").array[...])
    truth = tifffile.imread(work / "resources/demo/truth/annotation_in_resampled.tif")
    assert warped.shape == truth.shape
    ids = [int(k) for k in np.unique(truth) if k]
    scores = {k: dice(warped == k, truth == k) for k in ids}
    sizes = {k: int((truth == k).sum()) for k in ids}
    largest = sorted(ids, key=lambda k: -sizes[k])[:3]
    print(
        f"Dice over {len(ids)} regions: mean {np.mean(list(scores.values())):.3f}, min {min(scores.values()):.3f}; "
        f"largest {[(k, round(scores[k], 3)) for k in largest]}"
    )
    assert np.mean(list(scores.values())) >= 0.85
    assert all(scores[k] >= 0.9 for k in largest)
    assert dice(warped > 0, truth > 0) >= 0.95


def test_demo_true_cells_map_into_the_atlas(demo_run):
    import pandas as pd

    from spimflow.transforms import SampleAtlasTransform

    work, _ = demo_run
    T = SampleAtlasTransform.load(work / "results/demo/registration")
    cells = pd.read_csv(work / "resources/demo/truth/cells.csv")
    est = T.sample_to_atlas(cells[["z", "y", "x"]].to_numpy(float), "signal")
    err = np.linalg.norm(est - cells[["az", "ay", "ax"]].to_numpy(float), axis=1)
    print(
        f"{len(cells)} true cells: point error mean {err.mean():.3f}, median {np.median(err):.3f}, "
        f"p95 {np.percentile(err, 95):.3f} atlas voxels"
    )
    assert len(cells) > 100
    assert err.mean() < 1.0


def test_demo_round_trip_sample_atlas_sample(demo_run):
    from spimflow.transforms import SampleAtlasTransform

    work, _ = demo_run
    T = SampleAtlasTransform.load(work / "results/demo/registration")
    grid = T.grids["signal"]
    rng = np.random.default_rng(0)
    # random points inside the brain: raw positions of resampled voxels inside the warped brain
    from spimflow.io.omezarr import open_ome_zarr

    brain = np.asarray(open_ome_zarr(work / "results/demo/registration/annotation_in_sample.ome.zarr").array[...]) > 0
    r = np.argwhere(brain)[rng.choice(int(brain.sum()), 20000)] + rng.uniform(-0.5, 0.5, (20000, 3))
    raw = grid.resampled_to_sample(r)
    back = T.atlas_to_sample(T.sample_to_atlas(raw, "signal"), "signal")
    err = np.linalg.norm(back - raw, axis=1)
    print(f"round trip sample->atlas->sample of {len(raw)} points: max error {np.nanmax(err):.2e} raw voxels")
    assert not np.isnan(err).any()
    assert err.max() < 0.5


def test_demo_outputs_and_timing(demo_run):
    from PIL import Image

    work, wall = demo_run
    reg = work / "results/demo/registration"
    meta = json.loads((reg / "registration.json").read_text())
    assert meta["similarity"]["after"] > max(0.6, meta["similarity"]["before"])
    assert meta["guard"]["extent"]["passed"] and meta["guard"]["similarity"]["passed"]
    assert meta["guard"]["flips"]["configured"] == "ipl"
    assert meta["orientation"]["signal"]["clearmap"] == [-1, -3, -2]
    for f in meta["atlas_transform"]:
        assert (reg / f).is_file()
    for a in range(3):
        assert Image.open(reg / f"qc_{a}.png").size[0] >= 300
    secs = meta["seconds"]
    print(
        f"demo: snakemake wall {wall:.0f} s; registration task {secs['task']:.1f} s (itk load {secs['itk_load']:.1f}, "
        f"guard {secs['guard_before']:.1f}, elastix {secs['atlas_registration']:.1f}, warp {secs['warp']:.1f})"
    )
    assert secs["task"] < 180  # "a couple of minutes on 2 cores"
    # the resampled autofluorescence carries its grid
    from spimflow.io.omezarr import open_ome_zarr

    img = open_ome_zarr(work / "results/demo/resampled/autofluorescence.ome.zarr")
    assert img.attrs["spimflow"]["resample"]["shape"] == list(img.shape)


@pytest.mark.parametrize(
    "wrong, expect",
    [
        ("spl", "Likely fix: set channels.autofluorescence.orientation and channels.signal.orientation to 'ipl'"),
        ("pil", "does not have the atlas's shape"),
    ],
)
def test_demo_wrong_orientation_is_caught(demo_run, wrong, expect):
    """The same demo data declared with a wrong orientation: the register rule stops with a
    message naming the key and the fix; no registration output is left behind."""
    import yaml

    work, _ = demo_run
    cfg = yaml.safe_load((REPO / "config" / "sample.yaml").read_text())
    cfg["sample"] = f"wrong_{wrong}"
    for ch in ("signal", "autofluorescence"):
        cfg["channels"][ch]["orientation"] = wrong
    path = work / f"wrong_{wrong}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = run_snakemake(work, path, f"results/wrong_{wrong}/registration/registration.json")
    assert res.returncode != 0
    log = (work / f"results/wrong_{wrong}/logs/register.log").read_text()
    print(log[log.find("orientation guard") :][:1500])
    assert "orientation guard" in log and expect in log
    assert not (work / f"results/wrong_{wrong}/registration/registration.json").exists()


@pytest.mark.slow
def test_user_parameter_files_and_channel_correction_run(tmp_path):
    """A user's own elastix parameter file drives the atlas registration, the optional
    signal → autofluorescence correction is registered too, and the saved folder loads
    back into a transform that puts signal cells where the autofluorescence shows them."""
    from scipy import ndimage

    from spimflow.geometry import ResampleGrid
    from spimflow.transforms import ElastixChain, SampleAtlasTransform

    (tmp_path / "affine.txt").write_text(
        "\n".join(
            [
                '(Transform "AffineTransform")',
                '(Registration "MultiResolutionRegistration")',
                '(Metric "AdvancedNormalizedCorrelation")',
                '(Optimizer "AdaptiveStochasticGradientDescent")',
                "(NumberOfResolutions 2)",
                "(MaximumNumberOfIterations 150)",
                "(NumberOfSpatialSamples 1500)",
                '(ImageSampler "RandomCoordinate")',
                '(NewSamplesEveryIteration "true")',
                '(AutomaticTransformInitialization "true")',
                '(AutomaticScalesEstimation "true")',
                '(FixedImagePyramid "FixedSmoothingImagePyramid")',
                '(MovingImagePyramid "MovingSmoothingImagePyramid")',
                '(Interpolator "LinearInterpolator")',
                '(ResampleInterpolator "FinalLinearInterpolator")',
                '(Resampler "DefaultResampler")',
                '(WriteResultImage "true")',
            ]
        )
        + "\n"
    )
    lab, ref = ellipsoid_atlas()
    sample = ndimage.shift(ref, (1.0, -0.5, 0.5), order=1)
    d = np.array([1.0, 0.0, -1.5])
    signal = ndimage.shift(sample, d, order=1) * 2.0
    params = RegisterParams(
        parameter_files=[Path("affine.txt")],
        orientation_check=False,
        channel_correction=True,
        correction=ElastixStage(
            resolutions=2, iterations=150, spatial_samples=1500, metric="AdvancedNormalizedCorrelation"
        ),
    )
    ctx = GuardContext(Orientation(), "asr", "channels.autofluorescence.orientation", "asr", 2)
    vs = (25.0, 25.0, 25.0)
    reg = register_to_atlas(
        sample.astype(np.float32), ref, lab, vs, params, ctx, signal=signal.astype(np.float32), base=tmp_path
    )
    assert [m["Transform"] for m in reg.atlas_maps] == [["AffineTransform"]]  # the file replaced affine+B-spline
    assert reg.similarity_after > 0.9
    grid = ResampleGrid(sample.shape, vs, Orientation(), vs)
    T = SampleAtlasTransform(
        vs,
        lab.shape,
        {"autofluorescence": grid, "signal": grid},
        ElastixChain.from_maps(reg.atlas_maps),
        {"signal": ElastixChain.from_maps(reg.correction_maps)},
    )
    T.save(tmp_path / "reg")
    meta = json.loads((tmp_path / "reg" / "registration.json").read_text())
    assert meta["channel_correction"] == {"signal": ["correction_signal.0.txt"]}
    L = SampleAtlasTransform.load(tmp_path / "reg")
    x = np.random.default_rng(3).uniform(10, 22, (50, 3))
    err = np.linalg.norm(L.sample_to_atlas(x + d, "signal") - L.sample_to_atlas(x, "autofluorescence"), axis=1)
    assert err.mean() < 0.2
    truth = x + np.array([1.0, -0.5, 0.5]) * -1  # sample voxel x shows atlas voxel x - shift
    assert np.linalg.norm(L.sample_to_atlas(x, "autofluorescence") - truth, axis=1).mean() < 0.3


@pytest.mark.slow
def test_channel_correction_wires_the_signal_into_the_register_rule(tmp_path):
    """Dry run: with channel_correction the register job also needs the resampled signal."""
    import yaml

    cfg = yaml.safe_load((REPO / "config" / "sample.yaml").read_text())
    cfg.setdefault("steps", {})["registration"] = {"channel_correction": True}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = run_snakemake(
        tmp_path, tmp_path / "c.yaml", "results/demo/registration/registration.json", "-n", "-p", timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    block = text[text.find("rule register:") :]
    block = block[: block.find("\n\n")]
    assert (
        "results/demo/resampled/signal.ome.zarr" in block
        and "results/demo/resampled/autofluorescence.ome.zarr" in block
    )
