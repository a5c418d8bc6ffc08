"""Compare detections with a reference point set (ground truth or another tool's output)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class Match:
    """One-to-one matching of detections to reference points within a radius."""

    n_detected: int
    n_reference: int
    n_matched: int
    pairs: np.ndarray  # (k, 2) indices (detected, reference)

    @property
    def precision(self) -> float:
        return self.n_matched / self.n_detected if self.n_detected else 1.0

    @property
    def recall(self) -> float:
        return self.n_matched / self.n_reference if self.n_reference else 1.0


def match_points(detected: np.ndarray, reference: np.ndarray, radius_um: float, voxel_size: Sequence[float]) -> Match:
    """Optimal (Hungarian, minimum total distance) one-to-one matching of (z, y, x) voxel
    points whose physical distance is at most ``radius_um``; each connected group of
    candidate pairs is solved separately, so it scales to millions of points."""
    det = np.asarray(detected, float).reshape(-1, 3) * np.asarray(voxel_size, float)
    ref = np.asarray(reference, float).reshape(-1, 3) * np.asarray(voxel_size, float)
    if not len(det) or not len(ref):
        return Match(len(det), len(ref), 0, np.zeros((0, 2), int))
    sparse = cKDTree(det).sparse_distance_matrix(cKDTree(ref), radius_um, output_type="coo_matrix")
    if sparse.nnz == 0:
        return Match(len(det), len(ref), 0, np.zeros((0, 2), int))
    # solve each connected group of candidate pairs on its own (almost all are 1 x 1)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n, m = len(det), len(ref)
    graph = coo_matrix((np.ones(sparse.nnz), (sparse.row, n + sparse.col)), shape=(n + m, n + m))
    _, comp = connected_components(graph, directed=False)
    pair_comp = comp[sparse.row]
    order = np.argsort(pair_comp, kind="mergesort")
    bounds = np.flatnonzero(np.diff(pair_comp[order])) + 1
    pairs = []
    big = 1e6 * radius_um + 1.0
    for idx in np.split(order, bounds):
        r_, c_, d_ = sparse.row[idx], sparse.col[idx], sparse.data[idx]
        rows, cols = np.unique(r_), np.unique(c_)
        if len(rows) == 1 and len(cols) == 1:
            pairs.append((rows[0], cols[0]))
            continue
        cost = np.full((len(rows), len(cols)), big)
        cost[np.searchsorted(rows, r_), np.searchsorted(cols, c_)] = d_
        a, b = linear_sum_assignment(cost)
        ok = cost[a, b] < big
        pairs.extend(zip(rows[a[ok]], cols[b[ok]]))
    pairs = np.array(sorted(pairs), int).reshape(-1, 2)
    return Match(n, m, len(pairs), pairs)
