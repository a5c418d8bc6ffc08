"""Rule ``region_tables``: ``cells/cells_atlas.parquet`` → ``regions/counts.csv`` (+ parquet):
one row per ontology node with left/right/total counts including descendants, volumes,
densities and mean cell measures; ``leaves.csv``, ``counts_depth<N>.csv`` and a one-line
``summary.txt`` (cells outside the brain and in unknown labels are counted, never dropped)."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from spimflow.atlas import load_atlas
from spimflow.config import AtlasConfig
from spimflow.errors import SpimflowError
from spimflow.io.atomic import atomic_path
from spimflow.io.tables import write_table
from spimflow.params.analysis import RegionsParams
from spimflow.steps.regions import (
    collapse_to_depth,
    hierarchy_violations,
    leaf_table,
    region_table,
    region_volumes,
    summary_line,
)

log = logging.getLogger(__name__)


def run(smk: Any) -> None:
    params = RegionsParams.model_validate(dict(smk.params.regions))
    atlas = load_atlas(AtlasConfig.model_validate(dict(smk.params.atlas)))
    cells = pd.read_parquet(smk.input.cells)
    volumes = region_volumes(atlas.annotation, atlas.hemisphere_volume(), atlas.ontology, atlas.voxel_size)
    table = region_table(cells, atlas.ontology, volumes, params.measure_columns)
    problems = hierarchy_violations(table)
    if problems:  # a bug, never the user's data: refuse to write a table that does not add up
        raise SpimflowError("region table breaks the hierarchy invariant:\n" + "\n".join(problems[:20]))
    write_table(table, smk.output.parquet)
    write_table(table, smk.output.csv)
    write_table(leaf_table(table, atlas.ontology), smk.output.leaves)
    for depth, path in zip(smk.params.depths, smk.output.collapsed, strict=True):
        write_table(collapse_to_depth(cells, atlas.ontology, depth, volumes, params.measure_columns), path)
    line = summary_line(table)
    with atomic_path(smk.output.summary) as tmp:
        tmp.write_text(line + "\n")
    log.info("%s", line)
