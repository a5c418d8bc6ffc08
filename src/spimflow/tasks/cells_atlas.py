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


def run(smk: Any) -> None:
    cells = pd.read_parquet(smk.input.cells)
    transform = SampleAtlasTransform.load(Path(smk.input.registration).parent)
    atlas = load_atlas(AtlasConfig.model_validate(dict(smk.params.atlas)))
    table = cells_to_atlas(cells, transform, atlas, channel="signal")
    inside = int((table.region_id > 0).sum())
    log.info("%d cells, %d inside labelled regions, %d outside", len(table), inside, len(table) - inside)
    write_table(table, smk.output.parquet)
    write_table(table, smk.output.csv)
