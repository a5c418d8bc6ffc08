"""Provenance of a results folder: the software that made it and the inputs it was made from.

``results/<sample>/provenance.json`` (rule ``provenance``, written after every other output
of the sample, so it describes the run that last changed them) records

* spimflow's version and, when the package is imported from a git checkout, its commit
  (``git rev-parse HEAD``) and ``git describe --always --dirty --tags``;
* Python, the platform and the versions of the core libraries (:data:`PACKAGES`);
* every input file: the source files of each channel, the atlas files, the elastix
  parameter files and the annotation project (``steps.annotate.enabled``), each with its
  size, modification time and a content hash. A file up to :data:`FULL_HASH_LIMIT` bytes
  is hashed whole (``"hash": "sha256"``); a larger one by its size, first and last
  :data:`ENDS_BYTES` (``"sha256-ends"``: cheap for a 100 GB stack, blind to a change in its
  middle that keeps size and time). A hash is carried over from the previous record when
  size and modification time (ns) are unchanged. A zarr store is one entry: its file
  count, total size, newest modification time and a hash of its listing (names, sizes,
  times), no content hash.

A rerun compares with the previous record and says which input changed
(:func:`compare_inputs`); the workflow also compares sizes and times when it starts
(:func:`changed_since`). Nothing a table holds depends on this file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from spimflow.config import SampleConfig

PACKAGES = (
    "snakemake",
    "numpy",
    "scipy",
    "itk-elastix",
    "SimpleITK",
    "zarr",
    "pandas",
    "pydantic",
    "tifffile",
    "scikit-image",
    "pyarrow",
    "numba",
    "h5py",
    "PyYAML",
)
FULL_HASH_LIMIT = 64 * 2**20  # files up to this size are hashed whole
ENDS_BYTES = 2**20  # a larger file: sha256 of its size, first and last ENDS_BYTES
FORMAT_VERSION = 1


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def software_versions() -> dict[str, Any]:
    """spimflow, Python, the platform and the core libraries' versions (None: not installed).

    Returns
    -------
    dict
        ``{"spimflow": str, "git": dict or None, "python": str, "platform": str,
        "packages": {distribution: version}}``.
    """
    import spimflow

    return {
        "spimflow": _version("spimflow") or spimflow.__version__,
        "git": git_revision(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
    }


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return out.stdout.strip()


def git_revision(package_dir: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The git commit of the checkout spimflow is imported from, if it is one.

    Parameters
    ----------
    package_dir : path, optional
        The folder of the ``spimflow`` package (default: where it is imported from);
        its checkout is the folder two levels up (``<repo>/src/spimflow``).

    Returns
    -------
    dict or None
        ``{"commit": 40 hex digits, "describe": str, "dirty": bool, "repository": str}``;
        None when that folder is not the top of a git checkout, or git is missing or fails
        (an installed package, a copy of the source).
    """
    if package_dir is None:
        import spimflow

        package_dir = Path(spimflow.__file__).parent
    repo = Path(package_dir).resolve().parents[1]
    if not (repo / ".git").exists():
        return None
    try:
        if Path(_git(repo, "rev-parse", "--show-toplevel")).resolve() != repo:
            return None  # spimflow sits inside some other repository
        commit = _git(repo, "rev-parse", "HEAD")
        describe = _git(repo, "describe", "--always", "--dirty", "--tags")
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "describe": describe, "dirty": describe.endswith("-dirty"), "repository": str(repo)}


def _is_zarr_store(path: Path) -> bool:
    return path.name.endswith(".zarr") or any((path / n).exists() for n in ("zarr.json", ".zgroup", ".zarray"))


def sample_inputs(cfg: SampleConfig, base: str | os.PathLike = ".") -> list[tuple[str, Path]]:
    """Every input file of a sample with the config key it comes from.

    Parameters
    ----------
    cfg : SampleConfig
        The sample (its atlas given by folder or files, as the workflow resolves it).
    base : path
        The folder relative paths are taken from (Snakemake's working directory).

    Returns
    -------
    list of (str, Path)
        ``(key, path)`` in config order; a folder source stands for its files (a zarr
        store for itself); a MetaImage header brings its data file.
    """
    base = Path(base)
    found: list[tuple[str, Path]] = []
    for name, ch in cfg.channels.all().items():
        key = f"channels.{name}" if name in ("signal", "autofluorescence") else f"channels.extra.{name}"
        for path in ch.source.files(base):
            found.extend((key, p) for p in _expand(path))
            if ch.source.format == "mhd":
                found.extend((key, p) for p in _mhd_data_file(path))
    if cfg.atlas is not None:
        found.extend(("atlas", p) for p in cfg.atlas.files(base))
    found.extend(("steps.registration.parameter_files", base / p) for p in cfg.steps.registration.parameter_files)
    if cfg.steps.annotate.enabled:
        found.append(("steps.annotate (the curation project)", base / cfg.sample_dir() / "annotation" / "cells.cdb"))
    seen: dict[Path, str] = {}
    for key, path in found:
        seen.setdefault(path, key)
    return [(key, path) for path, key in seen.items()]


def _expand(path: Path) -> list[Path]:
    if path.is_dir() and not _is_zarr_store(path):
        return sorted(Path(folder) / f for folder, _, files in os.walk(path) for f in files)
    return [path]


def _mhd_data_file(header: Path) -> list[Path]:
    from spimflow.errors import InputFileError
    from spimflow.io.itk_readers import parse_mhd_header

    try:
        data = parse_mhd_header(header)["ElementDataFile"]
    except InputFileError:
        return []
    if data.upper() == "LOCAL" or data.upper().startswith("LIST") or "%" in data:
        return []
    return [header.parent / data]


def _iso(mtime_ns: int) -> str:
    return _dt.datetime.fromtimestamp(mtime_ns / 1e9, _dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def file_hash(path: str | os.PathLike, size: int | None = None) -> tuple[str, str]:
    """A content hash of a file: whole when small, else its size and both ends.

    Parameters
    ----------
    path : path
        The file.
    size : int, optional
        Its size in bytes (read from the file system when not given).

    Returns
    -------
    (str, str)
        ``("sha256", hex digest of the content)`` when ``size <= FULL_HASH_LIMIT``, else
        ``("sha256-ends", hex digest of b"<size>\\n" + first ENDS_BYTES + last ENDS_BYTES)``.
    """
    size = os.path.getsize(path) if size is None else size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= FULL_HASH_LIMIT:
            for block in iter(lambda: f.read(2**20), b""):
                h.update(block)
            return "sha256", h.hexdigest()
        h.update(f"{size}\n".encode())
        h.update(f.read(ENDS_BYTES))
        f.seek(max(size - ENDS_BYTES, 0))
        h.update(f.read(ENDS_BYTES))
    return "sha256-ends", h.hexdigest()


def file_record(path: str | os.PathLike, key: str = "", previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Size, modification time and content hash of one input (see the module doc).

    Parameters
    ----------
    path : path
        The input file (or zarr store).
    key : str
        The config key it comes from.
    previous : dict, optional
        This path's record in the previous provenance: its hash is reused when size and
        modification time are unchanged.

    Returns
    -------
    dict
        ``path, key, size, mtime, mtime_ns, hash, sha256`` for a file; a store adds
        ``files`` and its ``hash`` is ``"listing-sha256"``; a missing path has
        ``missing: true``.
    """
    path = Path(path)
    rec: dict[str, Any] = {"path": str(path), "key": key}
    try:
        st = path.stat()
    except OSError:
        return {**rec, "missing": True}
    if path.is_dir():
        listing = hashlib.sha256()
        n = size = newest = 0
        for folder, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                p = Path(folder) / name
                s = p.stat()
                n, size, newest = n + 1, size + s.st_size, max(newest, s.st_mtime_ns)
                listing.update(f"{p.relative_to(path)}\t{s.st_size}\t{s.st_mtime_ns}\n".encode())
        return {
            **rec,
            "files": n,
            "size": size,
            "mtime": _iso(newest),
            "mtime_ns": newest,
            "hash": "listing-sha256",
            "sha256": listing.hexdigest(),
        }
    rec.update(size=st.st_size, mtime=_iso(st.st_mtime_ns), mtime_ns=st.st_mtime_ns)
    if previous and previous.get("size") == st.st_size and previous.get("mtime_ns") == st.st_mtime_ns:
        if previous.get("hash") in ("sha256", "sha256-ends") and previous.get("sha256"):
            return {**rec, "hash": previous["hash"], "sha256": previous["sha256"]}
    kind, digest = file_hash(path, st.st_size)
    return {**rec, "hash": kind, "sha256": digest}


def input_records(
    inputs: Iterable[tuple[str, Path]], previous: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """:func:`file_record` of every input, reusing hashes from ``previous`` records.

    Parameters
    ----------
    inputs : iterable of (str, Path)
        ``(key, path)`` pairs (:func:`sample_inputs`).
    previous : list of dict, optional
        The ``inputs`` of the previous provenance.

    Returns
    -------
    list of dict
        One record per input, in order.
    """
    before = {r["path"]: r for r in previous or []}
    return [file_record(path, key, before.get(str(path))) for key, path in inputs]


def compare_inputs(previous: list[dict[str, Any]], current: list[dict[str, Any]]) -> list[str]:
    """One line per input that changed, appeared or disappeared between two records.

    Parameters
    ----------
    previous, current : list of dict
        ``inputs`` of two provenance records (or stat-only records: without ``sha256``
        only size and time are compared).

    Returns
    -------
    list of str
        ``"input changed: <path> (size 10 → 12 bytes; modified <t0> → <t1>; sha256 <a>… →
        <b>…)"``, ``"input added: <path>"``, ``"input removed: <path>"``, in path order.

    Examples
    --------
    >>> a = [{"path": "x.tif", "size": 10, "mtime_ns": 0, "mtime": "t0", "sha256": "aa"}]
    >>> b = [{"path": "x.tif", "size": 12, "mtime_ns": 5, "mtime": "t1", "sha256": "bb"}]
    >>> compare_inputs(a, b)
    ['input changed: x.tif (size 10 → 12 bytes; modified t0 → t1; sha256 aa… → bb…)']
    >>> compare_inputs(a, a)
    []
    """
    before = {r["path"]: r for r in previous}
    after = {r["path"]: r for r in current}
    lines = []
    for path in sorted(before.keys() | after.keys()):
        old, new = before.get(path), after.get(path)
        if old is None or old.get("missing"):
            if new is not None and not new.get("missing"):
                lines.append(f"input added: {path}")
            continue
        if new is None or new.get("missing"):
            lines.append(f"input removed: {path}")
            continue
        what = []
        if old.get("size") != new.get("size"):
            what.append(f"size {old.get('size')} → {new.get('size')} bytes")
        if old.get("mtime_ns") != new.get("mtime_ns"):
            what.append(f"modified {old.get('mtime')} → {new.get('mtime')}")
        if old.get("files") != new.get("files"):
            what.append(f"files {old.get('files')} → {new.get('files')}")
        if (
            old.get("sha256")
            and new.get("sha256")
            and old.get("hash") == new.get("hash")
            and old["sha256"] != new["sha256"]
        ):
            what.append(f"{new.get('hash', 'sha256')} {old['sha256'][:12]}… → {new['sha256'][:12]}…")
        if what:
            lines.append(f"input changed: {path} ({'; '.join(what)})")
    return lines


def read_provenance(path: str | os.PathLike) -> dict[str, Any] | None:
    """A provenance file, or None when it is absent or unreadable.

    Parameters
    ----------
    path : path
        ``results/<sample>/provenance.json``.

    Returns
    -------
    dict or None
        The record.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def changed_since(provenance_file: str | os.PathLike, cfg: SampleConfig, base: str | os.PathLike = ".") -> list[str]:
    """Inputs whose size or modification time differ from ``provenance_file`` (no hashing:
    cheap enough for the start of every run).

    Parameters
    ----------
    provenance_file : path
        The previous record (absent: nothing to compare, no lines).
    cfg : SampleConfig
        The sample as configured now.
    base : path
        Snakemake's working directory.

    Returns
    -------
    list of str
        :func:`compare_inputs` lines.
    """
    previous = read_provenance(provenance_file)
    if not previous or not isinstance(previous.get("inputs"), list):
        return []
    current = []
    for key, path in sample_inputs(cfg, base):
        rec: dict[str, Any] = {"path": str(path), "key": key}
        try:
            st = path.stat()
        except OSError:
            rec["missing"] = True
        else:
            if path.is_dir():
                rec = file_record(path, key)
            else:
                rec.update(size=st.st_size, mtime=_iso(st.st_mtime_ns), mtime_ns=st.st_mtime_ns)
        current.append(rec)
    return compare_inputs(previous["inputs"], current)


def inputs_fingerprint(paths: Iterable[str | os.PathLike]) -> str:
    """A short digest of the paths, sizes and modification times of input files, to make
    Snakemake redo the provenance when one changes even to an older time.

    Parameters
    ----------
    paths : iterable of path
        Input files (missing ones count as missing).

    Returns
    -------
    str
        16 hex digits.
    """
    h = hashlib.sha256()
    for p in sorted(str(p) for p in paths):
        try:
            st = os.stat(p)
            h.update(f"{p}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\tmissing\n".encode())
    return h.hexdigest()[:16]


def build_provenance(
    cfg: SampleConfig, base: str | os.PathLike = ".", previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The provenance record of a sample's results (see the module doc).

    Parameters
    ----------
    cfg : SampleConfig
        The sample.
    base : path
        Snakemake's working directory.
    previous : dict, optional
        The previous record of this results folder: hashes of unchanged files are reused
        and ``changes`` lists what differs from it.

    Returns
    -------
    dict
        ``format, sample, created, workdir, software, hashing, inputs, changes``.
    """
    prev_inputs = (previous or {}).get("inputs") if isinstance((previous or {}).get("inputs"), list) else None
    inputs = input_records(sample_inputs(cfg, base), prev_inputs)
    return {
        "format": FORMAT_VERSION,
        "sample": cfg.sample,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "workdir": str(Path(base).resolve()),
        "software": software_versions(),
        "hashing": (
            f"sha256 of the whole file up to {FULL_HASH_LIMIT} bytes; above, sha256-ends: sha256 of "
            f"'<size>\\n' + the first and last {ENDS_BYTES} bytes; zarr stores: listing-sha256 of "
            "'<relative path>\\t<size>\\t<mtime_ns>\\n' per file"
        ),
        "inputs": inputs,
        "changes": compare_inputs(prev_inputs, inputs) if prev_inputs is not None else [],
    }
