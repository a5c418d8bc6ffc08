"""Compare detections with a reference point set (ground truth or another tool's output)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

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


def match_points(detected: np.ndarray, reference: np.ndarray, radius_um: float,
                 voxel_size: Sequence[float]) -> Match:
    """Optimal (Hungarian, minimum total distance) one-to-one matching of (z, y, x) voxel
    points whose physical distance is at most ``radius_um``."""
    det = np.asarray(detected, float).reshape(-1, 3) * np.asarray(voxel_size, float)
    ref = np.asarray(reference, float).reshape(-1, 3) * np.asarray(voxel_size, float)
    if not len(det) or not len(ref):
        return Match(len(det), len(ref), 0, np.zeros((0, 2), int))
    sparse = cKDTree(det).sparse_distance_matrix(cKDTree(ref), radius_um, output_type="coo_matrix")
    if sparse.nnz == 0:
        return Match(len(det), len(ref), 0, np.zeros((0, 2), int))
    rows = np.unique(sparse.row)
    cols = np.unique(sparse.col)
    big = 1e6 * radius_um + 1.0
    cost = np.full((len(rows), len(cols)), big)
    cost[np.searchsorted(rows, sparse.row), np.searchsorted(cols, sparse.col)] = sparse.data
    r, c = linear_sum_assignment(cost)
    ok = cost[r, c] < big
    pairs = np.stack([rows[r[ok]], cols[c[ok]]], axis=1)
    return Match(len(det), len(ref), int(ok.sum()), pairs)
