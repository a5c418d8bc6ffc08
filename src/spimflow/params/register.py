from pathlib import Path
from typing import Literal

from pydantic import Field

from spimflow.params import StrictModel


class ElastixStage(StrictModel):
    """One elastix stage (built-in defaults are overridden by the keys given)."""

    enabled: bool = True
    resolutions: int = Field(4, ge=1, le=8, description="Pyramid levels (NumberOfResolutions).")
    iterations: int = Field(1000, ge=1, description="MaximumNumberOfIterations per resolution.")
    metric: Literal["AdvancedMattesMutualInformation", "AdvancedNormalizedCorrelation"] = "AdvancedMattesMutualInformation"
    spatial_samples: int = Field(5000, ge=100, description="NumberOfSpatialSamples per iteration.")
    extra: dict[str, str | int | float | list[str | int | float]] = Field(
        default_factory=dict, description="Further elastix parameters, passed through verbatim.")


class RegisterParams(StrictModel):
    """Atlas registration (atlas reference → resampled autofluorescence) with itk-elastix."""

    affine: ElastixStage = Field(default_factory=ElastixStage)
    bspline: ElastixStage = Field(default_factory=lambda: ElastixStage(iterations=1500))
    bspline_grid_spacing_um: float = Field(400.0, gt=0, description="Final B-spline control point spacing (µm).")
    parameter_files: list[Path] = Field(default_factory=list, description="Your own elastix parameter files; when given they replace affine/bspline above, applied in order.")
    channel_correction: bool = Field(False, description="Also register signal → autofluorescence (affine) and correct cell positions, as ClearMap does.")
    min_similarity: float = Field(0.2, ge=-1, le=1, description="Orientation guard: stop when the normalised cross-correlation of atlas reference and sample after registration is below this.")
    extent_tolerance: float = Field(0.35, gt=0, description="Orientation guard: stop when the resampled sample's extent differs from the atlas extent by more than this fraction along an axis.")
