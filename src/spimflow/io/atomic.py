"""Atomic outputs: write to a temporary sibling, rename when complete.

A killed job must never leave something that looks complete, so every writer in
spimflow goes through :func:`atomic_path`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``final``; rename it to ``final`` on success.

    Works for files and for directories (zarr stores). On any exception the
    temporary is removed and ``final`` is left untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"writer produced nothing at {tmp} for {final}")
        _remove(final)
        os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise
