"""What Snakemake rules call: one module per stage with ``run(smk)``.

``workflow/scripts/task.py`` imports ``spimflow.tasks.<params.task>`` and calls its
``run`` with the Snakemake object, after setting up logging to the rule's log file.
Task functions only unpack inputs/outputs/params and call pure steps; every output
is written atomically.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
from typing import Any

from spimflow.errors import SpimflowError

log = logging.getLogger("spimflow")


def setup_logging(log_file: str | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(
        level=logging.INFO, handlers=handlers, force=True, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def dispatch(smk: Any) -> None:
    """Entry point of every rule's ``script:``."""
    setup_logging(smk.log[0] if len(smk.log) else None)
    task = smk.params.task
    t0 = time.perf_counter()
    log.info("task %s (rule %s) starting", task, smk.rule)
    try:
        module = importlib.import_module(f"spimflow.tasks.{task}")
        module.run(smk)
    except SpimflowError as exc:
        log.error("%s", exc)
        raise SystemExit(1) from None
    log.info("task %s done in %.1f s", task, time.perf_counter() - t0)
