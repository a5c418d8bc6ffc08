"""Parameters of cell detection (ClearMap-style chain, run block by block) and thresholding.

Units: every size is in µm unless the name says voxels; it is converted per axis with
the signal channel's voxel size, so the same values work at any (anisotropic)
resolution. Intensities (thresholds) are in the units of the filtered image the step
works on (see docs/detection.md).
"""

from typing import Any, Literal

from pydantic import BaseModel, Field, PositiveFloat, model_validator

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
    size_um: tuple[PositiveFloat, PositiveFloat] = Field(
        (30.0, 30.0), description="In-plane (y, x) size of the opening rectangle (µm, positive); larger than a cell."
    )


class BorderParams(StrictModel):
    """Maxima on the border of the volume: filter responses to the border, not cells."""

    keep_peaks: bool = Field(
        False,
        description="Keep maxima whose peak voxel lies on the first or last plane of the volume along any axis. "
        "Off (default): dropped — a cell cut by the border (centre outside) or bright structure going on beyond it "
        "peaks there, and cannot be told from a cell centred exactly on that plane. Every cell's distance to the "
        "border is its 'edge' column (µm).",
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
    """Cell centre: the brightness peak (sub-voxel 3-point Gaussian fit of the filtered image along each axis at
    the peak voxel), or the centroid of the cell's thresholded shape."""

    enabled: bool = True
    center: Literal["peak", "centroid"] = Field(
        "peak",
        description="peak: the filtered image's maximum (with enabled, refined by the fit; without, the centroid "
        "of the maximum's plateau or h-dome, as ClearMap). centroid: the centroid of the cell's watershed shape "
        "(the thresholded object, as cellfinder); needs shape.enabled, and a cell without shape voxels keeps its "
        "peak centre. They differ along z on anisotropic data (docs/detection.md).",
    )


class ShapeParams(StrictModel):
    """Cell shape: seeded watershed of the filtered image inside (filtered > threshold)."""

    enabled: bool = True
    threshold: float = Field(40.0, description="Background threshold of the watershed mask (filtered image units).")
    max_radius_um: float = Field(12.0, gt=0, description="No voxel farther than this from its seed joins a cell (µm).")


class SplitParams(StrictModel):
    """Touching cells: split a cell whose watershed basin hides a second cell that is no maximum of its own
    (docs/detection.md, "Touching cells")."""

    enabled: bool = Field(
        True,
        description="Look for a second cell in each cell's basin: subtract a model of every detected cell (the "
        "filtered image of one cell of cell_diameter_um, or 4 × dog.sigma_inner_um) and split off a maximum of "
        "what is left.",
    )
    min_ratio: float = Field(
        0.15,
        gt=0,
        le=1,
        description="The hidden cell's peak, after subtracting the models, must reach this fraction of the cell's "
        "peak (and maxima.threshold): how much dimmer a partner may be.",
    )
    min_distance: float = Field(
        1.1,
        gt=0,
        le=2,
        description="The hidden cell's centre must lie at least this many cell diameters from the cell's centre; "
        "closer pairs are left as one cell.",
    )


class MeasureParams(StrictModel):
    """Per-cell intensities."""

    box_um: tuple[PositiveFloat, PositiveFloat, PositiveFloat] = Field(
        (6.0, 6.0, 6.0),
        description="Box (z, y, x, µm, full width) around the peak voxel in which the peak intensities are taken.",
    )


#: Size parameters derived from ``cell_diameter_um`` (D): (section, key) → factor of D, and why.
#: Tuple-valued keys get the same value on every axis.
SIZE_FORMULAS: dict[tuple[str, str], tuple[float, str]] = {
    ("dog", "sigma_inner_um"): (0.25, "DoG centre: about half the blob's own Gaussian sigma (D / 2.355)"),
    ("dog", "sigma_outer_um"): (0.5, "DoG surround: twice the centre, so the band pass peaks at one cell"),
    ("background", "size_um"): (2.5, "top-hat rectangle: wider than a cell and a touching neighbour"),
    ("maxima", "radius_um"): (2.0 / 3.0, "h-max/plateau search window: two thirds of a cell"),
    ("shape", "max_radius_um"): (1.0, "watershed limit: no voxel farther than one diameter from the peak"),
    ("measure", "box_um"): (0.5, "peak-intensity box: half a cell wide, inside the cell"),
}


def derived_sizes(cell_diameter_um: float) -> dict[str, dict[str, Any]]:
    """The size parameters :data:`SIZE_FORMULAS` derives from a cell diameter.

    Parameters
    ----------
    cell_diameter_um : float
        Typical cell diameter (full width at half maximum of a nucleus), µm.

    Returns
    -------
    dict
        Section → key → value, in the shapes the parameter models take.

    Examples
    --------
    >>> derived_sizes(12.0)["dog"]
    {'sigma_inner_um': 3.0, 'sigma_outer_um': 6.0}
    >>> derived_sizes(12.0)["background"]
    {'size_um': (30.0, 30.0)}
    """
    out: dict[str, dict[str, Any]] = {}
    for (section, key), (factor, _) in SIZE_FORMULAS.items():
        value = round(factor * cell_diameter_um, 6)
        if key == "size_um":
            value = (value, value)
        elif key == "box_um":
            value = (value, value, value)
        out.setdefault(section, {})[key] = value
    return out


def _explicit(section: Any) -> dict[str, Any]:
    """The keys a user gave for one section (a dict from YAML, or a model built in Python)."""
    if section is None:
        return {}
    if isinstance(section, BaseModel):
        return {k: getattr(section, k) for k in section.model_fields_set}
    if isinstance(section, dict):
        return dict(section)
    return section  # not a mapping: left for pydantic to reject with its own message


class DetectParams(StrictModel):
    """ClearMap-style cell detection, run block by block."""

    cell_diameter_um: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="Typical cell diameter (µm, full width at half maximum). When set, every size parameter not "
        "given explicitly is derived from it (docs/detection.md lists the formulas): dog sigmas, background size, "
        "maxima radius, shape radius and measure box. Explicit values win.",
    )
    blocks: BlockParams = Field(default_factory=BlockParams)
    illumination: IlluminationParams = Field(default_factory=IlluminationParams)
    background: BackgroundParams = Field(default_factory=BackgroundParams)
    dog: DogParams = Field(default_factory=DogParams)
    maxima: MaximaParams = Field(default_factory=MaximaParams)
    refine: RefineParams = Field(default_factory=RefineParams)
    border: BorderParams = Field(default_factory=BorderParams)
    shape: ShapeParams = Field(default_factory=ShapeParams)
    split: SplitParams = Field(default_factory=SplitParams)
    measure: MeasureParams = Field(default_factory=MeasureParams)

    @model_validator(mode="before")
    @classmethod
    def _derive_sizes(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("cell_diameter_um") is None:
            return data
        try:
            diameter = float(data["cell_diameter_um"])
        except (TypeError, ValueError):
            return data  # pydantic reports the bad value
        if not diameter > 0 or diameter == float("inf"):
            return data
        data = dict(data)
        for section, values in derived_sizes(diameter).items():
            given = _explicit(data.get(section))
            if not isinstance(given, dict):
                continue
            data[section] = {**values, **given}
        return data

    @model_validator(mode="after")
    def _centroid_needs_shape(self):
        if self.refine.center == "centroid" and not self.shape.enabled:
            raise ValueError("refine.center: centroid needs the cell shape, but shape.enabled is false")
        return self


class ThresholdParams(StrictModel):
    """Keep cells whose measured columns fall in [min, max] (null = open end), as ClearMap's thresholdPoints."""

    ranges: dict[str, tuple[float | None, float | None]] = Field(
        default_factory=lambda: {"volume_um3": (200.0, None)},
        description="Column → [min, max]; any cell column: z, y, x (raw voxels), size, volume_um3, intensity_raw, "
        "intensity_bg, intensity_dog, mean_raw, mean_bg, mean_dog, edge (µm to the volume border).",
    )

    @model_validator(mode="after")
    def _ordered(self):
        for col, (lo, hi) in self.ranges.items():
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"ranges.{col}: min {lo} is larger than max {hi}")
        return self
