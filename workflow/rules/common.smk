# Shared set-up, included first: validate the config with the pydantic models before any
# DAG is built, and define every helper function the rule files use (rule files hold
# rules only). Each output path is named once, in the rule that produces it; other rules
# refer to it as rules.<name>.output.<key>. See docs/outputs.md.
import json
import sys
from pathlib import Path

from spimflow.blocks import block_memory_mb
from spimflow.checks import config_problems
from spimflow.config import parse_config
from spimflow.errors import ConfigError
from spimflow.steps.detect import required_overlap

_CONFIG_SOURCE = ", ".join(str(p) for p in workflow.configfiles) or "config"
try:
    CFG = parse_config(dict(config), _CONFIG_SOURCE)
    _problems = config_problems(CFG, Path.cwd())
    if _problems:
        raise ConfigError("\n".join(f"{_CONFIG_SOURCE}: {p}" for p in _problems))
except ConfigError as _exc:
    sys.stderr.write(f"spimflow: invalid configuration\n{_exc}\n")
    sys.exit(1)

SAMPLE = CFG.sample
SD = str(CFG.sample_dir())  # results/<sample>
CHANNELS = list(CFG.channels.all())
TASK_SCRIPT = str(Path(workflow.basedir) / "workflow" / "scripts" / "task.py")
DEMO_DIR = str(CFG.demo.out_dir) if CFG.demo else None

# Each stage's .smk appends the outputs a full run should produce.
TARGETS = []


wildcard_constraints:
    channel="[A-Za-z0-9_]+",
    batch=r"\d+",


def log_path(name):
    """The rule's log file: results/<sample>/logs/<name>.log."""
    return f"{SD}/logs/{name}.log"


def bench_path(name):
    """The rule's benchmark table: results/<sample>/benchmarks/<name>.tsv."""
    return f"{SD}/benchmarks/{name}.tsv"


def demo_manifest():
    """The demo's manifest (made by rule demo_data), or nothing outside the demo."""
    return [rules.demo_data.output.manifest] if CFG.demo else []


def channel_source_inputs(wildcards):
    """Files a channel's ingest depends on (the demo manifest when the demo makes them)."""
    if CFG.demo:
        return demo_manifest()
    ch = CFG.channels.all()[wildcards.channel]
    return [str(p) for p in ch.source.files(Path("."))]


def atlas_inputs(wildcards=None):
    """The atlas files (the demo manifest when the demo rule makes the atlas)."""
    if CFG.demo:
        return demo_manifest()
    return [str(p) for p in CFG.atlas.files(Path("."))]


def raw_channel(channel):
    """The ingested OME-Zarr of one channel (rule ingest)."""
    return expand(rules.ingest.output.zarr, channel=channel)[0]


def resampled_channel(channel):
    """The channel resampled to the atlas grid (rule resample)."""
    return expand(rules.resample.output.zarr, channel=channel)[0]


def register_inputs(wildcards):
    """The resampled autofluorescence (and signal for channel correction), every raw
    channel (for their grids), the atlas and any user elastix parameter files."""
    reg = CFG.steps.registration
    return {
        "autofluorescence": resampled_channel("autofluorescence"),
        **({"signal": resampled_channel("signal")} if reg.channel_correction else {}),
        **{f"raw_{c}": raw_channel(c) for c in CHANNELS},
        "atlas": atlas_inputs(),
        "parameter_files": [str(p) for p in reg.parameter_files],
    }


def detect_memory_mb():
    """Memory of one detection block job, from the block size and the overlap the filters need."""
    detect = CFG.steps.detect
    overlap = detect.blocks.overlap or required_overlap(
        CFG.channels.signal.voxel_size, detect
    )
    return block_memory_mb(detect.blocks.size, overlap, detect.illumination.enabled)


def detect_batch_inputs(wildcards):
    """Signal, block plan and (when enabled) the illumination field of one batch job."""
    inputs = {"signal": raw_channel("signal"), "plan": rules.detect_plan.output.plan}
    if CFG.steps.detect.illumination.enabled:
        inputs["illumination"] = rules.detect_illumination.output.field
    return inputs


def detect_batch_tables(wildcards):
    """One parquet per batch of the plan (known once the checkpoint has run)."""
    with open(checkpoints.detect_plan.get().output.plan) as fh:
        n = len(json.load(fh)["batches"])
    return expand(rules.detect_batch.output.cells, batch=range(n))
