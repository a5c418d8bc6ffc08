"""Parameters of the atlas-space analysis of one brain: density maps and region tables.

The group statistics of a cohort are configured in the cohort file
(:class:`spimflow.cohort.StatsParams`), not per brain.
"""

from typing import Literal

from pydantic import Field, field_validator

from spimflow.params import StrictModel

RegionRef = int | str  # an ontology id or acronym


class VoxelizeParams(StrictModel):
    """Cell density maps in atlas space (ClearMap's ``voxelize``)."""

    enabled: bool = Field(True, description="Write results/<sample>/maps/density.ome.zarr (+ .tif).")
    method: Literal["sphere", "rectangle", "gaussian", "pixel"] = Field(
        "sphere",
        description="sphere: cells within size_um of each voxel; rectangle: within a box of half-width size_um; "
        "gaussian: sum of Gaussians of sigma size_um (peak 1); pixel: cells per voxel.",
    )
    size_um: float | tuple[float, float, float] = Field(
        375.0,
        description="Sphere radius, box half-width or Gaussian sigma in µm, one value or (z, y, x); "
        "ClearMap's default is 15 atlas voxels of 25 µm.",
    )
    weight: str | None = Field(
        None, description="Cell column summed instead of counting cells (e.g. intensity_raw); null: counts."
    )
    per_hemisphere: bool = Field(False, description="Also write density_left and density_right maps.")
    regions: dict[str, list[RegionRef]] = Field(
        default_factory=dict,
        description="Named region subsets, each a list of ontology ids or acronyms: one map per subset, masked "
        "to those regions and all their descendants (e.g. {cortex: [Isocortex]}).",
    )
    tiff: bool = Field(True, description="Also write a TIFF copy of every map (for ImageJ/Fiji).")

    @field_validator("size_um")
    @classmethod
    def _positive(cls, v):
        values = v if isinstance(v, tuple) else (v,)
        if any(not x > 0 for x in values):
            raise ValueError(f"size_um must be positive (µm), got {v}")
        return v

    @field_validator("regions")
    @classmethod
    def _names(cls, v):
        for name, refs in v.items():
            if not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"region subset name {name!r} must be letters, digits, _ or -")
            if not refs:
                raise ValueError(f"region subset {name!r} lists no region")
        return v


class RegionsParams(StrictModel):
    """Cell counts per atlas region along the ontology (every level, left/right/total)."""

    collapse_depths: list[int] = Field(
        default_factory=list,
        description="Also write counts collapsed to these ontology depths (ClearMap's collapse table): "
        "regions/counts_depth<N>.csv.",
    )
    measure_columns: list[str] | None = Field(
        None, description="Cell columns averaged per region (mean_<column>); null: every measured column."
    )

    @field_validator("collapse_depths")
    @classmethod
    def _depths(cls, v):
        if any(d < 0 for d in v):
            raise ValueError(f"collapse_depths must be ≥ 0, got {v}")
        return sorted(set(v))
