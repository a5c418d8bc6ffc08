"""Per-voxel filters of the detection chain: illumination, background, difference of Gaussians.

Every function takes a float32 (z, y, x) array and the voxel size (z, y, x) in µm,
converts the µm sizes of its parameters to voxels per axis, and returns a new float32
array. Edges are handled as "nearest" (clamped indices). See docs/detection.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from spimflow.errors import InputFileError
from spimflow.params.detect import BackgroundParams, DogParams, IlluminationParams
from spimflow.steps.detect import _filters_nb as K


def as_float32(a: np.ndarray) -> np.ndarray:
    """Make a C-contiguous float32 copy of ``a`` (always a new array).

    Parameters
    ----------
    a : ndarray
        3-D (z, y, x) array of any real dtype.

    Returns
    -------
    ndarray of float32
    """
    out = np.empty(a.shape, np.float32)
    if a.size:
        K.to_float32(np.ascontiguousarray(a), out)
    return out


# -- illumination --------------------------------------------------------------------


@dataclass
class IlluminationField:
    """A smooth flat-field sampled on a coarse (y, x) grid, per z plane or one for all.

    The image is divided by the bilinearly interpolated field, clipped below at
    ``floor``. Interpolation is elementwise and depends only on absolute voxel indices,
    so a block gets exactly the values of a whole-volume run.

    Attributes
    ----------
    field : ndarray of float32, shape (nz or 1, ny, nx)
        ``field[k, j, i]`` is the relative illumination (max 1) of the coarse pixel that
        averages voxels [j*fy, (j+1)*fy) × [i*fx, (i+1)*fx) of plane k (or of every
        plane when ``field.shape[0] == 1``).
    factor : tuple of int
        Coarse pixel size (fy, fx), voxels.
    floor : float
        Lower clip of the field: dark regions are amplified at most 1 / floor times.

    Examples
    --------
    One plane, two coarse pixels of 2 × 2 voxels, the right one twice as bright:

    >>> field = IlluminationField(np.array([[[0.5, 1.0]]], np.float32), (2, 2), 0.2)
    >>> field.gain((0, 1), (0, 1), (0, 4)).astype(float).round(3).tolist()
    [[[2.0, 1.6, 1.143, 1.0]]]
    """

    field: np.ndarray
    factor: tuple[int, int]
    floor: float

    def gain(self, z: tuple[int, int], y: tuple[int, int], x: tuple[int, int]) -> np.ndarray:
        """Multiplicative gain (1 / field) for the voxels [z0, z1) × [y0, y1) × [x0, x1).

        Parameters
        ----------
        z, y, x : (int, int)
            Half-open volume voxel ranges per axis.

        Returns
        -------
        ndarray of float32
            Shape (z1 - z0, y1 - y0, x1 - x0), or (1, y1 - y0, x1 - x0) for a field shared
            by all planes (broadcasts over z).
        """
        planes = self.field[z[0] : z[1]] if self.field.shape[0] > 1 else self.field[:1]
        wy = _interp_weights(np.arange(y[0], y[1]), self.factor[0], self.field.shape[1])
        wx = _interp_weights(np.arange(x[0], x[1]), self.factor[1], self.field.shape[2])
        (j0, j1, ty), (i0, i1, tx) = wy, wx
        p = planes.astype(np.float64)
        a = p[:, j0][:, :, i0] * (1 - tx)[None, None, :] + p[:, j0][:, :, i1] * tx[None, None, :]
        b = p[:, j1][:, :, i0] * (1 - tx)[None, None, :] + p[:, j1][:, :, i1] * tx[None, None, :]
        val = a * (1 - ty)[None, :, None] + b * ty[None, :, None]
        return (1.0 / np.maximum(val, self.floor)).astype(np.float32)

    def save(self, path: str | Path) -> None:
        """Write the field to a ``.npz`` file (read back with :meth:`load`).

        Parameters
        ----------
        path : str or Path
            Output file.
        """
        with open(path, "wb") as fh:
            np.savez(fh, field=self.field, factor=np.array(self.factor), floor=np.array(self.floor))

    @classmethod
    def load(cls, path: str | Path) -> IlluminationField:
        """Read a field written by :meth:`save`.

        Parameters
        ----------
        path : str or Path
            ``.npz`` file.

        Returns
        -------
        IlluminationField
        """
        with np.load(path) as d:
            return cls(d["field"].astype(np.float32), tuple(int(v) for v in d["factor"]), float(d["floor"]))


def _interp_weights(idx: np.ndarray, f: int, n: int):
    """Coarse neighbours and weight of voxel indices ``idx`` (coarse pixel j centred at j*f + (f-1)/2)."""
    u = (idx.astype(np.float64) - (f - 1) / 2.0) / f
    j0 = np.clip(np.floor(u).astype(np.int64), 0, n - 1)
    j1 = np.minimum(j0 + 1, n - 1)
    t = np.clip(u - j0, 0.0, 1.0)
    t[j1 == j0] = 0.0
    return j0, j1, t


def _block_mean_2d(planes: np.ndarray, f: int) -> np.ndarray:
    """Mean over f x f pixel tiles of each (y, x) plane; the last partial tile averages what exists."""
    nz, ny, nx = planes.shape
    ys = np.arange(0, ny, f)
    xs = np.arange(0, nx, f)
    s = np.add.reduceat(np.add.reduceat(planes.astype(np.float64), ys, axis=1), xs, axis=2)
    cy = np.minimum(ys + f, ny) - ys
    cx = np.minimum(xs + f, nx) - xs
    return s / (cy[:, None] * cx[None, :])


def illumination_factor(voxel_size: Sequence[float], params: IlluminationParams) -> int:
    """Coarse pixel size of the estimated field: about half the smoothing sigma.

    Parameters
    ----------
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : IlluminationParams
        Illumination parameters (``sigma_um``).

    Returns
    -------
    int
        Coarse pixel size, in-plane voxels (>= 1).

    Examples
    --------
    >>> from spimflow.params.detect import IlluminationParams
    >>> illumination_factor((4.0, 2.0, 2.0), IlluminationParams(sigma_um=200.0))
    50
    """
    return max(1, int(params.sigma_um / 2.0 / min(voxel_size[1], voxel_size[2])))


def estimate_illumination(
    read: Callable[[int, int], np.ndarray],
    shape: Sequence[int],
    voxel_size: Sequence[float],
    params: IlluminationParams,
    slab: int = 16,
) -> IlluminationField:
    """Estimate a flat-field per z plane from the volume itself.

    Each plane is block-averaged, Gaussian-smoothed by ``sigma_um`` and normalised to 1
    at its maximum. Memory is bounded by one slab.

    Parameters
    ----------
    read : callable
        ``read(z0, z1)`` returns planes [z0, z1) as a (z, y, x) array.
    shape : sequence of int
        Volume shape (z, y, x), voxels.
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : IlluminationParams
        Illumination parameters (``sigma_um``, ``floor``).
    slab : int, optional
        Planes read at a time.

    Returns
    -------
    IlluminationField
        One coarse field per plane.

    Examples
    --------
    >>> from spimflow.params.detect import IlluminationParams
    >>> planes = np.ones((2, 8, 8), np.float32)
    >>> planes[:, :, 4:] = 0.5  # right half dimmer
    >>> field = estimate_illumination(lambda z0, z1: planes[z0:z1], planes.shape, (4.0, 1.0, 1.0),
    ...                               IlluminationParams(sigma_um=4.0))
    >>> field.field.shape, field.factor
    ((2, 4, 4), (2, 2))
    >>> bool(field.gain((0, 1), (0, 1), (0, 8))[0, 0, -1] > 1.4)  # the dim side is amplified
    True
    """
    from scipy.ndimage import gaussian_filter

    f = illumination_factor(voxel_size, params)
    nz = int(shape[0])
    out = []
    for z0 in range(0, nz, slab):
        coarse = _block_mean_2d(np.asarray(read(z0, min(z0 + slab, nz))), f)
        sig = (params.sigma_um / (f * voxel_size[1]), params.sigma_um / (f * voxel_size[2]))
        for plane in coarse:
            sm = gaussian_filter(plane, sig, mode="nearest")
            top = sm.max()
            out.append(sm / top if top > 0 else np.ones_like(sm))
    return IlluminationField(np.asarray(out, np.float32), (f, f), params.floor)


def profile_illumination(path: str | Path, plane_shape: Sequence[int], params: IlluminationParams) -> IlluminationField:
    """Read a flat-field from a (y, x) profile image (normalised to 1 at its maximum), used for all planes.

    Parameters
    ----------
    path : str or Path
        TIFF profile image (y, x).
    plane_shape : sequence of int
        In-plane shape (y, x) of the signal volume; the profile must match it.
    params : IlluminationParams
        Illumination parameters (``floor``).

    Returns
    -------
    IlluminationField
        A single field (``field.shape[0] == 1``) at full resolution.

    Raises
    ------
    InputFileError
        If the file is missing, unreadable, of the wrong shape or has no positive value.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"steps.detect.illumination.profile: file not found: {path}")
    try:
        prof = np.asarray(tifffile.imread(path), np.float64)
    except Exception as exc:  # noqa: BLE001
        raise InputFileError(f"steps.detect.illumination.profile: {path} is not a readable TIFF ({exc})") from exc
    prof = np.squeeze(prof)
    if prof.shape != tuple(plane_shape):
        raise InputFileError(
            f"steps.detect.illumination.profile: {path} has shape {prof.shape}, "
            f"expected the signal's in-plane shape (y, x) = {tuple(plane_shape)}"
        )
    top = prof.max()
    if not top > 0:
        raise InputFileError(f"steps.detect.illumination.profile: {path} has no positive value")
    return IlluminationField((prof / top)[None].astype(np.float32), (1, 1), params.floor)


# -- background -----------------------------------------------------------------------


def background_radius(voxel_size: Sequence[float], params: BackgroundParams) -> tuple[int, int]:
    """Half-sizes of the background-removal rectangle: width 2r+1 ≈ size_um / voxel size.

    Parameters
    ----------
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : BackgroundParams
        Background parameters (``size_um``, (y, x) µm).

    Returns
    -------
    tuple of int
        Half-sizes (ry, rx), voxels.

    Examples
    --------
    >>> from spimflow.params.detect import BackgroundParams
    >>> background_radius((4.0, 2.0, 2.0), BackgroundParams(size_um=(30.0, 30.0)))
    (7, 7)
    """
    return tuple(max(0, int(math.floor((s / v - 1.0) / 2.0 + 0.5))) for s, v in zip(params.size_um, voxel_size[1:]))  # type: ignore[return-value]


def remove_background(img: np.ndarray, voxel_size: Sequence[float], params: BackgroundParams) -> np.ndarray:
    """Remove the background: ``img`` minus its grey opening by a (y, x) rectangle, per z plane.

    This is a white top-hat. A rectangle instead of ClearMap's disk makes the opening
    separable and cheap per voxel (along y: direct over a ring of rows for small sizes,
    van Herk/Gil-Werman otherwise; along x: sparse-table doubling); it is exact, equal to
    ``img - scipy.ndimage.grey_opening(img, size=(1, 2ry+1, 2rx+1), mode='nearest')``
    with (ry, rx) from :func:`background_radius`.

    Parameters
    ----------
    img : ndarray
        Image (z, y, x); uint16 input is used as is (no float copy).
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : BackgroundParams
        Background parameters (``size_um``).

    Returns
    -------
    ndarray of float32
        Background-subtracted image, same shape.
    """
    ry, rx = background_radius(voxel_size, params)
    src = img if img.dtype in (np.uint16, np.float32) else img.astype(np.float32)
    src = np.ascontiguousarray(src)
    out = np.empty(src.shape, np.float32)
    if src.size:
        if ry <= 8:
            K.tophat_ring(src, out, ry, rx)
        else:
            K.tophat_box(src, out, ry, rx)
    return out


# -- difference of Gaussians ----------------------------------------------------------------


def gaussian_half_kernel(sigma_vox: float, truncate: float) -> np.ndarray:
    """Half of a sampled, normalised Gaussian kernel.

    Parameters
    ----------
    sigma_vox : float
        Sigma, voxels.
    truncate : float
        Cut-off in sigmas: the radius is ``r = ceil(truncate * sigma_vox)`` (at least 1).

    Returns
    -------
    ndarray of float32
        ``[w0, w1, ..., wr]`` with ``w0 + 2 * sum(w1..wr) = 1``.

    Examples
    --------
    >>> w = gaussian_half_kernel(1.0, 3.0)
    >>> w.astype(float).round(3).tolist()
    [0.399, 0.242, 0.054, 0.004]
    >>> round(float(w[0] + 2 * w[1:].sum()), 6)
    1.0
    """
    r = max(1, int(math.ceil(truncate * sigma_vox)))
    k = np.arange(r + 1, dtype=np.float64)
    w = np.exp(-0.5 * (k / sigma_vox) ** 2)
    w /= w[0] + 2 * w[1:].sum()
    return w.astype(np.float32)


def dog_radius(voxel_size: Sequence[float], params: DogParams) -> tuple[int, int, int]:
    """Reach of the difference of Gaussians: the outer kernel's half-width.

    Parameters
    ----------
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : DogParams
        DoG parameters (``sigma_outer_um``, ``truncate``).

    Returns
    -------
    tuple of int
        Half-width (z, y, x), voxels.

    Examples
    --------
    >>> from spimflow.params.detect import DogParams
    >>> dog_radius((4.0, 2.0, 2.0), DogParams(sigma_inner_um=3.0, sigma_outer_um=6.0, truncate=3.0))
    (5, 9, 9)
    """
    return tuple(len(gaussian_half_kernel(params.sigma_outer_um / v, params.truncate)) - 1 for v in voxel_size)  # type: ignore[return-value]


def dog_filter(img: np.ndarray, voxel_size: Sequence[float], params: DogParams) -> np.ndarray:
    """Difference of Gaussians: G(sigma_inner) * img - G(sigma_outer) * img.

    Separable float32 convolutions, edges "nearest". Sigmas are physical (µm), so the
    kernels are anisotropic in voxels. Both kernels have unit sum: a flat image gives 0
    and the result is in image intensity units.

    Parameters
    ----------
    img : ndarray
        Image (z, y, x).
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    params : DogParams
        DoG parameters (sigmas in µm, ``truncate``).

    Returns
    -------
    ndarray of float32
        Filtered image, same shape.
    """
    src = np.ascontiguousarray(img, np.float32)
    out = np.empty_like(src)
    if not src.size:
        return out
    ki = [gaussian_half_kernel(params.sigma_inner_um / v, params.truncate) for v in voxel_size]
    ko = [gaussian_half_kernel(params.sigma_outer_um / v, params.truncate) for v in voxel_size]
    K.dog_fused(src, out, *ki, *ko, 48)
    return out
