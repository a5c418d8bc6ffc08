"""Atomic outputs: write to a temporary sibling, rename when complete.

A killed job must never leave something that looks complete, so every writer in
spimflow goes through :func:`atomic_path`.

A killed job does leave its temporary behind: ``.<name>.tmp-<host>-<pid>-<token>`` beside
``<name>`` (a zarr store the size of the raw data, for ingest). The name says who wrote
it, so the next writer of the same output removes the temporaries whose writer is gone
(:func:`remove_stale_siblings`, called by :func:`atomic_path`), and the workflow sweeps
its output folders when a run starts (:func:`remove_stale_temporaries`). A temporary is
removed only when its writer ran on this host and that process no longer exists (a
zombie counts as gone), or when it names this very process but is not one it is
writing: a job still writing, here or on another host of a cluster, never loses its
temporary. Temporaries written on another host are reported, not removed (this host
cannot see that host's processes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# .<target>.tmp-<host>-<pid>-<token>; <host> may itself contain dashes
_OWNED = re.compile(r"^\.(?P<target>.+)\.tmp-(?P<host>[A-Za-z0-9._-]+)-(?P<pid>\d+)-(?P<token>[0-9a-f]{8})$")
# temporaries of spimflow before the writer was named: .<target>.tmp-<token>
_LEGACY = re.compile(r"^\.(?P<target>.+)\.tmp-(?P<token>[0-9a-f]{8})$")
# temporaries this process is writing right now (absolute paths)
_ACTIVE: set[str] = set()
_ACTIVE_LOCK = threading.Lock()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def host_tag() -> str:
    """This host's name as written into temporary names (letters, digits, ``.``, ``-``, ``_``).

    Returns
    -------
    str
        ``socket.gethostname()`` with any other character replaced by ``_``.
    """
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "localhost"


def temporary_name(final: str | os.PathLike) -> Path:
    """A fresh temporary sibling name of ``final`` naming this host and process.

    Parameters
    ----------
    final : path
        The output the temporary will become.

    Returns
    -------
    Path
        ``<parent>/.<name>.tmp-<host>-<pid>-<8 hex digits>`` (nothing is created).

    Examples
    --------
    >>> name = temporary_name("results/s/raw/signal.ome.zarr").name
    >>> name.startswith(".signal.ome.zarr.tmp-") and f"-{os.getpid()}-" in name
    True
    """
    final = Path(final)
    return final.with_name(f".{final.name}.tmp-{host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def claimed_temporary(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a :func:`temporary_name` of ``final`` that this process owns while the block runs.

    Stale-temporary clean-up never removes a claimed temporary, even one naming this
    process. Nothing is created or removed here: the caller writes and renames or deletes.

    Parameters
    ----------
    final : path
        The output the temporary will become.

    Yields
    ------
    Path
        The temporary's path.
    """
    tmp = temporary_name(final)
    key = str(tmp.absolute())
    with _ACTIVE_LOCK:
        _ACTIVE.add(key)
    try:
        yield tmp
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE.discard(key)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie.

    Parameters
    ----------
    pid : int
        Process id.

    Returns
    -------
    bool
        False only when the process is known to be gone (no such process, or a zombie
        waiting to be reaped); True when it runs or when that cannot be told.

    Examples
    --------
    >>> pid_alive(os.getpid())
    True
    """
    if pid <= 0:
        return True
    proc = Path("/proc")
    if (proc / "self" / "stat").exists():  # Linux: a killed child not yet reaped is a zombie
        try:
            stat = (proc / str(pid) / "stat").read_text()
        except FileNotFoundError:
            return False
        except OSError:
            return True
        state = stat.rsplit(")", 1)[-1].split()[:1]
        return state not in (["Z"], ["X"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: it exists
        return True
    return True


@dataclass
class StaleTemporaries:
    """What a clean-up found: removed, written on another host (kept), of unknown writer (kept)."""

    removed: list[Path] = field(default_factory=list)
    other_host: list[Path] = field(default_factory=list)
    unknown_writer: list[Path] = field(default_factory=list)

    def extend(self, other: StaleTemporaries) -> None:
        """Add another clean-up's findings to these.

        Parameters
        ----------
        other : StaleTemporaries
            The findings to add.
        """
        self.removed += other.removed
        self.other_host += other.other_host
        self.unknown_writer += other.unknown_writer


def _judge(path: Path, found: StaleTemporaries) -> bool:
    """Remove ``path`` if it is a temporary whose writer is gone; True if it is a temporary."""
    m = _OWNED.match(path.name)
    if m is None:
        if _LEGACY.match(path.name):
            found.unknown_writer.append(path)
            return True
        return False
    if m["host"] != host_tag():
        found.other_host.append(path)
        return True
    pid = int(m["pid"])
    if pid == os.getpid():
        with _ACTIVE_LOCK:
            stale = str(path.absolute()) not in _ACTIVE  # this process, but not being written: left by a dead
            # process that had our pid (e.g. a container on a rebooted node)
    else:
        stale = not pid_alive(pid)
    if stale:
        _remove(path)
        found.removed.append(path)
        log.info("removed %s: a temporary left by process %d on %s, which is gone", path, pid, m["host"])
    return True


def remove_stale_siblings(final: str | os.PathLike) -> StaleTemporaries:
    """Remove the temporaries of ``final`` left by writers that are gone (see the module doc).

    Parameters
    ----------
    final : path
        An output path; its folder is searched for ``.<name>.tmp-*``.

    Returns
    -------
    StaleTemporaries
        The temporaries removed and those kept because their writer cannot be checked.
    """
    final = Path(final)
    found = StaleTemporaries()
    prefix = f".{final.name}.tmp-"
    try:
        entries = [p for p in final.parent.iterdir() if p.name.startswith(prefix)]
    except (FileNotFoundError, NotADirectoryError):
        return found
    for path in entries:
        _judge(path, found)
    return found


def remove_stale_temporaries(root: str | os.PathLike) -> StaleTemporaries:
    """Remove every temporary under ``root`` whose writer is gone (see the module doc).

    Zarr stores (``*.zarr``) and temporaries are not searched inside: outputs and their
    temporaries are siblings, never inside a store.

    Parameters
    ----------
    root : path
        A folder of outputs (e.g. ``results/<sample>``); absent: nothing to do.

    Returns
    -------
    StaleTemporaries
        The temporaries removed and those kept because their writer cannot be checked.
    """
    found = StaleTemporaries()
    if not Path(root).is_dir():
        return found
    for folder, dirs, files in os.walk(root):
        keep = []
        for name in dirs:
            if _judge(Path(folder) / name, found) or name.endswith(".zarr") or name == ".snakemake":
                continue
            keep.append(name)
        dirs[:] = keep
        for name in files:
            _judge(Path(folder) / name, found)
    return found


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``final``; rename it to ``final`` on success.

    Works for files and for directories (zarr stores). On any exception the
    temporary is removed and ``final`` is left untouched. Temporaries of ``final`` left
    by killed writers are removed first (:func:`remove_stale_siblings`).

    Parameters
    ----------
    final : path
        The output to write.

    Yields
    ------
    Path
        The temporary to write to (``.<name>.tmp-<host>-<pid>-<token>``, not yet created).

    Raises
    ------
    FileNotFoundError
        If the block wrote nothing at the temporary path.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(final)
    with claimed_temporary(final) as tmp:
        try:
            yield tmp
            if not tmp.exists():
                raise FileNotFoundError(f"writer produced nothing at {tmp} for {final}")
            _remove(final)
            os.replace(tmp, final)
        except BaseException:
            _remove(tmp)
            raise
