"""The synthetic demo atlas: a mirror-symmetric mouse-brain-like label volume.

Axes follow the BrainGlobe origin code ``"asr"``: array axis 0 runs anterior→posterior,
axis 1 superior→inferior, axis 2 right→left (so low axis-2 indices are the RIGHT
hemisphere). Voxels are 25 µm isotropic, centres at integer indices.

The atlas is the same for every demo seed (like a real atlas, several synthetic brains
can be mapped into it); the seed only changes the sample. Everything here is built from
a fixed internal random generator, so the volumes are bit-identical between runs.

Design: an ellipsoid-like brain (narrower anteriorly, flatter ventrally, a dorsal groove
between the cerebrum-like and cerebellum-like parts). Five major divisions (a
cortex-like dorsal shell, then a Voronoi partition of the rest on anatomically placed
seeds: striatum-, thalamus-, midbrain- and cerebellum-like), each split into compact
subdivisions and leaves by k-means on voxel positions. Everything is computed on the
right half and mirrored, so labels are exactly symmetric across the midline.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

ATLAS_NAME = "spimflow_demo_25um"
ATLAS_SHAPE = (72, 48, 64)  # (a/p, s/i, r/l) voxels
ATLAS_VOXEL_UM = 25.0
ATLAS_ORIENTATION = "asr"
ROOT_ID = 997
MIN_MARGIN_VOXELS = 4
MIN_LEAF_VOXELS_PER_HEMISPHERE = 150
_ATLAS_SEED = 20240917  # fixed: the atlas does not depend on the demo seed

# Brain shape (voxels): centre and semi-axes of the base ellipsoid.
_CENTRE = (35.5, 23.5)  # a/p, s/i; the l/r centre is the midline
_R_AP = 30.5
_R_SUP, _R_INF = 18.5, 15.5  # dorsal half is taller than the flat ventral half
_R_LR = 26.5

# (acronym, name, hue, base reference level, n subdivisions, n leaves per subdivision)
_MAJORS = [
    ("CTX", "Cortex-like plate", 0.36, 3000.0, 3, 3),
    ("STR", "Striatum-like nuclei", 0.58, 2200.0, 2, 2),
    ("TH", "Thalamus-like nuclei", 0.92, 3900.0, 2, 3),
    ("MB", "Midbrain-like nuclei", 0.08, 2650.0, 2, 2),
    ("CB", "Cerebellum-like lobes", 0.15, 4700.0, 2, 2),
]
# Voronoi seeds of the non-cortical divisions in normalised (U, V, W) coordinates:
# U -1 anterior .. +1 posterior, V -1 superior .. +1 inferior, W 0 midline .. 1 lateral.
_SEEDS = {
    "STR": [(-0.55, 0.05, 0.45), (-0.65, 0.45, 0.35), (-0.35, 0.25, 0.6)],
    "TH": [(0.0, 0.05, 0.2), (0.05, 0.35, 0.35)],
    "MB": [(0.35, 0.25, 0.15), (0.35, 0.6, 0.35)],
    "CB": [(0.8, -0.3, 0.3), (0.78, 0.15, 0.6)],
}
_AXIS_WORDS = {
    0: (("anterior", "posterior"), ("anterior", "intermediate", "posterior"), "aip"),
    1: (("dorsal", "ventral"), ("dorsal", "intermediate", "ventral"), "div"),
    2: (("medial", "lateral"), ("medial", "intermediate", "lateral"), "mil"),
}


@dataclass(frozen=True)
class Structure:
    """One ontology node; ``path`` is the structure_id_path from root to this id."""

    id: int
    acronym: str
    name: str
    path: tuple[int, ...]
    rgb: tuple[int, int, int]

    def to_json(self) -> dict:
        return {
            "acronym": self.acronym,
            "id": self.id,
            "name": self.name,
            "structure_id_path": list(self.path),
            "rgb_triplet": list(self.rgb),
        }


@dataclass
class DemoAtlas:
    """Volumes in (a/p, s/i, r/l) order plus the ontology and per-leaf properties."""

    annotation: np.ndarray  # uint32, leaf ids, 0 outside
    reference: np.ndarray  # uint16 template intensity
    hemispheres: np.ndarray  # uint8, 1 left, 2 right, 0 outside
    structures: list[Structure]
    leaf_density_per_mm3: dict[int, float] = field(default_factory=dict)

    @property
    def leaves(self) -> list[Structure]:
        ids = set(np.unique(self.annotation).tolist()) - {0}
        return [s for s in self.structures if s.id in ids]

    def metadata(self) -> dict:
        """BrainGlobe ``metadata.json`` content."""
        return {
            "name": ATLAS_NAME,
            "citation": "synthetic",
            "atlas_link": "",
            "species": "Mus musculus (synthetic)",
            "symmetric": True,
            "resolution": [ATLAS_VOXEL_UM] * 3,
            "orientation": ATLAS_ORIENTATION,
            "version": "0.1",
            "shape": list(self.annotation.shape),
            "trasform_to_bg": np.eye(4).tolist(),
            "additional_references": [],
        }


# -- geometry of the right half ---------------------------------------------------------------


def _half_coordinates(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel coordinates (u, v, lateral distance from the midline) of the right half
    (axis-2 indices 0 .. n/2-1; with "asr" low axis-2 indices are right)."""
    nu, nv, nw = shape
    u, v, w = np.meshgrid(
        np.arange(nu, dtype=float), np.arange(nv, dtype=float), np.arange(nw // 2, dtype=float), indexing="ij"
    )
    lateral = (nw - 1) / 2.0 - w
    return u, v, lateral


def _normalised(u, v, lateral):
    """(U, V, W) and the effective radius rho (<= 1 inside the brain)."""
    U = (u - _CENTRE[0]) / _R_AP
    dv = v - _CENTRE[1]
    r_si = 0.5 * (_R_SUP + _R_INF) - 0.5 * (_R_SUP - _R_INF) * np.tanh(dv / 4.0)
    V = dv / r_si
    r_lr = _R_LR * (0.80 + 0.20 / (1.0 + np.exp(-(U + 0.35) / 0.15)))  # narrower anteriorly
    W = lateral / r_lr
    rho = np.sqrt(U**2 + V**2 + W**2)
    # dents (never bulges, so the margin holds): a dorsal groove between cerebrum and
    # cerebellum, and a shallow ventral notch behind the striatum.
    groove = 0.10 * np.exp(-((U - 0.5) ** 2) / (2 * 0.06**2)) * (V < 0) * np.clip(-V * 2, 0, 1)
    notch = 0.06 * np.exp(-((U + 0.1) ** 2 + (W - 0.0) ** 2) / (2 * 0.2**2)) * (V > 0)
    return U, V, W, rho * (1.0 + groove + notch)


def _kmeans(points: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 40) -> np.ndarray:
    """Deterministic Lloyd k-means with k-means++ seeding; returns labels 0..k-1."""
    centres = [points[rng.integers(len(points))]]
    for _ in range(1, k):
        d2 = np.min([np.sum((points - c) ** 2, axis=1) for c in centres], axis=0)
        centres.append(points[rng.choice(len(points), p=d2 / d2.sum())])
    centres = np.array(centres)
    labels = np.zeros(len(points), dtype=int)
    for _ in range(iterations):
        d2 = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        labels = np.argmin(d2, axis=1)
        new = np.array([points[labels == j].mean(axis=0) for j in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    return labels


def _order_clusters(points: np.ndarray, labels: np.ndarray, k: int) -> tuple[list[int], int]:
    """Cluster indices sorted along the axis where their centroids spread most."""
    cent = np.array([points[labels == j].mean(axis=0) for j in range(k)])
    axis = int(np.argmax(cent.max(axis=0) - cent.min(axis=0)))
    return [int(j) for j in np.argsort(cent[:, axis], kind="stable")], axis


def _rgb(hue: float, lightness: float, saturation: float = 0.65) -> tuple[int, int, int]:
    r, g, b = colorsys.hls_to_rgb(hue % 1.0, lightness, saturation)
    return (int(round(r * 255)), int(round(g * 255)), int(round(b * 255)))


def _major_divisions(U, V, W, rho, inside) -> np.ndarray:
    """Index into _MAJORS per voxel (-1 outside)."""
    major = np.full(U.shape, -1, dtype=int)
    cortex = inside & (rho > 0.64) & (V < 0.3) & (U < 0.36)
    rest = inside & ~cortex
    names = [m[0] for m in _MAJORS]
    seeds, owner = [], []
    for name, pts in _SEEDS.items():
        for p in pts:
            seeds.append(p)
            owner.append(names.index(name))
    seeds = np.array(seeds)
    pts = np.stack([U[rest], V[rest], W[rest]], axis=1)
    nearest = np.argmin(((pts[:, None, :] - seeds[None]) ** 2).sum(axis=2), axis=1)
    major[cortex] = names.index("CTX")
    major[rest] = np.array(owner)[nearest]
    return major


def build_atlas() -> DemoAtlas:
    """Build the demo atlas (deterministic; independent of the demo seed)."""
    rng = np.random.default_rng(_ATLAS_SEED)
    shape = ATLAS_SHAPE
    u, v, lateral = _half_coordinates(shape)
    U, V, W, rho = _normalised(u, v, lateral)
    inside = rho <= 1.0
    major = _major_divisions(U, V, W, rho, inside)

    half = np.zeros(u.shape, dtype=np.uint32)
    structures = [Structure(ROOT_ID, "root", "root", (ROOT_ID,), (255, 255, 255))]
    level = {}  # leaf id -> reference level
    positions = np.stack([u, v, lateral], axis=-1)
    for mi, (acr, name, hue, base, n_sub, n_leaf) in enumerate(_MAJORS):
        mid = 100 * (mi + 1)
        structures.append(Structure(mid, acr, name, (ROOT_ID, mid), _rgb(hue, 0.45, 0.55)))
        sel = major == mi
        pts = positions[sel]
        sub_lab = _kmeans(pts, n_sub, rng)
        order, axis = _order_clusters(pts, sub_lab, n_sub)
        words = _AXIS_WORDS[axis]
        leaf_factors = rng.permutation(np.linspace(0.78, 1.22, n_sub * n_leaf))
        ids_major = np.zeros(len(pts), dtype=np.uint32)
        for si, j in enumerate(order):
            sid = mid + 10 * (si + 1)
            word = (words[0] if n_sub == 2 else words[1])[si]
            s_acr = f"{acr}{words[2][si] if n_sub == 3 else word[0]}"
            s_name = f"{name}, {word} division"
            structures.append(Structure(sid, s_acr, s_name, (ROOT_ID, mid, sid), _rgb(hue + 0.04 * si, 0.52, 0.45)))
            in_sub = sub_lab == j
            leaf_lab = _kmeans(pts[in_sub], n_leaf, rng)
            lorder, laxis = _order_clusters(pts[in_sub], leaf_lab, n_leaf)
            lwords = _AXIS_WORDS[laxis]
            leaf_ids = np.zeros(in_sub.sum(), dtype=np.uint32)
            for li, lj in enumerate(lorder):
                lid = sid + li + 1
                lword = (lwords[0] if n_leaf == 2 else lwords[1])[li]
                k = si * n_leaf + li
                structures.append(
                    Structure(
                        lid,
                        f"{s_acr}{li + 1}",
                        f"{s_name}, {lword} part",
                        (ROOT_ID, mid, sid, lid),
                        _rgb(
                            hue + 0.12 * (k / (n_sub * n_leaf - 1) - 0.5),
                            0.28 + 0.44 * ((3 * k) % (n_sub * n_leaf)) / (n_sub * n_leaf),
                            0.75,
                        ),
                    )
                )
                leaf_ids[leaf_lab == lj] = lid
                level[lid] = base * leaf_factors[k]
            ids_major[in_sub] = leaf_ids
        half[sel] = ids_major

    half = _drop_fragments(half)
    annotation = np.concatenate([half, half[..., ::-1]], axis=2)
    nw = shape[2]
    hemi = np.where(np.arange(nw) < nw // 2, 2, 1).astype(np.uint8)  # asr: low index = right
    hemispheres = np.where(annotation > 0, hemi[None, None, :], 0).astype(np.uint8)
    major_full = np.concatenate([major, major[..., ::-1]], axis=2)
    reference = _reference(annotation, major_full, level, rng)
    atlas = DemoAtlas(annotation, reference, hemispheres, structures, _leaf_densities(sorted(level), rng))
    check_atlas(atlas)
    return atlas


def _drop_fragments(labels: np.ndarray) -> np.ndarray:
    """Give every voxel outside its leaf's largest connected piece to the nearest other
    leaf, so each leaf is one compact blob per hemisphere."""
    out = labels.copy()
    stray = np.zeros(labels.shape, dtype=bool)
    for lid in np.unique(labels[labels > 0]):
        comp, n = ndimage.label(labels == lid)
        if n > 1:
            sizes = np.bincount(comp.ravel())[1:]
            stray |= (comp > 0) & (comp != 1 + int(np.argmax(sizes)))
    if stray.any():
        keep = (out > 0) & ~stray
        _, idx = ndimage.distance_transform_edt(~keep, return_indices=True)
        out[stray] = out[tuple(i[stray] for i in idx)]
    return out


def _reference(
    annotation: np.ndarray, major: np.ndarray, level: dict[int, float], rng: np.random.Generator
) -> np.ndarray:
    """Template intensity: a level per leaf, dark 1-voxel seams between major divisions and
    at the dorsal midline, mild smooth texture, slight blur; ~0 outside the brain."""
    lut = np.zeros(int(annotation.max()) + 1, dtype=np.float64)
    for lid, val in level.items():
        lut[lid] = val
    ref = lut[annotation]
    inside = annotation > 0
    seam = np.zeros(annotation.shape, dtype=bool)
    for ax in range(3):
        a = np.swapaxes(major, 0, ax)
        s = np.swapaxes(seam, 0, ax)
        diff = (a[1:] != a[:-1]) & (a[1:] >= 0) & (a[:-1] >= 0)
        s[1:] |= diff
    nw = annotation.shape[2]
    midline = np.zeros_like(seam)
    midline[:, :, nw // 2 - 1 : nw // 2 + 1] = True
    names = [m[0] for m in _MAJORS]
    seam |= midline & (major == names.index("CTX"))
    ref[seam] *= 0.55
    texture = ndimage.gaussian_filter(rng.standard_normal(annotation.shape), 2.0)
    texture = 0.5 * (texture + texture[..., ::-1])
    texture *= 0.06 / texture[inside].std()
    ref = ref * (1.0 + texture) * inside
    ref = ndimage.gaussian_filter(ref, 0.6)
    return np.clip(np.rint(ref), 0, 65535).astype(np.uint16)


def _leaf_densities(leaf_ids: list[int], rng: np.random.Generator) -> dict[int, float]:
    """Cell density (cells / mm³ of tissue) per leaf: some leaves empty, the others
    log-uniform over a 30-fold range, so counts differ by >10x between regions."""
    n = len(leaf_ids)
    dens = np.exp(rng.uniform(np.log(400.0), np.log(12000.0), n))
    dens[rng.choice(n, size=5, replace=False)] = 0.0
    return {lid: float(round(d, 1)) for lid, d in zip(leaf_ids, dens)}


def check_atlas(atlas: DemoAtlas) -> None:
    """Design invariants (raise AssertionError if a change to the design breaks them)."""
    ann = atlas.annotation
    assert np.array_equal(ann, ann[..., ::-1]), "annotation must be mirror-symmetric"
    zz, yy, xx = np.nonzero(ann)
    for lo, hi, n in (
        (zz.min(), zz.max(), ann.shape[0]),
        (yy.min(), yy.max(), ann.shape[1]),
        (xx.min(), xx.max(), ann.shape[2]),
    ):
        assert lo >= MIN_MARGIN_VOXELS and n - 1 - hi >= MIN_MARGIN_VOXELS, "brain margin too small"
    right = ann[..., : ann.shape[2] // 2]
    ids, counts = np.unique(right[right > 0], return_counts=True)
    assert counts.min() >= MIN_LEAF_VOXELS_PER_HEMISPHERE, dict(zip(ids.tolist(), counts.tolist()))
    rgbs = [s.rgb for s in atlas.structures]
    assert len(set(rgbs)) == len(rgbs), "colours must be distinct"
    acrs = [s.acronym for s in atlas.structures]
    assert len(set(acrs)) == len(acrs), "acronyms must be unique"
