from typing import Literal

from pydantic import Field

from spimflow.params import StrictModel


class ResampleParams(StrictModel):
    """Resampling of each channel to the atlas voxel size and orientation."""

    antialias: bool = Field(
        True,
        description="Gaussian pre-smoothing before downsampling (sigma = (factor-1)/2 input voxels), as area "
        "averaging does.",
    )
    interpolation: Literal["linear", "nearest"] = Field("linear", description="Interpolation between voxel centres.")
    chunk_planes: int = Field(16, ge=1, description="Output planes computed per streaming step (bounds memory).")
