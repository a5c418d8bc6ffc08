# Shared set-up: validate the config with the pydantic models before any DAG is built,
# and name every output path in one place (see docs/outputs.md).
import sys
from pathlib import Path

import yaml

from spimflow.checks import config_problems
from spimflow.config import parse_config
from spimflow.errors import ConfigError

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
DEMO_MANIFEST = f"{DEMO_DIR}/demo.json" if CFG.demo else None


def log_path(name):
    return f"{SD}/logs/{name}.log"


def bench_path(name):
    return f"{SD}/benchmarks/{name}.tsv"


def channel_source_inputs(wildcards):
    """Files a channel's ingest depends on (the demo manifest when the demo makes them)."""
    if CFG.demo:
        return [DEMO_MANIFEST]
    ch = CFG.channels.all()[wildcards.channel]
    return [str(p) for p in ch.source.files(Path("."))]


# Each stage's .smk appends the outputs a full run should produce.
TARGETS = [f"{SD}/config.resolved.yaml"]


rule resolved_config:
    output:
        f"{SD}/config.resolved.yaml",
    params:
        resolved=CFG.model_dump(mode="json"),
    log:
        log_path("resolved_config"),
    run:
        text = yaml.safe_dump(params.resolved, sort_keys=False)
        tmp = Path(output[0]).with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(output[0])
        Path(log[0]).write_text(f"wrote {output[0]}\n")
