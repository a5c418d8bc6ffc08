"""Compare detections with a reference point set (ground truth or another tool's output)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class Match:
    """One-to-one matching of detections to reference points within a radius.

    Attributes
    ----------
    n_detected : int
        Number of detected points.
    n_reference : int
        Number of reference points.
    n_matched : int
        Number of matched pairs.
    pairs : (k, 2) ndarray of int
        Indices (detected, reference) of the matched pairs, sorted.
    """

    n_detected: int
    n_reference: int
    n_matched: int
    pairs: np.ndarray  # (k, 2) indices (detected, reference)

    @property
    def precision(self) -> float:
        """Fraction of detections that are matched (1.0 with no detections)."""
        return self.n_matched / self.n_detected if self.n_detected else 1.0

    @property
    def recall(self) -> float:
        """Fraction of reference points that are matched (1.0 with no reference points)."""
        return self.n_matched / self.n_reference if self.n_reference else 1.0


def match_points(detected: np.ndarray, reference: np.ndarray, radius_um: float, voxel_size: Sequence[float]) -> Match:
    """Match detected points to reference points one-to-one within a physical radius.

    The matching is optimal (Hungarian, minimum total distance) among pairs at most
    ``radius_um`` apart; each connected group of candidate pairs is solved separately,
    so it scales to millions of points.

    Parameters
    ----------
    detected, reference : (n, 3) array_like of float
        Points (z, y, x), voxels.
    radius_um : float
        Largest distance of a matched pair, µm.
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.

    Returns
    -------
    Match

    Examples
    --------
    >>> m = match_points([[10, 10, 10], [20, 20, 20], [50, 50, 50]], [[10, 10, 11], [21, 20, 20]],
    ...                  radius_um=5.0, voxel_size=(2.0, 1.0, 1.0))
    >>> m.n_matched, m.pairs.tolist()
    (2, [[0, 0], [1, 1]])
    >>> round(m.precision, 3), m.recall
    (0.667, 1.0)
    """
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
