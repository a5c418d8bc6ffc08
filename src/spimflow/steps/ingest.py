"""Ingest: stream a channel's source volume into an OME-Zarr image.

Slabs of ``chunks[0]`` z planes are read from a lazy reader (see
:mod:`spimflow.io.readers`) and written to level 0, then the viewer pyramid is built
from level 0, slab by slab. Peak memory is a few slabs (e.g. 16 planes of 2048×2048
uint16 = 128 MiB), never the whole stack. Everything is written into a temporary
sibling that is renamed into place only when complete.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spimflow.errors import InputFileError
from spimflow.io.atomic import atomic_path
from spimflow.io.omezarr import DEFAULT_CHUNKS, build_pyramid, create_ome_zarr

log = logging.getLogger(__name__)


def voxel_size_mismatch(configured: Sequence[float], found: Sequence[float] | None, rtol: float = 0.01) -> bool:
    """Tell whether a file header's voxel size differs from the configured one by more than ``rtol``.

    Parameters
    ----------
    configured : sequence of float
        Configured voxel size (z, y, x), µm.
    found : sequence of float or None
        Voxel size (z, y, x) from the file header, µm; None when the file has none.
    rtol : float, optional
        Relative tolerance per axis.

    Returns
    -------
    bool
        False when they agree or the file records no voxel size.

    Examples
    --------
    >>> voxel_size_mismatch((4.0, 2.0, 2.0), (4.02, 2.0, 2.0))
    False
    >>> voxel_size_mismatch((4.0, 2.0, 2.0), (5.0, 2.0, 2.0))
    True
    >>> voxel_size_mismatch((4.0, 2.0, 2.0), None)
    False
    """
    if found is None:
        return False
    return not np.allclose(np.asarray(found, float), np.asarray(configured, float), rtol=rtol, atol=0)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


#: Fewest z planes a volume may have: a cell is a maximum along z too, and the
#: outermost planes are the border (see docs/detection.md).
MIN_PLANES = 3


def check_finite(planes: np.ndarray, z0: int, reader: Any) -> None:
    """Fail on NaN or infinite voxels, naming the planes (and their files) that hold them.

    Parameters
    ----------
    planes : ndarray
        Planes z0, z0 + 1, … of the source, (z, y, x).
    z0 : int
        Source plane index of ``planes[0]``.
    reader : VolumeReader
        The source (its ``path``, and ``files`` for one file per plane).

    Raises
    ------
    InputFileError
        If any voxel is not finite.
    """
    if not np.issubdtype(planes.dtype, np.floating):
        return
    bad = np.flatnonzero(~np.isfinite(planes).all(axis=(1, 2)))
    if not len(bad):
        return
    z = int(z0 + bad[0])
    n = int((~np.isfinite(planes[bad[0]])).sum())
    files = getattr(reader, "files", None)
    source_z = z + int(getattr(reader, "offset", (0,))[0])  # the reader's crop starts here
    where = f"{files[source_z]}" if files is not None and source_z < len(files) else f"{reader.path}"
    raise InputFileError(
        f"{where}: plane z={z} holds {n} NaN or infinite voxel(s) (planes {', '.join(str(z0 + b) for b in bad[:5])}"
        f"{' …' if len(bad) > 5 else ''} of this slab); expected finite intensities — replace them (e.g. by 0) "
        "or crop the plane away"
    )


def ingest_channel(
    reader: Any,
    out_path: str | Path,
    voxel_size: Sequence[float],
    chunks: Sequence[int] = DEFAULT_CHUNKS,
    n_levels: int = 4,
    name: str = "image",
    *,
    source: dict | None = None,
    orientation: Any = None,
) -> Path:
    """Copy a source volume into an OME-Zarr image with a viewer pyramid, slab by slab.

    ``source``, ``orientation`` and the reader's description are stored under
    ``attrs["spimflow"]``, so the image says where it came from. On any error nothing is
    left at ``out_path`` (an older complete output there is kept).

    Parameters
    ----------
    reader : VolumeReader
        Lazy reader of the source (see :mod:`spimflow.io.readers`).
    out_path : str or Path
        OME-Zarr folder to write.
    voxel_size : sequence of float
        Voxel size (z, y, x), µm (the configured, authoritative value).
    chunks : sequence of int, optional
        Zarr chunk shape (z, y, x), voxels; ``chunks[0]`` planes are read at a time.
    n_levels : int, optional
        Pyramid levels, including level 0.
    name : str, optional
        Image name (also used in log messages).
    source : dict, optional
        The source config as JSON; default the reader's format and path.
    orientation : object, optional
        The configured orientation, stored as given.

    Returns
    -------
    Path
        ``out_path``.
    """
    out_path = Path(out_path)
    shape = tuple(reader.shape)
    if len(shape) != 3 or shape[0] < MIN_PLANES:
        raise InputFileError(
            f"{reader.path}: the volume has shape {shape}, {shape[0] if shape else 0} z plane(s); spimflow works "
            f"in 3D and needs at least {MIN_PLANES} planes (z, y, x) — check the source (a single image, or the "
            "wrong pattern?) and its crop"
        )
    extra = _jsonable(
        {
            "source": source if source is not None else {"format": reader.format, "path": str(reader.path)},
            "reader": reader.describe(),
            "voxel_size": list(voxel_size),
            "orientation": orientation,
        }
    )
    nbytes = reader.nbytes
    t0 = time.perf_counter()
    with atomic_path(out_path) as tmp:
        level0 = create_ome_zarr(tmp, shape, reader.dtype, voxel_size, chunks, n_levels, name, extra)
        slab = int(level0.chunks[0])
        next_report = 0.1
        for z0 in range(0, shape[0], slab):
            z1 = min(z0 + slab, shape[0])
            planes = reader.read(z0, z1)
            check_finite(planes, z0, reader)
            level0[z0:z1] = planes
            if z1 / shape[0] >= next_report:
                log.info("%s: %d/%d planes (%.0f%%)", name, z1, shape[0], 100 * z1 / shape[0])
                next_report += 0.1
        t1 = time.perf_counter()
        log.info(
            "%s: level 0 %s %s written in %.1f s (%.0f MB/s)",
            name,
            shape,
            reader.dtype,
            t1 - t0,
            nbytes / 1e6 / max(t1 - t0, 1e-9),
        )
        build_pyramid(tmp, slab=slab)
        log.info("%s: pyramid built in %.1f s", name, time.perf_counter() - t1)
    return out_path
