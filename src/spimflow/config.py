"""The sample configuration: one YAML file per brain, validated by these models.

``schemas/config.schema.json`` is generated from :class:`SampleConfig`
(``spimflow schema``); a test keeps it in sync.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, PositiveInt, ValidationError, field_validator, model_validator

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
    if not isinstance(v, str):
        items = list(v) if isinstance(v, list | tuple) else None
        if items is None or any(isinstance(a, bool) or not isinstance(a, int) for a in items):
            raise ValueError(
                f"{v!r} is neither an origin code (e.g. 'ipl') nor three whole numbers (e.g. [1, -2, 3], a signed "
                "permutation in ClearMap x, y, z order)"
            )
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
    allow_gaps: bool = Field(
        False,
        description="Missing plane numbers are an error; true: each missing plane repeats the plane below it, "
        "so every plane keeps its true z.",
    )

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
    orientation: OrientationValue | None = Field(
        None,
        description="Sample axis orientation: BrainGlobe origin code for the (z, y, x) axes (e.g. 'ipl'), "
        "or a ClearMap signed permutation in ClearMap (x, y, z) order relative to the atlas (e.g. [1, -2, 3]). "
        "Required with an atlas (resampling to the atlas needs it); a detection-only run needs none.",
    )
    crop: Crop | None = None

    @field_validator("voxel_size")
    @classmethod
    def _voxel_positive(cls, v: Voxel3) -> Voxel3:
        return _positive3(v, "voxel_size")

    @field_validator("orientation", mode="before")
    @classmethod
    def _orientation_valid(cls, v: Any) -> Any:
        return None if v is None else _check_orientation(v)


class Channels(StrictModel):
    signal: Channel = Field(description="The labelled cells (e.g. c-Fos).")
    autofluorescence: Channel | None = Field(
        None,
        description="Autofluorescence, registered to the atlas reference. Without it nothing is registered: "
        "the run stops at the cells in sample space (see docs/usage.md, detection-only runs).",
    )
    extra: dict[str, Channel] = Field(
        default_factory=dict, description="Further channels, ingested and resampled only."
    )

    def all(self) -> dict[str, Channel]:
        """Every configured channel by name (``autofluorescence`` only when given)."""
        af = {"autofluorescence": self.autofluorescence} if self.autofluorescence is not None else {}
        return {"signal": self.signal, **af, **self.extra}

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
    structures.json, annotation/reference/hemispheres.tiff), given as ``path`` or found by
    ``name`` in the BrainGlobe cache folder (``~/.brainglobe/<name>_v<version>/``) — the
    demo atlas is written in this layout. ``allen``: a label volume plus the Allen ontology
    JSON. See docs/atlases.md."""

    format: Literal["brainglobe", "allen"]
    path: Path | None = Field(None, description="BrainGlobe atlas folder (or give name).")
    name: str | None = Field(
        None,
        description="BrainGlobe atlas name (e.g. allen_mouse_25um), found in the BrainGlobe cache folder "
        "as <name>_v<version>/ (brainglobe; instead of path). When absent there and brainglobe-atlasapi 2.x "
        "is installed, it is fetched before the run.",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
    )
    version: str | None = Field(
        None,
        description="Atlas version with name, e.g. '1.2' (quoted: YAML reads 1.10 as the number 1.1); "
        "default: the newest version in the cache folder (compared numerically).",
    )
    cache_dir: Path | None = Field(
        None,
        description="BrainGlobe cache folder to search with name (default: brainglobe_dir of the BrainGlobe "
        "config file $BRAINGLOBE_CONFIG_DIR/bg_config.conf or ~/.config/brainglobe/bg_config.conf, "
        "else ~/.brainglobe).",
    )
    annotation: Path | None = Field(None, description="Label volume (allen): .tif, .tif.lzma, .nrrd, .mhd.")
    reference: Path | None = Field(None, description="Reference (template) intensity volume (allen).")
    hemispheres: Path | None = Field(None, description="Hemisphere label volume (allen, optional).")
    ontology: Path | None = Field(None, description="Allen structure ontology JSON (allen).")
    voxel_size: Voxel3 | None = Field(None, description="(z, y, x) µm (allen; brainglobe reads metadata.json).")
    orientation: str | None = Field(
        None, description="BrainGlobe origin code of the atlas axes (allen; brainglobe reads metadata.json)."
    )
    hemisphere: Literal["both", "left", "right"] = Field("both", description="Crop the atlas to one hemisphere.")

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        if v is None:
            return v
        if not isinstance(v, str):
            raise ValueError(
                f"write the version as text, e.g. version: '1.2' (got the number {v!r}; YAML reads 1.10 as 1.1)"
            )
        from spimflow.atlas.cache import version_key

        version_key(v)  # ValueError names the problem
        return v.strip().removeprefix("v")

    @model_validator(mode="after")
    def _needs(self):
        if self.format == "brainglobe":
            if (self.path is None) == (self.name is None):
                raise ValueError(
                    "atlas format 'brainglobe' needs either 'path' (the atlas folder) or 'name' "
                    "(an atlas in the BrainGlobe cache folder, e.g. allen_mouse_25um), not both"
                )
            if self.name is None and (self.version is not None or self.cache_dir is not None):
                raise ValueError("atlas 'version' and 'cache_dir' go with 'name' (an atlas in the BrainGlobe cache)")
        if self.format == "allen":
            missing = [k for k in ("annotation", "ontology", "voxel_size", "orientation") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"atlas format 'allen' needs {', '.join(missing)}")
            given = [k for k in ("path", "name", "version", "cache_dir") if getattr(self, k) is not None]
            if given:
                raise ValueError(f"atlas format 'allen' takes no {', '.join(given)} (those are for 'brainglobe')")
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

    def folder(self, base: str | Path = ".", fetch: bool = False) -> Path:
        """The BrainGlobe atlas folder: ``path``, or the cache folder's ``<name>_v<version>``.

        Raises :class:`ConfigError` (naming the cache folder searched and the versions
        found) when a named atlas is not in the cache and, with ``fetch``, could not be
        fetched through brainglobe-atlasapi.
        """
        from spimflow.atlas.cache import brainglobe_folder

        return brainglobe_folder(self, base, fetch=fetch)

    def resolved(self, base: str | Path = ".", fetch: bool = True) -> AtlasConfig:
        """This atlas with a named BrainGlobe atlas replaced by its folder (``path``), so
        every rule and task reads the folder that was found; other atlases unchanged."""
        if self.format != "brainglobe" or self.name is None:
            return self
        folder = self.folder(base, fetch=fetch)
        return AtlasConfig(format="brainglobe", path=folder.resolve(), hemisphere=self.hemisphere)

    def files(self, base: Path) -> list[Path]:
        """The files the atlas is read from (what rules depend on). A BrainGlobe folder:
        metadata.json, structures.json, annotation.tiff and reference.tiff /
        hemispheres.tiff when present (the folder itself while it does not exist)."""
        if self.format == "brainglobe":
            folder = self.folder(base)
            if not folder.is_dir():
                return [folder]
            optional = [folder / n for n in BRAINGLOBE_OPTIONAL_FILES if (folder / n).is_file()]
            return [folder / n for n in BRAINGLOBE_REQUIRED_FILES] + optional
        return [base / p for p in (self.annotation, self.ontology, self.reference, self.hemispheres) if p is not None]

    def ontology_file(self, base: Path) -> Path:
        """The file holding the region ontology (a BrainGlobe folder's structures.json, or
        the Allen ontology JSON)."""
        if self.format == "brainglobe":
            return self.folder(base) / "structures.json"
        return Path(base) / self.ontology  # type: ignore[operator]


BRAINGLOBE_REQUIRED_FILES = ("metadata.json", "structures.json", "annotation.tiff")
BRAINGLOBE_OPTIONAL_FILES = ("reference.tiff", "hemispheres.tiff")


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
    chunks: tuple[PositiveInt, PositiveInt, PositiveInt] = Field(
        (16, 256, 256), description="Level-0 zarr chunk shape (z, y, x), voxels (positive)."
    )
    pyramid_levels: int = Field(4, ge=1, le=10)


#: What a sample id may be: a plain, visible folder name.
SAMPLE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


class SampleConfig(StrictModel):
    """One brain."""

    sample: str = Field(
        description="Sample id; outputs go to <results>/<sample>/. Letters, digits, '_', '-' and '.', not "
        "starting with '.' (no '.', '..' or hidden folders).",
        json_schema_extra={"pattern": SAMPLE_NAME.pattern},
    )
    results: Path = Field(
        Path("results"),
        description="Root folder of all outputs (not empty, not '.', and not inside a source data folder).",
    )

    @field_validator("sample")
    @classmethod
    def _sample_is_a_plain_name(cls, v: str) -> str:
        if not SAMPLE_NAME.fullmatch(v):
            raise ValueError(
                f"{v!r} is not a plain folder name: use letters, digits, '_', '-' and '.', not starting with '.' "
                "(outputs go to <results>/<sample>/, so '.', '..', '/' or a hidden name would write elsewhere)"
            )
        return v

    @field_validator("results")
    @classmethod
    def _results_is_a_folder_of_its_own(cls, v: Path) -> Path:
        if str(v).strip() in ("", ".") or v == Path("."):
            raise ValueError(
                "must name a folder of its own (e.g. 'results'); '' or '.' would write outputs into the working "
                "directory itself"
            )
        return v

    channels: Channels
    atlas: AtlasConfig | None = Field(
        None,
        description="The reference atlas. Without one the run is detection only: ingest, detection, "
        "thresholding and QC in sample space (see docs/usage.md).",
    )
    demo: DemoParams | None = Field(
        None, description="Generate the embedded synthetic demo data (sources then point into demo.out_dir)."
    )
    ingest: IngestParams = Field(default_factory=IngestParams)
    steps: Steps = Field(default_factory=Steps)

    @model_validator(mode="after")
    def _atlas_needs_orientation(self):
        if self.atlas is not None:
            for name, ch in self.channels.all().items():
                if ch.orientation is None:
                    key = f"channels.{name}" if name in ("signal", "autofluorescence") else f"channels.extra.{name}"
                    raise ValueError(
                        f"{key}.orientation: required with an atlas (each channel is resampled to the atlas "
                        "orientation); give it, or remove atlas for a detection-only run"
                    )
        return self

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
        # a whole-config check names its own keys
        lines.append(f"{source}: {msg}" if key == "<root>" else f"{source}: {key}: {msg}")
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


def data_folders(cfg: SampleConfig, base: Path) -> dict[str, Path]:
    """Folders that hold input data (plane folders of the channels, a BrainGlobe atlas
    given by path), by config key."""
    out = {}
    for name, ch in cfg.channels.all().items():
        if isinstance(ch.source, PatternSource):
            out[f"channels.{name}.source.path"] = base / Path(ch.source.path).parent
        elif isinstance(ch.source, FolderSource):
            out[f"channels.{name}.source.path"] = base / ch.source.path
    if cfg.atlas is not None and cfg.atlas.format == "brainglobe" and cfg.atlas.path is not None:
        out["atlas.path"] = base / cfg.atlas.path
    return out


def results_in_data_problems(cfg: SampleConfig, base: Path) -> list[str]:
    """The results folder must not be (inside) a folder of input data: outputs would mix
    with, and could overwrite, the data."""
    results = (base / cfg.results).resolve()
    problems = []
    for key, folder in data_folders(cfg, base).items():
        data = folder.resolve()
        if results == data or data in results.parents:
            problems.append(
                f"results: {cfg.results} is inside the input data folder {folder} ({key}); "
                "put results in a folder of its own, outside the data"
            )
    return problems


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
            if isinstance(ch.source, PatternSource) and f == base / Path(ch.source.path).parent and not f.is_dir():
                problems.append(f"{key}: folder not found: {f} (pattern {ch.source.path!r} expects its planes there)")
            elif isinstance(ch.source, PatternSource) and not f.exists():
                problems.append(f"{key}: pattern {ch.source.path!r} matches no file in {f.parent}")
            elif not f.exists():
                problems.append(f"{key}: file not found: {f}")
    problems += results_in_data_problems(cfg, base)
    problems += atlas_problems(cfg.atlas, base, generated)
    for f in cfg.steps.registration.parameter_files:
        if not (base / f).exists():
            problems.append(f"steps.registration.parameter_files: file not found: {base / f}")
    return problems


def atlas_problems(atlas: AtlasConfig | None, base: Path, generated=lambda p: False) -> list[str]:
    """The atlas files that are not there (a BrainGlobe folder must hold metadata.json,
    structures.json and annotation.tiff); nothing for no atlas or a demo-generated one."""
    if atlas is None:
        return []
    if atlas.format != "brainglobe":
        return [f"atlas: file not found: {f}" for f in atlas.files(base) if not generated(f) and not f.exists()]
    try:
        folder = atlas.folder(base)
    except ConfigError as exc:
        return [str(exc)]
    key = "atlas.path" if atlas.path is not None else f"atlas.name ({atlas.name})"
    if generated(folder):
        return []
    if not folder.is_dir():
        return [f"{key}: BrainGlobe atlas folder not found: {folder}"]
    missing = [n for n in BRAINGLOBE_REQUIRED_FILES if not (folder / n).is_file()]
    if missing:
        return [
            f"{key}: {folder} is not a BrainGlobe atlas folder: no {', '.join(missing)} "
            f"(expected {', '.join(BRAINGLOBE_REQUIRED_FILES)}; reference.tiff and hemispheres.tiff optional)"
        ]
    return []


def json_schema() -> dict:
    schema = SampleConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "spimflow sample configuration"
    return schema
