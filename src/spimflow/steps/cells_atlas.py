"""Cells into atlas space: atlas coordinates, region and hemisphere for every cell."""

from __future__ import annotations

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
