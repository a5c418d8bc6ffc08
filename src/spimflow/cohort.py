"""A run's configuration: one brain (a sample config) or a cohort of brains in two groups.

``snakemake --configfile X.yaml`` accepts either. A **sample config** (see
:class:`spimflow.config.SampleConfig`) runs one brain. A **cohort config** names the
samples (each with its own sample config, a group and optional covariates, inline or as
a TSV sample sheet) and the group statistics; Snakemake then builds one DAG for every
brain and the statistics after them, so a cluster schedules all brains' jobs together.

Everything is checked before any job runs: each sample config as it would be alone
(errors name the sample and its file), then what makes brains comparable (one atlas, one
density-map setting, one results folder) and the design (exactly two groups, each with
at least two brains).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from spimflow.config import SampleConfig, format_validation_errors, parse_config, read_config_file
from spimflow.errors import ConfigError
from spimflow.params import StrictModel

NAME = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$"  # a plain, visible folder name (no ".", "..")


class StatsParams(StrictModel):
    """Group comparisons of a cohort: voxel-wise maps and region tables (see docs/statistics.md)."""

    test: Literal["welch", "ttest", "mannwhitney", "permutation"] = Field(
        "welch",
        description="Region-level test: welch (Welch's t), ttest (Student's t), mannwhitney (two-sided) or "
        "permutation (difference of means; exact over all relabellings when there are at most `permutations`).",
    )
    permutations: int = Field(
        10000, ge=1, description="test: permutation: relabellings drawn (exact enumeration when fewer exist)."
    )
    seed: int = Field(0, description="Random seed of the permutation test.")
    voxel_test: Literal["welch", "ttest", "mannwhitney"] = Field(
        "welch", description="Voxel-level test of the density maps."
    )
    region_value: Literal["density_per_mm3", "total"] = Field(
        "density_per_mm3", description="What the region tests compare: cells per mm³ or cell counts."
    )
    alpha: float = Field(
        0.05, gt=0, lt=1, description="Significance level of plots and the colour p-value map (on p_bh / q)."
    )
    voxel_maps: bool = Field(True, description="Compute the voxel-level maps (needs steps.voxelize.enabled).")
    top_regions: int = Field(15, ge=1, description="Regions shown in the bar plot.")


class CohortSample(StrictModel):
    """One brain of a cohort."""

    config: Path = Field(description="The brain's sample config (YAML).")
    group: str = Field(description="Group name (exactly two groups per cohort).", pattern=NAME)
    covariates: dict[str, float | str] = Field(default_factory=dict, description="Recorded in the tables.")
    set: dict[str, Any] = Field(
        default_factory=dict,
        description="Keys overriding the sample config (nested mappings merge), e.g. {demo: {seed: 3}}; "
        "lets brains share one template config. In the template and here, '{sample}' in any text value "
        "is replaced by the sample id.",
    )


class CohortConfig(StrictModel):
    """A cohort of brains compared between two groups."""

    cohort: str = Field(description="Cohort id; outputs go to <results>/cohorts/<cohort>/.", pattern=NAME)
    results: Path = Field(Path("results"), description="Root folder of all outputs (every sample's too).")
    samples: dict[str, CohortSample] = Field(
        default_factory=dict, description="Sample id → its config and group (or use sample_sheet)."
    )
    sample_sheet: Path | None = Field(
        None, description="TSV with columns sample, config, group and optional covariate columns."
    )
    groups: list[str] | None = Field(
        None, description="The two groups, reference first (effects are second minus first); null: order of appearance."
    )
    stats: StatsParams = Field(default_factory=StatsParams)

    @field_validator("samples")
    @classmethod
    def _sample_names(cls, v):
        for name in v:
            if not re.fullmatch(NAME, name):
                raise ValueError(f"sample id {name!r} must be letters, digits, '.', '_' or '-', not starting with '.'")
        return v

    @model_validator(mode="after")
    def _one_source(self):
        if bool(self.samples) == (self.sample_sheet is not None):
            raise ValueError("give the samples either inline (samples:) or as a TSV (sample_sheet:), exactly one")
        return self

    def cohort_dir(self) -> Path:
        return self.results / "cohorts" / self.cohort


class Run(BaseModel):
    """What one Snakemake invocation builds: the samples, and the cohort when there is one."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    samples: dict[str, SampleConfig]
    cohort: CohortConfig | None = None
    groups: dict[str, str] = Field(default_factory=dict)  # sample -> group
    sources: dict[str, str] = Field(default_factory=dict)  # sample -> config file it came from

    @property
    def results(self) -> Path:
        return next(iter(self.samples.values())).results

    def group_order(self) -> list[str]:
        if self.cohort and self.cohort.groups:
            return list(self.cohort.groups)
        return list(dict.fromkeys(self.groups.values()))

    def ordered_groups(self) -> dict[str, str]:
        """sample → group, the reference group's samples first (the statistics read the
        group order from it)."""
        return {s: g for grp in self.group_order() for s, g in self.groups.items() if g == grp}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` on top; nested mappings merge, everything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def fill_sample(value: Any, sample: str) -> Any:
    """``value`` with every ``{sample}`` in its text replaced by the sample id (recursively)."""
    if isinstance(value, str):
        return value.replace("{sample}", sample)
    if isinstance(value, dict):
        return {k: fill_sample(v, sample) for k, v in value.items()}
    if isinstance(value, list):
        return [fill_sample(v, sample) for v in value]
    return value


def is_cohort(data: Any) -> bool:
    """A config mapping with a top-level ``cohort`` key is a cohort config."""
    return isinstance(data, dict) and "cohort" in data


def read_sample_sheet(path: Path) -> dict[str, CohortSample]:
    """Samples from a TSV sheet (columns ``sample``, ``config``, ``group``; others are covariates)."""
    if not path.is_file():
        raise ConfigError(f"sample_sheet: file not found: {path}")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    missing = {"sample", "config", "group"} - set(rows[0] if rows else {})
    if missing:
        raise ConfigError(f"{path}: sample sheet needs the columns sample, config, group; missing {sorted(missing)}")
    samples: dict[str, CohortSample] = {}
    for line, row in enumerate(rows, start=2):
        name = row.pop("sample").strip()
        if name in samples:
            raise ConfigError(f"{path}: line {line}: sample {name!r} is listed twice")
        covariates = {k: _number_or_text(v) for k, v in row.items() if k not in ("config", "group")}
        try:
            samples[name] = CohortSample(config=Path(row["config"]), group=row["group"], covariates=covariates)
        except ValidationError as exc:
            raise ConfigError("\n".join(format_validation_errors(exc, f"{path}: line {line}"))) from None
    return samples


def _number_or_text(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value


def _load_yaml(path: Path, key: str) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{key}: sample config not found: {path}")
    try:
        data = read_config_file(path)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{key}: {path} must hold a mapping of config keys")
    return data


def parse_cohort(data: dict[str, Any], source: str = "config") -> CohortConfig:
    """Validate a cohort mapping; raise :class:`ConfigError` listing every problem."""
    try:
        return CohortConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(format_validation_errors(exc, source))) from None


def cohort_samples(cohort: CohortConfig, base: Path) -> tuple[dict[str, SampleConfig], list[str]]:
    """Every sample config of the cohort, validated (with its ``set`` overrides and the cohort's
    results folder); returns (samples, problems), each problem naming the sample and file."""
    entries = cohort.samples or read_sample_sheet(base / cohort.sample_sheet)
    samples: dict[str, SampleConfig] = {}
    problems: list[str] = []
    for name, entry in entries.items():
        key = f"samples.{name}.config"
        path = base / entry.config
        try:
            data = fill_sample(deep_merge(_load_yaml(path, key), entry.set), name)
            data = {**data, "results": str(cohort.results)}
            cfg = parse_config(data, f"{key} ({path})")
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        if cfg.sample != name:
            problems.append(
                f"{key} ({path}): sample is {cfg.sample!r} but the cohort names it {name!r}; "
                f"set samples.{name}.set.sample or rename"
            )
            continue
        samples[name] = cfg
    return samples, problems


def _demo_atlas(cfg: SampleConfig) -> bool:
    """The atlas is the demo's own (made by the demo rule; identical for every seed)."""
    if cfg.demo is None or cfg.atlas is None or cfg.atlas.path is None:
        return False
    return Path(cfg.demo.out_dir) in [Path(cfg.atlas.path), *Path(cfg.atlas.path).parents]


def design_problems(cohort: CohortConfig, groups: dict[str, str], samples: dict[str, SampleConfig]) -> list[str]:
    """Two groups, each with ≥ 2 brains; one atlas and one density-map setting for all."""
    problems = []
    order = cohort.groups or list(dict.fromkeys(groups.values()))
    if len(order) != 2 or len(set(order)) != 2:
        problems.append(f"groups: a cohort compares exactly two groups, got {order}")
    for g in order:
        members = [s for s, grp in groups.items() if grp == g]
        if len(members) < 2:
            problems.append(f"group {g!r}: needs at least two samples for a test, has {members or 'none'}")
    unknown = sorted({grp for grp in groups.values()} - set(order))
    if unknown:
        problems.append(f"groups: samples are in group(s) {unknown} not listed in groups {order}")
    for name, cfg in samples.items():  # the statistics compare brains in atlas space
        lacking = [
            k
            for k, v in (("atlas", cfg.atlas), ("channels.autofluorescence", cfg.channels.autofluorescence))
            if v is None
        ]
        if lacking:
            problems.append(
                f"samples.{name}: no {' and no '.join(lacking)}; a cohort compares brains in atlas space, so every "
                "sample needs an atlas and an autofluorescence channel to register (run detection-only brains "
                "on their own sample config)"
            )
    if len(samples) >= 2:
        first, *rest = samples.items()
        for name, cfg in rest:
            both = cfg.atlas is not None and first[1].atlas is not None  # a missing one is reported above
            if both and cfg.atlas != first[1].atlas and not (_demo_atlas(cfg) and _demo_atlas(first[1])):
                problems.append(f"samples.{name}: its atlas differs from {first[0]}'s; a cohort needs one atlas")
            if cfg.steps.voxelize != first[1].steps.voxelize:
                problems.append(
                    f"samples.{name}: steps.voxelize differs from {first[0]}'s; density maps must be comparable"
                )
        demo_dirs: dict[Path, str] = {}
        for name, cfg in samples.items():
            if cfg.demo is None:
                continue
            other = demo_dirs.setdefault(cfg.demo.out_dir, name)
            if other != name and samples[other].demo != cfg.demo:
                problems.append(
                    f"samples.{name}: demo.out_dir {cfg.demo.out_dir} is shared with {other} "
                    "but the demo settings differ; give each demo brain its own out_dir"
                )
    if cohort.stats.voxel_maps and samples and not next(iter(samples.values())).steps.voxelize.enabled:
        problems.append("stats.voxel_maps: needs steps.voxelize.enabled in the sample configs (or set it false)")
    return problems


def load_run(data: dict[str, Any], source: str = "config", base: str | Path = ".") -> Run:
    """A Snakemake config mapping (sample or cohort) → :class:`Run`; raises :class:`ConfigError`
    with every problem found in the configs themselves (input files are checked by
    :func:`spimflow.checks.run_problems`)."""
    base = Path(base)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    if not is_cohort(data):
        cfg = parse_config(data, source)
        return Run(samples={cfg.sample: cfg}, sources={cfg.sample: source})
    cohort = parse_cohort(data, source)
    entries = cohort.samples or read_sample_sheet(base / cohort.sample_sheet)
    samples, problems = cohort_samples(cohort, base)
    groups = {name: e.group for name, e in entries.items()}
    problems += design_problems(cohort, groups, samples)
    if problems:
        raise ConfigError("\n".join(f"{source}: {p}" for p in problems))
    sources = {name: str(base / e.config) for name, e in entries.items()}
    return Run(samples=samples, cohort=cohort, groups=groups, sources=sources)


def covariate_table(cohort: CohortConfig, base: str | Path = ".") -> list[dict[str, Any]]:
    """One row per sample: sample, group and its covariates (for the statistics tables)."""
    entries = cohort.samples or read_sample_sheet(Path(base) / cohort.sample_sheet)
    return [{"sample": n, "group": e.group, **e.covariates} for n, e in entries.items()]


def cohort_json_schema() -> dict:
    """JSON Schema of the cohort config (``schemas/cohort.schema.json``)."""
    schema = CohortConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "spimflow cohort configuration"
    return schema
