from typing import Literal

from pydantic import Field, model_validator

from spimflow.params import StrictModel


class BlockParams(StrictModel):
    """The detection block grid over the ingested signal volume (all three axes)."""

    size: tuple[int, int, int] = Field((64, 256, 256), description="Core block size (z, y, x) in voxels.")
    overlap: tuple[int, int, int] = Field((8, 16, 16), description="Extra margin (z, y, x) in voxels read on each side of a core block.")
    batch: int = Field(8, ge=1, description="Blocks per Snakemake job group (keeps overhead sane with thousands of blocks).")

    @model_validator(mode="after")
    def _overlap_below_size(self):
        for axis, (s, o) in enumerate(zip(self.size, self.overlap)):
            if s < 1:
                raise ValueError(f"size[{axis}] must be ≥ 1 voxel, got {s}")
            if o < 0:
                raise ValueError(f"overlap[{axis}] must be ≥ 0, got {o}")
            if s < o:
                raise ValueError(f"block size {s} along axis {axis} is smaller than the overlap {o}; expected size ≥ overlap")
        return self


class IlluminationParams(StrictModel):
    enabled: bool = False
    mode: Literal["estimate", "profile"] = Field("estimate", description="Estimate a smooth flat-field per plane, or divide by a given profile image.")
    profile: str | None = Field(None, description="Flat-field profile image (y, x) for mode 'profile'.")
    sigma_um: float = Field(200.0, gt=0, description="Smoothing of the per-plane estimate (µm).")


class BackgroundParams(StrictModel):
    enabled: bool = True
    size_um: tuple[float, float] = Field((35.0, 35.0), description="In-plane (y, x) size of the morphological opening (µm), larger than a cell.")


class DogParams(StrictModel):
    enabled: bool = True
    sigma_inner_um: float = Field(3.0, gt=0)
    sigma_outer_um: float = Field(6.0, gt=0)


class MaximaParams(StrictModel):
    h_max: float | None = Field(None, ge=0, description="h of the h-max transform; None: plain regional maxima.")
    threshold: float = Field(0.0, description="Minimum filtered intensity at a maximum.")
    box_um: tuple[float, float, float] = Field((6.0, 6.0, 6.0), description="Neighbourhood (z, y, x) µm for peak-intensity refinement.")


class ShapeParams(StrictModel):
    enabled: bool = True
    threshold: float = Field(200.0, description="Background threshold for the seeded watershed (filtered image units).")
    max_radius_um: float = Field(15.0, gt=0)


class DetectParams(StrictModel):
    """ClearMap-style cell detection, run block by block."""

    blocks: BlockParams = Field(default_factory=BlockParams)
    illumination: IlluminationParams = Field(default_factory=IlluminationParams)
    background: BackgroundParams = Field(default_factory=BackgroundParams)
    dog: DogParams = Field(default_factory=DogParams)
    maxima: MaximaParams = Field(default_factory=MaximaParams)
    shape: ShapeParams = Field(default_factory=ShapeParams)


class ThresholdParams(StrictModel):
    """Keep cells whose measured columns fall in [min, max] (null = open end), as ClearMap's thresholdPoints."""

    ranges: dict[str, tuple[float | None, float | None]] = Field(
        default_factory=lambda: {"size": (20.0, 900.0)},
        description="Column → [min, max]; any measured column (size, intensity_raw, intensity_bg, intensity_dog, ...).")
