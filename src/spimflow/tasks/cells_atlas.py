"""Rule ``cells_atlas``: ``cells/cells.parquet`` + registration → ``cells/cells_atlas.parquet``
(and ``.csv``) with atlas coordinates, region and hemisphere per cell."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from spimflow.atlas import load_atlas
from spimflow.config import AtlasConfig
from spimflow.io.tables import write_table
from spimflow.steps.cells_atlas import cells_to_atlas
from spimflow.transforms import SampleAtlasTransform

log = logging.getLogger(__name__)


def hemisphere_origin(atlas: Any) -> str:
    """Where the cells' left/right comes from, as written into the table's metadata.

    Parameters
    ----------
    atlas : Atlas
        The loaded atlas.

    Returns
    -------
    str
    """
    if atlas.hemispheres is not None:
        return "hemisphere volume of the atlas (or the midline of a symmetric atlas)"
    return (
        "split at the midline plane of the atlas volume: the atlas has no hemisphere volume and does not say it "
        "is symmetric, so left/right may be wrong near the midline"
    )


def run(smk: Any) -> None:
    cells = pd.read_parquet(smk.input.cells)
    transform = SampleAtlasTransform.load(Path(smk.input.registration).parent)
    atlas = load_atlas(AtlasConfig.model_validate(dict(smk.params.atlas)))
    table = cells_to_atlas(cells, transform, atlas, channel="signal")
    table.attrs["hemispheres"] = hemisphere_origin(atlas)
    if atlas.hemispheres is None:
        log.warning("%s: %s", atlas.source or atlas.name, table.attrs["hemispheres"])
    inside = int((table.region_id > 0).sum())
    log.info("%d cells, %d inside labelled regions, %d outside", len(table), inside, len(table) - inside)
    write_table(table, smk.output.parquet)
    write_table(table, smk.output.csv)
