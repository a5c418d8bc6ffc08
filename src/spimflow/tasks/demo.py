"""Rule ``demo_data``: write the synthetic demo (atlas, sample planes, ground truth)."""

from __future__ import annotations

import logging
from pathlib import Path

from spimflow.demo import make_demo
from spimflow.errors import SpimflowError

log = logging.getLogger("spimflow.demo")


def run(smk) -> None:
    out_dir = Path(smk.params.out_dir)
    manifest = make_demo(out_dir, preset=str(smk.params.preset), seed=int(smk.params.seed))
    expected = Path(smk.output.manifest)
    written = out_dir / "demo.json"
    if expected.resolve() != written.resolve():
        raise SpimflowError(f"demo rule: output manifest {expected} is not {written} "
                            "(demo.out_dir and the rule output disagree)")
    log.info("demo: %d cells, sample shape %s", manifest["n_cells"], manifest["sample"]["shape"])
