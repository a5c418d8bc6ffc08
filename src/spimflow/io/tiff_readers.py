"""TIFF readers: one multi-page stack, or one file per z plane (pattern or folder).

* :class:`TiffStackReader` — a multi-page TIFF / OME-TIFF / ImageJ stack whose pages
  are z planes. Uncompressed contiguous data is read straight from the file by offset
  (any range of planes or rows in one seek); otherwise one page at a time with tifffile.
* :class:`PlaneFilesReader` — numbered single-plane files, one file per z plane.

Both check every plane's header at open time (shape, dtype, and that the pixel data
the header points to lies inside the file), so a truncated plane is reported before
a long run starts, and again, naming the file, if reading it fails.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from spimflow.errors import InputFileError
from spimflow.io.base import VolumeReader, natural_key, read_contiguous

log = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")

_UNIT_TO_UM = {
    "m": 1e6,
    "mm": 1e3,
    "cm": 1e4,
    "µm": 1.0,
    "um": 1.0,
    "\u03bcm": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "nm": 1e-3,
    "\\u00B5m": 1.0,
}


# -- listing plane files --------------------------------------------------------------------


def _plane_number(name: str, rx: re.Pattern) -> int | None:
    """The z number of a plane file: the regex group ``z`` (or its only group), else the last integer."""
    m = rx.fullmatch(name)
    if m is not None:
        if "z" in rx.groupindex and m.group("z") is not None:
            txt = m.group("z")
        elif rx.groups == 1 and m.group(1) is not None:
            txt = m.group(1)
        else:
            txt = None
        if txt is not None:
            digits = re.findall(r"\d+", txt)
            if digits:
                return int(digits[-1])
    ints = re.findall(r"\d+", name)
    return int(ints[-1]) if ints else None


def list_pattern_files(pattern: str, base_dir: str | Path = ".", allow_gaps: bool = False) -> list[Path]:
    """Files in ``<base>/<folder of pattern>`` whose names fully match the pattern's regex, by z number.

    The z number is the named group ``z`` (or the only group) of the regex, else the last
    integer in the file name; numbers compare as integers (``Z9`` before ``Z10``).

    Parameters
    ----------
    pattern : str
        Folder plus regular expression of the file names.
    base_dir : str or Path, optional
        Folder the pattern is relative to.
    allow_gaps : bool, optional
        Missing plane numbers are an error (stacking without them would shift every later
        plane); with True each missing plane is the nearest plane below it, repeated, so
        every plane keeps its true z.

    Returns
    -------
    list of Path
        One file per z plane from the first to the last number.

    Raises
    ------
    InputFileError
        If the folder is missing, no file matches, two files share a number, or (without
        ``allow_gaps``) numbers are missing.
    """
    pat = Path(pattern)
    folder = Path(base_dir) / pat.parent
    try:
        rx = re.compile(pat.name)
    except re.error as exc:
        raise InputFileError(f"source.path: '{pat.name}' is not a valid regular expression ({exc})") from None
    if not folder.is_dir():
        raise InputFileError(f"{folder}: folder not found (pattern source '{pattern}' expects its planes there)")
    names = sorted((p.name for p in folder.iterdir() if p.is_file()), key=natural_key)
    matched = [n for n in names if rx.fullmatch(n)]
    if not matched:
        example = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "") if names else "(folder is empty)"
        raise InputFileError(
            f"{folder}: no file name matches the regular expression '{pat.name}' "
            f"(pattern source '{pattern}'); files there: {example}"
        )
    numbered: dict[int, str] = {}
    for n in matched:
        z = _plane_number(n, rx)
        if z is None:
            raise InputFileError(f"{folder / n}: matches '{pat.name}' but has no number to order the planes by")
        if z in numbered:
            raise InputFileError(
                f"{folder}: files {numbered[z]!r} and {n!r} both have plane number {z}; "
                f"expected one file per z plane for pattern '{pat.name}'"
            )
        numbered[z] = n
    zs = sorted(numbered)
    missing = sorted(set(range(zs[0], zs[-1] + 1)) - set(zs))
    if missing and not allow_gaps:
        raise InputFileError(
            f"{folder}: plane numbers {zs[0]}..{zs[-1]} have gaps (missing {_ranges(missing)}); stacking without "
            "them would shift every later plane in z. Restore the missing planes, or set source.allow_gaps: true "
            "to repeat the plane below each gap (keeps the true z of every plane)"
        )
    if missing:
        log.warning("%s: missing planes %s are filled with the plane below each gap", folder, _ranges(missing))
    files, last = [], None
    for z in range(zs[0], zs[-1] + 1):
        last = numbered.get(z, last)
        files.append(folder / last)
    return files


def _ranges(numbers: list[int]) -> str:
    """Compact text of sorted integers, e.g. ``3, 7-9``.

    Parameters
    ----------
    numbers : list of int
        Sorted integers.

    Returns
    -------
    str

    Examples
    --------
    >>> _ranges([3, 7, 8, 9, 12])
    '3, 7-9, 12'
    """
    parts, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            parts.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ", ".join(parts)


def list_folder_files(folder: str | Path) -> list[Path]:
    """Every ``.tif``/``.tiff`` file (not hidden) in ``folder``, in natural name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(f"{folder}: folder not found (folder source expects one .tif file per z plane)")
    files = sorted(
        (
            p
            for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in TIFF_SUFFIXES and not p.name.startswith(".")
        ),
        key=lambda p: natural_key(p.name),
    )
    if not files:
        raise InputFileError(f"{folder}: no .tif/.tiff files in this folder (folder source expects one per z plane)")
    return files


# -- shared TIFF helpers ------------------------------------------------------------------------


def _data_end(page: Any) -> int:
    """End offset of a page's pixel data in the file (0 for pages without data)."""
    ends = [int(o) + int(c) for o, c in zip(page.dataoffsets, page.databytecounts) if c]
    return max(ends, default=0)


def _squeezed(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(s) for s in shape if s != 1) or (1,)


def _open_tiff(path: Path, what: str) -> tifffile.TiffFile:
    if not path.is_file():
        raise InputFileError(f"{path}: file not found (expected {what})")
    try:
        return tifffile.TiffFile(path)
    except Exception as exc:  # noqa: BLE001
        raise InputFileError(
            f"{path}: not a readable TIFF file ({type(exc).__name__}: {exc}); expected {what}"
        ) from exc


def _to_um(value: float, unit: str | None) -> float | None:
    factor = _UNIT_TO_UM.get((unit or "µm").strip().lower() if unit else "µm")
    return value * factor if factor is not None else None


def _ome_voxel_size(tif: tifffile.TiffFile) -> tuple[float, float, float] | None:
    """(z, y, x) µm from OME-XML ``Pixels`` PhysicalSize* (None when any is absent)."""
    xml = tif.ome_metadata
    if not xml:
        return None
    root = ET.fromstring(xml)
    pixels = next((el for el in root.iter() if el.tag.endswith("Pixels")), None)
    if pixels is None:
        return None
    out = []
    for ax in "ZYX":
        v = pixels.get(f"PhysicalSize{ax}")
        if v is None:
            return None
        um = _to_um(float(v), pixels.get(f"PhysicalSize{ax}Unit"))
        if um is None:
            return None
        out.append(um)
    return tuple(out)  # type: ignore[return-value]


def _imagej_voxel_size(tif: tifffile.TiffFile) -> tuple[float, float, float] | None:
    """(z, y, x) µm from ImageJ ``spacing`` + X/YResolution tags (None unless all known)."""
    meta = tif.imagej_metadata or {}
    if "spacing" not in meta or "unit" not in meta:
        return None
    page = tif.pages.first
    xr, yr = page.tags.get("XResolution"), page.tags.get("YResolution")
    if xr is None or yr is None:
        return None
    unit = str(meta["unit"])
    vals = [float(meta["spacing"]), yr.value[1] / yr.value[0], xr.value[1] / xr.value[0]]
    um = [_to_um(v, unit) for v in vals]
    return None if any(u is None for u in um) else tuple(um)  # type: ignore[return-value]


def tiff_voxel_size(tif: tifffile.TiffFile) -> tuple[float, float, float] | None:
    """Voxel size (z, y, x) in µm recorded by OME-TIFF or ImageJ metadata, if any."""
    try:
        if tif.is_ome:
            return _ome_voxel_size(tif)
        if tif.is_imagej:
            return _imagej_voxel_size(tif)
    except Exception as exc:  # noqa: BLE001 - metadata is informational only
        log.warning("%s: could not parse voxel size metadata (%s)", tif.filehandle.path, exc)
    return None


# -- one multi-page stack ------------------------------------------------------------------------


class TiffStackReader(VolumeReader):
    """A multi-page TIFF (plain, OME-TIFF or ImageJ); each page is one z plane."""

    format = "tiff"

    def __init__(self, path: str | Path, crop: Any = None):
        path = Path(path)
        self._tif = _open_tiff(path, "a multi-page TIFF stack, one page per z plane")
        try:
            if not self._tif.series:
                raise InputFileError(f"{path}: no image in this TIFF file (no readable page); is the file complete?")
            series = self._tif.series[0]
            if len(self._tif.series) > 1:
                shapes = [f"{tuple(s.shape)} {s.dtype}" for s in self._tif.series[:4]]
                if not (self._tif.is_ome or self._tif.is_imagej or self._tif.is_shaped):
                    raise InputFileError(
                        f"{path}: pages differ in shape or dtype (series found: {', '.join(shapes)}); "
                        "expected every page to be a (y, x) plane of the same shape and dtype"
                    )
                log.warning(
                    "%s: %d image series in the file; reading only the first, %s",
                    path,
                    len(self._tif.series),
                    shapes[0],
                )
            shape = _squeezed(series.shape)
            if len(shape) == 2:
                shape = (1, *shape)
            if len(shape) != 3:
                raise InputFileError(
                    f"{path}: expected a 3D grayscale stack (z, y, x), found a series of shape "
                    f"{tuple(series.shape)} (axes {series.axes!r})"
                )
            plane_shape = _squeezed(series.keyframe.shape)
            if plane_shape != shape[1:]:
                raise InputFileError(
                    f"{path}: expected one grayscale (y, x) plane per page, but pages have shape "
                    f"{tuple(series.keyframe.shape)} for a stack of shape {shape}"
                )
            # tifffile reports the decoded (native) dtype; raw bytes on disk are in the file's byte order
            self._file_dtype = np.dtype(series.dtype).newbyteorder(self._tif.byteorder)
            self._offset = series.dataoffset  # None unless uncompressed and contiguous
            self._pages = None if self._offset is not None else series.pages
            size = path.stat().st_size
            if self._offset is not None:
                n_pages = len(self._tif.pages)  # parses every page header (cheap); ImageJ may omit them
                if n_pages < shape[0] and not self._tif.is_imagej:
                    raise InputFileError(
                        f"{path}: the stack declares {shape[0]} planes but only {n_pages} page "
                        "headers could be read; the file is truncated or corrupt"
                    )
                need = int(self._offset) + int(np.prod(shape)) * self._file_dtype.itemsize
                if need > size:
                    plane_bytes = shape[1] * shape[2] * self._file_dtype.itemsize
                    first_bad = max(0, (size - int(self._offset)) // plane_bytes)
                    raise InputFileError(
                        f"{path}: file is truncated: pixel data needs {need} bytes but the file "
                        f"has {size} (planes from z = {first_bad} are missing)"
                    )
            else:
                if len(self._pages) != shape[0]:
                    raise InputFileError(
                        f"{path}: the stack declares {shape[0]} planes but {len(self._pages)} "
                        "pages were found; the file may be truncated"
                    )
                for i in range(shape[0]):
                    try:
                        end = _data_end(self._pages[i])
                    except Exception as exc:  # noqa: BLE001
                        raise InputFileError(f"{path}: page {i} (plane z = {i}) is corrupt ({exc})") from exc
                    if end > size:
                        raise InputFileError(
                            f"{path}: file is truncated: page {i} (plane z = {i}) needs bytes up to "
                            f"{end} but the file has {size}"
                        )
            voxel = tiff_voxel_size(self._tif)
            self._fh = None
            super().__init__(path, shape, self._file_dtype, voxel, crop)
        except BaseException:
            self._tif.close()
            raise

    def _read_raw(self, z, y, x):
        if self._offset is not None:
            if self._fh is None:
                self._fh = open(self.path, "rb")
            return read_contiguous(self._fh, int(self._offset), self._file_dtype, self.full_shape, z, y, x, self.path)
        out = np.empty((z[1] - z[0], y[1] - y[0], x[1] - x[0]), self.dtype)
        for i, zi in enumerate(range(*z)):
            try:
                plane = self._pages[zi].asarray()
            except Exception as exc:  # noqa: BLE001
                raise InputFileError(
                    f"{self.path}: cannot read page {zi} (plane z = {zi}): "
                    f"{type(exc).__name__}: {exc}; the file may be truncated or corrupt"
                ) from exc
            out[i] = plane.reshape(self.full_shape[1:])[y[0] : y[1], x[0] : x[1]]
        return out

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._tif.close()


# -- one file per plane -------------------------------------------------------------------------------


def _plane_header(path: Path) -> tuple[tuple[int, int], np.dtype, int | None]:
    """(shape, dtype, contiguous data offset or None) of a single-plane TIFF, checking its data is in the file."""
    with _open_tiff(path, "a single-plane TIFF") as tif:
        try:
            series = tif.series[0]
            shape = _squeezed(series.shape)
            size = path.stat().st_size
            ends = [_data_end(p) for p in series.pages]
        except InputFileError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise InputFileError(f"{path}: corrupt TIFF header ({type(exc).__name__}: {exc})") from exc
        if len(shape) != 2:
            raise InputFileError(
                f"{path}: expected one grayscale (y, x) plane per file, found shape "
                f"{tuple(series.shape)} (axes {series.axes!r})"
            )
        if max(ends, default=0) > size:
            raise InputFileError(
                f"{path}: file is truncated: pixel data needs bytes up to {max(ends)} but the file has {size}"
            )
        return shape, np.dtype(series.dtype), series.dataoffset  # type: ignore[return-value]


class PlaneFilesReader(VolumeReader):
    """A z stack made of single-plane TIFF files (``files[i]`` is plane z = i)."""

    def __init__(self, files: Sequence[Path], path: str | Path, crop: Any = None, fmt: str = "pattern"):
        self.format = fmt
        self.files = [Path(f) for f in files]
        if not self.files:
            raise InputFileError(f"{path}: no plane files")
        shape0, dtype0, _ = _plane_header(self.files[0])
        for f in self.files[1:]:
            shape, dtype, _ = _plane_header(f)
            if shape != shape0 or dtype != dtype0:
                raise InputFileError(
                    f"{f}: plane has shape {shape} and dtype {dtype}, but the first plane "
                    f"{self.files[0].name} has shape {shape0} and dtype {dtype0}; every plane "
                    "must have the same shape and dtype"
                )
        with tifffile.TiffFile(self.files[0]) as tif:
            voxel = tiff_voxel_size(tif) if len(self.files) == 1 else None
        self._file_dtype = dtype0
        super().__init__(path, (len(self.files), *shape0), dtype0, voxel, crop)

    def read_plane(self, z: int) -> np.ndarray:
        """Full plane ``z`` (uncropped index) as a (y, x) array."""
        f = self.files[z]
        try:
            with tifffile.TiffFile(f) as tif:
                series = tif.series[0]
                plane = series.asarray()
        except Exception as exc:  # noqa: BLE001
            raise InputFileError(
                f"{f}: cannot read plane z = {z} ({type(exc).__name__}: {exc}); the file may be truncated or corrupt"
            ) from exc
        if plane.size != self.full_shape[1] * self.full_shape[2] or plane.dtype != self._file_dtype:
            raise InputFileError(
                f"{f}: plane z = {z} has shape {plane.shape} and dtype {plane.dtype}, expected "
                f"{self.full_shape[1:]} and {self._file_dtype}"
            )
        return plane.reshape(self.full_shape[1:])

    def _read_raw(self, z, y, x):
        out = np.empty((z[1] - z[0], y[1] - y[0], x[1] - x[0]), self.dtype)
        for i, zi in enumerate(range(*z)):
            out[i] = self.read_plane(zi)[y[0] : y[1], x[0] : x[1]]
        return out

    def describe(self) -> dict:
        d = super().describe()
        d.update(first_file=self.files[0].name, last_file=self.files[-1].name, n_files=len(self.files))
        return d
