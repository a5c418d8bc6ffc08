"""Point tables in and out of files, chosen by suffix: ``.cdb``, ``.xml``, ``.csv``, ``.parquet``.

The table is the one of :func:`spimflow.annotate.store.markers_to_frame`: columns
``z, y, x`` in voxel-centre coordinates (voxel ``i`` has its centre at ``i``), usually a
``type`` column, and whatever else the format carries. Every write goes through a
temporary sibling that is renamed when complete (:func:`spimflow.io.atomic.atomic_path`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spimflow.annotate.cellcounter import read_cellcounter, write_cellcounter
from spimflow.annotate.errors import AnnotationError
from spimflow.annotate.store import Project, _remove_journals, frame_to_markers, markers_to_frame
from spimflow.io.atomic import atomic_path

#: File suffixes :func:`read_points` and :func:`write_points` understand.
SUFFIXES = (".cdb", ".xml", ".csv", ".parquet")


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise AnnotationError(
            f"{path}: unknown point file type {suffix or '(no suffix)'!r}; use one of {', '.join(SUFFIXES)}"
        )
    return suffix


def _check(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    missing = [c for c in ("z", "y", "x") if c not in frame.columns]
    if missing:
        raise AnnotationError(f"{path}: the point table lacks column(s) {', '.join(missing)} (needs z, y, x)")
    return frame


def read_points(path: str | os.PathLike, **kwargs: Any) -> pd.DataFrame:
    """Read a point table from a ClickPoints project, Cell Counter XML, CSV or parquet file.

    Parameters
    ----------
    path : str or os.PathLike
    **kwargs
        ``.cdb``: ``type``, ``layer``, ``apply_offset`` of
        :func:`~spimflow.annotate.store.markers_to_frame`; ``.xml``: ``z_base`` of
        :func:`~spimflow.annotate.cellcounter.read_cellcounter`; ``.csv``/``.parquet``:
        passed to pandas.

    Returns
    -------
    pandas.DataFrame
        At least the columns ``z, y, x``.
    """
    path = Path(path)
    suffix = _suffix(path)
    if not path.exists():
        raise AnnotationError(f"{path}: no such point file")
    if suffix == ".cdb":
        with Project.open(path, "r") as project:
            return markers_to_frame(project, **kwargs)
    if suffix == ".xml":
        return read_cellcounter(path, **kwargs)
    try:
        frame = pd.read_csv(path, **kwargs) if suffix == ".csv" else pd.read_parquet(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise AnnotationError(f"{path}: cannot read the point table ({exc})") from exc
    return _check(frame, path)


def write_points(
    frame: pd.DataFrame,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    volume: str | os.PathLike | None = None,
    **kwargs: Any,
) -> Path:
    """Write a point table, atomically, in the format named by the suffix.

    Parameters
    ----------
    frame : pandas.DataFrame
        Columns ``z, y, x`` (voxel-centre coordinates) and optionally ``type`` etc.
    path : str or os.PathLike
    overwrite : bool
        ``.cdb`` only: replace an existing project (everything in it is lost). Without it
        an existing project is an error; add points to one with
        :func:`~spimflow.annotate.store.frame_to_markers` instead. Other formats are
        always replaced.
    volume : str or os.PathLike, optional
        ``.cdb`` only: the volume (OME-Zarr, TIFF) the image rows (one per plane) refer
        to; without it they are named ``volume`` and hold no pixels (the markers still
        open, on empty planes).
    **kwargs
        ``.cdb``: ``type_column``, ``text``, ``default_type`` of
        :func:`~spimflow.annotate.store.frame_to_markers`; ``.xml``: those of
        :func:`~spimflow.annotate.cellcounter.format_cellcounter`; ``.csv``/``.parquet``:
        passed to pandas.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    suffix = _suffix(path)
    _check(frame, path)
    if suffix == ".xml":
        return write_cellcounter(frame, path, **kwargs)
    if suffix == ".cdb":
        if path.exists() and not overwrite:
            raise AnnotationError(
                f"{path}: a project already exists; pass overwrite=True to replace it, or add the "
                "points with spimflow.annotate.frame_to_markers"
            )
        z = np.rint(frame["z"].to_numpy(dtype=np.float64)) if len(frame) else np.zeros(0)
        if len(z) and (not np.isfinite(z).all() or z.min() < 0):
            raise AnnotationError(f"{path}: z must be finite and non-negative to become planes")
        n_planes = int(z.max()) + 1 if len(z) else 0
        with atomic_path(path) as tmp:
            with Project(tmp, "w") as project:
                if n_planes:
                    project.add_volume_planes(os.fspath(volume) if volume is not None else "volume", n_planes)
                frame_to_markers(project, frame, **kwargs)
            _remove_journals(tmp)
            _remove_journals(path)
        return path
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False, **kwargs)
        else:
            frame.to_parquet(tmp, index=False, **kwargs)
    return path
