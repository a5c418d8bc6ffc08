"""The reader base: :class:`VolumeReader` and the helpers every format's reader shares
(crops, native byte order, natural file order, contiguous raw reads).

The format modules (``tiff_readers``, ``itk_readers``, ``ims_reader``, ``zarr_reader``)
import this module; :mod:`spimflow.io.readers` maps each source format to its opener.
See :mod:`spimflow.io.readers` for the conventions every reader follows.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spimflow.errors import InputFileError, SpimflowError

AXES = ("z", "y", "x")


def native(dtype: Any) -> np.dtype:
    """The same dtype in native byte order (readers always return native arrays)."""
    dtype = np.dtype(dtype)
    return dtype if dtype.byteorder in ("=", "|") else dtype.newbyteorder("=")


def natural_key(name: str) -> tuple:
    """Sort key for natural order: ``Z9`` before ``Z10`` (digit runs compare as numbers)."""
    return tuple(
        (0, int(tok), tok) if tok.isdigit() else (1, 0, tok.lower()) for tok in re.split(r"(\d+)", name) if tok
    )


def _resolve_crop(
    crop: Any, full_shape: tuple[int, int, int], path: Path
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Validate a crop against the volume; return (offset, shape) of the cropped volume.

    ``crop`` is a :class:`spimflow.config.Crop`, a mapping with keys z/y/x holding
    ``[start, stop)`` pairs (or None), or None for the whole volume.
    """
    if crop is None:
        return (0, 0, 0), full_shape
    get = crop.get if isinstance(crop, dict) else (lambda k: getattr(crop, k, None))
    offset, shape = [], []
    for axis, name in enumerate(AXES):
        rng = get(name)
        n = full_shape[axis]
        if rng is None:
            offset.append(0)
            shape.append(n)
            continue
        start, stop = int(rng[0]), int(rng[1])
        if not (0 <= start < stop <= n):
            raise InputFileError(
                f"crop.{name} = [{start}, {stop}) is outside the volume: {path} has shape "
                f"(z, y, x) = {tuple(full_shape)}, so crop.{name} must satisfy 0 ≤ start < stop ≤ {n}"
            )
        offset.append(start)
        shape.append(stop - start)
    return tuple(offset), tuple(shape)  # type: ignore[return-value]


def _bounds(s: slice | int, n: int, axis: str) -> tuple[int, int, slice | None]:
    """Bounding [lo, hi) of an index along an axis of length n, plus the local slice to apply.

    The local slice is None when the bounding range is exactly what was asked for.
    """
    if isinstance(s, (int, np.integer)):
        i = int(s) + n if s < 0 else int(s)
        if not 0 <= i < n:
            raise IndexError(f"index {int(s)} is out of range for axis {axis} of length {n}")
        return i, i + 1, None
    if not isinstance(s, slice):
        raise TypeError(f"axis {axis}: expected an int or a slice, got {type(s).__name__}")
    rng = range(*s.indices(n))
    if len(rng) == 0:
        return 0, 0, None
    lo, hi = min(rng), max(rng) + 1
    if rng.step == 1:
        return lo, hi, None
    stop = rng.stop - lo
    return lo, hi, slice(rng.start - lo, stop if stop >= 0 else None, rng.step)


class VolumeReader(ABC):
    """Base of every reader: crop handling, range checks, error wrapping.

    Subclasses set ``full_shape`` (uncropped z, y, x), ``dtype`` and ``file_voxel_size``
    and implement :meth:`_read_raw`, which receives *uncropped* half-open ranges with
    step 1 and returns exactly that block as a native-byte-order array.
    """

    format: str = "?"

    def __init__(
        self,
        path: str | Path,
        full_shape: Sequence[int],
        dtype: Any,
        file_voxel_size: Sequence[float] | None = None,
        crop: Any = None,
    ):
        self.path = Path(path)
        self.full_shape: tuple[int, int, int] = tuple(int(s) for s in full_shape)  # type: ignore[assignment]
        if len(self.full_shape) != 3:
            raise InputFileError(f"{self.path}: expected a 3D (z, y, x) volume, got shape {self.full_shape}")
        self.dtype = native(dtype)
        self.file_voxel_size = tuple(float(v) for v in file_voxel_size) if file_voxel_size is not None else None
        self.offset, self.shape = _resolve_crop(crop, self.full_shape, self.path)

    # -- what subclasses implement ---------------------------------------------------------
    @abstractmethod
    def _read_raw(self, z: tuple[int, int], y: tuple[int, int], x: tuple[int, int]) -> np.ndarray:
        """The (z, y, x) block of half-open ranges in full-volume (uncropped) voxels."""

    def close(self) -> None:  # noqa: B027 - optional hook: readers without open handles keep it
        """Release open file handles (readers are also context managers)."""

    # -- public API -------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return 3

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def read(self, z_start: int, z_stop: int, y: slice = slice(None), x: slice = slice(None)) -> np.ndarray:
        """Planes ``z_start:z_stop`` (cropped coordinates) restricted to ``y``/``x``; shape (nz, ny, nx)."""
        nz = self.shape[0]
        if not (0 <= z_start <= z_stop <= nz):
            raise IndexError(f"{self.path}: z range [{z_start}, {z_stop}) is outside [0, {nz})")
        y0, y1, ly = _bounds(y, self.shape[1], "y")
        x0, x1, lx = _bounds(x, self.shape[2], "x")
        out_shape = (z_stop - z_start, y1 - y0, x1 - x0)
        if 0 in out_shape:
            block = np.empty(out_shape, self.dtype)
        else:
            oz, oy, ox = self.offset
            rz, ry, rx = (z_start + oz, z_stop + oz), (y0 + oy, y1 + oy), (x0 + ox, x1 + ox)
            try:
                block = self._read_raw(rz, ry, rx)
            except SpimflowError:
                raise
            except Exception as exc:  # noqa: BLE001 - any library failure means unreadable data
                raise InputFileError(
                    f"{self.path}: could not read planes z = {rz[0]}..{rz[1] - 1} ({type(exc).__name__}: {exc}); "
                    f"the file may be truncated or corrupt"
                ) from exc
            if block.shape != out_shape:
                raise InputFileError(
                    f"{self.path}: read of planes z = {rz[0]}..{rz[1] - 1} returned shape "
                    f"{block.shape}, expected {out_shape}; the file may be truncated or corrupt"
                )
            block = block.astype(self.dtype, copy=False)
        if ly is not None or lx is not None:
            block = block[:, ly or slice(None), lx or slice(None)]
        return block

    def __getitem__(self, key: Any) -> np.ndarray:
        """Numpy-style basic indexing with ints, slices and Ellipsis (reads only what is asked)."""
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            i = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = key[:i] + (slice(None),) * (3 - len(key) + 1) + key[i + 1 :]
        if len(key) > 3:
            raise IndexError(f"too many indices for a 3D volume: {key}")
        key = key + (slice(None),) * (3 - len(key))
        kz, ky, kx = key
        z0, z1, lz = _bounds(kz, self.shape[0], "z")
        y, x = ky, kx  # read() keeps an int index as a length-1 axis; dropped below
        if lz is None:
            out = self.read(z0, z1, y, x)
        else:  # strided z: one plane at a time, never the bounding range
            zs = range(z0, z1)[lz]
            out = np.concatenate([self.read(z, z + 1, y, x) for z in zs], axis=0) if len(zs) else self.read(0, 0, y, x)
        drop = tuple(a for a, k in enumerate((kz, ky, kx)) if isinstance(k, (int, np.integer)))
        if drop:
            out = out.reshape(tuple(s for a, s in enumerate(out.shape) if a not in drop))
        return out

    def iter_slabs(self, planes: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(z_start, block)`` for consecutive slabs of ``planes`` z planes."""
        if planes < 1:
            raise ValueError(f"planes must be ≥ 1, got {planes}")
        for z0 in range(0, self.shape[0], planes):
            yield z0, self.read(z0, min(z0 + planes, self.shape[0]))

    def describe(self) -> dict:
        """JSON-able provenance: format, file, full shape, crop offset."""
        return {
            "format": self.format,
            "path": str(self.path),
            "full_shape": list(self.full_shape),
            "crop_offset": list(self.offset),
            "shape": list(self.shape),
            "dtype": self.dtype.str,
            "file_voxel_size": list(self.file_voxel_size) if self.file_voxel_size else None,
        }

    def __enter__(self) -> VolumeReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}('{self.path}', shape={self.shape}, dtype={self.dtype}, "
            f"file_voxel_size={self.file_voxel_size})"
        )


def read_contiguous(
    fh,
    data_offset: int,
    file_dtype: np.dtype,
    full_shape: Sequence[int],
    z: tuple[int, int],
    y: tuple[int, int],
    x: tuple[int, int],
    path: Path,
) -> np.ndarray:
    """Read a (z, y, x) block of a C-ordered uncompressed volume stored at ``data_offset``.

    Reads whole rows: one contiguous read when all rows of the planes are wanted,
    otherwise one read per plane for rows ``y[0]:y[1]``. Returns native byte order.
    """
    _, ny, nx = (int(s) for s in full_shape)
    item = file_dtype.itemsize
    row, plane = nx * item, ny * nx * item
    nzr, nyr = z[1] - z[0], y[1] - y[0]
    out = np.empty((nzr, nyr, nx), dtype=file_dtype)
    spans = (
        [(data_offset + z[0] * plane, out)]
        if nyr == ny
        else [(data_offset + zi * plane + y[0] * row, out[i]) for i, zi in enumerate(range(*z))]
    )
    for pos, dest in spans:
        fh.seek(pos)
        buf = dest.reshape(-1).view(np.uint8)
        got = fh.readinto(buf)
        if got != buf.nbytes:
            raise InputFileError(
                f"{path}: file is truncated: needed {buf.nbytes} bytes at offset {pos} "
                f"(planes from z = {z[0]}) but only {got} were there"
            )
    if x != (0, nx):
        out = out[:, :, x[0] : x[1]]
    return out.astype(native(file_dtype), copy=False)
