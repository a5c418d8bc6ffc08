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
    """Return the lower-cased code if it is a valid BrainGlobe origin code, else raise."""
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
    vals = tuple(int(v) for v in signed)
    if len(vals) != 3 or sorted(abs(v) for v in vals) != [1, 2, 3]:
        raise ConfigError(
            f"orientation {list(signed)} is not a signed permutation of (1, 2, 3); "
            "expected e.g. [1, -2, 3] (ClearMap x, y, z order)"
        )
    return vals  # type: ignore[return-value]


@dataclass(frozen=True)
class Orientation:
    """Oriented axis ``i`` = sample axis ``perm[i]``, reversed if ``flip[i]``."""

    perm: tuple[int, int, int] = (0, 1, 2)
    flip: tuple[bool, bool, bool] = (False, False, False)

    def __post_init__(self):
        if sorted(self.perm) != [0, 1, 2]:
            raise ConfigError(f"orientation permutation {self.perm} is not a permutation of (0, 1, 2)")

    # construction -------------------------------------------------------
    @classmethod
    def from_codes(cls, sample_code: str, atlas_code: str) -> Orientation:
        s, a = check_origin_code(sample_code), check_origin_code(atlas_code)
        perm, flip = [], []
        for letter in a:
            j = next(k for k, ch in enumerate(s) if _PAIRS[ch] == _PAIRS[letter])
            perm.append(j)
            flip.append(s[j] != letter)
        return cls(tuple(perm), tuple(flip))

    @classmethod
    def from_clearmap(cls, signed_xyz: Sequence[int]) -> Orientation:
        vals = check_clearmap_permutation(signed_xyz)
        perm, flip = [0, 0, 0], [False, False, False]
        for k, v in enumerate(vals):  # k: ClearMap target axis (0=x, 1=y, 2=z)
            target = 2 - k  # our (z, y, x) index of that axis
            perm[target] = 3 - abs(v)  # ClearMap axis |v| (1=x..3=z) -> our index
            flip[target] = v < 0
        return cls(tuple(perm), tuple(flip))

    @classmethod
    def resolve(cls, sample: str | Sequence[int], atlas_code: str | None) -> Orientation:
        """From a config value: an origin code (needs the atlas code) or a ClearMap permutation."""
        if isinstance(sample, str):
            if atlas_code is None:
                raise ConfigError("a BrainGlobe orientation code needs the atlas orientation code too")
            return cls.from_codes(sample, atlas_code)
        return cls.from_clearmap(sample)

    def to_clearmap(self) -> tuple[int, int, int]:
        out = []
        for k in range(3):  # ClearMap x, y, z
            target = 2 - k
            v = 3 - self.perm[target]
            out.append(-v if self.flip[target] else v)
        return tuple(out)

    # algebra --------------------------------------------------------------
    @property
    def is_identity(self) -> bool:
        return self.perm == (0, 1, 2) and not any(self.flip)

    def inverse(self) -> Orientation:
        perm = [0, 0, 0]
        flip = [False, False, False]
        for i, j in enumerate(self.perm):
            perm[j] = i
            flip[j] = self.flip[i]
        return Orientation(tuple(perm), tuple(flip))

    # shapes, arrays, points -------------------------------------------------
    def oriented_shape(self, sample_shape: Sequence[int]) -> tuple[int, int, int]:
        return tuple(int(sample_shape[j]) for j in self.perm)

    def oriented_values(self, sample_values: Sequence[float]) -> tuple[float, float, float]:
        """Per-axis quantities (voxel sizes) carried from sample axes to oriented axes."""
        return tuple(float(sample_values[j]) for j in self.perm)

    def apply_to_array(self, arr: np.ndarray) -> np.ndarray:
        """Sample-ordered array → atlas-oriented view (no copy)."""
        out = np.transpose(arr, self.perm)
        index = tuple(slice(None, None, -1) if f else slice(None) for f in self.flip)
        return out[index]

    def apply_to_points(self, points: np.ndarray, sample_shape: Sequence[int]) -> np.ndarray:
        """(n, 3) sample voxel coordinates → oriented voxel coordinates."""
        pts = np.asarray(points, dtype=np.float64)
        out = pts[:, list(self.perm)].copy()
        for i, (j, f) in enumerate(zip(self.perm, self.flip)):
            if f:
                out[:, i] = (sample_shape[j] - 1) - out[:, i]
        return out

    def invert_points(self, points: np.ndarray, sample_shape: Sequence[int]) -> np.ndarray:
        """Oriented voxel coordinates → sample voxel coordinates."""
        return self.inverse().apply_to_points(points, self.oriented_shape(sample_shape))


# -- composing and naming orientations ------------------------------------------------

_OPPOSITE = {"a": "p", "p": "a", "s": "i", "i": "s", "l": "r", "r": "l"}


def compose(outer: Orientation, inner: Orientation) -> Orientation:
    """The orientation that applies ``inner`` (sample → oriented) and then ``outer``
    (oriented → re-oriented)."""
    perm = tuple(inner.perm[outer.perm[i]] for i in range(3))
    flip = tuple(bool(outer.flip[i]) ^ bool(inner.flip[outer.perm[i]]) for i in range(3))
    return Orientation(perm, flip)


def orientation_code(o: Orientation, atlas_code: str) -> str:
    """The BrainGlobe code of a sample whose orientation relative to ``atlas_code`` is ``o``
    (inverse of :meth:`Orientation.from_codes`)."""
    letters = [""] * 3
    for i, j in enumerate(o.perm):
        letters[j] = _OPPOSITE[atlas_code[i]] if o.flip[i] else atlas_code[i]
    return "".join(letters)
