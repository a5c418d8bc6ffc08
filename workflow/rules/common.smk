# Shared set-up, included first: validate the config (one brain or a cohort of brains)
# with the pydantic models before any DAG is built, and define every helper function the
# rule files use (rule files hold rules only). Every per-brain path carries the {sample}
# wildcard, so a cohort is one DAG. Each output path is named once, in the rule that
# produces it; other rules refer to it as rules.<name>.output.<key>. See docs/outputs.md.
import errno
import json
import os
from argparse import Namespace
import re
import sys
from pathlib import Path

from spimflow.blocks import BlockPlan, block_memory_mb
from spimflow.checks import load_and_check, skip_notice, skipped_stages
from spimflow.cohort import covariate_table
from spimflow import resources as memory
from spimflow.errors import ConfigError, SpimflowError
from spimflow.housekeeping import (
    stale_lock_notice,
    sweep_temporaries,
    temporaries_notice,
    unlock_command_for,
)
from spimflow.provenance import changed_since, inputs_fingerprint, sample_inputs
from spimflow.steps.detect import required_overlap

_CONFIG_SOURCE = ", ".join(str(p) for p in workflow.configfiles) or "config"
try:
    RUN = load_and_check(dict(config), _CONFIG_SOURCE, Path.cwd())
except ConfigError as _exc:
    sys.stderr.write(f"spimflow: invalid configuration\n{_exc}\n")
    sys.exit(1)

SAMPLES = RUN.samples  # sample id -> SampleConfig
# The first line of the run: which stages it leaves out and why (no atlas, no autofluorescence).
for _sample, _cfg in SAMPLES.items():
    if skip_notice(_cfg):
        _who = f" [{_sample}]" if len(SAMPLES) > 1 else ""
        sys.stderr.write(f"{skip_notice(_cfg)}{_who}\n")
# sample -> the stages its run leaves out
SKIPPED = {s: set(skipped_stages(c)[0]) for s, c in SAMPLES.items()}
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


def runs(stage):
    """The samples whose run includes ``stage`` (a rule name; see SKIPPED)."""
    return [s for s in SAMPLES if stage not in SKIPPED[s]]


def per_sample(pattern, stage=None, **wildcards):
    """``pattern`` expanded for every sample of the run (that runs ``stage``, when given)."""
    return expand(pattern, sample=runs(stage) if stage else list(SAMPLES), **wildcards)


def per_channel(pattern, stage=None):
    """``pattern`` expanded for every channel of every sample (that runs ``stage``)."""
    return [
        p
        for s, c in SAMPLES.items()
        if stage is None or stage not in SKIPPED[s]
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
    """The atlas files (the demo manifest when the demo job makes the atlas): a BrainGlobe
    folder's metadata.json, structures.json, annotation.tiff (+ reference, hemispheres),
    also for an atlas given by name (resolved to its cache folder before the DAG)."""
    if cfg(wildcards).demo:
        return demo_manifest(wildcards)
    return [str(p) for p in cfg(wildcards).atlas.files(Path("."))]


def atlas_params(wildcards):
    """The atlas config handed to a task (None for a run without an atlas)."""
    atlas = cfg(wildcards).atlas
    return atlas.model_dump(mode="json") if atlas is not None else None


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


def detect_memory_mb(wildcards, attempt):
    """Memory of one detection block job: from the block plan's largest read region (clipped
    to the volume), or before there is a plan from the block size and the overlap; half as
    much again for every retry."""
    detect = cfg(wildcards).steps.detect
    plan = Path(expand(rules.detect_plan.output.plan, sample=wildcards.sample)[0])
    if plan.is_file():
        mb = block_memory_mb(
            BlockPlan.load(plan), illumination=detect.illumination.enabled
        )
    else:
        overlap = detect.blocks.overlap or required_overlap(
            cfg(wildcards).channels.signal.voxel_size, detect
        )
        mb = block_memory_mb(detect.blocks.size, overlap, detect.illumination.enabled)
    return memory.for_attempt(mb, attempt)


def job_memory(estimate):
    """A rule's ``mem_mb``: ``estimate(wildcards, input)`` (MB, from the sizes of what the job
    reads; see spimflow.resources), evaluated once the job's inputs exist (Snakemake shows
    <TBD> before), half as much again for every retry (--retries)."""

    def mem_mb(wildcards, input, attempt):
        missing = next((f for f in input if not os.path.exists(f)), None)
        if missing is not None:
            raise FileNotFoundError(errno.ENOENT, "not made yet", missing)
        try:
            mb = estimate(wildcards, input)
        except (SpimflowError, OSError, ValueError):
            # an unreadable input: the job itself fails with the message naming the file
            mb = memory.FALLBACK_MB
        return memory.for_attempt(mb, attempt)

    return mem_mb


def _atlas(wildcards):
    return cfg(wildcards).atlas


def _parquets(input):
    """The job's input tables."""
    return [f for f in input if f.endswith(".parquet")]


MEMORY = {
    "small": lambda w, i: memory.request(0, 0),
    "demo": lambda w, i: memory.demo_mb(DEMOS[w.demo_dir].preset),
    "ingest": lambda w, i: memory.ingest_request(
        cfg(w).channels.all()[w.channel], cfg(w).ingest
    ),
    "resample": lambda w, i: memory.resample_request(
        cfg(w).channels.all()[w.channel], _atlas(w), i.raw
    ),
    "register": lambda w, i: memory.register_request(
        cfg(w).steps.registration, _atlas(w), i.autofluorescence
    ),
    "overlay": lambda w, i: memory.overlay_request(_atlas(w), i.signal),
    "signal_slabs": lambda w, i: memory.slab_request(i.signal),
    "tables": lambda w, i: memory.table_request(_parquets(i)),
    # tables and slabs of the signal (and the atlas when the job reads the registration)
    "tables_signal": lambda w, i: max(
        memory.table_request(
            _parquets(i), _atlas(w) if "registration" in i.keys() else None
        ),
        memory.slab_request(i.signal, factor=8),
    ),
    "tables_atlas": lambda w, i: memory.table_request(_parquets(i), _atlas(w)),
    "maps": lambda w, i: memory.maps_request(_atlas(w), i.cells, len(MAP_NAMES)),
    "cohort_atlas": lambda w, i: memory.table_request([], cohort_atlas_config()),
    "voxel_stats": lambda w, i: memory.voxel_stats_request(
        cohort_atlas_config(), len(SAMPLES)
    ),
}


def parallel_jobs():
    """How many jobs can run at once: --cores locally, --jobs on a cluster (at least 1)."""
    counts = [
        n
        for n in (getattr(workflow, "cores", None), getattr(workflow, "nodes", None))
        if isinstance(n, int)
    ]
    return max(counts, default=1)


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


def cohort_atlas_config():
    """The cohort's AtlasConfig (the same in every sample, checked)."""
    return next(iter(SAMPLES.values())).atlas


def cohort_atlas():
    """The cohort's atlas config as handed to a task."""
    return cohort_atlas_config().model_dump(mode="json")


def annotation_export_inputs(wildcards):
    """All detections, the thresholded ones, the signal (for plane count and files) and,
    for region acronyms in the marker text, the registration (when there is one)."""
    inputs = {
        "cells_raw": rules.detect_gather.output.cells,
        "cells": rules.threshold_cells.output.parquet,
        "signal": raw_channel("signal"),
    }
    if "register" not in SKIPPED[wildcards.sample]:
        inputs["registration"] = rules.register.output.summary
        inputs["atlas"] = atlas_inputs(wildcards)
    return inputs


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


# -- kill, resume, provenance (docs/cluster.md, docs/outputs.md) -----------------------------


def _generated_by_workflow(path, sample_cfg):
    """Whether an input is made by the run itself (the demo's files, the annotation project)."""
    p = Path(path).resolve()
    made = [Path(RESULTS).resolve()] + (
        [Path(sample_cfg.demo.out_dir).resolve()] if sample_cfg.demo else []
    )
    return any(p.is_relative_to(m) for m in made)


def provenance_inputs(wildcards):
    """What the provenance depends on: the sample's input files (as its jobs see them: the
    demo manifest for a demo brain) and its other final outputs (so it is written last and
    re-written whenever they are)."""
    c = cfg(wildcards)
    sources = [
        p
        for channel in c.channels.all()
        for p in channel_source_inputs(
            Namespace(sample=wildcards.sample, channel=channel)
        )
    ]
    sources += atlas_inputs(wildcards) if c.atlas is not None else []
    sources += [str(p) for p in c.steps.registration.parameter_files]
    own = f"{RESULTS}/{wildcards.sample}/"
    mine = expand(rules.provenance.output.json, sample=wildcards.sample)
    results = [str(t) for t in TARGETS if str(t).startswith(own) and str(t) not in mine]
    return {"sources": sorted(set(sources)), "results": results}


def provenance_fingerprint(wildcards):
    """Sizes and times of the sample's input files that the run does not make itself: the
    provenance is redone when one changes, even to an older time (see docs/outputs.md).
    """
    c = cfg(wildcards)
    return inputs_fingerprint(
        p for _, p in sample_inputs(c) if not _generated_by_workflow(p, c)
    )


def output_roots():
    """The folders a run writes to: results/<sample> of every brain, demo folders, the cohort's."""
    return [f"{RESULTS}/{s}" for s in SAMPLES] + list(DEMOS) + ([CD] if CD else [])


def on_start():
    """When jobs are about to run: remove the temporaries killed jobs left (see
    spimflow.io.atomic) and say what was removed or left."""
    notice = temporaries_notice(sweep_temporaries(output_roots()))
    if notice:
        sys.stderr.write(f"{notice}\n")


# Said before anything runs (main process only, not in cluster jobs): a lock left by a killed
# run, with the command that removes it, and every input changed since the results were made.
if workflow.is_main_process and not {"--unlock", "--nolock"} & set(sys.argv):
    _notice = stale_lock_notice(
        Path.cwd(),
        unlock_command_for(
            sys.argv, workflow.configfiles, workflow.main_snakefile, Path.cwd()
        ),
    )
    if _notice:
        sys.stderr.write(f"{_notice}\n")
    for _sample, _cfg in SAMPLES.items():
        for _line in changed_since(f"{RESULTS}/{_sample}/provenance.json", _cfg):
            sys.stderr.write(
                f"spimflow: [{_sample}] {_line} (since its provenance.json)\n"
            )
