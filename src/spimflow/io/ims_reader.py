"""Imaris ``.ims`` reader (HDF5, read with h5py slicing).

Layout used (Imaris 5.5 file format)::

    DataSet/ResolutionLevel {r}/TimePoint {t}/Channel {c}/Data     (z, y, x), chunk-padded
    DataSet/ResolutionLevel {r}/TimePoint {t}/Channel {c}          attrs ImageSizeX/Y/Z: true size
    DataSetInfo/Image                                              attrs X, Y, Z (level-0 size),
                                                                   ExtMin0..2 / ExtMax0..2 (µm; 0 = x)

``Data`` is usually larger than the image (padded to whole chunks): only the
``ImageSize`` corner is the image. Imaris stores attribute values as arrays of single
characters (e.g. ``[b'4', b'5']`` for 45); :func:`ims_attr` decodes those.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from spimflow.errors import InputFileError
from spimflow.io.base import VolumeReader


def ims_attr(attrs: Any, key: str) -> str | None:
    """An Imaris attribute as text (joins arrays of single bytes/chars); None when absent."""
    if key not in attrs:
        return None
    v = attrs[key]
    if isinstance(v, bytes):
        return v.decode("latin-1").strip("\x00").strip()
    if isinstance(v, str):
        return v.strip()
    arr = np.asarray(v)
    if arr.dtype.kind == "S":
        return b"".join(arr.ravel().tolist()).decode("latin-1").strip("\x00").strip()
    if arr.dtype.kind == "U":
        return "".join(arr.ravel().tolist()).strip()
    if arr.dtype.kind == "O":
        return "".join(x.decode("latin-1") if isinstance(x, bytes) else str(x) for x in arr.ravel()).strip()
    return str(arr.ravel()[0]) if arr.size else None


def _ims_number(attrs: Any, key: str, where: str, path: Path) -> float | None:
    text = ims_attr(attrs, key)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise InputFileError(f"{path}: attribute {key!r} of {where} is {text!r}, expected a number") from None


def _members(group: Any, prefix: str) -> list[int]:
    return sorted(int(k[len(prefix) :]) for k in group if k.startswith(prefix) and k[len(prefix) :].strip().isdigit())


class ImarisReader(VolumeReader):
    """One resolution level, time point and channel of an Imaris file."""

    format = "ims"

    def __init__(
        self, path: str | Path, resolution_level: int = 0, timepoint: int = 0, channel: int = 0, crop: Any = None
    ):
        path = Path(path)
        if not path.is_file():
            raise InputFileError(f"{path}: file not found (expected an Imaris .ims file)")
        try:
            self._h5 = h5py.File(path, "r")
        except OSError as exc:
            raise InputFileError(f"{path}: not a readable Imaris/HDF5 file ({exc})") from exc
        try:
            self._open(path, resolution_level, timepoint, channel)
            super().__init__(path, self._size, self._ds.dtype, self._voxel, crop)
        except BaseException:
            self._h5.close()
            raise
        self.selection = {"resolution_level": resolution_level, "timepoint": timepoint, "channel": channel}

    def _open(self, path: Path, r: int, t: int, c: int) -> None:
        h5 = self._h5
        if "DataSet" not in h5:
            raise InputFileError(
                f"{path}: no 'DataSet' group; expected the Imaris layout "
                "DataSet/ResolutionLevel r/TimePoint t/Channel c/Data"
            )
        steps = [
            ("ResolutionLevel ", r, "source.resolution_level"),
            ("TimePoint ", t, "source.timepoint"),
            ("Channel ", c, "source.channel"),
        ]
        group, where = h5["DataSet"], "DataSet"
        for prefix, idx, key in steps:
            name = f"{prefix}{idx}"
            if name not in group:
                raise InputFileError(
                    f"{path}: {where}/{name} not found ({key} = {idx}); available: {_members(group, prefix) or 'none'}"
                )
            group, where = group[name], f"{where}/{name}"
        if "Data" not in group or not hasattr(group["Data"], "shape"):
            raise InputFileError(f"{path}: {where}/Data dataset not found")
        ds = group["Data"]
        if ds.ndim != 3:
            raise InputFileError(f"{path}: {where}/Data has {ds.ndim} dimensions, expected 3 (z, y, x)")
        size = [_ims_number(group.attrs, f"ImageSize{a}", where, path) for a in "ZYX"]
        info = h5.get("DataSetInfo/Image")
        if any(s is None for s in size):
            if r == 0 and info is not None and all(ims_attr(info.attrs, a) is not None for a in "ZYX"):
                size = [_ims_number(info.attrs, a, "DataSetInfo/Image", path) for a in "ZYX"]
            else:
                size = list(ds.shape)  # no size recorded: the whole dataset is the image
        size = [int(s) for s in size]  # type: ignore[arg-type]
        if any(s > d for s, d in zip(size, ds.shape)) or min(size) < 1:
            raise InputFileError(
                f"{path}: image size (z, y, x) = {tuple(size)} from the attributes ImageSizeZ/Y/X "
                f"of {where} does not fit in its Data of shape {ds.shape}"
            )
        self._ds, self._size, self._where = ds, tuple(size), where
        self._voxel = None
        if info is not None:
            ext = [
                (
                    _ims_number(info.attrs, f"ExtMin{i}", "DataSetInfo/Image", path),
                    _ims_number(info.attrs, f"ExtMax{i}", "DataSetInfo/Image", path),
                )
                for i in (2, 1, 0)
            ]
            if all(lo is not None and hi is not None for lo, hi in ext):
                self._voxel = tuple(abs(hi - lo) / n for (lo, hi), n in zip(ext, size))  # type: ignore[operator]

    def _read_raw(self, z, y, x):
        return np.asarray(self._ds[z[0] : z[1], y[0] : y[1], x[0] : x[1]])

    def close(self) -> None:
        self._h5.close()

    def describe(self) -> dict:
        d = super().describe()
        d.update(self.selection)
        return d
