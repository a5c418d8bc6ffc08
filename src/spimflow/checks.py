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
from spimflow.steps.ingest import MIN_PLANES


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
    """The configured atlas's ontology when it is on disk now (None without an atlas, for a
    demo atlas still to be generated, or a missing file, which :func:`missing_inputs` reports)."""
    if cfg.atlas is None:
        return None
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


def source_problems(cfg: SampleConfig, base: str | Path = ".") -> list[str]:
    """Open every channel's source (headers only), check its crop and its number of
    planes against its shape, and load the atlas (every file of its folder).

    Slower than the other checks (one header per plane file, the whole atlas), so
    ``spimflow validate`` runs it, not every Snakemake start. Inputs that do not exist
    yet (the demo's) are skipped; their absence is reported by :func:`config_problems`.

    Parameters
    ----------
    cfg : SampleConfig
        One brain.
    base : str or Path, optional
        Folder relative paths are resolved against.

    Returns
    -------
    list of str
        One message per channel that cannot be read, naming the channel's key.
    """
    from spimflow.io.readers import open_source  # heavy readers only when asked

    problems = []
    for name, ch in cfg.channels.all().items():
        key = f"channels.{name}" if name in ("signal", "autofluorescence") else f"channels.extra.{name}"
        if not all(f.exists() for f in ch.source.files(Path(base))):
            continue
        try:
            with open_source(ch.source, base, ch.crop) as reader:
                if reader.shape[0] < MIN_PLANES:
                    problems.append(
                        f"{key}: {reader.path} has {reader.shape[0]} z plane(s) (shape {tuple(reader.shape)}); "
                        f"spimflow works in 3D and needs at least {MIN_PLANES}"
                    )
        except SpimflowError as exc:
            problems.append(f"{key}: {exc}")
    if cfg.atlas is not None and all(f.exists() for f in cfg.atlas.files(Path(base))):
        from spimflow.atlas import load_atlas

        try:
            load_atlas(cfg.atlas, base)
        except SpimflowError as exc:
            problems.append(f"atlas: {exc}")
    return problems


def config_problems(cfg: SampleConfig, base: str | Path = ".") -> list[str]:
    """All problems of one sample found before a run, each naming its config key or file."""
    return missing_inputs(cfg, base) + detection_problems(cfg, base) + analysis_problems(cfg, base)


# Stages (rules) of one brain that need the atlas, and those that need a registration too.
ATLAS_STAGES = ("resample", "register", "atlas_overlay", "cells_atlas", "density_maps", "region_tables")
REGISTRATION_STAGES = ATLAS_STAGES[1:]


def skipped_stages(cfg: SampleConfig) -> tuple[tuple[str, ...], str]:
    """The stages a sample's run leaves out, and why.

    No ``atlas``: everything in or towards atlas space (a detection-only run: ingest,
    detection, thresholding, QC and annotation projects remain). An atlas but no
    ``channels.autofluorescence``: the registration and all that follows it (the channels
    are still resampled to the atlas grid). ``density_maps`` is listed only when
    ``steps.voxelize.enabled``.
    """
    if cfg.atlas is None:
        stages, why = ATLAS_STAGES, "detection only — no atlas configured"
    elif cfg.channels.autofluorescence is None:
        stages = REGISTRATION_STAGES
        why = "no channels.autofluorescence, which registration to the atlas needs"
    else:
        return (), ""
    if not cfg.steps.voxelize.enabled:
        stages = tuple(s for s in stages if s != "density_maps")
    return stages, why


def skip_notice(cfg: SampleConfig) -> str | None:
    """The line the workflow prints first (and ``spimflow validate`` prints) when a run
    leaves stages out, e.g. ``spimflow: detection only — no atlas configured: skipping
    resample, register, ...``; None for a full run."""
    stages, why = skipped_stages(cfg)
    return f"spimflow: {why}: skipping {', '.join(stages)}" if stages else None


def resolve_atlases(run: Run, base: str | Path = ".") -> list[str]:
    """Replace every atlas given by BrainGlobe ``name`` with the folder found in the cache
    (fetched through brainglobe-atlasapi when missing and installed), in place; returns the
    problems (atlas not found), each naming the cache folder searched."""
    problems = []
    for name, cfg in run.samples.items():
        if cfg.atlas is None or cfg.atlas.name is None:
            continue
        try:
            run.samples[name] = cfg.model_copy(update={"atlas": cfg.atlas.resolved(base, fetch=True)})
        except ConfigError as exc:
            prefix = f"samples.{name} ({run.sources.get(name)}): " if run.cohort else ""
            problems.append(prefix + str(exc))
            # reported once: the other checks of this (failed) run see no atlas
            run.samples[name] = cfg.model_copy(update={"atlas": None})
    return problems


def run_problems(run: Run, base: str | Path = ".") -> list[str]:
    """All problems of every sample of a run (prefixed with the sample and its file in a cohort)."""
    problems = []
    for name, cfg in run.samples.items():
        prefix = f"samples.{name} ({run.sources.get(name)}): " if run.cohort else ""
        problems += [prefix + p for p in config_problems(cfg, base)]
    return problems


def load_and_check(data: dict, source: str, base: str | Path = ".") -> Run:
    """Parse a sample or cohort config mapping, find atlases given by name (see
    :func:`resolve_atlases`) and run every pre-run check; raise :class:`ConfigError`
    listing every problem, each prefixed with ``source``."""
    run = load_run(data, source, base)
    problems = resolve_atlases(run, base)
    problems += run_problems(run, base)
    if problems:
        raise ConfigError("\n".join(f"{source}: {p}" for p in problems))
    return run


def validate_config_file(path: str | Path, base: str | Path = ".") -> Run:
    """Read, parse and check a sample or cohort config file; raise :class:`ConfigError` with
    every problem found."""
    return load_and_check(read_config_file(path), str(path), base)
