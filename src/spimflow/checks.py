"""Every check that can run before any job: the Snakefile and ``spimflow validate`` call
:func:`run_problems`, so both refuse exactly the same configs."""

from __future__ import annotations

from pathlib import Path

from spimflow.atlas import Ontology
from spimflow.blocks import check_detect_config
from spimflow.cohort import Run, load_run
from spimflow.config import SampleConfig, missing_inputs, read_config_file
from spimflow.errors import ConfigError, SpimflowError
from spimflow.steps.detect.chain import MEASURED_COLUMNS
from spimflow.steps.detect.threshold import check_threshold_config


def detection_problems(cfg: SampleConfig, base: str | Path = ".") -> list[str]:
    """Block grid vs filter sizes, threshold columns, the flat-field profile file."""
    detect = cfg.steps.detect
    problems = check_detect_config(detect, cfg.channels.signal.voxel_size)
    problems += check_threshold_config(cfg.steps.threshold.ranges, detect.shape.enabled)
    profile = detect.illumination.profile
    if detect.illumination.enabled and detect.illumination.mode == "profile":
        if profile is None or not (Path(base) / profile).is_file():
            problems.append(f"steps.detect.illumination.profile: file not found: {profile}")
    return problems


def atlas_ontology(cfg: SampleConfig, base: str | Path = ".") -> Ontology | None:
    """The configured atlas's ontology when it is on disk now (None for a demo atlas still
    to be generated, or a missing file, which :func:`missing_inputs` reports)."""
    path = cfg.atlas.ontology_file(Path(base))
    if not path.is_file():
        return None
    return Ontology.from_file(path)


def region_reference_problems(cfg: SampleConfig, ontology: Ontology | None) -> list[str]:
    """Every region named in steps.voxelize.regions must be in the atlas ontology."""
    if ontology is None:
        return []
    problems = []
    for name, refs in cfg.steps.voxelize.regions.items():
        for ref in refs:
            if isinstance(ref, int) and ref not in ontology:
                problems.append(f"steps.voxelize.regions.{name}: region id {ref} is not in the atlas ontology")
            elif isinstance(ref, str):
                try:
                    ontology.lookup_acronym(ref)
                except KeyError as exc:
                    problems.append(f"steps.voxelize.regions.{name}: {exc.args[0]}")
    return problems


def analysis_problems(cfg: SampleConfig, base: str | Path = ".") -> list[str]:
    """Density-map weight and region-table columns exist; isolated regions exist in the atlas."""
    problems = []
    weight = cfg.steps.voxelize.weight
    if weight is not None and weight not in MEASURED_COLUMNS:
        problems.append(
            f"steps.voxelize.weight: no such cell column {weight!r}; expected one of {', '.join(MEASURED_COLUMNS)}"
        )
    for col in cfg.steps.regions.measure_columns or []:
        if col not in MEASURED_COLUMNS:
            problems.append(
                f"steps.regions.measure_columns: no such cell column {col!r}; expected one of "
                f"{', '.join(MEASURED_COLUMNS)}"
            )
    try:
        ontology = atlas_ontology(cfg, base)
    except SpimflowError as exc:
        return [*problems, f"atlas: {exc}"]
    return problems + region_reference_problems(cfg, ontology)


def config_problems(cfg: SampleConfig, base: str | Path = ".") -> list[str]:
    """All problems of one sample found before a run, each naming its config key or file."""
    return missing_inputs(cfg, base) + detection_problems(cfg, base) + analysis_problems(cfg, base)


def run_problems(run: Run, base: str | Path = ".") -> list[str]:
    """All problems of every sample of a run (prefixed with the sample and its file in a cohort)."""
    problems = []
    for name, cfg in run.samples.items():
        prefix = f"samples.{name} ({run.sources.get(name)}): " if run.cohort else ""
        problems += [prefix + p for p in config_problems(cfg, base)]
    return problems


def load_and_check(data: dict, source: str, base: str | Path = ".") -> Run:
    """Parse a sample or cohort config mapping and run every pre-run check; raise
    :class:`ConfigError` listing every problem, each prefixed with ``source``."""
    run = load_run(data, source, base)
    problems = run_problems(run, base)
    if problems:
        raise ConfigError("\n".join(f"{source}: {p}" for p in problems))
    return run


def validate_config_file(path: str | Path, base: str | Path = ".") -> Run:
    """Read, parse and check a sample or cohort config file; raise :class:`ConfigError` with
    every problem found."""
    return load_and_check(read_config_file(path), str(path), base)
