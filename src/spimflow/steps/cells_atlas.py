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
    """Add ``az, ay, ax`` (atlas voxels, exact through the registration chain), ``region_id``
    (label of the nearest atlas voxel, 0 outside the brain or the atlas), ``region_acronym``
    ("" for 0 or labels missing from the ontology) and ``hemisphere`` ("left", "right",
    "none"). ``cells`` holds ``z, y, x`` in raw voxels of ``channel``."""
    out = cells.copy()
    points = cells[["z", "y", "x"]].to_numpy(dtype=np.float64)
    atlas_vox = transform.sample_to_atlas(points, channel) if len(points) else np.empty((0, 3))
    out["az"], out["ay"], out["ax"] = atlas_vox[:, 0], atlas_vox[:, 1], atlas_vox[:, 2]
    region = atlas.region_at(atlas_vox) if len(points) else np.empty(0, np.int64)
    out["region_id"] = region.astype(np.int64)
    acronyms = {int(r): (atlas.ontology.acronym(int(r)) if int(r) in atlas.ontology else "") for r in np.unique(region)}
    out["region_acronym"] = pd.Series([acronyms[int(r)] for r in region], index=out.index, dtype=str)
    hemi = atlas.hemisphere_at(atlas_vox) if len(points) else np.empty(0, np.uint8)
    out["hemisphere"] = pd.Series([HEMISPHERE_NAMES[int(h)] for h in hemi], index=out.index, dtype=str)
    return out
