"""Voxel grids and the index conventions shared by resampling, the demo and point transforms.

Voxel centres sit at integer indices (napari's convention). Physical position of
voxel ``k`` along an axis with voxel size ``v`` is ``k * v`` µm from the centre of
voxel 0. Resampling keeps that physical frame: resampled voxel ``r`` (size ``v_t``)
sits where source voxel ``r * v_t / v_s`` sits, so points move between the grids by a
pure per-axis scale, the same one the image resampling uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spimflow.orientation import Orientation


def resampled_shape(
    shape: Sequence[int], voxel_size: Sequence[float], target_voxel_size: Sequence[float]
) -> tuple[int, ...]:
    """Shape of an image after resampling it to another voxel size.

    Counts the target voxels whose centres fall inside the source extent, measured
    centre to centre (voxel ``k`` sits at ``k * voxel_size`` µm).

    Parameters
    ----------
    shape : sequence of int
        Source shape, (z, y, x) voxels.
    voxel_size : sequence of float
        Source voxel size per axis, µm.
    target_voxel_size : sequence of float
        Target voxel size per axis, µm.

    Returns
    -------
    tuple of int
        Target shape, (z, y, x) voxels.

    Examples
    --------
    A 101 × 201 × 201 stack at 4 × 2 × 2 µm spans 400 µm per axis, i.e. 17 voxels of 25 µm:

    >>> resampled_shape((101, 201, 201), (4.0, 2.0, 2.0), (25.0, 25.0, 25.0))
    (17, 17, 17)
    """
    return tuple(int(np.floor((n - 1) * v / t + 1e-9)) + 1 for n, v, t in zip(shape, voxel_size, target_voxel_size))


def scale_points(points: np.ndarray, from_voxel_size: Sequence[float], to_voxel_size: Sequence[float]) -> np.ndarray:
    """Convert voxel coordinates in one grid to the same physical points in another grid.

    Parameters
    ----------
    points : (n, 3) array_like of float
        Voxel coordinates (z, y, x) in the source grid.
    from_voxel_size, to_voxel_size : sequence of float
        Voxel sizes (z, y, x) of the source and target grids, µm.

    Returns
    -------
    (n, 3) ndarray of float
        Voxel coordinates (z, y, x) in the target grid.

    Examples
    --------
    >>> scale_points([[10.0, 20.0, 30.0]], (4.0, 2.0, 2.0), (25.0, 25.0, 25.0)).tolist()
    [[1.6, 1.6, 2.4]]
    """
    factor = np.asarray(from_voxel_size, float) / np.asarray(to_voxel_size, float)
    return np.asarray(points, float) * factor


def to_physical(points: np.ndarray, voxel_size: Sequence[float]) -> np.ndarray:
    """Convert voxel coordinates to physical coordinates (µm from the centre of voxel 0).

    Parameters
    ----------
    points : (n, 3) array_like of float
        Voxel coordinates (z, y, x).
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.

    Returns
    -------
    (n, 3) ndarray of float
        Physical coordinates (z, y, x), µm.

    Examples
    --------
    >>> to_physical([[1, 2, 3]], (4.0, 2.0, 2.0)).tolist()
    [[4.0, 4.0, 6.0]]
    """
    return np.asarray(points, float) * np.asarray(voxel_size, float)


def to_voxels(points_um: np.ndarray, voxel_size: Sequence[float]) -> np.ndarray:
    """Convert physical coordinates (µm) to voxel coordinates; inverse of :func:`to_physical`.

    Parameters
    ----------
    points_um : (n, 3) array_like of float
        Physical coordinates (z, y, x), µm from the centre of voxel 0.
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.

    Returns
    -------
    (n, 3) ndarray of float
        Voxel coordinates (z, y, x), not rounded.

    Examples
    --------
    >>> to_voxels([[4.0, 4.0, 6.0]], (4.0, 2.0, 2.0)).tolist()
    [[1.0, 2.0, 3.0]]
    """
    return np.asarray(points_um, float) / np.asarray(voxel_size, float)


@dataclass(frozen=True)
class ResampleGrid:
    """The raw grid of one channel and its resampled (atlas-aligned) grid.

    Raw and resampled voxel coordinates are related by the orientation (axis
    permutation and flips) followed by a per-axis scale, the same mapping the image
    resampling uses.

    Parameters
    ----------
    raw_shape : tuple of int
        Raw image shape in the sample's own (z, y, x) axes, voxels.
    raw_voxel_size : tuple of float
        Raw voxel size in the sample's own (z, y, x) axes, µm.
    orientation : Orientation
        Sample → atlas axis mapping.
    target_voxel_size : tuple of float
        Atlas voxel size in atlas (z, y, x) axes, µm.

    Examples
    --------
    A sample imaged posterior-first ("psr") mapped onto an "asr" atlas at 10 µm:

    >>> g = ResampleGrid.for_channel((100, 200, 300), (5.0, 2.0, 2.0), "psr", (10.0, 10.0, 10.0), "asr")
    >>> g.shape
    (50, 40, 60)
    >>> g.scale.tolist()
    [2.0, 5.0, 5.0]
    """

    raw_shape: tuple[int, int, int]
    raw_voxel_size: tuple[float, float, float]
    orientation: Orientation
    target_voxel_size: tuple[float, float, float]

    @classmethod
    def for_channel(
        cls,
        raw_shape: Sequence[int],
        voxel_size: Sequence[float],
        orientation: str | Sequence[int],
        atlas_voxel_size: Sequence[float],
        atlas_code: str,
    ) -> ResampleGrid:
        """Build the grid of one channel from its configuration.

        Parameters
        ----------
        raw_shape : sequence of int
            Raw image shape, sample (z, y, x) axes, voxels.
        voxel_size : sequence of float
            Raw voxel size, sample (z, y, x) axes, µm.
        orientation : str or sequence of int
            Configured orientation: a BrainGlobe origin code (e.g. ``"psr"``) or a
            ClearMap signed permutation (e.g. ``[1, -2, 3]``); resolved against ``atlas_code``.
        atlas_voxel_size : sequence of float
            Atlas voxel size (z, y, x), µm.
        atlas_code : str
            BrainGlobe origin code of the atlas (e.g. ``"asr"``).

        Returns
        -------
        ResampleGrid

        Raises
        ------
        ConfigError
            If the orientation is not a valid code or signed permutation.

        Examples
        --------
        >>> g = ResampleGrid.for_channel((10, 20, 30), (4.0, 2.0, 2.0), [1, 2, 3], (4.0, 4.0, 4.0), "asr")
        >>> g.shape, g.orientation.is_identity
        ((10, 10, 15), True)
        """
        return cls(
            tuple(int(s) for s in raw_shape),
            tuple(float(v) for v in voxel_size),
            Orientation.resolve(orientation, atlas_code),
            tuple(float(v) for v in atlas_voxel_size),
        )

    # derived geometry --------------------------------------------------------
    @property
    def oriented_shape(self) -> tuple[int, int, int]:
        """Raw shape (voxels) listed in atlas (z, y, x) axis order."""
        return self.orientation.oriented_shape(self.raw_shape)

    @property
    def oriented_voxel_size(self) -> tuple[float, float, float]:
        """Raw voxel size (µm) listed in atlas (z, y, x) axis order."""
        return self.orientation.oriented_values(self.raw_voxel_size)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the resampled image, atlas (z, y, x) axes, voxels."""
        return resampled_shape(self.oriented_shape, self.oriented_voxel_size, self.target_voxel_size)

    @property
    def scale(self) -> np.ndarray:
        """Oriented raw voxels per resampled voxel, per atlas axis (> 1 means downsampling)."""
        return np.asarray(self.target_voxel_size, float) / np.asarray(self.oriented_voxel_size, float)

    @property
    def shape_in_sample_axes(self) -> tuple[int, int, int]:
        """The resampled shape listed per *sample* axis (before the final transpose), voxels."""
        out = [0, 0, 0]
        for i, j in enumerate(self.orientation.perm):
            out[j] = self.shape[i]
        return tuple(out)

    def sample_coordinates(self, sample_axis: int) -> np.ndarray:
        """Raw coordinates of the resampled voxel centres along one sample axis.

        Parameters
        ----------
        sample_axis : int
            Sample axis (0 = z, 1 = y, 2 = x).

        Returns
        -------
        ndarray of float64
            Raw voxel coordinates along ``sample_axis`` of the resampled voxels along the
            atlas axis that sample axis becomes, in resampled index order (descending when
            that axis is flipped).

        Examples
        --------
        >>> g = ResampleGrid.for_channel((100, 200, 300), (5.0, 2.0, 2.0), "psr", (10.0, 10.0, 10.0), "asr")
        >>> g.sample_coordinates(0)[:3].tolist()  # z is flipped (posterior → anterior)
        [99.0, 97.0, 95.0]
        """
        i = self.orientation.perm.index(sample_axis)
        r = np.arange(self.shape[i], dtype=np.float64) * self.scale[i]
        if self.orientation.flip[i]:
            r = (self.raw_shape[sample_axis] - 1) - r
        return r

    def antialias_sigmas(self) -> tuple[float, float, float]:
        """Anti-aliasing Gaussian sigmas applied before downsampling.

        Returns
        -------
        tuple of float
            Sigma per *sample* (z, y, x) axis, raw voxels: ``(factor - 1) / 2`` where
            ``factor`` is the downsampling factor, 0 when upsampling.

        Examples
        --------
        >>> g = ResampleGrid.for_channel((100, 200, 300), (5.0, 2.0, 2.0), "psr", (10.0, 10.0, 10.0), "asr")
        >>> g.antialias_sigmas()
        (0.5, 2.0, 2.0)
        """
        out = [0.0, 0.0, 0.0]
        for i, j in enumerate(self.orientation.perm):
            out[j] = max(0.0, (float(self.scale[i]) - 1.0) / 2.0)
        return tuple(out)

    # points ------------------------------------------------------------------------
    def sample_to_resampled(self, points: np.ndarray) -> np.ndarray:
        """Map raw voxel coordinates to resampled voxel coordinates (same mapping as the image).

        Parameters
        ----------
        points : (n, 3) array_like of float
            Raw voxel coordinates, sample (z, y, x) axes.

        Returns
        -------
        (n, 3) ndarray of float64
            Resampled voxel coordinates, atlas (z, y, x) axes.

        Raises
        ------
        ValueError
            If ``points`` is not an (n, 3) array.

        Examples
        --------
        >>> g = ResampleGrid.for_channel((100, 200, 300), (5.0, 2.0, 2.0), "psr", (10.0, 10.0, 10.0), "asr")
        >>> g.sample_to_resampled([[0, 0, 0], [99, 10, 20]]).tolist()
        [[49.5, 0.0, 0.0], [0.0, 2.0, 4.0]]
        """
        o = self.orientation.apply_to_points(_points(points), self.raw_shape)
        return o / self.scale

    def resampled_to_sample(self, points: np.ndarray) -> np.ndarray:
        """Map resampled voxel coordinates back to raw voxel coordinates (exact inverse).

        Parameters
        ----------
        points : (n, 3) array_like of float
            Resampled voxel coordinates, atlas (z, y, x) axes.

        Returns
        -------
        (n, 3) ndarray of float64
            Raw voxel coordinates, sample (z, y, x) axes.

        Raises
        ------
        ValueError
            If ``points`` is not an (n, 3) array.

        Examples
        --------
        >>> g = ResampleGrid.for_channel((100, 200, 300), (5.0, 2.0, 2.0), "psr", (10.0, 10.0, 10.0), "asr")
        >>> g.resampled_to_sample([[49.5, 0.0, 0.0], [0.0, 2.0, 4.0]]).tolist()
        [[0.0, 0.0, 0.0], [99.0, 10.0, 20.0]]
        """
        o = _points(points) * self.scale
        return self.orientation.invert_points(o, self.raw_shape)

    # serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Serialise to a JSON-able dict (also records the ClearMap orientation and resampled shape).

        Returns
        -------
        dict
            Keys ``raw_shape``, ``raw_voxel_size``, ``perm``, ``flip``,
            ``clearmap_orientation``, ``target_voxel_size``, ``shape``.
        """
        return {
            "raw_shape": list(self.raw_shape),
            "raw_voxel_size": list(self.raw_voxel_size),
            "perm": list(self.orientation.perm),
            "flip": list(self.orientation.flip),
            "clearmap_orientation": list(self.orientation.to_clearmap()),
            "target_voxel_size": list(self.target_voxel_size),
            "shape": list(self.shape),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ResampleGrid:
        """Rebuild a grid from :meth:`to_dict` output.

        Parameters
        ----------
        d : dict
            Needs ``raw_shape``, ``raw_voxel_size``, ``perm``, ``flip`` and
            ``target_voxel_size``; other keys are ignored.

        Returns
        -------
        ResampleGrid

        Examples
        --------
        >>> g = ResampleGrid.for_channel((10, 20, 30), (4.0, 2.0, 2.0), "ipl", (4.0, 4.0, 4.0), "asr")
        >>> ResampleGrid.from_dict(g.to_dict()) == g
        True
        """
        return cls(
            tuple(int(v) for v in d["raw_shape"]),
            tuple(float(v) for v in d["raw_voxel_size"]),
            Orientation(tuple(int(v) for v in d["perm"]), tuple(bool(v) for v in d["flip"])),
            tuple(float(v) for v in d["target_voxel_size"]),
        )


def _points(points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must be an (n, 3) array of (z, y, x), got shape {pts.shape}")
    return pts
