from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from spimflow.params import StrictModel


class ElastixStage(StrictModel):
    """One elastix stage (built-in defaults are overridden by the keys given).

    ``iterations`` and ``spatial_samples`` take one value for every resolution or one per
    resolution, coarsest first (the stochastic optimiser converges long before the last
    iteration at the coarse levels, so they can do with fewer).
    """

    enabled: bool = True
    resolutions: int = Field(4, ge=1, le=8, description="Pyramid levels (NumberOfResolutions).")
    iterations: int | list[int] = Field(
        500,
        description="MaximumNumberOfIterations: one value for every resolution, or one per resolution "
        "(coarsest first).",
    )
    metric: Literal["AdvancedMattesMutualInformation", "AdvancedNormalizedCorrelation"] = (
        "AdvancedMattesMutualInformation"
    )
    spatial_samples: int | list[int] = Field(
        4000,
        description="NumberOfSpatialSamples per iteration: one value for every resolution, or one per resolution "
        "(coarsest first).",
    )
    pyramid_schedule: list[int] | None = Field(
        None,
        description="Shrink factor of each resolution's images, coarsest first, the same along every axis "
        "(elastix's ImagePyramidSchedule); default 2^(resolutions-1) … 2, 1. A last factor above 1 leaves out "
        "the full-resolution level (e.g. [8, 4, 2] for the affine stage).",
    )
    extra: dict[str, str | int | float | bool | list[str | int | float]] = Field(
        default_factory=dict,
        description="Further elastix parameters, passed through verbatim (e.g. NumberOfHistogramBins: 64).",
    )

    @model_validator(mode="after")
    def _per_resolution(self):
        for name, lo in (("iterations", 1), ("spatial_samples", 100), ("pyramid_schedule", 1)):
            value = getattr(self, name)
            values = value if isinstance(value, list) else [] if value is None else [value]
            if isinstance(value, list) and len(value) != self.resolutions:
                raise ValueError(
                    f"{name}: {len(value)} values for {self.resolutions} resolutions (give one value, or one per "
                    "resolution, coarsest first)"
                )
            if any(v < lo for v in values):
                raise ValueError(f"{name}: every value must be at least {lo}, got {value}")
        return self


class RegisterParams(StrictModel):
    """Atlas registration (atlas reference → resampled autofluorescence) with itk-elastix.

    Defaults follow ClearMap's align_affine/align_bspline parameter files (Mattes mutual
    information, adaptive stochastic gradient descent, affine then B-spline at 25 voxels
    of a 25 µm atlas), tuned for speed on a realistic brain (``benchmarks/register_time.py
    allen``, see docs/registration.md): the affine stage runs on the coarse levels only
    (shrink factors 8, 4, 2) with 300 iterations of 2000 samples, and the B-spline stage
    spends its iterations and samples where they matter, at the finest level.
    """

    affine: ElastixStage = Field(
        default_factory=lambda: ElastixStage(
            resolutions=3, pyramid_schedule=[8, 4, 2], iterations=300, spatial_samples=2000
        )
    )
    bspline: ElastixStage = Field(
        default_factory=lambda: ElastixStage(
            resolutions=3, iterations=[200, 200, 500], spatial_samples=[2000, 3000, 5000]
        )
    )
    bspline_grid_spacing_um: float = Field(
        625.0, gt=0, description="Final B-spline control point spacing (µm); ClearMap: 25 voxels at 25 µm."
    )
    parameter_files: list[Path] = Field(
        default_factory=list,
        description="Your own elastix parameter files; when given they replace affine/bspline above, applied in order.",
    )
    channel_correction: bool = Field(
        False,
        description="Also register signal → autofluorescence (affine) and correct cell positions, as ClearMap does.",
    )
    correction: ElastixStage = Field(
        default_factory=lambda: ElastixStage(resolutions=3, iterations=300),
        description="The affine stage used for channel_correction.",
    )
    min_similarity: float = Field(
        0.3,
        ge=-1,
        le=1,
        description="Orientation guard: stop when the normalised cross-correlation of the warped atlas reference "
        "and the sample inside the brain is below this after registration.",
    )
    extent_tolerance: float = Field(
        0.35,
        gt=0,
        description="Orientation guard: stop before registering when the resampled sample's extent differs from "
        "the atlas extent by more than this fraction along an axis.",
    )
    orientation_check: bool = Field(
        True,
        description="Orientation guard: before registering, compare the configured orientation with its flipped "
        "variants by a coarse affine registration (a few seconds) and stop if one fits clearly "
        "better.",
    )
    orientation_margin: float = Field(
        0.1,
        ge=0,
        le=2,
        description="How much better (NCC) a flipped variant must fit for orientation_check to stop the run.",
    )
    suggest_orientation: bool = Field(
        True,
        description="When a guard fails, rank candidate orientations by coarse affine registrations to suggest "
        "the fix.",
    )
