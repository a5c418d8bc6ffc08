"""Rules of a cohort (``params.action`` picks one), under ``results/cohorts/<cohort>/``:

- ``region_stats``: every brain's ``regions/counts.parquet`` → ``regions/region_values.csv``
  (per region and sample: counts and densities at every level) and ``regions/region_stats.csv``
  (+ parquet: group means/stds, fold change, Cohen's d, test statistic, p, p_bh, q);
- ``voxel_stats``: every brain's ``maps/density.ome.zarr`` → ``voxels/<map>.ome.zarr`` (group
  means and stds, statistic, p, signed p, BH-adjusted p; TIFF copies) and the colour p-map;
- ``plots``: volcano, top-region bars, per-sample scatter; ``p_map_plot``: colour p-map slices.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tifffile

from spimflow.atlas import load_atlas
from spimflow.cohort import StatsParams
from spimflow.config import AtlasConfig
from spimflow.io.atlas_images import write_atlas_map, write_imagej_tiff
from spimflow.io.atomic import atomic_path
from spimflow.io.omezarr import open_ome_zarr
from spimflow.io.tables import write_table
from spimflow.plots import p_map_slices, sample_scatter, top_regions_bars, volcano
from spimflow.steps.stats import colour_pvalue_map, region_group_stats, voxel_group_stats

log = logging.getLogger(__name__)

REGION_KEYS = ["region_id", "acronym", "name", "parent_id", "depth"]
VALUE_COLUMNS = ["total", "left", "right", "volume_mm3", "density_per_mm3"]


def region_values(tables: dict[str, pd.DataFrame], groups: dict[str, str]) -> pd.DataFrame:
    """Long table: one row per (sample, ontology region) with the group and the value columns."""
    rows = []
    for sample, table in tables.items():
        t = table.loc[table["in_ontology"], REGION_KEYS + VALUE_COLUMNS].copy()
        t.insert(0, "group", groups[sample])
        t.insert(0, "sample", sample)
        rows.append(t)
    return pd.concat(rows, ignore_index=True)


def region_stats(smk: Any) -> None:
    params = StatsParams.model_validate(dict(smk.params.stats))
    groups = dict(smk.params.groups)  # sample -> group, reference group first
    order = list(dict.fromkeys(groups.values()))
    tables = {Path(p).parents[1].name: pd.read_parquet(p) for p in smk.input.tables}
    values = region_values(tables, groups)
    permutations = params.permutations if params.test == "permutation" else 0
    stats = region_group_stats(
        values,
        groups,
        value=params.region_value,
        test=params.test,
        permutations=permutations,
        seed=params.seed,
        region_cols="region_id",
    )
    meta = values.drop_duplicates("region_id").set_index("region_id")[["acronym", "name", "parent_id", "depth"]]
    stats = stats.drop(columns=[c for c in ("acronym", "name") if c in stats.columns])
    stats = meta.join(stats.set_index("region_id"), how="right").reset_index()
    stats.insert(5, "group_a", order[0])
    stats.insert(6, "group_b", order[1])
    stats.insert(7, "value", params.region_value)
    stats["significant"] = stats["p_bh"] < params.alpha
    write_table(values, smk.output.values)
    write_table(stats, smk.output.parquet)
    write_table(stats, smk.output.csv)
    write_table(pd.DataFrame(list(smk.params.covariates)), smk.output.samples)
    best = stats.nsmallest(5, "p")
    log.info(
        "%d regions tested (%s, %s); smallest p: %s",
        len(stats),
        params.test,
        params.region_value,
        ", ".join(f"{r.acronym} p={r.p:.2g} p_bh={r.p_bh:.2g}" for r in best.itertuples()),
    )


def voxel_stats(smk: Any) -> None:
    params = StatsParams.model_validate(dict(smk.params.stats))
    groups = dict(smk.params.groups)  # sample -> group, reference group first
    order = list(dict.fromkeys(groups.values()))
    maps = {Path(p).parents[1].name: open_ome_zarr(p) for p in smk.input.maps}
    atlas = load_atlas(AtlasConfig.model_validate(dict(smk.params.atlas)))
    stacks = [[maps[s].array for s, g in groups.items() if g == grp] for grp in order]
    result = voxel_group_stats(stacks[0], stacks[1], test=params.voxel_test, mask=atlas.annotation > 0)
    attrs = {
        "group_a": order[0],
        "group_b": order[1],
        "test": params.voxel_test,
        "n_a": result.n_a,
        "n_b": result.n_b,
        "samples": groups,
    }
    tiffs = {Path(p).name.removesuffix(".tif"): p for p in smk.output.tiffs}
    for path in smk.output.maps:
        name = Path(path).name.removesuffix(".ome.zarr")
        data = np.asarray(getattr(result, name), np.float32)
        write_atlas_map(path, data, atlas.voxel_size, atlas.orientation, name, attrs)
        if name in tiffs:
            write_imagej_tiff(tiffs[name], data, atlas.voxel_size)
    # ClearMap's picture: raw p below the cutoff, coloured by the direction of the effect
    colour = colour_pvalue_map(result.p, np.sign(result.mean_b - result.mean_a), cutoff=params.alpha)
    write_imagej_tiff(smk.output.colour, colour, atlas.voxel_size)
    inside = atlas.annotation > 0
    log.info(
        "%d voxels inside the brain: %d with p < %.2g, %d with p_bh < %.2g",
        int(inside.sum()),
        int(np.sum(result.p[inside] < params.alpha)),
        params.alpha,
        int(np.sum(result.p_bh[inside] < params.alpha)),
        params.alpha,
    )


def plots(smk: Any) -> None:
    params = StatsParams.model_validate(dict(smk.params.stats))
    stats = pd.read_parquet(smk.input.stats)
    values = pd.read_csv(smk.input.values)
    order = list(smk.params.group_order)
    for path, figure in (
        (smk.output.volcano, volcano(stats, params.alpha, order)),
        (smk.output.bars, top_regions_bars(stats, values, params.region_value, order, params.top_regions)),
        (smk.output.scatter, sample_scatter(values, params.region_value)),
    ):
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=120)


def p_map_plot(smk: Any) -> None:
    atlas = load_atlas(AtlasConfig.model_validate(dict(smk.params.atlas)))
    colour = tifffile.imread(smk.input.colour)
    reference = atlas.reference if atlas.reference is not None else (atlas.annotation > 0).astype(np.float32)
    with atomic_path(smk.output.png) as tmp:
        p_map_slices(colour, reference, atlas.voxel_size).savefig(tmp, format="png", dpi=120)


ACTIONS = {"region_stats": region_stats, "voxel_stats": voxel_stats, "plots": plots, "p_map_plot": p_map_plot}


def run(smk: Any) -> None:
    ACTIONS[smk.params.action](smk)
