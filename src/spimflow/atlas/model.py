"""The :class:`Atlas`: label volume, optional reference and hemisphere volumes, voxel size,
orientation and ontology.

Conventions:

* Volumes are indexed (z, y, x) — "atlas voxels" — with voxel centres at integer
  indices; ``voxel_size`` is (z, y, x) in µm.
* ``orientation`` is the BrainGlobe origin code of those axes (``"asr"``: axis 0 runs
  anterior→posterior, axis 1 superior→inferior, axis 2 right→left).
* ``hemispheres`` uses BrainGlobe values: 1 = left, 2 = right, 0 = neither (outside).
* The midline split (used when there is no hemisphere volume): along the l/r axis of
  length ``n``, indices ``< n // 2`` belong to the side the orientation code names for
  that axis (``r`` in ``"asr"``), the others to the opposite side, except that for odd
  ``n`` the middle plane goes to the LEFT hemisphere (as BrainGlobe does).
* ``offset``: the voxel of the original (uncropped) atlas that is voxel (0, 0, 0) here;
  it changes only in :meth:`Atlas.crop_hemisphere`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from spimflow.atlas.ontology import Ontology
from spimflow.errors import ConfigError, InputFileError
from spimflow.orientation import check_origin_code

LEFT, RIGHT = 1, 2
SIDE_VALUES = {"left": LEFT, "right": RIGHT}
HEMISPHERE_NAMES = {0: "none", LEFT: "left", RIGHT: "right"}  # point-table ``hemisphere`` column
_LETTER_SIDE = {"l": LEFT, "r": RIGHT}


def lr_axis(orientation: str) -> int:
    """Index of the array axis that runs left↔right in a BrainGlobe origin code.

    Parameters
    ----------
    orientation : str
        BrainGlobe origin code, e.g. ``"asr"``.

    Returns
    -------
    int
        0, 1 or 2 (z, y, x).

    Raises
    ------
    ConfigError
        If the code is invalid.

    Examples
    --------
    >>> lr_axis("asr"), lr_axis("lsa")
    (2, 0)
    """
    code = check_origin_code(orientation)
    return next(i for i, c in enumerate(code) if c in "lr")


def midline_sides(n: int, orientation: str) -> np.ndarray:
    """Hemisphere value (1 left / 2 right) of each index along the l/r axis, by the midline split.

    Indices ``< n // 2`` belong to the side the orientation code names for that axis,
    the others to the opposite side; for odd ``n`` the middle plane goes to the LEFT
    hemisphere (as BrainGlobe does).

    Parameters
    ----------
    n : int
        Length of the l/r axis, voxels.
    orientation : str
        BrainGlobe origin code of the atlas.

    Returns
    -------
    (n,) ndarray of uint8

    Raises
    ------
    ConfigError
        If the code is invalid.

    Examples
    --------
    In ``"asr"`` the l/r axis starts on the right:

    >>> midline_sides(5, "asr").tolist()
    [2, 2, 1, 1, 1]
    >>> midline_sides(4, "asl").tolist()
    [1, 1, 2, 2]
    """
    code = check_origin_code(orientation)
    start = _LETTER_SIDE[code[lr_axis(code)]]
    end = RIGHT if start == LEFT else LEFT
    sides = np.full(n, end, dtype=np.uint8)
    sides[: n // 2] = start
    if n % 2:
        sides[n // 2] = LEFT
    return sides


def midline_hemispheres(shape: tuple[int, ...], orientation: str) -> np.ndarray:
    """Build a full hemisphere volume from the midline split (see :func:`midline_sides`).

    Parameters
    ----------
    shape : tuple of int
        Atlas shape (z, y, x), voxels.
    orientation : str
        BrainGlobe origin code of the atlas.

    Returns
    -------
    ndarray of uint8
        1 (left) or 2 (right) everywhere, shape ``shape``.

    Examples
    --------
    >>> midline_hemispheres((1, 1, 4), "asr").tolist()
    [[[2, 2, 1, 1]]]
    """
    ax = lr_axis(orientation)
    sides = midline_sides(int(shape[ax]), orientation)
    view_shape = [1, 1, 1]
    view_shape[ax] = shape[ax]
    return np.broadcast_to(sides.reshape(view_shape), tuple(shape)).copy()


def nearest_voxels(points: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Find the nearest voxel centre (``floor(p + 0.5)``) of each point and whether it is inside the volume.

    Parameters
    ----------
    points : (n, 3) or (3,) array_like of float
        Voxel coordinates (z, y, x).
    shape : tuple of int
        Volume shape (z, y, x).

    Returns
    -------
    index : (n, 3) ndarray of intp
        Nearest voxel indices; 0 for points outside.
    inside : (n,) ndarray of bool
        Whether the nearest voxel is in the volume (NaN is outside).

    Raises
    ------
    ValueError
        If ``points`` is not an (n, 3) array.

    Examples
    --------
    >>> index, inside = nearest_voxels([[0.4, 1.5, 2.0], [-0.6, 0.0, 0.0], [np.nan, 0.0, 0.0]], (2, 3, 3))
    >>> index.tolist(), inside.tolist()
    ([[0, 2, 2], [0, 0, 0], [0, 0, 0]], [True, False, False])
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim == 1 and pts.size == 3:
        pts = pts[None, :]
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must be an (n, 3) array of (z, y, x) atlas voxels, got shape {pts.shape}")
    with np.errstate(invalid="ignore"):
        idx = np.floor(pts + 0.5)
        inside = np.all(np.isfinite(idx) & (idx >= 0) & (idx < np.asarray(shape)), axis=1)
    idx = np.where(inside[:, None], idx, 0).astype(np.intp)
    return idx, inside


@dataclass(kw_only=True, eq=False)
class Atlas:
    """A reference atlas: labels, optional reference and hemispheres, voxel size, orientation, ontology.

    All volumes share one (z, y, x) shape.

    Parameters
    ----------
    annotation : ndarray of int
        Region labels (z, y, x); 0 is background.
    ontology : Ontology
        The region tree.
    voxel_size : tuple of float
        Voxel size (z, y, x), µm.
    orientation : str
        BrainGlobe origin code of the volume axes.
    reference : ndarray, optional
        Reference (template) image (z, y, x).
    hemispheres : ndarray of int, optional
        1 = left, 2 = right, 0 = outside; without it the midline split is used.
    name : str, optional
        Name for messages.
    offset : tuple of int, optional
        Voxel of the original (uncropped) atlas that is voxel (0, 0, 0) here.
    source : str, optional
        Where the atlas was read from, for messages.

    Raises
    ------
    InputFileError
        If the volumes are not 3-D integer labels of one shape, or hemisphere values are
        not 0/1/2.
    ConfigError
        If the voxel size or orientation code is invalid.

    Examples
    --------
    >>> from spimflow.atlas import Ontology, Region
    >>> onto = Ontology([Region(997, "root", "root", None), Region(688, "CTX", "Cerebral cortex", 997),
    ...                  Region(549, "TH", "Thalamus", 997)])
    >>> atlas = Atlas(annotation=np.array([[[688, 688, 549, 549]]]), ontology=onto,
    ...               voxel_size=(25.0, 25.0, 25.0), orientation="asr")
    >>> atlas.shape, atlas.lr_axis
    ((1, 1, 4), 2)
    >>> atlas.region_at([[0, 0, 2.6], [0, 0, 9.0]]).tolist()  # nearest voxel; 0 outside
    [549, 0]
    >>> atlas.hemisphere_at([[0, 0, 0], [0, 0, 3]]).tolist()  # "asr": x starts on the right
    [2, 1]
    """

    annotation: np.ndarray
    ontology: Ontology
    voxel_size: tuple[float, float, float]
    orientation: str
    reference: np.ndarray | None = None
    hemispheres: np.ndarray | None = None
    name: str = "atlas"
    offset: tuple[int, int, int] = (0, 0, 0)
    source: str = field(default="", repr=False)

    def __post_init__(self):
        where = self.source or self.name
        if self.annotation.ndim != 3:
            raise InputFileError(f"{where}: annotation must be 3-D (z, y, x), got shape {self.annotation.shape}")
        if self.annotation.dtype.kind not in "iu":
            raise InputFileError(f"{where}: annotation must hold integer labels, got dtype {self.annotation.dtype}")
        for what in ("reference", "hemispheres"):
            vol = getattr(self, what)
            if vol is not None and vol.shape != self.annotation.shape:
                raise InputFileError(
                    f"{where}: {what} shape {vol.shape} differs from annotation shape {self.annotation.shape}"
                )
        if self.hemispheres is not None:
            if (
                self.hemispheres.dtype.kind not in "iu"
                or self.hemispheres.max(initial=0) > 2
                or self.hemispheres.min(initial=0) < 0
            ):
                raise InputFileError(f"{where}: hemispheres must hold 0 (outside), 1 (left), 2 (right)")
            self.hemispheres = self.hemispheres.astype(np.uint8, copy=False)
        vs = tuple(float(v) for v in self.voxel_size)
        if len(vs) != 3 or not all(np.isfinite(v) and v > 0 for v in vs):
            raise ConfigError(f"{where}: voxel_size must be three positive numbers (z, y, x) µm, got {self.voxel_size}")
        self.voxel_size = vs  # type: ignore[assignment]
        self.orientation = check_origin_code(self.orientation)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Volume shape (z, y, x), voxels."""
        return tuple(int(s) for s in self.annotation.shape)  # type: ignore[return-value]

    @property
    def lr_axis(self) -> int:
        """Index of the axis that runs left↔right (see :func:`lr_axis`)."""
        return lr_axis(self.orientation)

    def hemisphere_volume(self) -> np.ndarray:
        """The hemisphere volume, or the midline split when the atlas has none.

        Returns
        -------
        ndarray of uint8
            1 (left), 2 (right), 0 (outside), (z, y, x).
        """
        if self.hemispheres is not None:
            return self.hemispheres
        return midline_hemispheres(self.shape, self.orientation)

    # -- lookups ----------------------------------------------------------------------
    def region_at(self, points: np.ndarray) -> np.ndarray:
        """Look up the label of the nearest atlas voxel of each point.

        Parameters
        ----------
        points : (n, 3) array_like of float
            Atlas voxel coordinates (z, y, x).

        Returns
        -------
        (n,) ndarray of int64
            Labels; 0 for points outside the volume.

        Raises
        ------
        ValueError
            If ``points`` is not an (n, 3) array.
        """
        idx, inside = nearest_voxels(points, self.shape)
        out = self.annotation[idx[:, 0], idx[:, 1], idx[:, 2]].astype(np.int64)
        out[~inside] = 0
        return out

    def hemisphere_at(self, points: np.ndarray) -> np.ndarray:
        """Look up the hemisphere of the nearest atlas voxel of each point.

        Uses the midline split when the atlas has no hemisphere volume.

        Parameters
        ----------
        points : (n, 3) array_like of float
            Atlas voxel coordinates (z, y, x).

        Returns
        -------
        (n,) ndarray of uint8
            1 (left), 2 (right), 0 (outside the volume or the hemisphere volume).

        Raises
        ------
        ValueError
            If ``points`` is not an (n, 3) array.
        """
        idx, inside = nearest_voxels(points, self.shape)
        if self.hemispheres is not None:
            out = self.hemispheres[idx[:, 0], idx[:, 1], idx[:, 2]].astype(np.uint8)
        else:
            sides = midline_sides(self.shape[self.lr_axis], self.orientation)
            out = sides[idx[:, self.lr_axis]]
        out[~inside] = 0
        return out

    def unknown_labels(self) -> dict[int, int]:
        """Count the annotation labels that are not ontology ids.

        Returns
        -------
        dict of int to int
            Label → voxel count, sorted by label. Label 0 (background) is never reported.

        Examples
        --------
        >>> from spimflow.atlas import Ontology, Region
        >>> onto = Ontology([Region(997, "root", "root", None), Region(688, "CTX", "Cerebral cortex", 997),
        ...                  Region(549, "TH", "Thalamus", 997)])
        >>> atlas = Atlas(annotation=np.array([[[688, 7, 7, 0]]]), ontology=onto,
        ...               voxel_size=(25.0, 25.0, 25.0), orientation="asr")
        >>> atlas.unknown_labels()
        {7: 2}
        """
        known = self.ontology.contains(self.annotation)
        strays = self.annotation[~known]
        strays = strays[strays != 0]
        labels, counts = np.unique(strays, return_counts=True)
        return {int(lab): int(c) for lab, c in zip(labels, counts)}

    # -- derived atlases ------------------------------------------------------------------
    def crop_hemisphere(self, side: Literal["left", "right"]) -> Atlas:
        """Make a new atlas holding one hemisphere.

        Along the l/r axis the volume is cut at the far edge of that hemisphere's voxels
        (the other axes and the outer margin are kept whole). Inside the crop, voxels not
        of that hemisphere get annotation 0 and hemisphere 0; the reference image is kept
        as is (no artificial edge for registration). Uses the hemisphere volume when
        present, else the midline split. ``offset`` records where the crop starts.

        Parameters
        ----------
        side : {'left', 'right'}
            Hemisphere to keep.

        Returns
        -------
        Atlas

        Raises
        ------
        ConfigError
            If ``side`` is not 'left' or 'right'.
        InputFileError
            If the atlas has no voxel of that hemisphere.

        Examples
        --------
        >>> from spimflow.atlas import Ontology, Region
        >>> onto = Ontology([Region(997, "root", "root", None), Region(688, "CTX", "Cerebral cortex", 997),
        ...                  Region(549, "TH", "Thalamus", 997)])
        >>> atlas = Atlas(annotation=np.array([[[688, 688, 549, 549]]]), ontology=onto,
        ...               voxel_size=(25.0, 25.0, 25.0), orientation="asr")
        >>> left = atlas.crop_hemisphere("left")
        >>> left.annotation.tolist(), left.offset
        ([[[549, 549]]], (0, 0, 2))
        """
        if side not in SIDE_VALUES:
            raise ConfigError(f"atlas.hemisphere: expected 'left' or 'right', got {side!r}")
        value = SIDE_VALUES[side]
        ax = self.lr_axis
        n = self.shape[ax]
        other_axes = tuple(i for i in range(3) if i != ax)
        hemi = self.hemisphere_volume()
        present = np.flatnonzero(np.any(hemi == value, axis=other_axes))
        if present.size == 0:
            raise InputFileError(
                f"{self.source or self.name}: no voxel of the {side} hemisphere "
                f"(value {value}) in the hemisphere volume"
            )
        # Which end of the axis this hemisphere sits at: compare its mean position with the other's.
        other = np.flatnonzero(np.any(hemi == (RIGHT if value == LEFT else LEFT), axis=other_axes))
        at_start = present.mean() < (other.mean() if other.size else (n - 1) / 2)
        lo, hi = (0, int(present.max()) + 1) if at_start else (int(present.min()), n)
        sl = [slice(None)] * 3
        sl[ax] = slice(lo, hi)
        sl_t = tuple(sl)
        hemi_c = hemi[sl_t]
        keep = hemi_c == value
        annotation = np.where(keep, self.annotation[sl_t], 0).astype(self.annotation.dtype)
        hemispheres = np.where(keep, np.uint8(value), np.uint8(0)).astype(np.uint8)
        reference = None if self.reference is None else self.reference[sl_t].copy()
        offset = list(self.offset)
        offset[ax] += lo
        return replace(
            self,
            annotation=annotation,
            hemispheres=hemispheres,
            reference=reference,
            offset=tuple(offset),
            name=f"{self.name} ({side} hemisphere)",
        )

    def __repr__(self) -> str:
        return (
            f"Atlas({self.name!r}, shape={self.shape}, voxel_size={self.voxel_size}, "
            f"orientation={self.orientation!r}, reference={self.reference is not None}, "
            f"hemispheres={self.hemispheres is not None}, {len(self.ontology)} regions)"
        )
