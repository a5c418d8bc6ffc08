"""Lazy, range-aware readers for every input format a channel source can have.

One entry point, :func:`open_source`, turns a source model from
:mod:`spimflow.config` into a :class:`VolumeReader`. A reader never loads the whole
volume: :meth:`VolumeReader.read` reads only the z planes (and y/x region) asked for,
so memory scales with the slab a caller requests, not with the raw data.

Conventions (see ``docs/formats.md``):

* Every array a reader returns is indexed (z, y, x) in native byte order. Formats that
  store x fastest and list sizes as (x, y, z) (NRRD, MetaImage, ITK) are converted here.
* ``shape`` is the shape *after* the configured crop; all read coordinates are relative
  to the cropped volume (``read(0, 1)`` is the first plane of the crop).
* ``file_voxel_size`` is the (z, y, x) voxel size in µm found in the file's own header,
  or ``None`` when the format has none. It is informational only: the configured voxel
  size is authoritative.
* Bad input raises :class:`~spimflow.errors.InputFileError` naming the file (or the
  config key, for a crop) and what was expected.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from spimflow.errors import InputFileError
from spimflow.io.base import AXES, VolumeReader, native, natural_key, read_contiguous
from spimflow.io.ims_reader import ImarisReader
from spimflow.io.itk_readers import MetaImageReader, open_nrrd
from spimflow.io.tiff_readers import (
    PlaneFilesReader,
    TiffStackReader,
    list_folder_files,
    list_pattern_files,
)
from spimflow.io.zarr_reader import ZarrReader

__all__ = ["AXES", "OPENERS", "VolumeReader", "native", "natural_key", "open_source", "read_contiguous"]


def _pattern(source: Any, base: Path, crop: Any) -> VolumeReader:
    files = list_pattern_files(source.path, base, allow_gaps=getattr(source, "allow_gaps", False))
    return PlaneFilesReader(files, base / source.path, crop=crop, fmt="pattern")


def _folder(source: Any, base: Path, crop: Any) -> VolumeReader:
    return PlaneFilesReader(list_folder_files(base / source.path), base / source.path, crop=crop, fmt="folder")


def _ims(source: Any, base: Path, crop: Any) -> VolumeReader:
    return ImarisReader(
        base / source.path,
        resolution_level=source.resolution_level,
        timepoint=source.timepoint,
        channel=source.channel,
        crop=crop,
    )


#: source format (``channels.<name>.source.format``) → opener(source, base folder, crop)
OPENERS: dict[str, Callable[[Any, Path, Any], VolumeReader]] = {
    "tiff": lambda source, base, crop: TiffStackReader(base / source.path, crop=crop),
    "pattern": _pattern,
    "folder": _folder,
    "nrrd": lambda source, base, crop: open_nrrd(base / source.path, crop=crop),
    "mhd": lambda source, base, crop: MetaImageReader(base / source.path, crop=crop),
    "ims": _ims,
    "zarr": lambda source, base, crop: ZarrReader(base / source.path, array=source.array, crop=crop),
}


def open_source(source: Any, base_dir: str | Path = ".", crop: Any = None) -> VolumeReader:
    """Open a channel source (a model from :mod:`spimflow.config`) as a lazy reader.

    Relative paths are resolved against ``base_dir`` (Snakemake's working directory in
    a workflow run). ``crop`` is a :class:`spimflow.config.Crop` (or None).
    """
    fmt = getattr(source, "format", None)
    if fmt not in OPENERS:
        raise InputFileError(f"source.format: unknown source format {fmt!r}; expected one of {', '.join(OPENERS)}")
    return OPENERS[fmt](source, Path(base_dir), crop)
