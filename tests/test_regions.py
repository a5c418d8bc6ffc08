"""Per-region cell tables (spimflow.steps.regions).

Ground truth: a tiny hand-made ontology, cell table and label volume whose counts are
written out by hand below; and, for the real Allen CCFv3 (2017, 25 µm) in
``<repo>/../shared``, random cells drawn from the annotation, checked against the
invariants and against brute-force counts over ``Ontology.descendants``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ALLEN, ALLEN_CSV, ALLEN_JSON, needs_allen

from spimflow.atlas import Ontology, Region
from spimflow.steps.regions import (
    collapse_by_flags,
    collapse_to_depth,
    leaf_table,
    region_table,
    region_volumes,
    summary_line,
)

TABLE_COLUMNS = [
    "region_id",
    "acronym",
    "name",
    "parent_id",
    "depth",
    "structure_path",
    "in_ontology",
    "left",
    "right",
    "unassigned",
    "total",
    "own",
    "volume_mm3",
    "volume_left_mm3",
    "volume_right_mm3",
    "density_per_mm3",
    "density_left_per_mm3",
    "density_right_per_mm3",
]


# ---------------------------------------------------------------------------------------------
# Tiny hand-made ontology, cells and volume
# ---------------------------------------------------------------------------------------------
#   10 root ─┬─ 1 A ─┬─ 11 A1 ── 111 A1a
#            │       ├─ 12 A2
#            │       └─ 13 A3 (no voxels, no cells)
#            └─ 2 B ─── 21 B1
#   50 fibre (a second root, a leaf)
TINY = [
    Region(10, "root", "root", None),
    Region(1, "A", "Area A", 10),
    Region(11, "A1", "Area A one", 1),
    Region(111, "A1a", "Area A one a", 11),
    Region(12, "A2", "Area A two", 1),
    Region(13, "A3", "Area A three", 1),
    Region(2, "B", "Area B", 10),
    Region(21, "B1", "Area B one", 2),
    Region(50, "fibre", "fibre tracts", None),
]

# (region_id, hemisphere, size) — 21 cells
TINY_CELLS = (
    [(111, "left", 1)] * 3
    + [(111, "right", 5), (11, "left", 2)]
    + [(12, "right", 4)] * 2
    + [(12, "none", 7), (1, "left", 3)]
    + [(21, "right", 6)] * 2
    + [(2, "left", 8), (10, "right", 9)]
    + [(50, "left", 10)] * 2
    + [(0, "none", 11)] * 2
    + [(0, "left", 12)]
    + [(999, "right", 13)] * 2
    + [(7, "left", 14)]
)

# region_id: (left, right, unassigned, own), counted by hand; totals include descendants
TINY_EXPECTED = {
    10: (6, 6, 1, 1),
    1: (5, 3, 1, 1),
    11: (4, 1, 0, 1),
    111: (3, 1, 0, 4),
    12: (0, 2, 1, 3),
    13: (0, 0, 0, 0),
    2: (1, 2, 0, 1),
    21: (0, 2, 0, 2),
    50: (2, 0, 0, 2),
    0: (1, 0, 2, 3),
    7: (1, 0, 0, 1),
    999: (0, 2, 0, 2),
}
# mean size over each region's cells (descendants included), by hand
TINY_MEAN_SIZE = {
    111: 8 / 4,
    11: 10 / 5,
    12: 15 / 3,
    1: 28 / 9,
    21: 12 / 2,
    2: 20 / 3,
    10: 57 / 13,
    50: 10.0,
    0: 34 / 3,
    999: 13.0,
    7: 14.0,
}

# label volume (1, 4, 5), voxel (10, 20, 50) µm = 1e-5 mm³; columns 0-1 left, 2-4 right,
# voxel (3, 4) neither hemisphere
TINY_ANN = np.array(
    [[[111, 111, 11, 12, 0], [111, 1, 12, 12, 0], [21, 21, 2, 50, 7], [0, 0, 10, 999, 0]]], dtype=np.uint16
)
TINY_HEMI = np.array([[[1, 1, 2, 2, 2]] * 3 + [[1, 1, 2, 2, 0]]], dtype=np.uint8)
TINY_VOXEL_MM3 = 1e-5
# region_id: (own voxels, voxels, left, right) incl. descendants, counted by hand
TINY_VOXELS = {
    10: (1, 12, 6, 6),
    1: (1, 8, 4, 4),
    11: (1, 4, 3, 1),
    111: (3, 3, 3, 0),
    12: (3, 3, 0, 3),
    13: (0, 0, 0, 0),
    2: (1, 3, 2, 1),
    21: (2, 2, 2, 0),
    50: (1, 1, 0, 1),
    0: (5, 5, 2, 2),
    7: (1, 1, 0, 1),
    999: (1, 1, 0, 1),
}


@pytest.fixture()
def tiny_onto():
    return Ontology(TINY, source="tiny")


@pytest.fixture()
def tiny_cells():
    rid, hemi, size = zip(*TINY_CELLS, strict=True)
    return pd.DataFrame(
        {
            "z": np.arange(len(rid), dtype=float),
            "y": 0.0,
            "x": 0.0,
            "size": list(size),
            "block": 3,
            "region_id": list(rid),
            "hemisphere": list(hemi),
        }
    )


def test_tiny_cells_fixture_is_what_the_comments_say(tiny_cells):
    assert len(tiny_cells) == 21


def test_region_volumes_tiny(tiny_onto):
    v = region_volumes(TINY_ANN, TINY_HEMI, tiny_onto, (10, 20, 50))
    assert list(v.columns) == [
        "region_id",
        "acronym",
        "in_ontology",
        "own_voxels",
        "voxels",
        "voxels_left",
        "voxels_right",
        "volume_mm3",
        "volume_left_mm3",
        "volume_right_mm3",
    ]
    assert v.region_id.tolist() == [10, 1, 11, 111, 12, 13, 2, 21, 50, 0, 7, 999]
    assert v.in_ontology.tolist() == [True] * 9 + [False] * 3
    assert v.acronym.tolist()[-3:] == ["outside", "unknown:7", "unknown:999"]
    got = {int(r.region_id): (r.own_voxels, r.voxels, r.voxels_left, r.voxels_right) for r in v.itertuples()}
    assert got == TINY_VOXELS
    np.testing.assert_allclose(v.volume_mm3, v.voxels * TINY_VOXEL_MM3)
    np.testing.assert_allclose(v.volume_left_mm3, v.voxels_left * TINY_VOXEL_MM3)
    np.testing.assert_allclose(v.volume_right_mm3, v.voxels_right * TINY_VOXEL_MM3)
    assert v.voxels[v.in_ontology].sum() > TINY_ANN.size  # rolled up: parents re-count children
    assert v.own_voxels.sum() == TINY_ANN.size  # every voxel exactly once
    # without a hemisphere volume: same totals, NaN per side; scalar voxel size
    v2 = region_volumes(TINY_ANN.astype(np.int32), None, tiny_onto, 10.0)
    assert v2.voxels.tolist() == v.voxels.tolist()
    assert v2.volume_left_mm3.isna().all() and v2.volume_right_mm3.isna().all()
    np.testing.assert_allclose(v2.volume_mm3, v.voxels * 1e-6)
    with pytest.raises(ValueError, match="shape"):
        region_volumes(TINY_ANN, TINY_HEMI[:, :2], tiny_onto, 10.0)
    with pytest.raises(TypeError, match="integer"):
        region_volumes(TINY_ANN.astype(float), TINY_HEMI, tiny_onto, 10.0)


def test_region_table_tiny_every_column(tiny_onto, tiny_cells):
    vols = region_volumes(TINY_ANN, TINY_HEMI, tiny_onto, (10, 20, 50))
    t = region_table(tiny_cells, tiny_onto, vols)
    assert list(t.columns) == TABLE_COLUMNS + ["mean_size"]  # z, y, x, block, region_id, hemisphere skipped
    assert t.region_id.tolist() == [10, 1, 11, 111, 12, 13, 2, 21, 50, 0, 7, 999]
    assert t.acronym.tolist() == [
        "root",
        "A",
        "A1",
        "A1a",
        "A2",
        "A3",
        "B",
        "B1",
        "fibre",
        "outside",
        "unknown:7",
        "unknown:999",
    ]
    assert t.name.tolist()[:4] == ["root", "Area A", "Area A one", "Area A one a"]
    assert t.name.tolist()[9] == "outside the brain (label 0)"
    assert str(t.parent_id.dtype) == "Int64"
    assert t.parent_id.tolist() == [pd.NA, 10, 1, 11, 1, 1, 10, 2, pd.NA, pd.NA, pd.NA, pd.NA]
    assert t.depth.tolist() == [0, 1, 2, 3, 2, 2, 1, 2, 0, -1, -1, -1]
    assert t.structure_path.tolist() == [
        "10",
        "10/1",
        "10/1/11",
        "10/1/11/111",
        "10/1/12",
        "10/1/13",
        "10/2",
        "10/2/21",
        "50",
        "",
        "",
        "",
    ]
    assert t.in_ontology.tolist() == [True] * 9 + [False] * 3
    by_id = t.set_index("region_id")
    for rid, (left, right, unassigned, own) in TINY_EXPECTED.items():
        row = by_id.loc[rid]
        assert (row.left, row.right, row.unassigned, row.own) == (left, right, unassigned, own), rid
        assert row.total == left + right + unassigned
    for col in ("left", "right", "unassigned", "total", "own"):
        assert t[col].dtype == np.int64
    # volumes and densities (hand counts above); A3 has no voxels: NaN densities
    for rid, (_, vox, vl, vr) in TINY_VOXELS.items():
        row = by_id.loc[rid]
        assert row.volume_mm3 == pytest.approx(vox * TINY_VOXEL_MM3)
        assert row.volume_left_mm3 == pytest.approx(vl * TINY_VOXEL_MM3)
        assert row.volume_right_mm3 == pytest.approx(vr * TINY_VOXEL_MM3)
        total, left, right = (sum(TINY_EXPECTED[rid][:3]), TINY_EXPECTED[rid][0], TINY_EXPECTED[rid][1])
        for dens, n, v in (
            (row.density_per_mm3, total, vox),
            (row.density_left_per_mm3, left, vl),
            (row.density_right_per_mm3, right, vr),
        ):
            if v == 0:
                assert np.isnan(dens), rid
            else:
                assert dens == pytest.approx(n / (v * TINY_VOXEL_MM3)), rid
    assert by_id.loc[10].density_per_mm3 == pytest.approx(13 / 12e-5)
    # means over the region's cells, descendants included; NaN without cells
    for rid, mean in TINY_MEAN_SIZE.items():
        assert by_id.loc[rid].mean_size == pytest.approx(mean), rid
    assert np.isnan(by_id.loc[13].mean_size)
    # invariants, with children from the ontology
    hier = by_id[by_id.in_ontology]
    for rid in hier.index:
        kids = tiny_onto.children(rid)
        assert hier.loc[rid].total == hier.loc[rid].own + sum(hier.loc[k].total for k in kids)
    assert summary_line(t) == (
        "21 cells: 15 in 8 regions, 3 outside the brain (region 0), 3 in 2 labels missing from the ontology"
    )


def test_region_table_options(tiny_onto, tiny_cells):
    # no volumes: NaN volumes and densities; explicit measure list; NaN measures skipped
    cells = tiny_cells.assign(intensity=np.where(tiny_cells.region_id == 111, np.nan, 2.0))
    t = region_table(cells, tiny_onto, measure_columns=["intensity"]).set_index("region_id")
    assert "mean_size" not in t and t.volume_mm3.isna().all() and t.density_per_mm3.isna().all()
    assert np.isnan(t.loc[111].mean_intensity) and t.loc[11].mean_intensity == 2.0
    assert t.loc[10].mean_intensity == 2.0
    # numeric hemisphere codes (1 left, 2 right) give the same counts as the strings
    numeric = tiny_cells.assign(hemisphere=tiny_cells.hemisphere.map({"left": 1, "right": 2, "none": 0}))
    a = region_table(tiny_cells, tiny_onto, measure_columns=[])
    b = region_table(numeric, tiny_onto, measure_columns=[])
    pd.testing.assert_frame_equal(a, b)
    # no hemisphere column: everything unassigned
    c = region_table(tiny_cells.drop(columns="hemisphere"), tiny_onto, measure_columns=[])
    assert (c.unassigned == a.total).all() and (c.left == 0).all() and (c.right == 0).all()
    # an empty cell table: every ontology row, all zero, no unknown rows
    e = region_table(tiny_cells.iloc[:0], tiny_onto)
    assert len(e) == 10 and (e.total == 0).all() and e.mean_size.isna().all()
    assert (
        summary_line(e) == "0 cells: 0 in 0 regions, 0 outside the brain (region 0), 0 in 0 labels missing "
        "from the ontology"
    )
    # volumes lacking a row: NaN for that row only
    vols = region_volumes(TINY_ANN, TINY_HEMI, tiny_onto, 10.0)
    d = region_table(tiny_cells, tiny_onto, vols[vols.region_id != 999], []).set_index("region_id")
    assert np.isnan(d.loc[999].volume_mm3) and d.loc[7].volume_mm3 > 0
    with pytest.raises(ValueError, match="region_id"):
        region_table(tiny_cells.drop(columns="region_id"), tiny_onto)
    with pytest.raises(ValueError, match="missing values"):
        region_table(tiny_cells.assign(region_id=np.where(tiny_cells.z == 0, np.nan, tiny_cells.region_id)), tiny_onto)
    with pytest.raises(ValueError, match="nope"):
        region_table(tiny_cells, tiny_onto, measure_columns=["nope"])
    with pytest.raises(ValueError, match="region_volumes"):
        region_table(tiny_cells, tiny_onto, vols[["region_id", "volume_mm3"]])
    with pytest.raises(ValueError, match="not cells"):  # a table is not a cell table
        region_table(a, tiny_onto)
    with pytest.raises(ValueError, match="not cells"):
        collapse_to_depth(collapse_to_depth(a, tiny_onto, 1), tiny_onto, 1)


def test_leaf_table(tiny_onto, tiny_cells):
    t = region_table(tiny_cells, tiny_onto)
    leaves = leaf_table(t, tiny_onto)
    assert leaves.region_id.tolist() == [111, 12, 13, 21, 50]
    assert leaves.total.tolist() == [4, 3, 0, 2, 2]
    assert list(leaves.index) == list(range(5))


def test_collapse_to_depth_tiny(tiny_onto, tiny_cells):
    vols = region_volumes(TINY_ANN, TINY_HEMI, tiny_onto, (10, 20, 50))
    t = region_table(tiny_cells, tiny_onto, vols)
    c = collapse_to_depth(tiny_cells, tiny_onto, 1, vols)
    assert "own" not in c and "whole_subtree" in c
    assert c.region_id.tolist() == [10, 1, 2, 50, 0, 7, 999]
    assert c.whole_subtree.tolist() == [False, True, True, True, True, True, True]
    assert c.total.tolist() == [1, 9, 3, 2, 3, 1, 2]
    assert c.left.tolist() == [0, 5, 1, 2, 1, 1, 0] and c.right.tolist() == [1, 3, 2, 0, 0, 0, 2]
    assert c.total.sum() == len(tiny_cells)
    # pooled volumes: root keeps its own voxel only; A and B their whole subtree
    np.testing.assert_allclose(c.volume_mm3[:4], np.array([1, 8, 3, 1]) * TINY_VOXEL_MM3)
    np.testing.assert_allclose(c.volume_left_mm3[:4], np.array([0, 4, 2, 0]) * TINY_VOXEL_MM3)
    assert c.density_per_mm3[0] == pytest.approx(1 / TINY_VOXEL_MM3)
    assert c.mean_size.tolist()[:4] == pytest.approx([9.0, 28 / 9, 20 / 3, 10.0])
    # depth-1 rows equal the region table's totals at depth 1
    by_id = t.set_index("region_id")
    for row in c[c.depth == 1].itertuples():
        assert (row.left, row.right, row.unassigned, row.total) == tuple(
            by_id.loc[row.region_id, ["left", "right", "unassigned", "total"]]
        )
        assert row.volume_mm3 == pytest.approx(by_id.loc[row.region_id].volume_mm3)
    # from the region table: same counts and volumes, no means
    ct = collapse_to_depth(t, tiny_onto, 1)
    assert not any(col.startswith("mean_") for col in ct.columns)
    pd.testing.assert_frame_equal(ct, c.drop(columns="mean_size"))
    # depth 0: the roots hold everything; deeper than the tree: each node its own cells
    c0 = collapse_to_depth(tiny_cells, tiny_onto, 0)
    assert c0.region_id.tolist() == [10, 50, 0, 7, 999] and c0.total.tolist() == [13, 2, 3, 1, 2]
    c9 = collapse_to_depth(tiny_cells, tiny_onto, 9)
    assert c9.region_id.tolist() == t.region_id.tolist()
    assert c9.total.tolist() == t.own.tolist()
    assert c9.whole_subtree.tolist() == [False, False, False, True, True, True, False, True, True, True, True, True]
    for depth in range(5):
        assert collapse_to_depth(tiny_cells, tiny_onto, depth).total.sum() == len(tiny_cells)
    assert summary_line(c) == (
        "21 cells: 15 in 4 regions, 3 outside the brain (region 0), 3 in 2 labels missing from the ontology"
    )
    with pytest.raises(ValueError, match="depth"):
        collapse_to_depth(tiny_cells, tiny_onto, -1)


def test_collapse_by_flags_tiny(tiny_onto, tiny_cells):
    # A1a pools into A1; A2, A3 into A; B, B1 into root; fibre has no flagged ancestor
    c = collapse_by_flags(tiny_cells, tiny_onto, [10, 1, 11, 12345])  # 12345: not in the ontology
    assert c.region_id.tolist() == [10, 1, 11, 50, 0, 7, 999]
    assert c.total.tolist() == [4, 4, 5, 2, 3, 1, 2]
    assert c.whole_subtree.tolist() == [False, False, True, True, True, True, True]
    assert c.total.sum() == len(tiny_cells)
    t = region_table(tiny_cells, tiny_onto)
    pd.testing.assert_frame_equal(collapse_by_flags(t, tiny_onto, {10, 1, 11}), c.drop(columns="mean_size"))
    # no flags: every node keeps its own cells
    none = collapse_by_flags(tiny_cells, tiny_onto, [])
    assert none.total.tolist() == t.own.tolist()


def test_universe_node_zero_is_background():
    """ClearMap's Allen JSON wraps the tree in 0 = universe: label 0 stays 'outside'."""
    onto = Ontology(
        [
            Region(0, "universe", "universe", None),
            Region(997, "root", "root", 0),
            Region(8, "grey", "grey", 997),
            Region(9, "fib", "fibre", 997),
        ]
    )
    cells = pd.DataFrame({"region_id": [0, 0, 8, 9, 997, 5], "hemisphere": ["left"] * 6})
    t = region_table(cells, onto)
    assert t.region_id.tolist() == [997, 8, 9, 0, 5]
    assert t.region_id.is_unique
    assert t.parent_id.tolist()[:3] == [pd.NA, 997, 997]
    assert t.depth.tolist() == [1, 2, 2, -1, -1]  # ontology depths are kept
    assert t.structure_path.tolist()[:3] == ["997", "997/8", "997/9"]
    assert t.total.tolist() == [3, 1, 1, 2, 1] and t.acronym[3] == "outside" and not t.in_ontology[3]
    assert (
        summary_line(t) == "6 cells: 3 in 3 regions, 2 outside the brain (region 0), 1 in 1 label missing "
        "from the ontology"
    )
    pd.testing.assert_frame_equal(collapse_to_depth(cells, onto, 0), collapse_to_depth(cells, onto, 1))
    assert collapse_to_depth(cells, onto, 1).total.tolist() == [3, 2, 1]
    ann = np.array([[[0, 997, 8, 8, 9, 5]]], dtype=np.uint32)
    v = region_volumes(ann, None, onto, 1000.0)
    assert v.region_id.tolist() == [997, 8, 9, 0, 5] and v.voxels.tolist() == [4, 2, 1, 1, 1]


# ---------------------------------------------------------------------------------------------
# The real Allen CCFv3 2017, 25 µm
# ---------------------------------------------------------------------------------------------


def _json_ids(path: Path) -> set[int]:
    ids: set[int] = set()
    stack = [json.loads(path.read_text())["msg"][0]]
    while stack:
        node = stack.pop()
        ids.add(int(node["id"]))
        stack.extend(node["children"])
    return ids


def _label_hemi_counts(ann: np.ndarray, hemi: np.ndarray) -> dict[tuple[int, int], int]:
    """(label, hemisphere value) -> voxels, independently of the module: a dense bincount of
    ``label * 4 + hemisphere`` for small labels, np.unique for the few large Allen ids."""
    small_limit = 1 << 16
    dense = np.zeros(small_limit * 4, np.int64)
    big = []
    for z in range(0, ann.shape[0], 32):
        lab, h = ann[z : z + 32].astype(np.int64).ravel(), hemi[z : z + 32].astype(np.int64).ravel()
        small = lab < small_limit
        dense += np.bincount(lab[small] * 4 + h[small], minlength=dense.size)
        big.append(lab[~small] * 4 + h[~small])
    keys, counts = np.unique(np.concatenate(big), return_counts=True)
    nz = np.flatnonzero(dense)
    pairs = zip(np.concatenate([nz, keys]).tolist(), np.concatenate([dense[nz], counts]).tolist(), strict=True)
    return {(k // 4, k % 4): c for k, c in pairs}


@pytest.fixture(scope="module")
def allen(allen_atlas):
    if not ALLEN_CSV.is_file():
        pytest.skip(f"Allen CCF reference data not found in {ALLEN}")
    # as in test_atlas: axis 0 crosses the hemispheres; "ras" puts index 0 on the right
    atlas = allen_atlas[0]
    t0 = time.perf_counter()
    volumes = region_volumes(atlas.annotation, atlas.hemispheres, atlas.ontology, atlas.voxel_size)
    volume_seconds = time.perf_counter() - t0
    rng = np.random.default_rng(7)
    n = 200_000
    idx = tuple(rng.integers(0, s, n) for s in atlas.shape)
    region = atlas.annotation[idx].astype(np.int64)
    hemi = atlas.hemispheres[idx]
    # make sure some cells sit on labels missing from the ontology
    sub = atlas.annotation[::2, ::2, ::2]
    stray = 2 * np.argwhere(~atlas.ontology.contains(sub) & (sub != 0))
    pick = stray[rng.integers(0, len(stray), 300)]
    region[:300] = atlas.annotation[tuple(pick.T)]
    hemi[:300] = atlas.hemispheres[tuple(pick.T)]
    names = np.array(["none", "left", "right"])[hemi]
    names[rng.random(n) < 0.01] = "none"  # a few cells of neither side
    intensity = rng.gamma(2.0, 100.0, n)
    intensity[rng.random(n) < 0.05] = np.nan
    cells = pd.DataFrame(
        {
            "az": idx[0].astype(float),
            "ay": idx[1].astype(float),
            "ax": idx[2].astype(float),
            "region_id": region,
            "hemisphere": names,
            "intensity_raw": intensity,
        }
    )
    table = region_table(cells, atlas.ontology, volumes)
    return {
        "atlas": atlas,
        "volumes": volumes,
        "volume_seconds": volume_seconds,
        "cells": cells,
        "table": table,
        "json_ids": _json_ids(ALLEN_JSON),
        "label_hemi": _label_hemi_counts(atlas.annotation, atlas.hemispheres),
    }


@needs_allen
@pytest.mark.shared
def test_allen_table_invariants(allen):
    o, cells, t = allen["atlas"].ontology, allen["cells"], allen["table"]
    # every ontology node but 0 ("universe") is a hierarchy row; 0 is the outside row
    assert t.region_id.is_unique and t.in_ontology.sum() == len(o) - 1 == 1310
    assert set(t.region_id[t.in_ontology]) == set(o.ids) - {0}
    by_id = t.set_index("region_id")
    hier = by_id[by_id.in_ontology]
    for rid, row in hier.iterrows():
        kids = o.children(rid)
        assert row.total == row.own + hier.loc[kids].total.sum(), rid
        assert row.left + row.right + row.unassigned == row.total, rid
    assert (hier.own == cells.region_id.value_counts().reindex(hier.index, fill_value=0)).all()
    # nothing dropped: root total + outside + unknown = number of cells
    roots = hier[hier.parent_id.isna()]
    assert roots.index.tolist() == [997]
    unknown = by_id[~by_id.in_ontology].drop(index=0)
    assert roots.total.sum() + by_id.loc[0].total + unknown.total.sum() == len(cells)
    assert by_id.loc[0].total == (cells.region_id == 0).sum() > 0
    # unknown rows: exactly the labels the JSON does not list, with their cell counts
    stray = cells[~cells.region_id.isin(allen["json_ids"]) & (cells.region_id != 0)].region_id.value_counts()
    assert unknown.index.tolist() == sorted(stray.index.tolist()) and len(unknown) >= 10
    assert (unknown.total == stray.reindex(unknown.index)).all()
    assert all(a == f"unknown:{i}" for i, a in unknown.acronym.items())
    assert summary_line(t).startswith(f"200000 cells: {roots.total.sum()} in ")
    assert (
        f"{by_id.loc[0].total} outside the brain (region 0), {unknown.total.sum()} in {len(unknown)} labels"
        in summary_line(t)
    )


@needs_allen
@pytest.mark.shared
def test_allen_brute_force_nodes(allen):
    o, cells, t = allen["atlas"].ontology, allen["cells"], allen["table"]
    by_id = t.set_index("region_id")
    for acronym in ("brain", "Isocortex", "SSp-bfd", "SSp-bfd4", "HPF", "CA1", "TH", "fiber tracts", "VS"):
        rid = o.lookup_acronym(acronym)
        sub = cells[cells.region_id.isin(o.descendants(rid, include_self=True))]
        row = by_id.loc[rid]
        assert row.total == len(sub), acronym
        assert (row.left, row.right) == ((sub.hemisphere == "left").sum(), (sub.hemisphere == "right").sum())
        assert row.unassigned == (sub.hemisphere == "none").sum()
        assert row.mean_intensity_raw == pytest.approx(sub.intensity_raw.mean(), rel=1e-9)
        assert row.density_per_mm3 == pytest.approx(len(sub) / row.volume_mm3)
        assert row.structure_path == "/".join(str(i) for i in o.path(rid)[1:])  # without "universe" (0)
        assert row.depth == o.depth(rid)


@needs_allen
@pytest.mark.shared
def test_allen_volumes(allen):
    atlas, v = allen["atlas"], allen["volumes"]
    o, counts = atlas.ontology, allen["label_hemi"]
    voxel_mm3 = 25.0**3 / 1e9
    assert voxel_mm3 == 1.5625e-5
    assert allen["volume_seconds"] < 10  # measured ~1.3 s
    by_id = v.set_index("region_id")
    hier = by_id[by_id.in_ontology]
    for rid, row in hier.iterrows():  # node = own voxels + children
        assert row.voxels == row.own_voxels + hier.loc[o.children(rid)].voxels.sum(), rid
        assert row.volume_mm3 == pytest.approx(row.voxels * voxel_mm3)
    nonzero = int(np.count_nonzero(atlas.annotation))
    brain = by_id.loc[997].volume_mm3 + by_id[~by_id.in_ontology].drop(index=0).volume_mm3.sum()
    assert brain == pytest.approx(nonzero * voxel_mm3, rel=1e-12)
    assert by_id.loc[0].voxels == atlas.annotation.size - nonzero
    assert v.own_voxels.sum() == atlas.annotation.size
    # brute force from independent (label, hemisphere) voxel counts, for a handful of nodes
    for acronym in ("brain", "Isocortex", "SSp-bfd", "CA1", "fiber tracts", "VS"):
        rid = o.lookup_acronym(acronym)
        ids = set(o.descendants(rid, include_self=True))
        left = sum(c for (lab, h), c in counts.items() if lab in ids and h == 1)
        right = sum(c for (lab, h), c in counts.items() if lab in ids and h == 2)
        assert (by_id.loc[rid].voxels_left, by_id.loc[rid].voxels_right) == (left, right), acronym
        assert by_id.loc[rid].volume_mm3 == pytest.approx((left + right) * voxel_mm3)
    # the two halves of a symmetric atlas are about equal
    assert by_id.loc[997].volume_left_mm3 == pytest.approx(by_id.loc[997].volume_right_mm3, rel=0.01)


@needs_allen
@pytest.mark.shared
def test_allen_collapse(allen):
    o, cells, t = allen["atlas"].ontology, allen["cells"], allen["table"]
    by_id = t.set_index("region_id")
    for depth in (1, 3, 6, 8):
        c = collapse_to_depth(cells, o, depth, allen["volumes"])
        assert c.total.sum() == len(cells) and c.region_id.is_unique
        at = c[c.depth == depth].set_index("region_id")
        assert len(at) == sum(o.depth(i) == depth for i in o.ids)
        cols = ["left", "right", "unassigned", "total", "volume_mm3", "mean_intensity_raw"]
        pd.testing.assert_frame_equal(at[cols], by_id.loc[at.index, cols], check_names=False)
        assert c[c.depth == depth].whole_subtree.all()
        shallow = c[c.in_ontology & (c.depth < depth)]  # own cells only
        assert (shallow.total.to_numpy() == by_id.loc[shallow.region_id].own.to_numpy()).all()
        # brute force with the ontology's own depth map
        mapped = o.map_to_depth(cells.region_id.to_numpy(), depth)
        expected = pd.Series(mapped).value_counts()
        assert (c.set_index("region_id").total.reindex(expected.index) == expected).all()
        # from the table: same counts
        ct = collapse_to_depth(t, o, depth)
        assert (ct.total.to_numpy() == c.total.to_numpy()).all()
    flags = pd.read_csv(ALLEN_CSV)
    flagged = flags.id[flags.collapse.notna()].astype(int)
    cf = collapse_by_flags(cells, o, flagged, allen["volumes"])
    assert cf.total.sum() == len(cells)
    bfd = o.lookup_acronym("SSp-bfd")  # flagged; its layers are not
    assert cf.set_index("region_id").loc[bfd].total == by_id.loc[bfd].total
    assert not set(o.children(bfd)) & set(cf.region_id)


@needs_allen
@pytest.mark.shared
def test_allen_million_cells_speed(allen):
    atlas = allen["atlas"]
    rng = np.random.default_rng(3)
    n = 1_000_000
    idx = tuple(rng.integers(0, s, n) for s in atlas.shape)
    cells = pd.DataFrame(
        {
            "region_id": atlas.annotation[idx].astype(np.int64),
            "hemisphere": np.array(["none", "left", "right"])[atlas.hemispheres[idx]],
        }
    )
    for c in (
        "size",
        "volume_um3",
        "intensity_raw",
        "intensity_bg",
        "intensity_dog",
        "mean_raw",
        "mean_bg",
        "mean_dog",
    ):
        cells[c] = rng.random(n)
    t0 = time.perf_counter()
    t = region_table(cells, atlas.ontology, allen["volumes"])
    seconds = time.perf_counter() - t0
    assert t.set_index("region_id").loc[997].total + t.total[~t.in_ontology].sum() == n
    assert seconds < 3.0, f"region_table took {seconds:.2f} s for 1e6 cells"  # measured ~0.25 s
