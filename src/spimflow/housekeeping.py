"""What a run finds left by a killed one: a stale Snakemake lock, stale temporaries.

After a SIGKILL (or a lost node) Snakemake's lock stays in ``.snakemake/locks`` and the
next run stops with "Directory cannot be locked" until ``snakemake --unlock``;
:func:`stale_lock_notice` says so before that happens, naming the command, when no
Snakemake process runs in the folder on this host. Killed writers leave hidden
``.<name>.tmp-<host>-<pid>-<token>`` temporaries; :func:`sweep_temporaries` removes those
whose writer is gone (see :mod:`spimflow.io.atomic`) when a run starts.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path

from spimflow.io.atomic import StaleTemporaries, remove_stale_temporaries

LOCK_DIR = Path(".snakemake") / "locks"


def _ancestors() -> set[int]:
    """This process and its parents (a shell or wrapper that started this Snakemake)."""
    pids = {os.getpid()}
    pid = os.getpid()
    for _ in range(64):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        ppid = int(stat.rsplit(")", 1)[-1].split()[1])
        if ppid <= 1 or ppid in pids:
            break
        pids.add(ppid)
        pid = ppid
    return pids


def snakemake_processes_in(workdir: str | os.PathLike) -> list[int] | None:
    """Processes on this host, other than this one and its parents, that run Snakemake (or a
    Snakemake job) in ``workdir``.

    Parameters
    ----------
    workdir : path
        The folder Snakemake runs in.

    Returns
    -------
    list of int or None
        Their process ids; None where processes cannot be listed (no ``/proc``).
    """
    proc = Path("/proc")
    if not (proc / "self" / "cwd").exists():
        return None
    here = os.path.realpath(workdir)
    skip = _ancestors()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            if not any(b"snakemake" in a.lower() for a in args):
                continue
            if os.path.realpath(os.readlink(entry / "cwd")) == here:
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or another user's process
            continue
    return found


def unlock_command(
    configfiles: Sequence[str | os.PathLike],
    snakefile: str | os.PathLike | None = None,
    directory: str | os.PathLike | None = None,
) -> str:
    """The ``snakemake --unlock`` command for a run with these options.

    Parameters
    ----------
    configfiles : sequence of path
        The run's ``--configfile`` values.
    snakefile : path, optional
        ``-s`` when the Snakefile is not the one Snakemake finds by itself.
    directory : path, optional
        ``--directory`` when the run works in another folder than where it was started.

    Returns
    -------
    str
        A shell command line.

    Examples
    --------
    >>> unlock_command(["my brain.yaml"])
    "snakemake --unlock --configfile 'my brain.yaml'"
    """
    parts = ["snakemake", "--unlock"]
    if snakefile is not None:
        parts += ["-s", str(snakefile)]
    if directory is not None:
        parts += ["--directory", str(directory)]
    for c in configfiles:
        parts += ["--configfile", str(c)]
    return shlex.join(parts)


def _given(args: Sequence[str], short: str, long: str) -> bool:
    return any(a == long or a.startswith(long + "=") or (a.startswith(short) and not a.startswith("--")) for a in args)


def unlock_command_for(
    argv: Sequence[str],
    configfiles: Sequence[str | os.PathLike],
    snakefile: str | os.PathLike,
    workdir: str | os.PathLike,
) -> str:
    """The ``snakemake --unlock`` command for the run started with ``argv``: its Snakefile
    (``-s``) and working directory (``--directory``) when the run named them, and its
    config files (relative to the working directory when the run did not change folder).

    Parameters
    ----------
    argv : sequence of str
        The run's command line (``sys.argv``).
    configfiles : sequence of path
        The run's config files, absolute (``workflow.configfiles``).
    snakefile : path
        The run's main Snakefile.
    workdir : path
        The folder the run works in.

    Returns
    -------
    str
        A shell command line.

    Examples
    --------
    >>> unlock_command_for(["snakemake", "--configfile", "b.yaml", "-c2"], ["/w/b.yaml"], "/w/Snakefile", "/w")
    'snakemake --unlock --configfile b.yaml'
    >>> unlock_command_for(["snakemake", "-s", "/r/Snakefile", "-d", "/w"], ["/w/b.yaml"], "/r/Snakefile", "/w")
    'snakemake --unlock -s /r/Snakefile --directory /w --configfile /w/b.yaml'
    """
    args = list(argv[1:])
    moved = _given(args, "-d", "--directory")
    configs = [
        Path(c).relative_to(workdir) if not moved and Path(c).is_relative_to(workdir) else Path(c) for c in configfiles
    ]
    return unlock_command(configs, snakefile if _given(args, "-s", "--snakefile") else None, workdir if moved else None)


def stale_lock_notice(workdir: str | os.PathLike, command: str) -> str | None:
    """A message naming ``command`` when ``workdir`` holds a Snakemake lock that no live
    Snakemake process on this host can own.

    Parameters
    ----------
    workdir : path
        The folder Snakemake runs in.
    command : str
        The unlock command to name (:func:`unlock_command`).

    Returns
    -------
    str or None
        The message, or None when there is no lock, a Snakemake process runs in the
        folder, or processes cannot be listed.
    """
    locks = Path(workdir) / LOCK_DIR
    try:
        held = any(locks.iterdir())
    except OSError:
        return None
    if not held:
        return None
    running = snakemake_processes_in(workdir)
    if running is None or running:
        return None
    return (
        f"spimflow: {locks} holds the lock of an earlier run, and no Snakemake process runs in this folder "
        "on this host: that run was killed (or lost its machine). If this run stops with "
        "'Directory cannot be locked' and no run on another machine uses this folder, remove the lock with\n"
        f"    {command}\n"
        "then run the same command again: the jobs it interrupted are redone (--rerun-incomplete, set in "
        "profiles/default) and their stale temporaries removed."
    )


def sweep_temporaries(roots: Iterable[str | os.PathLike]) -> StaleTemporaries:
    """Remove the stale temporaries under each of ``roots`` (see :mod:`spimflow.io.atomic`).

    Parameters
    ----------
    roots : iterable of path
        Output folders (``results/<sample>``, a demo folder, a cohort folder); absent ones
        are skipped.

    Returns
    -------
    StaleTemporaries
        Everything found, removed or kept.
    """
    found = StaleTemporaries()
    for root in dict.fromkeys(str(r) for r in roots):
        found.extend(remove_stale_temporaries(root))
    return found


def temporaries_notice(found: StaleTemporaries, limit: int = 5) -> str | None:
    """What a sweep did, for the run's first lines (None when it found nothing).

    Parameters
    ----------
    found : StaleTemporaries
        A sweep's findings.
    limit : int
        How many paths to name per kind.

    Returns
    -------
    str or None
        One line per kind of finding.
    """

    def names(paths: list[Path]) -> str:
        shown = ", ".join(str(p) for p in paths[:limit])
        return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")

    lines = []
    if found.removed:
        lines.append(
            f"spimflow: removed {len(found.removed)} temporar{'y' if len(found.removed) == 1 else 'ies'} "
            f"left by killed jobs: {names(found.removed)}"
        )
    if found.other_host:
        lines.append(
            f"spimflow: left {names(found.other_host)}: written by a job on another host, which this host "
            "cannot check; delete it by hand once no job of that host runs"
        )
    if found.unknown_writer:
        lines.append(
            f"spimflow: left {names(found.unknown_writer)}: a temporary of an older spimflow whose writer "
            "cannot be told; delete it by hand once no run uses this folder"
        )
    return "\n".join(lines) or None
