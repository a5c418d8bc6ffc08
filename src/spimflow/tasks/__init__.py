"""What Snakemake rules call: one module per stage with ``run(smk)``.

``workflow/scripts/task.py`` imports ``spimflow.tasks.<params.task>`` and calls its
``run`` with the Snakemake object, after setting up logging to the rule's log file.
Task functions only unpack inputs/outputs/params and call pure steps; every output
is written atomically.
"""

from __future__ import annotations

import errno
import importlib
import logging
import sys
import time
from collections.abc import Sequence
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


#: errno values that mean the storage, not the data, is the problem
_STORAGE_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded"}


def storage_error(exc: OSError, outputs: Sequence[str] = ()) -> str | None:
    """A one-line message for a full disk or quota, naming the path; None for other errors.

    Parameters
    ----------
    exc : OSError
        The error a task raised.
    outputs : sequence of str, optional
        The job's outputs, named when the error does not say which file it was.

    Returns
    -------
    str or None

    Examples
    --------
    >>> print(storage_error(OSError(errno.ENOSPC, "No space left on device", "results/b/raw/x.ome.zarr"))[:62])
    results/b/raw/x.ome.zarr: no space left on the device while wr
    >>> storage_error(FileNotFoundError(errno.ENOENT, "nope", "x")) is None
    True
    """
    what = _STORAGE_ERRNOS.get(exc.errno or 0)
    if what is None:
        return None
    where = exc.filename or (", ".join(str(o) for o in outputs) if outputs else "an output")
    return (
        f"{where}: {what} while writing it; free space there (or set results: to a larger disk) and run again "
        "— nothing half-written is kept"
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
    except OSError as exc:
        message = storage_error(exc, list(getattr(smk, "output", ())))
        if message is None:
            raise
        log.error("%s", message)
        raise SystemExit(1) from None
    log.info("task %s done in %.1f s", task, time.perf_counter() - t0)
