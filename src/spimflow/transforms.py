"""Exact point transforms between raw sample voxels and atlas voxels.

The chain (see ``docs/registration.md``)::

    raw voxel (channel) --ResampleGrid--> resampled voxel (channel)
        --[signal only, if channel correction] inverse correction affine-->
    resampled voxel (autofluorescence) --elastix atlas transform--> atlas voxel

Elastix was run with FIXED = resampled autofluorescence and MOVING = atlas reference,
both with spacing = atlas voxel size and origin 0, so its transform maps fixed
physical points to moving physical points: exactly sample → atlas. We evaluate that
transform ourselves, vectorised, from the elastix ``TransformParameters`` maps
(affine/Euler/similarity/translation and cubic B-spline, composed as elastix
composes them); ``tests/test_transforms.py`` checks it against transformix. The way
back (atlas → sample) inverts it by damped Newton iteration, not by a second
registration.

Elastix speaks physical (x, y, z); everything here is (z, y, x) and converts once at
the edge (:func:`zyx_voxels_to_xyz_um` / :func:`xyz_um_to_zyx_voxels`).
"""

from __future__ import annotations

import json
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numba as nb
import numpy as np

from spimflow.errors import InputFileError
from spimflow.geometry import ResampleGrid
from spimflow.io.atomic import atomic_path

log = logging.getLogger(__name__)

ParameterMap = Mapping[str, Sequence[str]]
CHUNK = 200_000  # points per vectorised step: bounded memory for millions of points


# -- coordinate edges ----------------------------------------------------------------------


def zyx_voxels_to_xyz_um(points: np.ndarray, voxel_size_zyx: Sequence[float]) -> np.ndarray:
    """Convert voxel coordinates (z, y, x) to elastix physical coordinates (x, y, z), µm.

    Origin 0 is the centre of voxel 0.

    Parameters
    ----------
    points : (n, 3) array_like of float
        Voxel coordinates (z, y, x).
    voxel_size_zyx : sequence of float
        Voxel size (z, y, x), µm.

    Returns
    -------
    (n, 3) ndarray of float
        Physical coordinates (x, y, z), µm.

    Examples
    --------
    >>> zyx_voxels_to_xyz_um([[1, 2, 3]], (4.0, 2.0, 2.0)).tolist()
    [[6.0, 4.0, 4.0]]
    """
    return (np.asarray(points, float) * np.asarray(voxel_size_zyx, float))[:, ::-1]


def xyz_um_to_zyx_voxels(points: np.ndarray, voxel_size_zyx: Sequence[float]) -> np.ndarray:
    """Convert elastix physical coordinates (x, y, z), µm, to voxel coordinates (z, y, x).

    Inverse of :func:`zyx_voxels_to_xyz_um`.

    Parameters
    ----------
    points : (n, 3) array_like of float
        Physical coordinates (x, y, z), µm.
    voxel_size_zyx : sequence of float
        Voxel size (z, y, x), µm.

    Returns
    -------
    (n, 3) ndarray of float
        Voxel coordinates (z, y, x).

    Examples
    --------
    >>> xyz_um_to_zyx_voxels([[6.0, 4.0, 4.0]], (4.0, 2.0, 2.0)).tolist()
    [[1.0, 2.0, 3.0]]
    """
    return np.asarray(points, float)[:, ::-1] / np.asarray(voxel_size_zyx, float)


# -- elastix parameter files ---------------------------------------------------------------

_LINE = re.compile(r"^\s*\((\w+)\s+(.*)\)\s*(//.*)?$")


def read_parameter_file(path: str | Path) -> dict[str, list[str]]:
    """Parse an elastix parameter or TransformParameters text file.

    Parameters
    ----------
    path : str or Path
        Text file of ``(Key value ...)`` lines; ``//`` comments are ignored.

    Returns
    -------
    dict of str to list of str
        Key → values, quotes removed.

    Raises
    ------
    InputFileError
        If the file is missing or a line is not an elastix ``(Key value ...)`` line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: elastix parameter file not found")
    out: dict[str, list[str]] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        s = line.split("//", 1)[0].strip() if not line.strip().startswith("(") else line.strip()
        if not s or s.startswith("//"):
            continue
        m = _LINE.match(s)
        if not m:
            raise InputFileError(f"{path}:{lineno}: not an elastix '(Key value ...)' line: {line.strip()!r}")
        out[m.group(1)] = [v.strip('"') for v in re.findall(r'"[^"]*"|\S+', m.group(2))]
    return out


def write_parameter_file(pmap: ParameterMap, path: str | Path) -> None:
    """Write a parameter map in elastix's text format (numbers bare, everything else quoted).

    Parameters
    ----------
    pmap : mapping of str to sequence of str
        Key → values.
    path : str or Path
        Output file; keys are written sorted.
    """
    lines = []
    for key in sorted(pmap):
        vals = []
        for v in pmap[key]:
            try:
                float(v)
                vals.append(str(v))
            except ValueError:
                vals.append(f'"{v}"')
        lines.append(f"({key} {' '.join(vals)})")
    Path(path).write_text("\n".join(lines) + "\n")


def _floats(pmap: ParameterMap, key: str) -> np.ndarray:
    try:
        return np.array([float(v) for v in pmap[key]], dtype=np.float64)
    except KeyError:
        raise InputFileError(f"elastix transform map has no {key!r} (transform {pmap.get('Transform')})") from None


# -- elastix transforms, vectorised (physical x, y, z µm) ---------------------------------------


class ElastixTransform(ABC):
    """One elastix transform map: ``apply`` maps fixed physical points to moving ones.

    All points are physical (x, y, z), µm (elastix's convention).
    """

    @abstractmethod
    def apply(self, p: np.ndarray) -> np.ndarray:
        """Map fixed physical points to moving physical points.

        Parameters
        ----------
        p : (n, 3) ndarray of float
            Fixed points (x, y, z), µm.

        Returns
        -------
        (n, 3) ndarray of float
            Moving points (x, y, z), µm.
        """

    @abstractmethod
    def jacobian(self, p: np.ndarray) -> np.ndarray:
        """Derivatives of :meth:`apply` at the points.

        Parameters
        ----------
        p : (n, 3) ndarray of float
            Fixed points (x, y, z), µm.

        Returns
        -------
        (n, 3, 3) ndarray of float
            ``J[k, i, j]`` = d out_i / d in_j at point k.
        """

    @property
    def is_linear(self) -> bool:
        """True for affine (matrix) transforms."""
        return False


@dataclass
class MatrixTransform(ElastixTransform):
    """Affine transform p ↦ A (p - c) + c + t (elastix/ITK MatrixOffsetTransformBase convention).

    Parameters
    ----------
    matrix : (3, 3) ndarray of float
        A, in (x, y, z) order.
    translation : (3,) ndarray of float
        t, µm (x, y, z).
    center : (3,) ndarray of float
        Centre of rotation c, µm (x, y, z).

    Examples
    --------
    Double x about x = 1 µm, then shift x by 10 µm:

    >>> t = MatrixTransform(np.diag([2.0, 1.0, 1.0]), np.array([10.0, 0.0, 0.0]), np.array([1.0, 0.0, 0.0]))
    >>> t.apply(np.array([[1.0, 1.0, 1.0], [2.0, 0.0, 0.0]])).tolist()
    [[11.0, 1.0, 1.0], [13.0, 0.0, 0.0]]
    >>> t.inverse().apply(np.array([[13.0, 0.0, 0.0]])).tolist()
    [[2.0, 0.0, 0.0]]
    """

    matrix: np.ndarray
    translation: np.ndarray
    center: np.ndarray

    @property
    def is_linear(self) -> bool:
        """Always True."""
        return True

    @property
    def offset(self) -> np.ndarray:
        """Offset b of the equivalent form p ↦ A p + b, µm (x, y, z)."""
        return self.translation + self.center - self.matrix @ self.center

    def apply(self, p):
        """Map fixed physical points to moving physical points.

        Parameters
        ----------
        p : (n, 3) ndarray of float
            Fixed points (x, y, z), µm.

        Returns
        -------
        (n, 3) ndarray of float
            Moving points (x, y, z), µm.
        """
        return p @ self.matrix.T + self.offset

    def jacobian(self, p):
        """Derivatives at the points: the matrix A, for every point.

        Parameters
        ----------
        p : (n, 3) ndarray of float
            Fixed points (x, y, z), µm.

        Returns
        -------
        (n, 3, 3) ndarray of float
            Read-only broadcast view of A.
        """
        return np.broadcast_to(self.matrix, (len(p), 3, 3))

    def inverse(self) -> MatrixTransform:
        """The inverse affine transform (moving → fixed).

        Returns
        -------
        MatrixTransform
        """
        inv = np.linalg.inv(self.matrix)
        return MatrixTransform(inv, -inv @ self.offset, np.zeros(3))


def _euler_matrix(rx: float, ry: float, rz: float, zyx: bool) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    Rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx if zyx else Rz @ Rx @ Ry  # ITK Euler3DTransform


def _versor_matrix(v: np.ndarray) -> np.ndarray:
    x, y, z = v
    w = np.sqrt(max(0.0, 1.0 - (x * x + y * y + z * z)))
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


@dataclass
class BSplineTransform(ElastixTransform):
    """Cubic B-spline displacement on a control grid: p ↦ p + Σ w(p) c.

    As elastix's BSplineTransform / RecursiveBSplineTransform. Outside the grid's valid
    region (1 <= grid index < size - 2 along every axis) the displacement is zero, as in ITK.

    Parameters
    ----------
    origin : (3,) ndarray of float
        Position of control point (0, 0, 0), µm (x, y, z).
    spacing : (3,) ndarray of float
        Control point spacing, µm (x, y, z).
    size : (3,) ndarray of int
        Number of control points (x, y, z).
    direction : (3, 3) ndarray of float
        Grid direction cosines.
    coef : (3, Gz, Gy, Gx) ndarray of float
        Displacement component (x, y, z), µm, per control point.

    Examples
    --------
    Every control point displaced by 2 µm along x: a constant shift inside the grid.

    >>> coef = np.zeros((3, 5, 5, 5))
    >>> coef[0] = 2.0
    >>> t = BSplineTransform(np.full(3, -20.0), np.full(3, 10.0), np.array([5, 5, 5]), np.eye(3), coef)
    >>> t.apply(np.array([[1.0, 2.0, 3.0]])).round(6).tolist()
    [[3.0, 2.0, 3.0]]
    """

    origin: np.ndarray  # xyz
    spacing: np.ndarray  # xyz
    size: np.ndarray  # xyz (int)
    direction: np.ndarray  # 3x3
    coef: np.ndarray  # (3, Gz, Gy, Gx): displacement component (x, y, z) per control point

    def _evaluate(self, p, jacobian: bool):
        dinv = np.linalg.inv(self.direction)
        ci = np.ascontiguousarray((p - self.origin) @ dinv.T / self.spacing)
        d = np.empty_like(ci)
        J = np.empty((len(ci), 3, 3)) if jacobian else np.empty((0, 3, 3))
        _bspline_kernel(
            ci, self.size.astype(np.int64), np.ascontiguousarray(self.coef, dtype=np.float64), jacobian, d, J
        )
        if jacobian:
            J = (J / self.spacing[None, None, :]) @ dinv  # d/dci -> d/dp
        return d, J

    def displacement(self, p):
        """Displacement at the points.

        Parameters
        ----------
        p : (n, 3) ndarray of float
            Fixed points (x, y, z), µm.

        Returns
        -------
        (n, 3) ndarray of float
            Displacement (x, y, z), µm; zero outside the grid's valid region.
        """
        return self._evaluate(p, False)[0]

    def apply(self, p):
        """Map fixed physical points to moving physical points: p + displacement(p).

        Parameters
        ----------
        p : (n, 3) ndarray of float
            Fixed points (x, y, z), µm.

        Returns
        -------
        (n, 3) ndarray of float
            Moving points (x, y, z), µm.
        """
        return p + self.displacement(p)

    def jacobian(self, p):
        """Derivatives of :meth:`apply` at the points (identity plus the displacement's).

        Parameters
        ----------
        p : (n, 3) ndarray of float
            Fixed points (x, y, z), µm.

        Returns
        -------
        (n, 3, 3) ndarray of float
            ``J[k, i, j]`` = d out_i / d in_j at point k.
        """
        return self._evaluate(p, True)[1] + np.eye(3)


@nb.njit(cache=True, nogil=True)
def _b3_weights(t, w, dw):
    """Cubic B-spline weights (and derivatives) of the 4 control points at offsets
    t, t-1, t-2, t-3 from the first one (0 <= t - 1 < 1)."""
    for k in range(4):
        u = t - k
        a = abs(u)
        sgn = 1.0 if u >= 0 else -1.0
        if a < 1.0:
            w[k] = (4.0 - 6.0 * a * a + 3.0 * a * a * a) / 6.0
            dw[k] = sgn * (-12.0 * a + 9.0 * a * a) / 6.0
        elif a < 2.0:
            w[k] = (2.0 - a) ** 3 / 6.0
            dw[k] = -sgn * 3.0 * (2.0 - a) ** 2 / 6.0
        else:
            w[k] = 0.0
            dw[k] = 0.0


@nb.njit(cache=True, nogil=True)
def _bspline_kernel(ci, size, coef, jacobian, out_d, out_j):
    """Displacement (and d displacement / d continuous index) of a cubic B-spline at
    continuous grid indices ``ci`` (n, 3; x, y, z). Zero outside ITK's valid region
    1 <= ci < size - 2 along every axis. ``coef`` is (3, Gz, Gy, Gx)."""
    n = ci.shape[0]
    w = np.empty((3, 4))
    dw = np.empty((3, 4))
    start = np.empty(3, np.int64)
    for p in range(n):
        inside = True
        for a in range(3):
            if not (ci[p, a] >= 1.0 and ci[p, a] < size[a] - 2.0):
                inside = False
        for r in range(3):
            out_d[p, r] = 0.0
            if jacobian:
                for c in range(3):
                    out_j[p, r, c] = 0.0
        if not inside:
            continue
        for a in range(3):
            s = int(np.floor(ci[p, a])) - 1
            start[a] = s
            _b3_weights(ci[p, a] - s, w[a], dw[a])
        for k in range(4):
            z = start[2] + k
            for j in range(4):
                y = start[1] + j
                wzy = w[2, k] * w[1, j]
                for i in range(4):
                    x = start[0] + i
                    wv = wzy * w[0, i]
                    c0 = coef[0, z, y, x]
                    c1 = coef[1, z, y, x]
                    c2 = coef[2, z, y, x]
                    out_d[p, 0] += wv * c0
                    out_d[p, 1] += wv * c1
                    out_d[p, 2] += wv * c2
                    if jacobian:
                        gx = dw[0, i] * w[1, j] * w[2, k]
                        gy = w[0, i] * dw[1, j] * w[2, k]
                        gz = w[0, i] * w[1, j] * dw[2, k]
                        out_j[p, 0, 0] += gx * c0
                        out_j[p, 0, 1] += gy * c0
                        out_j[p, 0, 2] += gz * c0
                        out_j[p, 1, 0] += gx * c1
                        out_j[p, 1, 1] += gy * c1
                        out_j[p, 1, 2] += gz * c1
                        out_j[p, 2, 0] += gx * c2
                        out_j[p, 2, 1] += gy * c2
                        out_j[p, 2, 2] += gz * c2


def transform_from_map(pmap: ParameterMap) -> ElastixTransform:
    """Build the transform an elastix TransformParameters map describes (3-D only).

    Supported: AffineTransform, EulerTransform, SimilarityTransform,
    TranslationTransform and cubic, non-cyclic (Recursive)BSplineTransform.

    Parameters
    ----------
    pmap : mapping of str to sequence of str
        An elastix transform parameter map (e.g. from :func:`read_parameter_file`).

    Returns
    -------
    ElastixTransform

    Raises
    ------
    InputFileError
        If the transform is not 3-D, not supported, or lacks a required key.

    Examples
    --------
    >>> shift = {"Transform": ["TranslationTransform"], "TransformParameters": ["0", "5", "0"]}
    >>> transform_from_map(shift).apply(np.array([[1.0, 1.0, 1.0]])).tolist()
    [[1.0, 6.0, 1.0]]
    """
    kind = pmap.get("Transform", ["?"])[0]
    dim = int(pmap.get("FixedImageDimension", ["3"])[0])
    if dim != 3:
        raise InputFileError(f"elastix transform {kind}: only 3D transforms are supported, got dimension {dim}")
    par = _floats(pmap, "TransformParameters")
    center = _floats(pmap, "CenterOfRotationPoint") if "CenterOfRotationPoint" in pmap else np.zeros(3)
    if kind == "AffineTransform":
        return MatrixTransform(par[:9].reshape(3, 3), par[9:12], center)
    if kind == "EulerTransform":
        zyx = pmap.get("ComputeZYX", ["false"])[0] == "true"
        return MatrixTransform(_euler_matrix(*par[:3], zyx), par[3:6], center)
    if kind == "SimilarityTransform":
        return MatrixTransform(par[6] * _versor_matrix(par[:3]), par[3:6], center)
    if kind == "TranslationTransform":
        return MatrixTransform(np.eye(3), par[:3], np.zeros(3))
    if kind in ("BSplineTransform", "RecursiveBSplineTransform"):
        order = int(pmap.get("BSplineTransformSplineOrder", ["3"])[0])
        if order != 3 or pmap.get("UseCyclicTransform", ["false"])[0] == "true":
            raise InputFileError(f"elastix {kind}: only cubic, non-cyclic B-splines are supported (order {order})")
        size = _floats(pmap, "GridSize").astype(int)
        direction = (
            _floats(pmap, "GridDirection").reshape(3, 3).T  # ITK writes it column-major
            if "GridDirection" in pmap
            else np.eye(3)
        )
        coef = par.reshape(3, size[2], size[1], size[0])
        return BSplineTransform(_floats(pmap, "GridOrigin"), _floats(pmap, "GridSpacing"), size, direction, coef)
    raise InputFileError(
        f"elastix transform {kind!r} is not supported for exact point transforms; use AffineTransform, "
        "EulerTransform, SimilarityTransform, TranslationTransform or BSplineTransform in your parameter files"
    )


@dataclass
class ElastixChain:
    """A sequence of elastix transform maps, chained as elastix chains them.

    Map ``k`` has map ``k-1`` as its initial transform, so with
    ``HowToCombineTransforms Compose`` a fixed point p goes to T_k(...T_1(T_0(p)));
    with ``Add``, displacements add. Points are physical (x, y, z), µm.

    Parameters
    ----------
    transforms : list of ElastixTransform
        The transforms, in order.
    combine : list of str
        ``HowToCombineTransforms`` of each map ("Compose" or "Add").
    maps : list of dict of str to list of str
        The parameter maps (kept for :meth:`write`).

    Examples
    --------
    Double x and shift it by 10 µm, then shift y by 5 µm:

    >>> affine = {"Transform": ["AffineTransform"], "TransformParameters": "2 0 0 0 1 0 0 0 1 10 0 0".split()}
    >>> shift = {"Transform": ["TranslationTransform"], "TransformParameters": ["0", "5", "0"]}
    >>> chain = ElastixChain.from_maps([affine, shift])
    >>> chain.apply(np.array([[1.0, 1.0, 1.0]])).tolist()
    [[12.0, 6.0, 1.0]]
    >>> p, residual = chain.inverse_apply(np.array([[12.0, 6.0, 1.0]]))
    >>> p.tolist(), residual.tolist()
    ([[1.0, 1.0, 1.0]], [0.0])
    """

    transforms: list[ElastixTransform]
    combine: list[str] = field(default_factory=list)
    maps: list[dict[str, list[str]]] = field(default_factory=list)

    @classmethod
    def from_maps(cls, maps: Iterable[ParameterMap]) -> ElastixChain:
        """Build the chain from elastix transform parameter maps, in order.

        Parameters
        ----------
        maps : iterable of mapping of str to sequence of str
            Transform parameter maps (see :func:`transform_from_map`).

        Returns
        -------
        ElastixChain

        Raises
        ------
        InputFileError
            If a map describes an unsupported transform.
        """
        maps = [{k: list(v) for k, v in m.items()} for m in maps]
        ts = [transform_from_map(m) for m in maps]
        comb = [m.get("HowToCombineTransforms", ["Compose"])[0] for m in maps]
        return cls(ts, comb, maps)

    def write(self, folder: str | Path, stem: str) -> list[str]:
        """Write the chain as elastix TransformParameters files ``<stem>.<k>.txt`` (atomically).

        The files are chained through ``InitialTransformParameterFileName`` by file name,
        so the elastix command line ``transformix -tp <last file>`` run inside ``folder``
        applies the whole chain.

        Parameters
        ----------
        folder : str or Path
            Existing output folder.
        stem : str
            File name stem.

        Returns
        -------
        list of str
            File names (without folder), in chain order.
        """
        names = []
        for k, m in enumerate(self.maps):
            m = dict(m)
            m["InitialTransformParameterFileName"] = [names[-1] if names else "NoInitialTransform"]
            name = f"{stem}.{k}.txt"
            with atomic_path(Path(folder) / name) as tmp:
                write_parameter_file(m, tmp)
            names.append(name)
        return names

    @classmethod
    def from_files(cls, paths: Iterable[str | Path]) -> ElastixChain:
        """Read the chain from elastix TransformParameters files, in order.

        Parameters
        ----------
        paths : iterable of str or Path
            Transform parameter files.

        Returns
        -------
        ElastixChain

        Raises
        ------
        InputFileError
            If a file is missing, unreadable or describes an unsupported transform.
        """
        return cls.from_maps(read_parameter_file(p) for p in paths)

    def apply(self, p: np.ndarray) -> np.ndarray:
        """Map fixed physical points through the whole chain.

        Parameters
        ----------
        p : (n, 3) array_like of float
            Fixed points (x, y, z), µm.

        Returns
        -------
        (n, 3) ndarray of float
            Moving points (x, y, z), µm.
        """
        out = np.asarray(p, float)
        for k, (t, how) in enumerate(zip(self.transforms, self.combine)):
            if k == 0 or how == "Compose":
                out = t.apply(out)
            else:  # Add: T(x) = T_prev(x) + T_k(x) - x
                out = out + t.apply(p) - p
        return out

    def jacobian(self, p: np.ndarray) -> np.ndarray:
        """Derivatives of :meth:`apply` at the points (chain rule through the maps).

        Parameters
        ----------
        p : (n, 3) array_like of float
            Fixed points (x, y, z), µm.

        Returns
        -------
        (n, 3, 3) ndarray of float
            ``J[k, i, j]`` = d out_i / d in_j at point k.
        """
        cur = np.asarray(p, float)
        J = np.broadcast_to(np.eye(3), (len(cur), 3, 3)).copy()
        for k, (t, how) in enumerate(zip(self.transforms, self.combine)):
            if k == 0 or how == "Compose":
                J = t.jacobian(cur) @ J
                cur = t.apply(cur)
            else:
                J = J + t.jacobian(p) - np.eye(3)
                cur = cur + t.apply(p) - p
        return J

    def linear_part(self) -> MatrixTransform:
        """The chain with every non-linear map dropped (a good start for inversion).

        Returns
        -------
        MatrixTransform
        """
        A, b = np.eye(3), np.zeros(3)
        for t in self.transforms:
            if isinstance(t, MatrixTransform):
                A, b = t.matrix @ A, t.matrix @ b + t.offset
        return MatrixTransform(A, b, np.zeros(3))

    def inverse_apply(self, q: np.ndarray, tol: float = 1e-4, max_iter: int = 50) -> tuple[np.ndarray, np.ndarray]:
        """Solve ``apply(p) = q`` for p by damped Newton iteration.

        Starts from the inverse of the linear part (exact for purely linear chains).

        Parameters
        ----------
        q : (n, 3) array_like of float
            Moving points (x, y, z), µm.
        tol : float, optional
            Residual at which a point counts as converged, µm.
        max_iter : int, optional
            Newton iterations at most.

        Returns
        -------
        p : (n, 3) ndarray of float
            Fixed points (x, y, z), µm; non-converged points keep their best estimate.
        residual : (n,) ndarray of float
            ``|apply(p) - q|``, µm; above ``tol`` where the iteration did not converge.
        """
        q = np.asarray(q, float)
        p = self.linear_part().inverse().apply(q)
        if all(t.is_linear for t in self.transforms) and all(c == "Compose" for c in self.combine):
            return p, np.linalg.norm(self.apply(p) - q, axis=1)
        r = self.apply(p) - q
        err = np.linalg.norm(r, axis=1)
        active = err > tol
        for _ in range(max_iter):
            if not active.any():
                break
            pa, ra, ea = p[active], r[active], err[active]
            J = self.jacobian(pa)
            try:
                step = np.linalg.solve(J, ra[:, :, None])[:, :, 0]
            except np.linalg.LinAlgError:
                step = np.einsum("nij,nj->ni", np.linalg.pinv(J), ra)
            lam = np.ones(len(pa))
            for _ in range(8):  # halve the step until the residual drops
                cand = pa - lam[:, None] * step
                rc = self.apply(cand) - q[active]
                ec = np.linalg.norm(rc, axis=1)
                worse = ec >= ea
                if not worse.any():
                    break
                lam[worse] *= 0.5
            better = ec < ea
            idx = np.flatnonzero(active)
            p[idx[better]], r[idx[better]], err[idx[better]] = cand[better], rc[better], ec[better]
            active[idx] = (err[idx] > tol) & better
        return p, err


# -- the whole chain ----------------------------------------------------------------------------

REGISTRATION_JSON = "registration.json"


def _chunks(n: int, size: int = CHUNK):
    for a in range(0, n, size):
        yield slice(a, min(a + size, n))


@dataclass
class SampleAtlasTransform:
    """Raw sample voxels ↔ atlas voxels for every channel.

    Goes through resampling, the optional channel correction and the elastix atlas
    transform. All points are (z, y, x) voxels.

    Parameters
    ----------
    atlas_voxel_size : tuple of float
        Atlas voxel size (z, y, x), µm.
    atlas_shape : tuple of int
        Atlas shape (z, y, x), voxels.
    grids : dict of str to ResampleGrid
        Per channel, raw → resampled voxels.
    atlas_chain : ElastixChain
        Elastix maps, autofluorescence resampled physical → atlas physical.
    correction : dict of str to ElastixChain, optional
        Per channel, an affine chain mapping autofluorescence resampled physical to that
        channel's resampled physical (elastix fixed = autofluorescence, moving =
        channel); a channel's points go through its *inverse* before the atlas transform.
    tolerance_voxels : float, optional
        Convergence tolerance of the inverse, atlas voxels.
    chunk : int, optional
        Points per vectorised step (bounds memory).

    Examples
    --------
    A 4 × 2 × 2 µm sample resampled to a 10 µm atlas, registered by a 5 µm shift along y:

    >>> from spimflow.geometry import ResampleGrid
    >>> grid = ResampleGrid.for_channel((100, 200, 200), (4.0, 2.0, 2.0), "asr", (10.0, 10.0, 10.0), "asr")
    >>> shift = {"Transform": ["TranslationTransform"], "TransformParameters": ["0", "5", "0"]}
    >>> t = SampleAtlasTransform((10.0, 10.0, 10.0), (40, 40, 40), {"signal": grid}, ElastixChain.from_maps([shift]))
    >>> t.sample_to_atlas([[50.0, 100.0, 100.0]]).tolist()
    [[20.0, 20.5, 20.0]]
    >>> t.atlas_to_sample([[20.0, 20.5, 20.0]]).tolist()
    [[50.0, 100.0, 100.0]]
    """

    atlas_voxel_size: tuple[float, float, float]
    atlas_shape: tuple[int, int, int]
    grids: dict[str, ResampleGrid]
    atlas_chain: ElastixChain
    correction: dict[str, ElastixChain] = field(default_factory=dict)
    tolerance_voxels: float = 1e-4
    chunk: int = CHUNK

    @classmethod
    def load(cls, registration_dir: str | Path) -> SampleAtlasTransform:
        """Read the transform written by :meth:`save`.

        Parameters
        ----------
        registration_dir : str or Path
            Registration folder (``registration.json`` + transform files).

        Returns
        -------
        SampleAtlasTransform

        Raises
        ------
        InputFileError
            If ``registration.json`` or a transform file is missing or incomplete.
        """
        d = Path(registration_dir)
        meta_path = d / REGISTRATION_JSON
        if not meta_path.is_file():
            raise InputFileError(f"{meta_path}: registration summary not found (run the register rule first)")
        meta = json.loads(meta_path.read_text())
        try:
            grids = {ch: ResampleGrid.from_dict(g) for ch, g in meta["grids"].items()}
            chain = ElastixChain.from_files(d / f for f in meta["atlas_transform"])
            corr = {
                ch: ElastixChain.from_files(d / f for f in files)
                for ch, files in (meta.get("channel_correction") or {}).items()
            }
            return cls(tuple(meta["atlas"]["voxel_size"]), tuple(meta["atlas"]["shape"]), grids, chain, corr)
        except KeyError as exc:
            raise InputFileError(
                f"{meta_path}: missing key {exc}; expected the output of spimflow's register step"
            ) from None

    def save(self, registration_dir: str | Path, summary: dict | None = None) -> Path:
        """Write the transform files and ``registration.json``.

        ``registration.json`` is written last, atomically: a complete json means a
        complete folder.

        Parameters
        ----------
        registration_dir : str or Path
            Output folder (created if needed).
        summary : dict, optional
            Further keys for ``registration.json`` (scores, timings).

        Returns
        -------
        Path
            The ``registration.json`` written.
        """
        d = Path(registration_dir)
        d.mkdir(parents=True, exist_ok=True)
        meta = dict(summary or {})
        meta.update(
            {
                "atlas": {"voxel_size": list(self.atlas_voxel_size), "shape": list(self.atlas_shape)},
                "grids": {ch: g.to_dict() for ch, g in self.grids.items()},
                "atlas_transform": self.atlas_chain.write(d, "atlas_transform"),
                "channel_correction": {ch: c.write(d, f"correction_{ch}") for ch, c in self.correction.items()},
                "convention": "points (z, y, x) voxels; voxel centres at integers; elastix fixed = resampled "
                "autofluorescence, moving = atlas reference, spacing = atlas voxel size, origin 0",
            }
        )
        out = d / REGISTRATION_JSON
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
        return out

    def _grid(self, channel: str) -> ResampleGrid:
        try:
            return self.grids[channel]
        except KeyError:
            raise InputFileError(
                f"no resampling grid for channel {channel!r} in the registration (known: {', '.join(self.grids)})"
            ) from None

    # resampled (per channel) <-> atlas ---------------------------------------------------
    def _to_af_physical(self, r: np.ndarray, channel: str) -> np.ndarray:
        p = zyx_voxels_to_xyz_um(r, self.atlas_voxel_size)
        if channel in self.correction:
            p, _ = self.correction[channel].inverse_apply(p)  # affine: exact closed form
        return p

    def _from_af_physical(self, p: np.ndarray, channel: str) -> np.ndarray:
        if channel in self.correction:
            p = self.correction[channel].apply(p)
        return xyz_um_to_zyx_voxels(p, self.atlas_voxel_size)

    def resampled_to_atlas(self, points: np.ndarray, channel: str = "autofluorescence") -> np.ndarray:
        """Map resampled voxels of a channel to atlas voxels.

        Parameters
        ----------
        points : (n, 3) array_like of float
            Resampled voxel coordinates (z, y, x) of ``channel``.
        channel : str, optional
            Channel of the points (its correction, if any, is applied).

        Returns
        -------
        (n, 3) ndarray of float
            Atlas voxel coordinates (z, y, x).

        Raises
        ------
        ValueError
            If ``points`` is not an (n, 3) array.
        """
        pts = _as_points(points)
        out = np.empty_like(pts)
        for s in _chunks(len(pts), self.chunk):
            q = self.atlas_chain.apply(self._to_af_physical(pts[s], channel))
            out[s] = xyz_um_to_zyx_voxels(q, self.atlas_voxel_size)
        return out

    def atlas_to_resampled(self, points: np.ndarray, channel: str = "autofluorescence") -> np.ndarray:
        """Map atlas voxels to resampled voxels of a channel (Newton inversion).

        Parameters
        ----------
        points : (n, 3) array_like of float
            Atlas voxel coordinates (z, y, x).
        channel : str, optional
            Channel whose resampled voxels are wanted.

        Returns
        -------
        (n, 3) ndarray of float
            Resampled voxel coordinates (z, y, x); NaN where the inversion does not
            converge (outside the region the transform covers), with a logged warning.

        Raises
        ------
        ValueError
            If ``points`` is not an (n, 3) array.
        """
        pts = _as_points(points)
        out = np.empty_like(pts)
        tol = self.tolerance_voxels * min(self.atlas_voxel_size)
        for s in _chunks(len(pts), self.chunk):
            q = zyx_voxels_to_xyz_um(pts[s], self.atlas_voxel_size)
            p, err = self.atlas_chain.inverse_apply(q, tol=tol)
            r = self._from_af_physical(p, channel)
            r[~(err <= tol)] = np.nan
            out[s] = r
        bad = int(np.isnan(out).any(axis=1).sum() - np.isnan(pts).any(axis=1).sum())
        if bad:
            log.warning("atlas_to_resampled: %d of %d points did not converge (set to NaN)", bad, len(pts))
        return out

    # raw <-> atlas ------------------------------------------------------------------------
    def sample_to_atlas(self, points: np.ndarray, channel: str = "signal") -> np.ndarray:
        """Map raw sample voxels of a channel to atlas voxels.

        Parameters
        ----------
        points : (n, 3) array_like of float
            Raw voxel coordinates (z, y, x) of ``channel``.
        channel : str, optional
            Channel of the points.

        Returns
        -------
        (n, 3) ndarray of float
            Atlas voxel coordinates (az, ay, ax).

        Raises
        ------
        InputFileError
            If the registration has no grid for ``channel``.
        ValueError
            If ``points`` is not an (n, 3) array.
        """
        grid = self._grid(channel)
        pts = _as_points(points)
        out = np.empty_like(pts)
        for s in _chunks(len(pts), self.chunk):
            out[s] = self.resampled_to_atlas(grid.sample_to_resampled(pts[s]), channel)
        return out

    def atlas_to_sample(self, points: np.ndarray, channel: str = "signal") -> np.ndarray:
        """Map atlas voxels to raw sample voxels of a channel (inverse of :meth:`sample_to_atlas`).

        Parameters
        ----------
        points : (n, 3) array_like of float
            Atlas voxel coordinates (z, y, x).
        channel : str, optional
            Channel whose raw voxels are wanted.

        Returns
        -------
        (n, 3) ndarray of float
            Raw voxel coordinates (z, y, x); NaN where the inversion does not converge.

        Raises
        ------
        InputFileError
            If the registration has no grid for ``channel``.
        ValueError
            If ``points`` is not an (n, 3) array.
        """
        grid = self._grid(channel)
        pts = _as_points(points)
        out = np.empty_like(pts)
        for s in _chunks(len(pts), self.chunk):
            out[s] = grid.resampled_to_sample(self.atlas_to_resampled(pts[s], channel))
        return out


def _as_points(points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must be an (n, 3) array of (z, y, x), got shape {pts.shape}")
    return pts


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
