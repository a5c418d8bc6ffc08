"""Zarr reader: a bare zarr array, or an OME-Zarr (NGFF 0.4 on zarr v2, 0.5 on v3) image.

For a group, ``array`` names the array to read; without it the group must carry OME
``multiscales`` metadata and its first dataset (full resolution) is read. Leading
singleton axes (t, c of a 5D OME-Zarr) are dropped; the last three axes are (z, y, x).
The voxel size is taken from the dataset's ``scale`` transform (µm, converting other
space units).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr

from spimflow.errors import InputFileError
from spimflow.io.base import VolumeReader

_UNIT_TO_UM = {
    "micrometer": 1.0,
    "micron": 1.0,
    "nanometer": 1e-3,
    "millimeter": 1e3,
    "centimeter": 1e4,
    "meter": 1e6,
    "angstrom": 1e-4,
}


def _ome(attrs: dict) -> dict:
    return attrs.get("ome", attrs)  # NGFF 0.5 nests under "ome"; 0.4 does not


def ome_voxel_size(attrs: dict, array_path: str) -> tuple[float, float, float] | None:
    """(z, y, x) µm of dataset ``array_path`` from OME multiscales metadata (None if absent)."""
    ms_list = _ome(attrs).get("multiscales") or []
    for ms in ms_list:
        for ds in ms.get("datasets", []):
            if str(ds.get("path")) != array_path:
                continue
            scale = None
            for tr in ds.get("coordinateTransformations", []):
                if tr.get("type") == "scale" and "scale" in tr:
                    scale = [float(v) for v in tr["scale"]]
            for tr in ms.get("coordinateTransformations", []) or []:
                if scale is not None and tr.get("type") == "scale" and "scale" in tr:
                    scale = [a * float(b) for a, b in zip(scale, tr["scale"])]
            if scale is None or len(scale) < 3:
                return None
            axes = ms.get("axes") or []
            units = [(a.get("unit") if isinstance(a, dict) else None) for a in axes][-3:] or [None] * 3
            factors = [_UNIT_TO_UM.get(u, 1.0) if u else 1.0 for u in units]
            return tuple(s * f for s, f in zip(scale[-3:], factors))  # type: ignore[return-value]
    return None


class ZarrReader(VolumeReader):
    format = "zarr"

    def __init__(self, path: str | Path, array: str | None = None, crop: Any = None):
        path = Path(path)
        if not path.exists():
            raise InputFileError(f"{path}: not found (expected a zarr array or OME-Zarr image)")
        try:
            node = zarr.open(str(path), mode="r")
        except Exception as exc:  # noqa: BLE001
            raise InputFileError(f"{path}: not a readable zarr store ({type(exc).__name__}: {exc})") from exc
        voxel = None
        if isinstance(node, zarr.Array):
            if array is not None:
                raise InputFileError(f"{path}: is a zarr array, not a group, so source.array ({array!r}) must be unset")
            arr = node
        else:
            attrs = dict(node.attrs)
            members = sorted(node.array_keys()) if hasattr(node, "array_keys") else []
            if array is None:
                try:
                    array = str(_ome(attrs)["multiscales"][0]["datasets"][0]["path"])
                except (KeyError, IndexError, TypeError):
                    raise InputFileError(
                        f"{path}: zarr group without OME 'multiscales' metadata; set source.array "
                        f"to one of its arrays: {members or 'none'}"
                    ) from None
            try:
                arr = node[array]
            except Exception:  # noqa: BLE001
                raise InputFileError(
                    f"{path}: no array {array!r} in this zarr group (source.array); arrays: {members or 'none'}"
                ) from None
            if not isinstance(arr, zarr.Array):
                raise InputFileError(f"{path}: {array!r} is a group, expected an array (source.array)")
            voxel = ome_voxel_size(attrs, array)
        shape = tuple(int(s) for s in arr.shape)
        lead = 0
        while len(shape) - lead > 3 and shape[lead] == 1:
            lead += 1
        shape = shape[lead:]
        if len(shape) == 2:
            shape = (1, *shape)
        if len(shape) != 3:
            raise InputFileError(
                f"{path}: expected a 3D (z, y, x) array (leading axes of size 1 allowed), "
                f"found shape {tuple(arr.shape)}"
            )
        self._arr, self._lead, self._is2d = arr, lead, arr.ndim - lead == 2
        self.array_path = array
        super().__init__(path, shape, np.dtype(arr.dtype), voxel, crop)

    def _read_raw(self, z, y, x):
        if self._is2d:
            return np.asarray(self._arr[(0,) * self._lead + (slice(*y), slice(*x))])[None]
        return np.asarray(self._arr[(0,) * self._lead + (slice(*z), slice(*y), slice(*x))])

    def describe(self) -> dict:
        d = super().describe()
        d["array"] = self.array_path
        return d
