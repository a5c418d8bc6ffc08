# Shared set-up, included first: validate the config (one brain or a cohort of brains)
# with the pydantic models before any DAG is built, and define every helper function the
# rule files use (rule files hold rules only). Every per-brain path carries the {sample}
# wildcard, so a cohort is one DAG. Each output path is named once, in the rule that
# produces it; other rules refer to it as rules.<name>.output.<key>. See docs/outputs.md.
import json
from argparse import Namespace
import re
import sys
from pathlib import Path

from spimflow.blocks import block_memory_mb
from spimflow.checks import load_and_check
from spimflow.cohort import covariate_table
from spimflow.errors import ConfigError
from spimflow.steps.detect import required_overlap

_CONFIG_SOURCE = ", ".join(str(p) for p in workflow.configfiles) or "config"
try:
    RUN = load_and_check(dict(config), _CONFIG_SOURCE, Path.cwd())
except ConfigError as _exc:
    sys.stderr.write(f"spimflow: invalid configuration\n{_exc}\n")
    sys.exit(1)

SAMPLES = RUN.samples  # sample id -> SampleConfig
COHORT = RUN.cohort  # CohortConfig or None
RESULTS = str(RUN.results)
SD = f"{RESULTS}/{{sample}}"  # results/<sample>, as a pattern
CD = str(COHORT.cohort_dir()) if COHORT else None  # results/cohorts/<cohort>
DEMOS = {str(c.demo.out_dir): c.demo for c in SAMPLES.values() if c.demo}
TASK_SCRIPT = str(Path(workflow.basedir) / "workflow" / "scripts" / "task.py")
# density maps: one setting for every brain of a run (checked for cohorts)
VOXELIZE = next(iter(SAMPLES.values())).steps.voxelize
MAP_NAMES = (
    ["density"]
    + (["density_left", "density_right"] if VOXELIZE.per_hemisphere else [])
    + [f"density_{name}" for name in VOXELIZE.regions]
)
COLLAPSE_DEPTHS = sorted(
    {d for c in SAMPLES.values() for d in c.steps.regions.collapse_depths}
)

# Each stage's .smk appends the outputs a full run should produce.
TARGETS = []


wildcard_constraints:
    sample="|".join(re.escape(s) for s in SAMPLES),
    demo_dir="|".join(re.escape(d) for d in DEMOS) or "(?!)",
    channel="[A-Za-z0-9_]+",
    batch=r"\d+",
    depth=r"\d+",


def cfg(wildcards):
    """The SampleConfig of the job's {sample}."""
    return SAMPLES[wildcards.sample]


def log_path(name):
    """The rule's log file: results/<sample>/logs/<name>.log."""
    return f"{SD}/logs/{name}.log"


def bench_path(name):
    """The rule's benchmark table: results/<sample>/benchmarks/<name>.tsv."""
    return f"{SD}/benchmarks/{name}.tsv"


def per_sample(pattern, **wildcards):
    """``pattern`` expanded for every sample of the run."""
    return expand(pattern, sample=list(SAMPLES), **wildcards)


def per_channel(pattern):
    """``pattern`` expanded for every channel of every sample."""
    return [
        p
        for s, c in SAMPLES.items()
        for p in expand(pattern, sample=s, channel=list(c.channels.all()))
    ]


def demo_manifest(wildcards):
    """The demo's manifest (rule demo_data) when this sample is a demo brain, else nothing."""
    demo = cfg(wildcards).demo
    return (
        expand(rules.demo_data.output.manifest, demo_dir=str(demo.out_dir))
        if demo
        else []
    )


def channel_source_inputs(wildcards):
    """Files a channel's ingest depends on (the demo manifest when the demo makes them)."""
    if cfg(wildcards).demo:
        return demo_manifest(wildcards)
    ch = cfg(wildcards).channels.all()[wildcards.channel]
    return [str(p) for p in ch.source.files(Path("."))]


def atlas_inputs(wildcards):
    """The atlas files (the demo manifest when the demo rule makes the atlas)."""
    if cfg(wildcards).demo:
        return demo_manifest(wildcards)
    return [str(p) for p in cfg(wildcards).atlas.files(Path("."))]


def raw_channel(channel):
    """The ingested OME-Zarr of one channel (rule ingest), {sample} left open."""
    return expand(rules.ingest.output.zarr, channel=channel, allow_missing=True)[0]


def resampled_channel(channel):
    """The channel resampled to the atlas grid (rule resample), {sample} left open."""
    return expand(rules.resample.output.zarr, channel=channel, allow_missing=True)[0]


def register_inputs(wildcards):
    """The resampled autofluorescence (and signal for channel correction), every raw
    channel (for their grids), the atlas and any user elastix parameter files."""
    sample = cfg(wildcards)
    reg = sample.steps.registration
    return {
        "autofluorescence": resampled_channel("autofluorescence"),
        **({"signal": resampled_channel("signal")} if reg.channel_correction else {}),
        **{f"raw_{c}": raw_channel(c) for c in sample.channels.all()},
        "atlas": atlas_inputs(wildcards),
        "parameter_files": [str(p) for p in reg.parameter_files],
    }


def detect_memory_mb(wildcards):
    """Memory of one detection block job, from the block size and the overlap the filters need."""
    detect = cfg(wildcards).steps.detect
    overlap = detect.blocks.overlap or required_overlap(
        cfg(wildcards).channels.signal.voxel_size, detect
    )
    return block_memory_mb(detect.blocks.size, overlap, detect.illumination.enabled)


def detect_batch_inputs(wildcards):
    """Signal, block plan and (when enabled) the illumination field of one batch job."""
    inputs = {"signal": raw_channel("signal"), "plan": rules.detect_plan.output.plan}
    if cfg(wildcards).steps.detect.illumination.enabled:
        inputs["illumination"] = rules.detect_illumination.output.field
    return inputs


def detect_batch_tables(wildcards):
    """One parquet per batch of the plan (known once the checkpoint has run)."""
    with open(checkpoints.detect_plan.get(sample=wildcards.sample).output.plan) as fh:
        n = len(json.load(fh)["batches"])
    return expand(
        rules.detect_batch.output.cells, sample=wildcards.sample, batch=range(n)
    )


def cohort_samples_of(pattern):
    """``pattern`` for every sample of the cohort, in group order."""
    return expand(pattern, sample=list(RUN.ordered_groups()))


def cohort_atlas_inputs(wildcards):
    """The atlas files of the cohort (one atlas for all; the first sample's files)."""
    return atlas_inputs(Namespace(sample=next(iter(SAMPLES))))


def cohort_atlas():
    """The cohort's atlas config (the same in every sample, checked)."""
    return next(iter(SAMPLES.values())).atlas.model_dump(mode="json")


def annotation_export_inputs(wildcards):
    """All detections, the thresholded ones, the signal (for plane count and files) and,
    for region acronyms in the marker text, the registration."""
    return {
        "cells_raw": rules.detect_gather.output.cells,
        "cells": rules.threshold_cells.output.parquet,
        "signal": raw_channel("signal"),
        "registration": rules.register.output.summary,
        "atlas": atlas_inputs(wildcards),
    }


def annotation_import_inputs(wildcards):
    """The project, the detections it was exported from and what measuring new cells needs."""
    inputs = {
        "cdb": rules.annotation_export.output.cdb,
        "cells_raw": rules.detect_gather.output.cells,
        "cells": rules.threshold_cells.output.parquet,
        "signal": raw_channel("signal"),
    }
    if cfg(wildcards).steps.detect.illumination.enabled:
        inputs["illumination"] = rules.detect_illumination.output.field
    return inputs


def counted_cells(wildcards):
    """The cells that are counted: the curated ones when steps.annotate.use_curated, else
    the thresholded ones."""
    if cfg(wildcards).steps.annotate.use_curated:
        return rules.annotation_import.output.parquet
    return rules.threshold_cells.output.parquet
