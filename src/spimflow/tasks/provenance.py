"""Rule ``provenance``: software versions and every input's size, time and hash beside the
results (``results/<sample>/provenance.json``); says which input changed since the last one."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from spimflow.config import SampleConfig
from spimflow.io.atomic import atomic_path
from spimflow.provenance import build_provenance, read_provenance

log = logging.getLogger(__name__)


def run(smk: Any) -> None:
    cfg = SampleConfig.model_validate(dict(smk.params.resolved))
    out = Path(smk.output.json)
    previous = read_provenance(out)  # an update() output: the previous run's record is still there
    record = build_provenance(cfg, ".", previous)
    for line in record["changes"]:
        log.warning("%s", line)
    if record["changes"]:
        log.warning(
            "%d input(s) changed since %s was last written; Snakemake redoes the jobs reading an input only when "
            "it is newer than their outputs: if a change above kept an older time, redo them with --forcerun",
            len(record["changes"]),
            out,
        )
    git = record["software"]["git"]
    log.info(
        "spimflow %s%s, %d input files recorded",
        record["software"]["spimflow"],
        f" ({git['describe']})" if git else "",
        len(record["inputs"]),
    )
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
