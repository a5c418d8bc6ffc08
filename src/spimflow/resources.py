"""Memory requests of the workflow's jobs, from what each job really reads.

Every rule asks the scheduler for ``mem_mb`` computed here from the sizes of its inputs:
the plane size and slab height of a source (ingest), the atlas grid (registration, maps,
region tables, voxel statistics), the number of cells in a table, the read region of a
detection block (see :func:`spimflow.blocks.block_memory_mb`). A size is always what the
job reads, so it is capped by the volume: a chunk or block larger than the volume costs
what the volume costs. The workflow evaluates the requests when a job's inputs exist
(Snakemake shows ``<TBD>`` before, e.g. in a dry run).

Each estimate is the memory of the task's Python process with its libraries imported
(:data:`PROCESS_MB`) plus a number of bytes per byte of data held at the peak. The factors
were measured on the demo and on larger volumes (``benchmarks/job_memory.py`` prints the
request next to the measured peak of every job); ``tests/test_resources.py`` checks that
no demo job uses more than it asked for. With ``--retries``, every retry asks for half as
much again (:func:`for_attempt`), so a job killed for memory on a cluster comes back with
more.
"""

from __future__ import annotations

import lzma
import math
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

#: The task process before it reads data: Python with numpy, scipy, pandas, zarr,
#: SimpleITK and matplotlib imported (160–310 MB measured; the demo's lightest jobs peak at
#: 250–410 MB), with margin.
PROCESS_MB = 500

#: The request of a job whose input cannot be read (the job itself then fails with a
#: message naming the file).
FALLBACK_MB = 4000

#: Bytes of memory per byte of a table's numeric values at the peak of a table job
#: (pandas reads, sorts, copies and writes parquet and CSV).
TABLE_FACTOR = 8


def _mb(nbytes: float) -> float:
    return float(nbytes) / 1e6


def request(data_bytes: float, factor: float, extra_mb: float = 0.0) -> int:
    """A memory request: the task process plus ``factor`` bytes per byte of data, MB.

    Parameters
    ----------
    data_bytes : float
        Bytes of data the job holds at its peak (before ``factor``).
    factor : float
        Bytes of memory per byte of data (copies, temporaries, libraries' own buffers).
    extra_mb : float, optional
        Further fixed memory, MB.

    Returns
    -------
    int
        Memory, MB, rounded up to a multiple of 50.

    Examples
    --------
    >>> request(0, 1)
    500
    >>> request(100e6, 3)
    800
    """
    total = PROCESS_MB + extra_mb + factor * _mb(data_bytes)
    return int(50 * math.ceil(total / 50))


def for_attempt(mem_mb: int, attempt: int) -> int:
    """The request of a retry: half as much again for every earlier attempt.

    Parameters
    ----------
    mem_mb : int
        Request of the first attempt, MB.
    attempt : int
        Snakemake's attempt number (1 for the first run).

    Returns
    -------
    int
        Memory, MB.

    Examples
    --------
    >>> for_attempt(1000, 1), for_attempt(1000, 2), for_attempt(1000, 3)
    (1000, 1500, 2000)
    """
    return int(mem_mb * (1 + 0.5 * (max(1, int(attempt)) - 1)))


# -- sizes of what a job reads ------------------------------------------------------------


def voxels(shape: Sequence[int]) -> int:
    """Number of voxels of a shape."""
    return int(np.prod([int(s) for s in shape], dtype=np.int64))


def zarr_image_size(path: str | Path) -> tuple[tuple[int, ...], int, tuple[int, ...]]:
    """Shape, bytes per voxel and chunk shape of an OME-Zarr image's full-resolution level.

    Parameters
    ----------
    path : str or Path
        OME-Zarr folder written by spimflow.

    Returns
    -------
    tuple
        ``(shape, itemsize, chunks)``; only metadata is read.
    """
    from spimflow.io.omezarr import open_ome_zarr

    arr = open_ome_zarr(path).array
    return tuple(int(s) for s in arr.shape), int(arr.dtype.itemsize), tuple(int(c) for c in arr.chunks)


def table_size(path: str | Path) -> tuple[int, int]:
    """Rows and columns of a parquet table (from its footer, without reading the data).

    Parameters
    ----------
    path : str or Path
        Parquet file.

    Returns
    -------
    tuple of int
        ``(rows, columns)``.
    """
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(str(path)).metadata
    return int(meta.num_rows), int(meta.num_columns)


def tables_bytes(paths: Sequence[str | Path]) -> float:
    """Bytes of the values of parquet tables held as 8-byte numbers."""
    return float(sum(rows * cols * 8 for rows, cols in (table_size(p) for p in paths)))


def _tiff_header(source) -> tuple[tuple[int, ...], int]:
    import tifffile

    with tifffile.TiffFile(source) as tif:
        series = tif.series[0]
        return tuple(int(s) for s in series.shape), int(np.dtype(series.dtype).itemsize)


@lru_cache(maxsize=64)
def _volume_header(path: str, mtime: float) -> tuple[tuple[int, ...], int]:
    import io

    import SimpleITK as sitk

    from spimflow.atlas.loaders import _suffix

    suffix = _suffix(Path(path))  # the atlas loader's own reading of the file type
    if suffix in (".tif", ".tiff"):
        return _tiff_header(path)
    if suffix in (".tif.lzma", ".tiff.lzma"):
        return _tiff_header(io.BytesIO(lzma.decompress(Path(path).read_bytes())))
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.ReadImageInformation()
    shape = tuple(int(s) for s in reversed(reader.GetSize()))
    itemsize = sitk.GetArrayFromImage(sitk.Image([1] * reader.GetDimension(), reader.GetPixelID())).itemsize
    return shape, int(itemsize)


def volume_file_size(path: str | Path) -> tuple[tuple[int, ...], int]:
    """Shape and bytes per voxel of an atlas volume file, from its header.

    Parameters
    ----------
    path : str or Path
        ``.tif``/``.tiff``, ``.tif.lzma`` (decompressed to read the header), ``.nrrd``,
        ``.mhd``/``.mha``, ``.nii``/``.nii.gz``.

    Returns
    -------
    tuple
        ``(shape, itemsize)``.
    """
    p = Path(path)
    return _volume_header(str(p), p.stat().st_mtime)


def atlas_grid(atlas_cfg, base: str | Path = ".") -> tuple[int, tuple[float, float, float]]:
    """Voxels and voxel size (z, y, x) µm of an atlas's grid, from its metadata or file header.

    Parameters
    ----------
    atlas_cfg : AtlasConfig
        The atlas config.
    base : str or Path, optional
        Folder relative paths start from.

    Returns
    -------
    tuple
        ``(voxels, voxel_size)``.
    """
    if atlas_cfg.format == "brainglobe":
        from spimflow.atlas.loaders import _read_metadata

        meta = _read_metadata(atlas_cfg.folder(base))
        return voxels(meta["shape"]), tuple(float(v) for v in meta["resolution"])
    shape, _ = volume_file_size(Path(base) / atlas_cfg.annotation)
    return voxels(shape), tuple(float(v) for v in atlas_cfg.voxel_size)


def voxels_at(shape: Sequence[int], voxel_size: Sequence[float], target_voxel_size: Sequence[float]) -> int:
    """Voxels of a volume of ``shape`` at ``voxel_size`` once resampled to ``target_voxel_size``
    (any axis order: only the volume's extent counts).

    Examples
    --------
    >>> voxels_at((100, 200, 200), (10.0, 5.0, 5.0), (25.0, 25.0, 25.0))
    64000
    """
    um = float(np.prod([n * v for n, v in zip(shape, voxel_size)]))
    per = float(np.prod(target_voxel_size))
    return int(math.ceil(um / per))


# -- the estimates, one per kind of job ---------------------------------------------------


def ingest_mb(plane_shape: Sequence[int], itemsize: int, slab_planes: int, n_planes: int) -> int:
    """Memory of ingesting one channel: a slab of source planes read, checked, written and
    averaged into the viewer pyramid (a few copies of the slab, float for the pyramid).

    Parameters
    ----------
    plane_shape : sequence of int
        (y, x) of a plane after the crop.
    itemsize : int
        Bytes per source voxel.
    slab_planes : int
        Planes read at a time (``steps.ingest.chunks[0]``).
    n_planes : int
        Planes in the volume (caps the slab).

    Returns
    -------
    int
        Memory, MB.

    Examples
    --------
    >>> ingest_mb((2048, 2048), 2, 16, 1000)
    1600
    >>> ingest_mb((2048, 2048), 2, 1000, 16) == ingest_mb((2048, 2048), 2, 16, 16)
    True
    """
    slab = min(int(slab_planes), int(n_planes)) * voxels(plane_shape)
    return request(slab * itemsize, 4, extra_mb=_mb(slab * 4 * 2))


def resample_mb(raw_shape: Sequence[int], raw_itemsize: int, out_voxels: int, read_planes: int = 16) -> int:
    """Memory of resampling one channel to the atlas grid: the output (float32, twice for
    the final transpose), ``read_planes`` raw planes as float and the filtered slabs.

    Parameters
    ----------
    raw_shape : sequence of int
        Raw (z, y, x) shape.
    raw_itemsize : int
        Bytes per raw voxel.
    out_voxels : int
        Voxels of the resampled image (the atlas grid, up to the sample's extent).
    read_planes : int, optional
        Raw planes read at a time (capped by the volume).

    Returns
    -------
    int
        Memory, MB.
    """
    planes = min(int(read_planes), int(raw_shape[0])) * voxels(raw_shape[1:])
    return request(out_voxels * 4 * 2 + planes * (raw_itemsize + 4 * 4), 1.5)


#: Registration's fixed cost beyond :data:`PROCESS_MB`: itk-elastix's libraries and thread
#: buffers (the demo's tiny registration peaks at 1.17 GB).
REGISTER_FIXED_MB = 900

#: Bytes per voxel of the larger of atlas grid and resampled sample: both images in float,
#: elastix's pyramids and gradients, the warped annotation and reference (measured ~30 on
#: a 15-Mvoxel Allen-based case: 1.62 GB peak; twice that here).
REGISTER_BYTES_PER_VOXEL = 60


def register_mb(atlas_voxels: int, sample_voxels: int, channel_correction: bool = False) -> int:
    """Memory of registering the resampled autofluorescence (and signal) to the atlas.

    Parameters
    ----------
    atlas_voxels : int
        Voxels of the atlas grid.
    sample_voxels : int
        Voxels of the resampled autofluorescence.
    channel_correction : bool, optional
        Whether the signal is registered to the autofluorescence too.

    Returns
    -------
    int
        Memory, MB.

    Examples
    --------
    >>> register_mb(10_000_000, 15_000_000)
    2300
    """
    n = max(int(atlas_voxels), int(sample_voxels))
    factor = REGISTER_BYTES_PER_VOXEL * (1.5 if channel_correction else 1.0)
    return request(n, factor, extra_mb=REGISTER_FIXED_MB)


def overlay_mb(slab_voxels: int, atlas_voxels: int) -> int:
    """Memory of the atlas-regions overlay on the raw grid: a slab of overlay voxels mapped
    through the transform (~100 bytes each), the atlas volumes and the elastix chain.

    Parameters
    ----------
    slab_voxels : int
        Overlay voxels mapped at a time (capped by the overlay's size).
    atlas_voxels : int
        Voxels of the atlas grid.

    Returns
    -------
    int
        Memory, MB.
    """
    return request(slab_voxels * 100 + atlas_voxels * 16, 1.5)


def table_job_mb(table_bytes: float, atlas_voxels: int = 0, atlas_copies: int = 0) -> int:
    """Memory of a job on cell tables (gather, thresholds, QC, annotation projects, region
    tables, atlas coordinates): the tables' values several times over, plus the atlas volume
    ``atlas_copies`` times (8 bytes per voxel) when the job reads it.

    Parameters
    ----------
    table_bytes : float
        Bytes of the input tables' values (see :func:`tables_bytes`).
    atlas_voxels : int, optional
        Voxels of the atlas grid the job reads.
    atlas_copies : int, optional
        Copies of the atlas grid the job holds (annotation, hemispheres, masks, fields).

    Returns
    -------
    int
        Memory, MB.

    Examples
    --------
    >>> table_job_mb(0)
    500
    >>> table_job_mb(100e6) > table_job_mb(10e6)
    True
    """
    return request(table_bytes * TABLE_FACTOR + atlas_voxels * 8 * atlas_copies, 1)


def maps_mb(atlas_voxels: int, n_maps: int, table_bytes: float) -> int:
    """Memory of the density maps: every map in float64 at once (and its float32 copy), the
    annotation and hemispheres, and the cells."""
    return request(atlas_voxels * (n_maps * 12 + 16) + table_bytes * TABLE_FACTOR, 1.5)


def voxel_stats_mb(atlas_voxels: int, n_samples: int) -> int:
    """Memory of the voxel-wise group test: every brain's map in float64, the eight result
    maps, the annotation and the masks."""
    return request(atlas_voxels * (n_samples * 8 + 8 * 8 + 24), 1.5)


def slab_job_mb(slab_voxels: int, itemsize: int, factor: float = 4) -> int:
    """Memory of a job that streams a volume slab by slab (the block plan's emptiness check,
    the illumination field): ``factor`` copies of one slab."""
    return request(slab_voxels * max(int(itemsize), 4), factor)


#: The demo's synthetic brain is made plane by plane; its peak is set by the preset's plane
#: size and the atlas it is drawn from (measured: small 252 MB, large 310 MB), with margin.
DEMO_MB = {"small": 600, "large": 800}


def demo_mb(preset: str) -> int:
    """Memory of making the embedded demo of a preset, MB."""
    return DEMO_MB.get(preset, max(DEMO_MB.values()))


# -- the requests of the workflow's rules (sizes read from the job's inputs) --------------


def ingest_request(channel, ingest_params, base: str | Path = ".") -> int:
    """``mem_mb`` of rule ingest: the source's plane size and dtype from its header (after
    the crop), slabs of ``steps.ingest.chunks[0]`` planes.

    Parameters
    ----------
    channel : Channel
        The channel config (source, crop).
    ingest_params : IngestParams
        The ingest settings (chunks).
    base : str or Path, optional
        Folder relative paths start from.

    Returns
    -------
    int
        Memory, MB.
    """
    from spimflow.io.readers import open_source

    with open_source(channel.source, base_dir=base, crop=channel.crop) as reader:
        shape, itemsize = tuple(reader.shape), int(np.dtype(reader.dtype).itemsize)
    return ingest_mb(shape[1:], itemsize, ingest_params.chunks[0], shape[0])


def resample_request(channel, atlas_cfg, raw_path: str | Path, base: str | Path = ".") -> int:
    """``mem_mb`` of rule resample: the raw image's shape and the atlas voxel size."""
    shape, itemsize, _ = zarr_image_size(raw_path)
    _, atlas_vs = atlas_grid(atlas_cfg, base)
    return resample_mb(shape, itemsize, voxels_at(shape, channel.voxel_size, atlas_vs))


def register_request(registration, atlas_cfg, autofluorescence_path: str | Path, base: str | Path = ".") -> int:
    """``mem_mb`` of rule register: the atlas grid and the resampled autofluorescence."""
    n_atlas, _ = atlas_grid(atlas_cfg, base)
    shape, _, _ = zarr_image_size(autofluorescence_path)
    return register_mb(n_atlas, voxels(shape), bool(registration.channel_correction))


def overlay_request(atlas_cfg, signal_path: str | Path, base: str | Path = ".") -> int:
    """``mem_mb`` of rule atlas_overlay: the overlay grid's slabs and the atlas."""
    from spimflow.io.omezarr import open_ome_zarr
    from spimflow.steps.cells_atlas import OVERLAY_SLAB_VOXELS, overlay_factor

    raw = open_ome_zarr(signal_path)  # metadata only: shape and voxel size
    shape, raw_vs = tuple(raw.shape), raw.voxel_size
    n_atlas, atlas_vs = atlas_grid(atlas_cfg, base)
    factor = overlay_factor(raw_vs, atlas_vs)
    overlay = [-(-n // f) for n, f in zip(shape, factor)]
    plane = voxels(overlay[1:])
    slab = min(voxels(overlay), max(plane, (OVERLAY_SLAB_VOXELS // max(1, plane)) * plane))
    return overlay_mb(slab, n_atlas)


def slab_request(image_path: str | Path, factor: float = 4) -> int:
    """``mem_mb`` of a job that streams an image by chunk slabs (the block plan's emptiness
    check, the illumination field, the QC overlay)."""
    shape, itemsize, chunks = zarr_image_size(image_path)
    return slab_job_mb(min(chunks[0], shape[0]) * voxels(shape[1:]), itemsize, factor)


def table_request(
    table_paths: Sequence[str | Path], atlas_cfg=None, atlas_copies: int = 3, base: str | Path = "."
) -> int:
    """``mem_mb`` of a job on cell tables, with the atlas's volumes when it reads them."""
    n_atlas = atlas_grid(atlas_cfg, base)[0] if atlas_cfg is not None else 0
    return table_job_mb(tables_bytes(table_paths), n_atlas, atlas_copies)


def maps_request(atlas_cfg, cells_path: str | Path, n_maps: int, base: str | Path = ".") -> int:
    """``mem_mb`` of rule density_maps: the atlas grid times the maps made, and the cells."""
    n_atlas, _ = atlas_grid(atlas_cfg, base)
    return maps_mb(n_atlas, n_maps, tables_bytes([cells_path]))


def voxel_stats_request(atlas_cfg, n_samples: int, base: str | Path = ".") -> int:
    """``mem_mb`` of rule cohort_voxel_stats: every brain's map on the atlas grid."""
    n_atlas, _ = atlas_grid(atlas_cfg, base)
    return voxel_stats_mb(n_atlas, n_samples)


# -- requests against what jobs used ------------------------------------------------------

_JOB_LINE = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")


def requests_and_peaks(workdir: str | Path) -> list[tuple[str, str, float, float]]:
    """What every job of a finished run asked for and used: ``(rule, benchmark file,
    mem_mb requested, max_rss MB measured)``, read from the run's Snakemake logs
    (``.snakemake/log``) and the jobs' benchmark tables. Jobs without a benchmark table are
    left out; the target rule ``all`` asks for nothing.

    Parameters
    ----------
    workdir : str or Path
        The run's working folder.

    Returns
    -------
    list of tuple

    Raises
    ------
    ValueError
        If a job of another rule asked for no ``mem_mb``.
    """
    import pandas as pd

    work = Path(workdir)
    rows = []
    for log in sorted((work / ".snakemake" / "log").glob("*.snakemake.log")):
        rule = bench = None
        for line in (raw.strip() for raw in log.read_text().splitlines()):
            m = _JOB_LINE.match(line)
            if m:
                rule, bench = m.group(1), None
            elif line.startswith("benchmark: "):
                bench = line.split(": ", 1)[1]
            elif line.startswith("resources: ") and rule and rule != "all":
                req = re.search(r"mem_mb=(\d+)", line)
                if not req:
                    raise ValueError(f"{log}: a job of rule {rule} asked for no mem_mb ({line})")
                if bench and (work / bench).is_file():
                    peak = pd.read_csv(work / bench, sep="\t")["max_rss"].iloc[-1]
                    rows.append((rule, bench, float(req.group(1)), float(peak) if str(peak) != "-" else 0.0))
                rule = None
    return rows
