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
    id: int
    index: tuple[int, int, int]  # position in the grid
    core: tuple[Range, Range, Range]  # cells whose centre rounds into here belong to this block
    read: tuple[Range, Range, Range]  # voxels read: core + overlap, clipped to the volume

    @property
    def read_slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a, b) for a, b in self.read)  # type: ignore[return-value]

    @property
    def n_read(self) -> int:
        return int(np.prod([b - a for a, b in self.read]))


def grid_blocks(shape: Sequence[int], size: Sequence[int], overlap: Sequence[int]) -> list[Block]:
    """Blocks of core ``size`` (the last one per axis may be smaller) covering ``shape``."""
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
    """Consecutive block ids in groups of ``batch`` (one Snakemake job each)."""
    return [list(range(i, min(i + batch, n_blocks))) for i in range(0, n_blocks, batch)]


@dataclass
class BlockPlan:
    """Everything a block job needs to know about the grid."""

    shape: tuple[int, int, int]
    voxel_size: tuple[float, float, float]
    size: tuple[int, int, int]
    overlap: tuple[int, int, int]
    blocks: list[Block]
    batches: list[list[int]]
    version: int = PLAN_VERSION
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        d = asdict(self)
        return json.dumps(d, indent=1)

    @classmethod
    def from_json(cls, text: str) -> BlockPlan:
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

        with atomic_path(path) as tmp:
            tmp.write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> BlockPlan:
        try:
            return cls.from_json(Path(path).read_text())
        except (OSError, ValueError, KeyError) as exc:
            raise InputFileError(f"{path}: not a readable block plan ({exc})") from exc

    def max_read_voxels(self) -> int:
        return max((b.n_read for b in self.blocks), default=0)


def check_detect_config(params: DetectParams, voxel_size: Sequence[float], key: str = "steps.detect") -> list[str]:
    """Every problem with the block grid and filter sizes, as messages naming the config key."""

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


def make_plan(shape: Sequence[int], voxel_size: Sequence[float], params: DetectParams) -> BlockPlan:
    """Grid of the volume; raises ConfigError if the grid or filter sizes do not fit."""

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
        batch_ids(len(blocks), params.blocks.batch),
    )


def block_memory_mb(
    plan_or_size: BlockPlan | Sequence[int], overlap: Sequence[int] | None = None, illumination: bool = False
) -> int:
    """Peak memory estimate (MB) of one block job: ~22 bytes per read voxel (+4 with illumination) + 250 MB."""
    if isinstance(plan_or_size, BlockPlan):
        n = plan_or_size.max_read_voxels()
    else:
        n = int(np.prod([s + 2 * o for s, o in zip(plan_or_size, overlap or (0, 0, 0))]))
    per = 22 + (4 if illumination else 0)
    return int(250 + n * per / 1e6)


# -- running blocks ---------------------------------------------------------------------


def read_block(source, block: Block) -> np.ndarray:
    """The block's read region from an array-like (numpy, zarr) ``source``."""
    return np.asarray(source[block.read_slices])


def detect_in_block(
    source, block: Block, plan: BlockPlan, params: DetectParams, illumination=None, raw: np.ndarray | None = None
) -> pd.DataFrame:
    """Detect the cells owned by ``block``.

    ``source``: numpy/zarr array or path of an OME-Zarr image; ``raw``: the block's read
    region when already read (then ``source`` is not used).
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
    """Cells in (z, y, x) order with a fresh index (a canonical order for any block grid)."""
    return cells.sort_values(["z", "y", "x"], kind="mergesort").reset_index(drop=True)


def concat_cells(tables: Iterable[pd.DataFrame]) -> pd.DataFrame:

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
    """Cells of the given blocks (default all), sorted by (z, y, x).

    ``processes`` > 1 runs blocks in a process pool (spawned workers, or ``pool``, an
    executor you started); each worker gets the path (OME-Zarr) or only its block's
    voxels, so memory per process is bounded by a block.
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
    """Plan the grid for ``source`` (array or OME-Zarr path) and detect every block."""
    params = params or DetectParams()
    if isinstance(source, (str, os.PathLike)):
        shape = open_ome_zarr(source).shape
    else:
        shape = source.shape
    plan = make_plan(shape, voxel_size, params)
    return detect_blocks(source, plan, params, processes=processes, illumination=illumination)
