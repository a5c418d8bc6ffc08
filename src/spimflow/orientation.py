"""Sample ↔ atlas axis orientation: permutations and flips of (z, y, x) arrays.

Two notations are accepted, and both resolve to one :class:`Orientation`:

* **BrainGlobe origin codes** (``"asr"``, ``"ipl"``, ...). Letter *i* names the
  anatomical side where array axis *i* (in (z, y, x) order: axis 0 = z, the plane
  index) *starts*: ``a``/``p`` anterior/posterior, ``s``/``i`` superior/inferior,
  ``l``/``r`` left/right. ``"asr"`` means axis 0 runs anterior→posterior, axis 1
  superior→inferior, axis 2 right→left. The sample and the atlas each declare one;
  the mapping between them is derived.
* **ClearMap signed permutations** (``[1, -2, 3]``), written in ClearMap's own
  (x, y, z) axis order with 1-based axis numbers exactly as in a ClearMap
  ``orientation`` setting: entry *k* says which sample axis (1 = x, 2 = y, 3 = z;
  x is our last array axis, z our first) becomes atlas axis *k*, negative when it
  is reversed. This is already a sample→atlas mapping; no atlas code is needed.

An :class:`Orientation` says: oriented (atlas-aligned) axis ``i`` is sample axis
``perm[i]``, reversed when ``flip[i]``. Voxel centres are at integer indices, so
reversing an axis of length ``n`` maps index ``k`` to ``n - 1 - k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spimflow.errors import ConfigError

_PAIRS = {"a": "ap", "p": "ap", "s": "si", "i": "si", "l": "lr", "r": "lr"}


def check_origin_code(code: str) -> str:
    """Validate a BrainGlobe origin code.

    Parameters
    ----------
    code : str
        Three letters, one from each of a/p, s/i, l/r, in array (z, y, x) axis order.

    Returns
    -------
    str
        The lower-cased code.

    Raises
    ------
    ConfigError
        If the code is not three such letters or names an anatomical axis twice.

    Examples
    --------
    >>> check_origin_code("ASR")
    'asr'
    >>> check_origin_code("aal")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    spimflow.errors.ConfigError: orientation code 'aal' names the same anatomical axis twice; ...
    """
    c = str(code).lower()
    if len(c) != 3 or any(ch not in _PAIRS for ch in c):
        raise ConfigError(f"orientation code {code!r} must be 3 letters from a/p, s/i, l/r (e.g. 'asr')")
    if len({_PAIRS[ch] for ch in c}) != 3:
        raise ConfigError(
            f"orientation code {code!r} names the same anatomical axis twice; "
            "use one of a/p, one of s/i and one of l/r (e.g. 'asr')"
        )
    return c


def check_clearmap_permutation(signed: Sequence[int]) -> tuple[int, int, int]:
    """Validate a ClearMap signed permutation (1-based, ClearMap (x, y, z) order).

    Parameters
    ----------
    signed : sequence of int
        E.g. ``[1, -2, 3]``: entry *k* is the sample axis (1 = x, 2 = y, 3 = z) that
        becomes atlas axis *k*, negative when reversed.

    Returns
    -------
    tuple of int
        The three values as ints.

    Raises
    ------
    ConfigError
        If the values are not a signed permutation of (1, 2, 3).

    Examples
    --------
    >>> check_clearmap_permutation([1, -2, 3])
    (1, -2, 3)
    """
    vals = tuple(int(v) for v in signed)
    if len(vals) != 3 or sorted(abs(v) for v in vals) != [1, 2, 3]:
        raise ConfigError(
            f"orientation {list(signed)} is not a signed permutation of (1, 2, 3); "
            "expected e.g. [1, -2, 3] (ClearMap x, y, z order)"
        )
    return vals  # type: ignore[return-value]


@dataclass(frozen=True)
class Orientation:
    """Sample → atlas axis mapping: oriented axis ``i`` = sample axis ``perm[i]``, reversed if ``flip[i]``.

    Axes are array axes in (z, y, x) order.

    Parameters
    ----------
    perm : tuple of int
        Permutation of (0, 1, 2).
    flip : tuple of bool
        Per oriented axis, whether it runs opposite to its sample axis.

    Raises
    ------
    ConfigError
        If ``perm`` is not a permutation of (0, 1, 2).

    Examples
    --------
    >>> o = Orientation(perm=(1, 0, 2), flip=(False, False, True))
    >>> o.oriented_shape((10, 20, 30))
    (20, 10, 30)
    """

    perm: tuple[int, int, int] = (0, 1, 2)
    flip: tuple[bool, bool, bool] = (False, False, False)

    def __post_init__(self):
        if sorted(self.perm) != [0, 1, 2]:
            raise ConfigError(f"orientation permutation {self.perm} is not a permutation of (0, 1, 2)")

    # construction -------------------------------------------------------
    @classmethod
    def from_codes(cls, sample_code: str, atlas_code: str) -> Orientation:
        """Derive the sample → atlas mapping from two BrainGlobe origin codes.

        Parameters
        ----------
        sample_code, atlas_code : str
            BrainGlobe origin codes (e.g. ``"psl"``, ``"asr"``) of the sample and the atlas.

        Returns
        -------
        Orientation

        Raises
        ------
        ConfigError
            If either code is invalid.

        Examples
        --------
        A sample imaged posterior-first with left-right reversed, relative to an "asr" atlas:

        >>> Orientation.from_codes("psl", "asr")
        Orientation(perm=(0, 1, 2), flip=(True, False, True))
        >>> Orientation.from_codes("sal", "asr")
        Orientation(perm=(1, 0, 2), flip=(False, False, True))
        """
        s, a = check_origin_code(sample_code), check_origin_code(atlas_code)
        perm, flip = [], []
        for letter in a:
            j = next(k for k, ch in enumerate(s) if _PAIRS[ch] == _PAIRS[letter])
            perm.append(j)
            flip.append(s[j] != letter)
        return cls(tuple(perm), tuple(flip))

    @classmethod
    def from_clearmap(cls, signed_xyz: Sequence[int]) -> Orientation:
        """Build from a ClearMap signed permutation (1-based, ClearMap (x, y, z) order).

        Parameters
        ----------
        signed_xyz : sequence of int
            E.g. ``[1, -2, 3]``, exactly as in a ClearMap ``orientation`` setting.

        Returns
        -------
        Orientation

        Raises
        ------
        ConfigError
            If the values are not a signed permutation of (1, 2, 3).

        Examples
        --------
        ClearMap's y (our axis 1) reversed:

        >>> Orientation.from_clearmap([1, -2, 3])
        Orientation(perm=(0, 1, 2), flip=(False, True, False))
        """
        vals = check_clearmap_permutation(signed_xyz)
        perm, flip = [0, 0, 0], [False, False, False]
        for k, v in enumerate(vals):  # k: ClearMap target axis (0=x, 1=y, 2=z)
            target = 2 - k  # our (z, y, x) index of that axis
            perm[target] = 3 - abs(v)  # ClearMap axis |v| (1=x..3=z) -> our index
            flip[target] = v < 0
        return cls(tuple(perm), tuple(flip))

    @classmethod
    def resolve(cls, sample: str | Sequence[int], atlas_code: str | None) -> Orientation:
        """Build from a config value: an origin code (needs the atlas code) or a ClearMap permutation.

        Parameters
        ----------
        sample : str or sequence of int
            BrainGlobe origin code of the sample, or a ClearMap signed permutation.
        atlas_code : str or None
            BrainGlobe origin code of the atlas; ignored for a ClearMap permutation.

        Returns
        -------
        Orientation

        Raises
        ------
        ConfigError
            If ``sample`` is invalid, or is a code while ``atlas_code`` is None.

        Examples
        --------
        >>> Orientation.resolve("sal", "asr") == Orientation.resolve([-1, 3, 2], None)
        True
        """
        if isinstance(sample, str):
            if atlas_code is None:
                raise ConfigError("a BrainGlobe orientation code needs the atlas orientation code too")
            return cls.from_codes(sample, atlas_code)
        return cls.from_clearmap(sample)

    def to_clearmap(self) -> tuple[int, int, int]:
        """The equivalent ClearMap signed permutation (1-based, ClearMap (x, y, z) order).

        Returns
        -------
        tuple of int

        Examples
        --------
        >>> Orientation.from_codes("sal", "asr").to_clearmap()
        (-1, 3, 2)
        """
        out = []
        for k in range(3):  # ClearMap x, y, z
            target = 2 - k
            v = 3 - self.perm[target]
            out.append(-v if self.flip[target] else v)
        return tuple(out)

    # algebra --------------------------------------------------------------
    @property
    def is_identity(self) -> bool:
        """True when sample and atlas axes coincide (no permutation, no flips)."""
        return self.perm == (0, 1, 2) and not any(self.flip)

    def inverse(self) -> Orientation:
        """The atlas → sample mapping.

        Returns
        -------
        Orientation

        Examples
        --------
        >>> o = Orientation.from_codes("ipl", "asr")
        >>> o.inverse()
        Orientation(perm=(1, 0, 2), flip=(True, True, True))
        >>> compose(o.inverse(), o).is_identity
        True
        """
        perm = [0, 0, 0]
        flip = [False, False, False]
        for i, j in enumerate(self.perm):
            perm[j] = i
            flip[j] = self.flip[i]
        return Orientation(tuple(perm), tuple(flip))

    # shapes, arrays, points -------------------------------------------------
    def oriented_shape(self, sample_shape: Sequence[int]) -> tuple[int, int, int]:
        """Carry a shape from sample axes to oriented (atlas) axes.

        Parameters
        ----------
        sample_shape : sequence of int
            Shape in sample (z, y, x) axes, voxels.

        Returns
        -------
        tuple of int
            Shape in oriented (z, y, x) axes, voxels.
        """
        return tuple(int(sample_shape[j]) for j in self.perm)

    def oriented_values(self, sample_values: Sequence[float]) -> tuple[float, float, float]:
        """Carry per-axis quantities (e.g. voxel sizes, µm) from sample axes to oriented axes.

        Parameters
        ----------
        sample_values : sequence of float
            One value per sample (z, y, x) axis.

        Returns
        -------
        tuple of float
            One value per oriented (z, y, x) axis.

        Examples
        --------
        >>> Orientation.from_codes("sal", "asr").oriented_values((4.0, 2.0, 1.0))
        (2.0, 4.0, 1.0)
        """
        return tuple(float(sample_values[j]) for j in self.perm)

    def apply_to_array(self, arr: np.ndarray) -> np.ndarray:
        """Reorient a sample-ordered array to atlas axes.

        Parameters
        ----------
        arr : ndarray
            3-D array in sample (z, y, x) axes.

        Returns
        -------
        ndarray
            Atlas-oriented view of ``arr`` (no copy).

        Examples
        --------
        >>> a = np.arange(6).reshape(1, 2, 3)
        >>> Orientation((0, 2, 1), (False, True, False)).apply_to_array(a).tolist()
        [[[2, 5], [1, 4], [0, 3]]]
        """
        out = np.transpose(arr, self.perm)
        index = tuple(slice(None, None, -1) if f else slice(None) for f in self.flip)
        return out[index]

    def apply_to_points(self, points: np.ndarray, sample_shape: Sequence[int]) -> np.ndarray:
        """Map sample voxel coordinates to oriented (atlas-axis) voxel coordinates.

        Parameters
        ----------
        points : (n, 3) array_like of float
            Voxel coordinates, sample (z, y, x) axes.
        sample_shape : sequence of int
            Sample image shape (z, y, x), needed to reverse flipped axes (``k → n - 1 - k``).

        Returns
        -------
        (n, 3) ndarray of float64
            Voxel coordinates, oriented (z, y, x) axes.

        Examples
        --------
        >>> o = Orientation.from_codes("sal", "asr")
        >>> o.apply_to_points([[1.0, 2.0, 3.0]], (10, 20, 30)).tolist()
        [[2.0, 1.0, 26.0]]
        """
        pts = np.asarray(points, dtype=np.float64)
        out = pts[:, list(self.perm)].copy()
        for i, (j, f) in enumerate(zip(self.perm, self.flip)):
            if f:
                out[:, i] = (sample_shape[j] - 1) - out[:, i]
        return out

    def invert_points(self, points: np.ndarray, sample_shape: Sequence[int]) -> np.ndarray:
        """Map oriented voxel coordinates back to sample voxel coordinates.

        Parameters
        ----------
        points : (n, 3) array_like of float
            Voxel coordinates, oriented (z, y, x) axes.
        sample_shape : sequence of int
            Sample image shape (z, y, x) (not the oriented shape).

        Returns
        -------
        (n, 3) ndarray of float64
            Voxel coordinates, sample (z, y, x) axes.

        Examples
        --------
        >>> o = Orientation.from_codes("sal", "asr")
        >>> o.invert_points([[2.0, 1.0, 26.0]], (10, 20, 30)).tolist()
        [[1.0, 2.0, 3.0]]
        """
        return self.inverse().apply_to_points(points, self.oriented_shape(sample_shape))


# -- composing and naming orientations ------------------------------------------------

_OPPOSITE = {"a": "p", "p": "a", "s": "i", "i": "s", "l": "r", "r": "l"}


def compose(outer: Orientation, inner: Orientation) -> Orientation:
    """Chain two orientations: apply ``inner`` (sample → oriented), then ``outer`` (oriented → re-oriented).

    Parameters
    ----------
    outer : Orientation
        Applied second.
    inner : Orientation
        Applied first.

    Returns
    -------
    Orientation
        The combined sample → re-oriented mapping.

    Examples
    --------
    Flipping z twice is the identity; swapping z and y after flipping z flips the new y:

    >>> flip_z = Orientation((0, 1, 2), (True, False, False))
    >>> compose(flip_z, flip_z).is_identity
    True
    >>> compose(Orientation((1, 0, 2)), flip_z)
    Orientation(perm=(1, 0, 2), flip=(False, True, False))
    """
    perm = tuple(inner.perm[outer.perm[i]] for i in range(3))
    flip = tuple(bool(outer.flip[i]) ^ bool(inner.flip[outer.perm[i]]) for i in range(3))
    return Orientation(perm, flip)


def orientation_code(o: Orientation, atlas_code: str) -> str:
    """The BrainGlobe code of a sample whose orientation relative to ``atlas_code`` is ``o``.

    Inverse of :meth:`Orientation.from_codes`.

    Parameters
    ----------
    o : Orientation
        Sample → atlas mapping.
    atlas_code : str
        Lower-case BrainGlobe origin code of the atlas (e.g. ``"asr"``).

    Returns
    -------
    str
        The sample's origin code.

    Examples
    --------
    >>> orientation_code(Orientation.from_codes("sal", "asr"), "asr")
    'sal'
    """
    letters = [""] * 3
    for i, j in enumerate(o.perm):
        letters[j] = _OPPOSITE[atlas_code[i]] if o.flip[i] else atlas_code[i]
    return "".join(letters)
