from typing import Literal

from pydantic import Field

from spimflow.params import StrictModel


class VoxelizeParams(StrictModel):
    """Cell density maps in atlas space."""

    method: Literal["sphere", "gaussian", "pixel"] = "sphere"
    radius_um: float = Field(
        375.0, gt=0, description="Sphere radius or Gaussian sigma (µm), ClearMap's default is 15 atlas voxels at 25 µm."
    )
    weight: str | None = Field(None, description="Column used as a weight per cell (None: counts).")


class RegionsParams(StrictModel):
    """Cell counts per atlas region along the hierarchy."""

    levels: list[int] = Field(default_factory=list, description="Also report counts pooled at these ontology depths.")
    include_unassigned: bool = Field(True, description="Report cells outside any labelled region as region 0.")
    per_hemisphere: bool = True


class StatsParams(StrictModel):
    """Group comparisons (voxel and region level)."""

    test: Literal["ttest", "welch", "mannwhitney"] = "welch"
    fdr: Literal["bh", "storey"] = "bh"
    alpha: float = Field(0.05, gt=0, lt=1)


class AnnotateParams(StrictModel):
    """Annotation projects (ClickPoints-compatible SQLite)."""

    enabled: bool = False
    marker_type: str = Field("cell", description="Marker type name used for detected cells.")
    planes: Literal["all", "with_cells"] = "with_cells"
