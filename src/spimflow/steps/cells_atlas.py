"""Cells into atlas space: atlas coordinates, region and hemisphere for every cell."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from spimflow.atlas import Atlas
from spimflow.atlas.model import HEMISPHERE_NAMES
from spimflow.transforms import SampleAtlasTransform

ATLAS_COLUMNS = ["az", "ay", "ax", "region_id", "region_acronym", "hemisphere"]


def cells_to_atlas(
    cells: pd.DataFrame, transform: SampleAtlasTransform, atlas: Atlas, channel: str = "signal"
) -> pd.DataFrame:
    """Map cells into the atlas: atlas coordinates, region and hemisphere for every cell.

    Parameters
    ----------
    cells : pandas.DataFrame
        Cell table with ``z``, ``y``, ``x`` in raw voxels of ``channel``.
    transform : SampleAtlasTransform
        The registration's point transform.
    atlas : Atlas
        The atlas (labels, hemispheres, ontology).
    channel : str, optional
        Channel whose raw voxels ``cells`` uses.

    Returns
    -------
    pandas.DataFrame
        A copy of ``cells`` with :data:`ATLAS_COLUMNS` added: ``az, ay, ax`` (atlas voxels,
        exact through the registration chain), ``region_id`` (label of the nearest atlas
        voxel, 0 outside the brain or the atlas), ``region_acronym`` ("" for 0 or labels
        missing from the ontology) and ``hemisphere`` ("left", "right", "none").

    Raises
    ------
    InputFileError
        If the registration has no grid for ``channel``.
    """
    out = cells.copy()
    points = cells[["z", "y", "x"]].to_numpy(dtype=np.float64)
    atlas_vox = transform.sample_to_atlas(points, channel) if len(points) else np.empty((0, 3))
    out["az"], out["ay"], out["ax"] = atlas_vox[:, 0], atlas_vox[:, 1], atlas_vox[:, 2]
    region = atlas.region_at(atlas_vox) if len(points) else np.empty(0, np.int64)
    out["region_id"] = region.astype(np.int64)
    out["region_acronym"] = _names(region, lambda r: atlas.ontology.acronym(r) if r and r in atlas.ontology else "")
    out["hemisphere"] = _names(
        atlas.hemisphere_at(atlas_vox) if len(points) else np.empty(0, np.uint8), lambda h: HEMISPHERE_NAMES[h]
    )
    return out


def _names(codes: np.ndarray, name_of) -> np.ndarray:
    """Text per cell from one look-up per distinct code (label 0 is outside the brain, even
    where an ontology file lists a 'universe' node 0)."""
    unique, inverse = np.unique(codes, return_inverse=True)
    names = np.array([str(name_of(int(c))) for c in unique] + [""], dtype=object)
    return names[inverse.reshape(-1)] if len(codes) else np.empty(0, dtype=object)


#: Overlay voxels mapped through the transform per step of the atlas overlay (~100 bytes
#: each while mapping; see spimflow.resources.overlay_mb).
OVERLAY_SLAB_VOXELS = 4_000_000


def overlay_factor(raw_voxel_size: Sequence[float], atlas_voxel_size: Sequence[float]) -> tuple[int, int, int]:
    """Pooling factor per raw axis for an atlas-label overlay on the raw grid: the coarsest
    whole factor whose voxels stay at most half the finest atlas voxel (so looking up the
    overlay agrees with the exact point transform for nearly every point), at least 1.

    Parameters
    ----------
    raw_voxel_size, atlas_voxel_size : sequence of float
        Voxel sizes (z, y, x), µm.

    Returns
    -------
    tuple of int

    Examples
    --------
    >>> overlay_factor((10.0, 5.0, 5.0), (25.0, 25.0, 25.0))
    (1, 2, 2)
    >>> overlay_factor((2.0, 0.5, 0.5), (10.0, 10.0, 10.0))
    (2, 10, 10)
    """
    target = min(float(v) for v in atlas_voxel_size) / 2.0
    return tuple(max(1, int(np.floor(target / float(v) + 1e-9))) for v in raw_voxel_size)


def overlay_centres(shape: Sequence[int], factor: Sequence[int], z_range: tuple[int, int]) -> np.ndarray:
    """Raw voxel coordinates (z, y, x) of the centres of the pooled overlay voxels of planes
    ``z_range`` (overlay indices), one row per voxel in C order.

    Parameters
    ----------
    shape : sequence of int
        Overlay grid shape (z, y, x).
    factor : sequence of int
        Raw voxels per overlay voxel along each axis.
    z_range : (int, int)
        Overlay planes [start, stop).

    Returns
    -------
    (n, 3) ndarray of float

    Examples
    --------
    >>> overlay_centres((2, 1, 2), (1, 2, 2), (0, 1)).tolist()
    [[0.0, 0.5, 0.5], [0.0, 0.5, 2.5]]
    """
    axes = [
        np.arange(*z_range, dtype=np.float64),
        np.arange(shape[1], dtype=np.float64),
        np.arange(shape[2], dtype=np.float64),
    ]
    grids = np.meshgrid(*[a * f + (f - 1) / 2.0 for a, f in zip(axes, factor)], indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1)


def regions_at_raw(points: np.ndarray, transform: SampleAtlasTransform, atlas: Atlas, channel: str = "signal"):
    """Atlas label at raw sample points, through the exact registration chain (as cells get
    their ``region_id``).

    Parameters
    ----------
    points : (n, 3) ndarray
        Raw voxel coordinates (z, y, x) of ``channel``.
    transform : SampleAtlasTransform
        The registration.
    atlas : Atlas
        The atlas (annotation, cropped as configured).
    channel : str, optional
        Which channel's raw grid the points are in.

    Returns
    -------
    ndarray of int64
    """
    if not len(points):
        return np.empty(0, np.int64)
    return atlas.region_at(transform.sample_to_atlas(points, channel)).astype(np.int64)
