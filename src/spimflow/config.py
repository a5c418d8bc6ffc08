"""The sample configuration: one YAML file per brain, validated by these models.

``schemas/config.schema.json`` is generated from :class:`SampleConfig`
(``spimflow schema``); a test keeps it in sync.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from spimflow.errors import ConfigError
from spimflow.orientation import check_clearmap_permutation, check_origin_code
from spimflow.params import StrictModel
from spimflow.params.analysis import RegionsParams, VoxelizeParams
from spimflow.params.annotate import AnnotateParams
from spimflow.params.detect import DetectParams, ThresholdParams
from spimflow.params.register import RegisterParams
from spimflow.params.resample import ResampleParams

Voxel3 = tuple[float, float, float]


def _positive3(v: Voxel3, what: str) -> Voxel3:
    if any(x <= 0 for x in v):
        raise ValueError(f"{what} must be three positive numbers (z, y, x) in µm, got {list(v)}")
    return v


# -- orientation -----------------------------------------------------------------

OrientationValue = str | tuple[int, int, int]


def _check_orientation(v: Any) -> Any:
    try:
        if isinstance(v, str):
            return check_origin_code(v)
        return check_clearmap_permutation(v)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


# -- sources -----------------------------------------------------------------------


class _Source(StrictModel):
    def files(self, base: Path) -> list[Path]:  # what must exist before a run
        return [base / self.path]  # type: ignore[attr-defined]


class TiffSource(_Source):
    """One multi-page TIFF (or OME-TIFF) stack; pages are z planes."""

    format: Literal["tiff"]
    path: Path


class PatternSource(_Source):
    """Numbered TIFF planes: ``path`` is a folder plus a regular expression for the file name,
    e.g. ``raw/Z\\d{4}.ome.tif``. Planes are ordered by the number in the name."""

    format: Literal["pattern"]
    path: str

    @field_validator("path")
    @classmethod
    def _regex_compiles(cls, v: str) -> str:
        try:
            re.compile(Path(v).name)
        except re.error as exc:
            raise ValueError(f"file name part {Path(v).name!r} is not a valid regular expression: {exc}") from None
        return v

    def files(self, base: Path) -> list[Path]:
        folder = base / Path(self.path).parent
        rx = re.compile(Path(self.path).name)
        if not folder.is_dir():
            return [folder]
        return sorted(p for p in folder.iterdir() if rx.fullmatch(p.name)) or [base / self.path]


class FolderSource(_Source):
    """Every ``.tif``/``.tiff`` file in a folder, one z plane each, in natural name order."""

    format: Literal["folder"]
    path: Path


class NrrdSource(_Source):
    format: Literal["nrrd"]
    path: Path


class MhdSource(_Source):
    """MetaImage header (``.mhd``) with its raw data file."""

    format: Literal["mhd"]
    path: Path


class ImarisSource(_Source):
    """Imaris ``.ims`` (HDF5): ``DataSet/ResolutionLevel r/TimePoint t/Channel c/Data``."""

    format: Literal["ims"]
    path: Path
    resolution_level: int = Field(0, ge=0)
    timepoint: int = Field(0, ge=0)
    channel: int = Field(0, ge=0)


class ZarrSource(_Source):
    """An existing zarr array or OME-Zarr image (level ``array``)."""

    format: Literal["zarr"]
    path: Path
    array: str | None = Field(
        None, description="Array inside the group (default: OME-Zarr level 0, or the store itself if it is an array)."
    )


Source = Annotated[
    TiffSource | PatternSource | FolderSource | NrrdSource | MhdSource | ImarisSource | ZarrSource,
    Field(discriminator="format"),
]


class Crop(StrictModel):
    """Half-open voxel ranges [start, stop) in the source's (z, y, x) axes; null = whole axis."""

    z: tuple[int, int] | None = None
    y: tuple[int, int] | None = None
    x: tuple[int, int] | None = None

    @model_validator(mode="after")
    def _ordered(self):
        for name in "zyx":
            r = getattr(self, name)
            if r is not None and not (0 <= r[0] < r[1]):
                raise ValueError(f"crop.{name} must be [start, stop) with 0 ≤ start < stop, got {list(r)}")
        return self

    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(*r) if r else slice(None) for r in (self.z, self.y, self.x))


class Channel(StrictModel):
    source: Source
    voxel_size: Voxel3 = Field(description="Voxel size (z, y, x) in µm.")
    orientation: OrientationValue = Field(
        description="Sample axis orientation: BrainGlobe origin code for the (z, y, x) axes (e.g. 'ipl'), "
        "or a ClearMap signed permutation in ClearMap (x, y, z) order relative to the atlas (e.g. [1, -2, 3])."
    )
    crop: Crop | None = None

    @field_validator("voxel_size")
    @classmethod
    def _voxel_positive(cls, v: Voxel3) -> Voxel3:
        return _positive3(v, "voxel_size")

    @field_validator("orientation", mode="before")
    @classmethod
    def _orientation_valid(cls, v: Any) -> Any:
        return _check_orientation(v)


class Channels(StrictModel):
    signal: Channel = Field(description="The labelled cells (e.g. c-Fos).")
    autofluorescence: Channel = Field(description="Autofluorescence, registered to the atlas reference.")
    extra: dict[str, Channel] = Field(
        default_factory=dict, description="Further channels, ingested and resampled only."
    )

    def all(self) -> dict[str, Channel]:
        return {"signal": self.signal, "autofluorescence": self.autofluorescence, **self.extra}

    @field_validator("extra")
    @classmethod
    def _names(cls, v: dict[str, Channel]) -> dict[str, Channel]:
        for name in v:
            if name in ("signal", "autofluorescence") or not re.fullmatch(r"[A-Za-z0-9_]+", name):
                raise ValueError(
                    f"extra channel name {name!r} must be letters, digits or _ and not signal/autofluorescence"
                )
        return v


# -- atlas -----------------------------------------------------------------------------


class AtlasConfig(StrictModel):
    """The reference atlas. ``brainglobe``: a BrainGlobe atlas folder (metadata.json,
    structures.json, annotation/reference/hemispheres.tiff) — the demo atlas is written
    in this layout. ``allen``: a label volume plus the Allen ontology JSON."""

    format: Literal["brainglobe", "allen"]
    path: Path | None = Field(None, description="BrainGlobe atlas folder.")
    annotation: Path | None = Field(None, description="Label volume (allen): .tif, .tif.lzma, .nrrd, .mhd.")
    reference: Path | None = Field(None, description="Reference (template) intensity volume (allen).")
    hemispheres: Path | None = Field(None, description="Hemisphere label volume (allen, optional).")
    ontology: Path | None = Field(None, description="Allen structure ontology JSON (allen).")
    voxel_size: Voxel3 | None = Field(None, description="(z, y, x) µm (allen; brainglobe reads metadata.json).")
    orientation: str | None = Field(
        None, description="BrainGlobe origin code of the atlas axes (allen; brainglobe reads metadata.json)."
    )
    hemisphere: Literal["both", "left", "right"] = Field("both", description="Crop the atlas to one hemisphere.")

    @model_validator(mode="after")
    def _needs(self):
        if self.format == "brainglobe" and self.path is None:
            raise ValueError("atlas format 'brainglobe' needs 'path' (the atlas folder)")
        if self.format == "allen":
            missing = [k for k in ("annotation", "ontology", "voxel_size", "orientation") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"atlas format 'allen' needs {', '.join(missing)}")
        if self.voxel_size is not None:
            _positive3(self.voxel_size, "atlas.voxel_size")
        if self.orientation is not None:
            try:
                code = check_origin_code(self.orientation)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
            if code != self.orientation:  # assigning re-runs this validator (validate_assignment)
                self.orientation = code
        return self

    def files(self, base: Path) -> list[Path]:
        if self.format == "brainglobe":
            return [base / self.path]  # type: ignore[operator]
        return [base / p for p in (self.annotation, self.ontology, self.reference, self.hemispheres) if p is not None]

    def ontology_file(self, base: Path) -> Path:
        """The file holding the region ontology (a BrainGlobe folder's structures.json, or
        the Allen ontology JSON)."""
        if self.format == "brainglobe":
            return Path(base) / self.path / "structures.json"  # type: ignore[operator]
        return Path(base) / self.ontology  # type: ignore[operator]


# -- demo --------------------------------------------------------------------------------


class DemoParams(StrictModel):
    """Synthetic atlas + sample generated by the workflow itself (no downloads)."""

    preset: Literal["small", "large"] = Field(
        "small", description="small: the default demo (whole pipeline in minutes); large: for benchmarks."
    )
    seed: int = 0
    density_factors: dict[str, float] = Field(
        default_factory=dict,
        description="Region acronym → factor on its true cell density (and its descendants'); the demo cohort "
        "raises one region in one group this way.",
    )
    out_dir: Path = Field(
        Path("resources/demo"), description="Where the atlas, sample planes and ground truth are written."
    )


# -- steps and the whole sample --------------------------------------------------------------


class Steps(StrictModel):
    resample: ResampleParams = Field(default_factory=ResampleParams)
    registration: RegisterParams = Field(default_factory=RegisterParams)
    detect: DetectParams = Field(default_factory=DetectParams)
    threshold: ThresholdParams = Field(default_factory=ThresholdParams)
    annotate: AnnotateParams = Field(default_factory=AnnotateParams)
    voxelize: VoxelizeParams = Field(default_factory=VoxelizeParams)
    regions: RegionsParams = Field(default_factory=RegionsParams)


class IngestParams(StrictModel):
    chunks: tuple[int, int, int] = Field((16, 256, 256), description="Level-0 zarr chunk shape (z, y, x).")
    pyramid_levels: int = Field(4, ge=1, le=10)


class SampleConfig(StrictModel):
    """One brain."""

    sample: str = Field(description="Sample id; outputs go to <results>/<sample>/.", pattern=r"^[A-Za-z0-9_.-]+$")
    results: Path = Field(Path("results"), description="Root folder of all outputs.")
    channels: Channels
    atlas: AtlasConfig
    demo: DemoParams | None = Field(
        None, description="Generate the embedded synthetic demo data (sources then point into demo.out_dir)."
    )
    ingest: IngestParams = Field(default_factory=IngestParams)
    steps: Steps = Field(default_factory=Steps)

    def sample_dir(self) -> Path:
        return self.results / self.sample

    def counted_cells_file(self) -> Path:
        """The cell table the run counts: ``cells/cells_curated.parquet`` with
        ``steps.annotate.use_curated``, else the thresholded ``cells/cells.parquet``."""
        name = "cells_curated.parquet" if self.steps.annotate.use_curated else "cells.parquet"
        return self.sample_dir() / "cells" / name


# -- loading and checking -------------------------------------------------------------------


def _key_path(loc: tuple) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in {"tiff", "pattern", "folder", "nrrd", "mhd", "ims", "zarr"} and parts:
            continue  # discriminated-union tag, not a key the user wrote
        elif str(item).startswith("function-") or str(item).endswith("]"):
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "<root>"


def format_validation_errors(exc: ValidationError, source: str = "config") -> list[str]:
    lines = []
    for err in exc.errors():
        key = _key_path(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check spelling; see docs/configuration.md)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "union_tag_invalid":
            msg = f"{msg}"
        lines.append(f"{source}: {key}: {msg}")
    return lines


def parse_config(data: dict[str, Any], source: str = "config") -> SampleConfig:
    """Validate a loaded config mapping; raise :class:`ConfigError` listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return SampleConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(format_validation_errors(exc, source))) from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML config file holds; :class:`ConfigError` naming the file when it is
    missing or not valid YAML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return data or {}


def load_config(path: str | Path) -> SampleConfig:
    """Read and validate a sample config file."""
    return parse_config(read_config_file(path), str(path))


def missing_inputs(cfg: SampleConfig, base: str | Path = ".") -> list[str]:
    """Every input file the config names that is not there (skipping demo-generated data)."""
    base = Path(base)
    problems: list[str] = []
    demo_dir = (base / cfg.demo.out_dir).resolve() if cfg.demo else None

    def generated(p: Path) -> bool:
        return demo_dir is not None and demo_dir in p.resolve().parents

    for name, ch in cfg.channels.all().items():
        key = (
            f"channels.{name}.source.path"
            if name in ("signal", "autofluorescence")
            else f"channels.extra.{name}.source.path"
        )
        for f in ch.source.files(base):
            if generated(f):
                continue
            if isinstance(ch.source, PatternSource) and not f.exists():
                problems.append(f"{key}: pattern {ch.source.path!r} matches no file in {f.parent}")
            elif not f.exists():
                problems.append(f"{key}: file not found: {f}")
    for f in cfg.atlas.files(base):
        if not generated(f) and not f.exists():
            problems.append(f"atlas: file not found: {f}")
    for f in cfg.steps.registration.parameter_files:
        if not (base / f).exists():
            problems.append(f"steps.registration.parameter_files: file not found: {base / f}")
    return problems


def json_schema() -> dict:
    schema = SampleConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "spimflow sample configuration"
    return schema
