"""The detection block grid: overlapping blocks along z, y and x, planned once per volume.

A block has a *core* (the voxels whose cells it reports; cores tile the volume without
gaps or overlap) and a *read* region (the core grown by the overlap on every side,
clipped to the volume). Ranges are half-open [start, stop) volume voxel indices
(z, y, x). The plan is JSON so a Snakemake checkpoint can write it and later jobs
(one per batch of blocks) read it.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from spimflow.errors import ConfigError, InputFileError
from spimflow.io.atomic import atomic_path
from spimflow.io.omezarr import open_ome_zarr
from spimflow.params.detect import DetectParams
from spimflow.resources import PROCESS_MB
from spimflow.steps.detect import (
    detect_block,
    detection_radii,
    empty_cells,
    required_overlap,
)

Range = tuple[int, int]
PLAN_VERSION = 1


@dataclass(frozen=True)
class Block:
    """One block of the detection grid.

    Ranges are half-open [start, stop) volume voxel indices per axis (z, y, x).

    Attributes
    ----------
    id : int
        Position in the plan's block list.
    index : tuple of int
        Position (iz, iy, ix) in the grid.
    core : tuple of (int, int)
        Voxels whose cells this block reports: a cell belongs here when its centre
        rounds into the core. Cores tile the volume.
    read : tuple of (int, int)
        Voxels read: the core grown by the overlap on every side, clipped to the volume.
    """

    id: int
    index: tuple[int, int, int]  # position in the grid
    core: tuple[Range, Range, Range]  # cells whose centre rounds into here belong to this block
    read: tuple[Range, Range, Range]  # voxels read: core + overlap, clipped to the volume

    @property
    def read_slices(self) -> tuple[slice, slice, slice]:
        """The read region as (z, y, x) slices, for indexing the volume."""
        return tuple(slice(a, b) for a, b in self.read)  # type: ignore[return-value]

    @property
    def n_read(self) -> int:
        """Number of voxels in the read region."""
        return int(np.prod([b - a for a, b in self.read]))


def grid_blocks(shape: Sequence[int], size: Sequence[int], overlap: Sequence[int]) -> list[Block]:
    """Tile a volume with blocks of core ``size`` (the last one per axis may be smaller).

    Parameters
    ----------
    shape : sequence of int
        Volume shape (z, y, x), voxels.
    size : sequence of int
        Core block size (z, y, x), voxels.
    overlap : sequence of int
        Margin (z, y, x) read on each side of a core, voxels.

    Returns
    -------
    list of Block
        In z, then y, then x order; ``blocks[i].id == i``.

    Examples
    --------
    >>> blocks = grid_blocks((10, 20, 20), (10, 10, 10), (2, 3, 3))
    >>> len(blocks)
    4
    >>> blocks[1].core, blocks[1].read
    (((0, 10), (0, 10), (10, 20)), ((0, 10), (0, 13), (7, 20)))
    >>> blocks[1].n_read
    1690
    """
    shape = [int(s) for s in shape]
    counts = [max(1, math.ceil(n / s)) for n, s in zip(shape, size)]
    blocks = []
    for iz in range(counts[0]):
        for iy in range(counts[1]):
            for ix in range(counts[2]):
                idx = (iz, iy, ix)
                core = tuple((i * s, min((i + 1) * s, n)) for i, s, n in zip(idx, size, shape))
                read = tuple((max(0, a - o), min(n, b + o)) for (a, b), o, n in zip(core, overlap, shape))
                blocks.append(Block(len(blocks), idx, core, read))  # type: ignore[arg-type]
    return blocks


def batch_ids(n_blocks: int, batch: int) -> list[list[int]]:
    """Group consecutive block ids in batches of ``batch`` (one Snakemake job each).

    Parameters
    ----------
    n_blocks : int
        Number of blocks.
    batch : int
        Blocks per batch.

    Returns
    -------
    list of list of int
        Block ids per batch; the last batch may be smaller.

    Examples
    --------
    >>> batch_ids(5, 2)
    [[0, 1], [2, 3], [4]]
    """
    return [list(range(i, min(i + batch, n_blocks))) for i in range(0, n_blocks, batch)]


@dataclass
class BlockPlan:
    """Everything a block job needs to know about the grid (written as JSON by the planning job).

    Attributes
    ----------
    shape : tuple of int
        Volume shape (z, y, x), voxels.
    voxel_size : tuple of float
        Voxel size (z, y, x), µm.
    size : tuple of int
        Core block size (z, y, x), voxels.
    overlap : tuple of int
        Margin (z, y, x) read on each side of a core, voxels.
    blocks : list of Block
        The grid, see :func:`grid_blocks`.
    batches : list of list of int
        Block ids per Snakemake job, see :func:`batch_ids`.
    version : int
        Plan format version.
    extra : dict
        Free-form additional information.

    Examples
    --------
    >>> from spimflow.params.detect import DetectParams
    >>> plan = make_plan((100, 1000, 1000), (4.0, 2.0, 2.0), DetectParams())
    >>> len(plan.blocks), plan.overlap, len(plan.batches)
    (18, (20, 49, 49), 3)
    >>> BlockPlan.from_json(plan.to_json()) == plan
    True
    """

    shape: tuple[int, int, int]
    voxel_size: tuple[float, float, float]
    size: tuple[int, int, int]
    overlap: tuple[int, int, int]
    blocks: list[Block]
    batches: list[list[int]]
    version: int = PLAN_VERSION
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialise the plan to JSON text (read back with :meth:`from_json`).

        Returns
        -------
        str
        """
        d = asdict(self)
        return json.dumps(d, indent=1)

    @classmethod
    def from_json(cls, text: str) -> BlockPlan:
        """Rebuild a plan from :meth:`to_json` output.

        Parameters
        ----------
        text : str
            JSON text.

        Returns
        -------
        BlockPlan
        """
        d = json.loads(text)
        blocks = [
            Block(b["id"], tuple(b["index"]), tuple(tuple(r) for r in b["core"]), tuple(tuple(r) for r in b["read"]))
            for b in d["blocks"]
        ]
        return cls(
            tuple(d["shape"]),
            tuple(d["voxel_size"]),
            tuple(d["size"]),
            tuple(d["overlap"]),
            blocks,
            [list(b) for b in d["batches"]],
            d.get("version", PLAN_VERSION),
            d.get("extra", {}),
        )

    def save(self, path: str | Path) -> None:
        """Write the plan as JSON, atomically (a partial file never appears at ``path``).

        Parameters
        ----------
        path : str or Path
            Output file.
        """

        with atomic_path(path) as tmp:
            tmp.write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> BlockPlan:
        """Read a plan written by :meth:`save`.

        Parameters
        ----------
        path : str or Path
            JSON file.

        Returns
        -------
        BlockPlan

        Raises
        ------
        InputFileError
            If the file is missing or is not a block plan.
        """
        try:
            return cls.from_json(Path(path).read_text())
        except (OSError, ValueError, KeyError) as exc:
            raise InputFileError(f"{path}: not a readable block plan ({exc})") from exc

    def max_read_voxels(self) -> int:
        """Voxels in the largest read region (0 without blocks); sets the memory of a block job.

        Returns
        -------
        int
        """
        return max((b.n_read for b in self.blocks), default=0)


def check_detect_config(params: DetectParams, voxel_size: Sequence[float], key: str = "steps.detect") -> list[str]:
    """Find every problem with the block grid and filter sizes.

    Checks that a given overlap is at least :func:`~spimflow.steps.detect.required_overlap`,
    that blocks are at least as large as the overlap, and that the background, DoG and
    shape windows fit in a block.

    Parameters
    ----------
    params : DetectParams
        Detection parameters (sizes in µm, block grid in voxels).
    voxel_size : sequence of float
        Voxel size (z, y, x) of the signal channel, µm.
    key : str, optional
        Config key prefix used in the messages.

    Returns
    -------
    list of str
        One message per problem, naming the config key; empty when all is well.

    Examples
    --------
    >>> from spimflow.params.detect import DetectParams
    >>> check_detect_config(DetectParams(), (4.0, 2.0, 2.0))
    []
    >>> small = DetectParams.model_validate({"blocks": {"size": (8, 32, 32)}})
    >>> problems = check_detect_config(small, (4.0, 2.0, 2.0))
    >>> print(problems[0])  # doctest: +ELLIPSIS
    steps.detect.blocks.size: [8, 32, 32] is smaller than the overlap [20, 49, 49] along z; ...
    >>> print(problems[1])
    steps.detect.dog.sigma_outer_um: 6.0 µm needs a kernel of 11 voxels along z, larger than the block size 8
    """

    problems = []
    bp = params.blocks
    need = required_overlap(voxel_size, params)
    overlap = bp.overlap if bp.overlap is not None else need
    r = detection_radii(voxel_size, params)
    for a, name in enumerate("zyx"):
        if bp.overlap is not None and overlap[a] < need[a]:
            problems.append(
                f"{key}.blocks.overlap: {list(overlap)} is too small along {name}; the filters, maxima window and "
                f"cell radius need at least {list(need)} voxels (or set overlap: null for the minimum)"
            )
            break
    for a, name in enumerate("zyx"):
        if bp.size[a] < overlap[a]:
            problems.append(
                f"{key}.blocks.size: {list(bp.size)} is smaller than the overlap {list(overlap)} along {name}; "
                f"use blocks of at least {list(overlap)} voxels"
            )
            break
    if params.background.enabled:
        width = [2 * r.background[1] // 2 * 2 + 1, 2 * r.background[2] // 2 * 2 + 1]
        for a, name in ((1, "y"), (2, "x")):
            if width[a - 1] > bp.size[a]:
                problems.append(
                    f"{key}.background.size_um: {list(params.background.size_um)} µm is {width[a - 1]} voxels "
                    f"along {name}, larger than the block size {bp.size[a]}"
                )
    if params.dog.enabled:
        for a, name in enumerate("zyx"):
            if 2 * r.dog[a] + 1 > bp.size[a]:
                problems.append(
                    f"{key}.dog.sigma_outer_um: {params.dog.sigma_outer_um} µm needs a kernel of "
                    f"{2 * r.dog[a] + 1} voxels along {name}, larger than the block size {bp.size[a]}"
                )
    if params.shape.enabled:
        for a, name in enumerate("zyx"):
            if 2 * r.shape[a] + 1 > bp.size[a]:
                problems.append(
                    f"{key}.shape.max_radius_um: {params.shape.max_radius_um} µm spans "
                    f"{2 * r.shape[a] + 1} voxels along {name}, larger than the block size {bp.size[a]}"
                )
    return problems


def batch_size(n_blocks: int, batch: int, parallel_jobs: int = 1) -> int:
    """Blocks per batch: at most ``batch``, fewer when that leaves jobs idle.

    With fewer batches than jobs that can run at once, the batches shrink until every
    job slot has one (as far as there are blocks).

    Parameters
    ----------
    n_blocks : int
        Number of blocks.
    batch : int
        Configured blocks per batch (``steps.detect.blocks.batch``).
    parallel_jobs : int, optional
        How many jobs can run at once (``--cores`` locally, ``--jobs`` on a cluster).

    Returns
    -------
    int

    Examples
    --------
    >>> batch_size(4, 8, parallel_jobs=2)  # one batch of 4 would leave a core idle
    2
    >>> batch_size(100, 8, parallel_jobs=2)
    8
    >>> batch_size(3, 8, parallel_jobs=16)
    1
    """
    wanted = max(1, int(parallel_jobs))
    return max(1, min(int(batch), math.ceil(max(n_blocks, 1) / wanted)))


def make_plan(
    shape: Sequence[int], voxel_size: Sequence[float], params: DetectParams, parallel_jobs: int = 1
) -> BlockPlan:
    """Plan the block grid of a volume.

    The overlap is ``params.blocks.overlap``, or the minimum
    (:func:`~spimflow.steps.detect.required_overlap`) when that is null. Batches hold
    ``params.blocks.batch`` blocks, fewer when that would give fewer batch jobs than
    ``parallel_jobs`` (:func:`batch_size`).

    Parameters
    ----------
    shape : sequence of int
        Volume shape (z, y, x), voxels.
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : DetectParams
        Detection parameters (block size, overlap, batch and filter sizes).
    parallel_jobs : int, optional
        How many batch jobs can run at once.

    Returns
    -------
    BlockPlan

    Raises
    ------
    InputFileError
        If the volume is empty or not 3-D.
    ConfigError
        If the grid or filter sizes do not fit (all problems of :func:`check_detect_config`).

    Examples
    --------
    >>> from spimflow.params.detect import DetectParams
    >>> plan = make_plan((100, 1000, 1000), (4.0, 2.0, 2.0), DetectParams())
    >>> len(plan.blocks), plan.blocks[0].read
    (18, ((0, 84), (0, 433), (0, 433)))
    """

    if len(shape) != 3 or any(int(s) <= 0 for s in shape):
        raise InputFileError(
            f"the signal volume is empty: shape {tuple(shape)}; expected three positive sizes (z, y, x)"
        )
    problems = check_detect_config(params, voxel_size)
    if problems:
        raise ConfigError("\n".join(problems))
    overlap = params.blocks.overlap or required_overlap(voxel_size, params)
    blocks = grid_blocks(shape, params.blocks.size, overlap)
    return BlockPlan(
        tuple(int(s) for s in shape),
        tuple(float(v) for v in voxel_size),
        tuple(params.blocks.size),
        tuple(int(o) for o in overlap),
        blocks,
        batch_ids(len(blocks), batch_size(len(blocks), params.blocks.batch, parallel_jobs)),
    )


def block_memory_mb(
    plan_or_size: BlockPlan | Sequence[int], overlap: Sequence[int] | None = None, illumination: bool = False
) -> int:
    """Estimate the peak memory of one block job.

    About 22 bytes per read voxel (+4 with illumination correction) plus the task process
    (:data:`spimflow.resources.PROCESS_MB`; the demo's small blocks peak at 290–330 MB).

    Parameters
    ----------
    plan_or_size : BlockPlan or sequence of int
        A plan (its largest read region is used) or a core block size (z, y, x), voxels.
    overlap : sequence of int, optional
        Overlap (z, y, x), voxels, when ``plan_or_size`` is a block size; default 0.
    illumination : bool, optional
        Whether illumination correction is on.

    Returns
    -------
    int
        Memory, MB.

    Examples
    --------
    >>> block_memory_mb((64, 384, 384), (10, 20, 20))
    832
    """
    if isinstance(plan_or_size, BlockPlan):
        n = plan_or_size.max_read_voxels()
    else:
        n = int(np.prod([s + 2 * o for s, o in zip(plan_or_size, overlap or (0, 0, 0))]))
    per = 22 + (4 if illumination else 0)
    return int(PROCESS_MB + n * per / 1e6)


# -- running blocks ---------------------------------------------------------------------


def read_block(source, block: Block) -> np.ndarray:
    """Read a block's read region.

    Parameters
    ----------
    source : array_like
        The (z, y, x) volume: numpy array, zarr array, anything sliceable.
    block : Block
        The block.

    Returns
    -------
    ndarray
        The voxels of ``block.read``, (z, y, x).

    Examples
    --------
    >>> volume = np.arange(4 * 4 * 4).reshape(4, 4, 4)
    >>> block = grid_blocks(volume.shape, (2, 2, 2), (1, 1, 1))[0]
    >>> read_block(volume, block).shape
    (3, 3, 3)
    """
    return np.asarray(source[block.read_slices])


def detect_in_block(
    source, block: Block, plan: BlockPlan, params: DetectParams, illumination=None, raw: np.ndarray | None = None
) -> pd.DataFrame:
    """Detect the cells owned by ``block``.

    Parameters
    ----------
    source : array_like or str or PathLike
        The (z, y, x) volume: numpy/zarr array or path of an OME-Zarr image.
    block : Block
        The block to process.
    plan : BlockPlan
        The grid (volume shape and voxel size).
    params : DetectParams
        Detection parameters.
    illumination : IlluminationField, optional
        Flat-field; used when ``params.illumination.enabled``.
    raw : ndarray, optional
        The block's read region when already read (then ``source`` is not used).

    Returns
    -------
    pandas.DataFrame
        Cell table with :data:`~spimflow.steps.detect.CELL_COLUMNS`, centres in volume
        voxel coordinates (z, y, x).
    """

    if raw is None:
        if isinstance(source, (str, os.PathLike)):
            source = open_ome_zarr(source).array
        raw = read_block(source, block)
    gain = illumination.gain(*block.read) if (illumination is not None and params.illumination.enabled) else None
    return detect_block(
        raw,
        plan.voxel_size,
        params,
        offset=[a for a, _ in block.read],
        core=block.core,
        volume_shape=plan.shape,
        gain=gain,
        block_id=block.id,
    )


def sort_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """Sort cells by (z, y, x) with a fresh index (a canonical order for any block grid).

    Parameters
    ----------
    cells : pandas.DataFrame
        Cell table with columns ``z``, ``y``, ``x``.

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> import pandas as pd
    >>> cells = pd.DataFrame({"z": [2.0, 1.0, 1.0], "y": [0.0, 5.0, 3.0], "x": [0.0, 0.0, 0.0]})
    >>> sort_cells(cells)["y"].tolist()
    [3.0, 5.0, 0.0]
    """
    return cells.sort_values(["z", "y", "x"], kind="mergesort").reset_index(drop=True)


def concat_cells(tables: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate cell tables (e.g. of several blocks) and sort them with :func:`sort_cells`.

    Parameters
    ----------
    tables : iterable of pandas.DataFrame
        Cell tables; empty ones are skipped.

    Returns
    -------
    pandas.DataFrame
        All cells in (z, y, x) order; an empty cell table when there are none.

    Examples
    --------
    >>> len(concat_cells([])), list(concat_cells([]).columns[:3])
    (0, ['z', 'y', 'x'])
    """

    tables = [t for t in tables if len(t)]
    if not tables:
        return empty_cells()
    return sort_cells(pd.concat(tables, ignore_index=True))


def _worker(args):
    source, raw, block, plan, params_json, illumination = args
    return detect_in_block(source, block, plan, DetectParams.model_validate(params_json), illumination, raw)


def detect_blocks(
    source,
    plan: BlockPlan,
    params: DetectParams,
    block_ids: Sequence[int] | None = None,
    processes: int = 1,
    illumination=None,
    pool=None,
) -> pd.DataFrame:
    """Detect the cells of the given blocks (default all), sorted by (z, y, x).

    With ``processes`` > 1, blocks run in a process pool (spawned workers, or ``pool``);
    each worker gets the path (OME-Zarr) or only its block's voxels, so memory per
    process is bounded by a block.

    Parameters
    ----------
    source : array_like or str or PathLike
        The (z, y, x) volume: numpy/zarr array or path of an OME-Zarr image.
    plan : BlockPlan
        The grid, from :func:`make_plan`.
    params : DetectParams
        Detection parameters.
    block_ids : sequence of int, optional
        Blocks to process; default all.
    processes : int, optional
        Worker processes; 1 runs in this process.
    illumination : IlluminationField, optional
        Flat-field; used when ``params.illumination.enabled``.
    pool : concurrent.futures.Executor, optional
        An executor you started, used instead of spawning one.

    Returns
    -------
    pandas.DataFrame
        Cell table with :data:`~spimflow.steps.detect.CELL_COLUMNS`, centres in volume
        voxel coordinates (z, y, x).
    """
    ids = list(range(len(plan.blocks))) if block_ids is None else list(block_ids)
    blocks = [plan.blocks[i] for i in ids]
    if processes <= 1 or len(blocks) <= 1:
        return concat_cells(detect_in_block(source, b, plan, params, illumination) for b in blocks)
    pj = params.model_dump(mode="json")
    by_path = isinstance(source, (str, os.PathLike))
    jobs = (
        (source if by_path else None, None if by_path else read_block(source, b), b, plan, pj, illumination)
        for b in blocks
    )
    if pool is not None:
        return concat_cells(pool.map(_worker, jobs))

    with ProcessPoolExecutor(max_workers=processes, mp_context=mp.get_context("spawn")) as own:
        return concat_cells(own.map(_worker, jobs))


def detect_volume(
    source, voxel_size: Sequence[float], params: DetectParams | None = None, processes: int = 1, illumination=None
) -> pd.DataFrame:
    """Plan the block grid of a volume and detect the cells of every block.

    Parameters
    ----------
    source : array_like or str or PathLike
        The (z, y, x) volume: numpy/zarr array or path of an OME-Zarr image.
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : DetectParams, optional
        Detection parameters; default ``DetectParams()``.
    processes : int, optional
        Worker processes (see :func:`detect_blocks`).
    illumination : IlluminationField, optional
        Flat-field; used when ``params.illumination.enabled``.

    Returns
    -------
    pandas.DataFrame
        Cell table with :data:`~spimflow.steps.detect.CELL_COLUMNS`, sorted by (z, y, x).

    Raises
    ------
    InputFileError
        If the volume is empty.
    ConfigError
        If the block grid or filter sizes do not fit.
    """
    params = params or DetectParams()
    if isinstance(source, (str, os.PathLike)):
        shape = open_ome_zarr(source).shape
    else:
        shape = source.shape
    plan = make_plan(shape, voxel_size, params)
    return detect_blocks(source, plan, params, processes=processes, illumination=illumination)
