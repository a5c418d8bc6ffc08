from pathlib import Path
from typing import Literal

from pydantic import Field

from spimflow.params import StrictModel


class ElastixStage(StrictModel):
    """One elastix stage (built-in defaults are overridden by the keys given)."""

    enabled: bool = True
    resolutions: int = Field(4, ge=1, le=8, description="Pyramid levels (NumberOfResolutions).")
    iterations: int = Field(500, ge=1, description="MaximumNumberOfIterations per resolution.")
    metric: Literal["AdvancedMattesMutualInformation", "AdvancedNormalizedCorrelation"] = (
        "AdvancedMattesMutualInformation"
    )
    spatial_samples: int = Field(4000, ge=100, description="NumberOfSpatialSamples per iteration.")
    extra: dict[str, str | int | float | bool | list[str | int | float]] = Field(
        default_factory=dict,
        description="Further elastix parameters, passed through verbatim (e.g. NumberOfHistogramBins: 64).",
    )


class RegisterParams(StrictModel):
    """Atlas registration (atlas reference → resampled autofluorescence) with itk-elastix.

    Defaults follow ClearMap's align_affine/align_bspline parameter files (Mattes mutual
    information, adaptive stochastic gradient descent, affine then B-spline at 25 voxels
    of a 25 µm atlas), with fewer iterations than ClearMap's 5000 (the stochastic
    optimiser has converged long before on 25 µm data).
    """

    affine: ElastixStage = Field(default_factory=ElastixStage)
    bspline: ElastixStage = Field(
        default_factory=lambda: ElastixStage(resolutions=3, iterations=1000, spatial_samples=5000)
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
