"""Compare detections with a reference point set (ground truth or another tool's output)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
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

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall (0.0 when both are 0)."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if (p + r) > 0 else 0.0


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
    det = np.asarray(detected, float).reshape(-1, 3)
    ref = np.asarray(reference, float).reshape(-1, 3)
    return match_pairs(len(det), len(ref), *candidate_pairs(det, ref, radius_um, voxel_size), radius_um)


def candidate_pairs(
    detected: np.ndarray, reference: np.ndarray, radius_um: float, voxel_size: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (detected, reference) pair of points at most ``radius_um`` apart.

    Parameters
    ----------
    detected, reference : (n, 3) array_like of float
        Points (z, y, x), voxels.
    radius_um : float
        Largest distance of a pair, µm.
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.

    Returns
    -------
    row, col : ndarray of int
        Index of the detected and of the reference point of each pair.
    dist : ndarray of float
        Their distance, µm.

    Examples
    --------
    >>> row, col, dist = candidate_pairs([[0, 0, 0], [0, 0, 9]], [[0, 0, 1]], 2.0, (1, 1, 1))
    >>> row.tolist(), col.tolist(), dist.tolist()
    ([0], [0], [1.0])
    """
    det = np.asarray(detected, float).reshape(-1, 3) * np.asarray(voxel_size, float)
    ref = np.asarray(reference, float).reshape(-1, 3) * np.asarray(voxel_size, float)
    if not len(det) or not len(ref):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    sparse = cKDTree(det).sparse_distance_matrix(cKDTree(ref), radius_um, output_type="coo_matrix")
    return sparse.row.astype(np.int64), sparse.col.astype(np.int64), np.asarray(sparse.data, float)


def match_pairs(
    n_detected: int, n_reference: int, row: np.ndarray, col: np.ndarray, dist: np.ndarray, radius_um: float
) -> Match:
    """The optimal one-to-one matching among candidate pairs (:func:`candidate_pairs`, or any subset of them).

    Matching a subset of the detections gives what :func:`match_points` gives for those
    detections alone, with the pairs in the original indices.

    Parameters
    ----------
    n_detected, n_reference : int
        Numbers of detected and reference points (for precision and recall).
    row, col : ndarray of int
        Detected and reference index of each candidate pair.
    dist : ndarray of float
        Their distance, µm (each at most ``radius_um``).
    radius_um : float
        Largest distance of a matched pair, µm.

    Returns
    -------
    Match

    Examples
    --------
    >>> match_pairs(3, 2, np.array([0, 1, 1]), np.array([0, 0, 1]), np.array([1.0, 0.5, 2.0]), 5.0).pairs.tolist()
    [[0, 0], [1, 1]]
    """
    if not len(row):
        return Match(n_detected, n_reference, 0, np.zeros((0, 2), int))
    # solve each connected group of candidate pairs on its own (almost all are 1 x 1)
    n, m = int(row.max()) + 1, int(col.max()) + 1
    graph = coo_matrix((np.ones(len(row)), (row, n + col)), shape=(n + m, n + m))
    _, comp = connected_components(graph, directed=False)
    pair_comp = comp[row]
    single = np.bincount(pair_comp)[pair_comp] == 1  # a group of one candidate pair: matched as it is
    pairs = [np.stack([row[single], col[single]], axis=1)]
    multi = np.flatnonzero(~single)
    order = multi[np.argsort(pair_comp[multi], kind="mergesort")]
    bounds = np.flatnonzero(np.diff(pair_comp[order])) + 1
    big = 1e6 * radius_um + 1.0
    for idx in np.split(order, bounds) if len(order) else []:
        r_, c_, d_ = row[idx], col[idx], dist[idx]
        rows, cols = np.unique(r_), np.unique(c_)
        cost = np.full((len(rows), len(cols)), big)
        cost[np.searchsorted(rows, r_), np.searchsorted(cols, c_)] = d_
        a, b = linear_sum_assignment(cost)
        ok = cost[a, b] < big
        pairs.append(np.stack([rows[a[ok]], cols[b[ok]]], axis=1))
    pairs = np.concatenate(pairs).astype(int).reshape(-1, 2)
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
    return Match(n_detected, n_reference, len(pairs), pairs)


Box = tuple[tuple[float, float], tuple[float, float], tuple[float, float]]


def parse_box(text: str) -> Box:
    """A box given as ``z0:z1,y0:y1,x0:x1`` (voxels, half-open).

    Parameters
    ----------
    text : str
        Three ``start:stop`` ranges, z then y then x.

    Returns
    -------
    tuple of three (start, stop) pairs

    Raises
    ------
    ValueError
        If the text is not three ranges with start < stop.

    Examples
    --------
    >>> parse_box("0:10, 5:50,5:60")
    ((0.0, 10.0), (5.0, 50.0), (5.0, 60.0))
    """
    parts = [p.strip() for p in text.split(",")]
    try:
        ranges = tuple(tuple(float(v) for v in p.split(":")) for p in parts)
    except ValueError:
        ranges = ()
    if len(ranges) != 3 or any(len(r) != 2 or not r[0] < r[1] for r in ranges):
        raise ValueError(f"box {text!r}: expected z0:z1,y0:y1,x0:x1 with start < stop (voxels)")
    return ranges  # type: ignore[return-value]


def in_box(points: np.ndarray, box: Box) -> np.ndarray:
    """Which (z, y, x) points lie in the half-open box.

    Parameters
    ----------
    points : (n, 3) array_like
        Points (z, y, x), voxels.
    box : tuple of three (start, stop) pairs

    Returns
    -------
    ndarray of bool
    """
    p = np.asarray(points, float).reshape(-1, 3)
    lo = np.array([r[0] for r in box])
    hi = np.array([r[1] for r in box])
    return np.all((p >= lo) & (p < hi), axis=1)


def marker_box(markers: np.ndarray) -> Box:
    """The box spanned by the markers, half a voxel beyond the outermost ones on every side.

    Parameters
    ----------
    markers : (n, 3) array_like
        Hand-clicked points (z, y, x), voxels; at least one.

    Returns
    -------
    tuple of three (start, stop) pairs

    Examples
    --------
    >>> marker_box([[2, 10, 10], [5, 30, 12.5]])
    ((1.5, 5.5), (9.5, 30.5), (9.5, 13.0))
    """
    p = np.asarray(markers, float).reshape(-1, 3)
    return tuple((float(p[:, a].min() - 0.5), float(p[:, a].max() + 0.5)) for a in range(3))


def evaluate_against_markers(
    cells: np.ndarray, markers: np.ndarray, voxel_size: Sequence[float], radius_um: float, box: Box | None = None
) -> dict[str, float | int]:
    """Precision, recall and F1 of detections against hand-clicked markers inside a box.

    Only detections and markers inside ``box`` count (default: the markers' own bounding
    box, :func:`marker_box`); they are matched one-to-one within ``radius_um`` by
    :func:`match_points`.

    Parameters
    ----------
    cells : (n, 3) array_like
        Detected centres (z, y, x), voxels.
    markers : (m, 3) array_like
        Hand-clicked centres (z, y, x), voxels.
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    radius_um : float
        Largest distance of a matched pair, µm.
    box : tuple of three (start, stop) pairs, optional
        The annotated region, voxels.

    Returns
    -------
    dict
        ``detected, markers, matched, precision, recall, f1`` and the ``box`` used.

    Examples
    --------
    >>> r = evaluate_against_markers([[1, 1, 1], [1, 5, 5], [9, 9, 9]], [[1, 1, 1.5], [1, 8, 8]], (1, 1, 1), 2.0)
    >>> r["detected"], r["matched"], round(r["precision"], 2), r["recall"], round(r["f1"], 2)
    (2, 1, 0.5, 0.5, 0.5)
    """
    cells = np.asarray(cells, float).reshape(-1, 3)
    markers = np.asarray(markers, float).reshape(-1, 3)
    if box is None:
        if not len(markers):
            raise ValueError("no markers: nothing to evaluate against")
        box = marker_box(markers)
    det = cells[in_box(cells, box)]
    ref = markers[in_box(markers, box)]
    m = match_points(det, ref, radius_um, voxel_size)
    p, r, f1 = m.precision, m.recall, m.f1
    return {
        "detected": len(det),
        "markers": len(ref),
        "matched": m.n_matched,
        "precision": p,
        "recall": r,
        "f1": f1,
        "box": box,
    }
