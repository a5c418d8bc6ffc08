"""Parameters of cell detection (ClearMap-style chain, run block by block) and thresholding.

Units: every size is in µm unless the name says voxels; it is converted per axis with
the signal channel's voxel size, so the same values work at any (anisotropic)
resolution. Intensities (thresholds) are in the units of the filtered image the step
works on (see docs/detection.md).
"""

from typing import Literal

from pydantic import Field, model_validator

from spimflow.params import StrictModel


class BlockParams(StrictModel):
    """The detection block grid over the ingested signal volume (all three axes)."""

    size: tuple[int, int, int] = Field(
        (64, 384, 384),
        description="Core block size (z, y, x) in voxels; each cell belongs to the one block whose core holds "
        "its centre.",
    )
    overlap: tuple[int, int, int] | None = Field(
        None,
        description="Margin (z, y, x) in voxels read on each side of a core block. null: the minimum the filters, "
        "maxima windows and cell radius need for results identical to a whole-volume run.",
    )
    batch: int = Field(8, ge=1, description="Blocks per Snakemake job (keeps overhead sane with thousands of blocks).")

    @model_validator(mode="after")
    def _overlap_below_size(self):
        for axis, s in enumerate(self.size):
            if s < 1:
                raise ValueError(f"size[{axis}] must be ≥ 1 voxel, got {s}")
        if self.overlap is not None:
            for axis, (s, o) in enumerate(zip(self.size, self.overlap)):
                if o < 0:
                    raise ValueError(f"overlap[{axis}] must be ≥ 0, got {o}")
                if s < o:
                    raise ValueError(
                        f"block size {s} along axis {axis} is smaller than the overlap {o}; expected size ≥ overlap"
                    )
        return self


class IlluminationParams(StrictModel):
    """Flat-field correction: the image is divided by a smooth field normalised to 1 at its brightest."""

    enabled: bool = False
    mode: Literal["estimate", "profile"] = Field(
        "estimate",
        description="estimate: a smooth field per z plane from the volume itself; profile: one (y, x) flat-field "
        "image for all planes.",
    )
    profile: str | None = Field(
        None,
        description="Flat-field profile image (y, x), TIFF, same in-plane shape as the signal volume (mode 'profile').",
    )
    sigma_um: float = Field(200.0, gt=0, description="Gaussian smoothing of the per-plane estimate (µm).")
    floor: float = Field(
        0.2,
        gt=0,
        le=1,
        description="The field is clipped below at this fraction, so dark regions are amplified at most 1/floor times.",
    )

    @model_validator(mode="after")
    def _profile_given(self):
        if self.enabled and self.mode == "profile" and not self.profile:
            raise ValueError("mode 'profile' needs 'profile' (a flat-field TIFF)")
        return self


class BackgroundParams(StrictModel):
    """Background removal: subtract a grey opening (per z plane) with a rectangle of this size."""

    enabled: bool = True
    size_um: tuple[float, float] = Field(
        (30.0, 30.0), description="In-plane (y, x) size of the opening rectangle (µm); larger than a cell."
    )


class DogParams(StrictModel):
    """Difference of Gaussians: G(sigma_inner) - G(sigma_outer), both normalised to unit sum."""

    enabled: bool = True
    sigma_inner_um: float = Field(
        3.0, gt=0, description="Inner Gaussian sigma (µm), same physical size along every axis."
    )
    sigma_outer_um: float = Field(6.0, gt=0, description="Outer Gaussian sigma (µm).")
    truncate: float = Field(
        3.0, ge=1, le=6, description="Kernels are cut at this many sigmas (sets the overlap the filter needs)."
    )

    @model_validator(mode="after")
    def _outer_larger(self):
        if self.sigma_outer_um <= self.sigma_inner_um:
            raise ValueError(
                f"sigma_outer_um ({self.sigma_outer_um}) must be larger than sigma_inner_um ({self.sigma_inner_um})"
            )
        return self


class MaximaParams(StrictModel):
    """Cell centres: regional maxima (or h-maxima) of the filtered image above a threshold."""

    threshold: float = Field(80.0, description="Minimum filtered intensity at a maximum.")
    h_max: float | None = Field(
        None, ge=0, description="h of the extended-maxima (h-max) transform; null: plain regional maxima."
    )
    radius_um: float = Field(
        8.0, gt=0, description="Window (half-size, µm) of the h-max/plateau search around each maximum."
    )


class RefineParams(StrictModel):
    """Sub-voxel centre: 3-point Gaussian fit of the filtered image along each axis at the peak voxel."""

    enabled: bool = True


class ShapeParams(StrictModel):
    """Cell shape: seeded watershed of the filtered image inside (filtered > threshold)."""

    enabled: bool = True
    threshold: float = Field(40.0, description="Background threshold of the watershed mask (filtered image units).")
    max_radius_um: float = Field(12.0, gt=0, description="No voxel farther than this from its seed joins a cell (µm).")


class MeasureParams(StrictModel):
    """Per-cell intensities."""

    box_um: tuple[float, float, float] = Field(
        (6.0, 6.0, 6.0),
        description="Box (z, y, x, µm, full width) around the peak voxel in which the peak intensities are taken.",
    )


class DetectParams(StrictModel):
    """ClearMap-style cell detection, run block by block."""

    blocks: BlockParams = Field(default_factory=BlockParams)
    illumination: IlluminationParams = Field(default_factory=IlluminationParams)
    background: BackgroundParams = Field(default_factory=BackgroundParams)
    dog: DogParams = Field(default_factory=DogParams)
    maxima: MaximaParams = Field(default_factory=MaximaParams)
    refine: RefineParams = Field(default_factory=RefineParams)
    shape: ShapeParams = Field(default_factory=ShapeParams)
    measure: MeasureParams = Field(default_factory=MeasureParams)


class ThresholdParams(StrictModel):
    """Keep cells whose measured columns fall in [min, max] (null = open end), as ClearMap's thresholdPoints."""

    ranges: dict[str, tuple[float | None, float | None]] = Field(
        default_factory=lambda: {"volume_um3": (200.0, None)},
        description="Column → [min, max]; any measured column (size, volume_um3, intensity_raw, intensity_bg, "
        "intensity_dog, "
        "mean_raw, mean_bg, mean_dog).",
    )

    @model_validator(mode="after")
    def _ordered(self):
        for col, (lo, hi) in self.ranges.items():
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"ranges.{col}: min {lo} is larger than max {hi}")
        return self
