"""Reading atlases from disk: BrainGlobe folders, Allen-style volumes + ontology, config.

Volumes are returned (z, y, x) exactly as the file stores them (TIFF pages are axis 0;
SimpleITK's ``GetArrayFromImage`` already gives (z, y, x)). No axis is reordered here:
the atlas ``orientation`` code describes whatever order the file has.
"""

from __future__ import annotations

import io
import json
import logging
import lzma
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import tifffile

from spimflow.atlas.model import LEFT, RIGHT, Atlas, lr_axis, midline_hemispheres
from spimflow.atlas.ontology import Ontology
from spimflow.errors import ConfigError, InputFileError
from spimflow.orientation import check_origin_code

log = logging.getLogger("spimflow.atlas")

VOLUME_SUFFIXES = (".tif", ".tiff", ".tif.lzma", ".tiff.lzma", ".nrrd", ".mhd", ".mha", ".nii", ".nii.gz")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return next((s for s in sorted(VOLUME_SUFFIXES, key=len, reverse=True) if name.endswith(s)), path.suffix.lower())


def read_volume(path: str | Path, what: str = "volume") -> np.ndarray:
    """Read a 3-D atlas volume as (z, y, x), axes exactly as the file stores them.

    Parameters
    ----------
    path : str or Path
        ``.tif``/``.tiff``, ``.tif.lzma`` (LZMA-compressed TIFF), ``.nrrd``,
        ``.mhd``/``.mha``, ``.nii``/``.nii.gz`` (SimpleITK).
    what : str, optional
        What the volume is, for messages (e.g. "annotation").

    Returns
    -------
    ndarray
        The volume (z, y, x), dtype as stored.

    Raises
    ------
    InputFileError
        If the file is missing, of an unknown type, unreadable, empty or not 3-D.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: {what} file not found")
    suffix = _suffix(path)
    try:
        if suffix in (".tif", ".tiff"):
            arr = tifffile.imread(path)
        elif suffix in (".tif.lzma", ".tiff.lzma"):
            arr = tifffile.imread(io.BytesIO(lzma.decompress(path.read_bytes())))
        elif suffix in (".nrrd", ".mhd", ".mha", ".nii", ".nii.gz"):
            arr = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        else:
            raise InputFileError(f"{path}: {what} must be one of {', '.join(VOLUME_SUFFIXES)}")
    except InputFileError:
        raise
    except (lzma.LZMAError, tifffile.TiffFileError, RuntimeError, ValueError, OSError) as exc:
        raise InputFileError(f"{path}: cannot read {what}: {exc}") from None
    arr = np.asarray(arr)
    if arr.size == 0:
        raise InputFileError(f"{path}: cannot read {what}: the file holds no image data")
    if arr.ndim != 3:
        raise InputFileError(f"{path}: {what} must be a 3-D (z, y, x) volume, got shape {arr.shape}")
    return arr


def _check_shape(arr: np.ndarray, expected: tuple[int, ...], path: Path, against: str) -> None:
    if tuple(arr.shape) != tuple(expected):
        raise InputFileError(f"{path}: shape {tuple(arr.shape)} differs from {against} {tuple(expected)}")


def convert_hemispheres(
    volume: np.ndarray, orientation: str, values: Mapping[int, int] | None = None, source: str = "hemispheres"
) -> np.ndarray:
    """Convert any hemisphere volume to BrainGlobe values (1 left, 2 right, 0 outside).

    * ``values`` given: an explicit map {file value: 0/1/2}; every value in the file
      must be listed.
    * otherwise, a volume whose values are all in {0, 1, 2} is taken as BrainGlobe values;
    * otherwise exactly two distinct values are expected (the Allen CCF file has 255 on
      one half and 0 on the other — 0 is a side there, not "outside"). The value lying at
      the start of the l/r axis is given the side that the ``orientation`` letter of that
      axis names (``r`` in ``"asr"``: start = right), the other value the opposite side.
      The file itself does not record which half is left: the declared orientation
      decides.

    Parameters
    ----------
    volume : ndarray of int
        Hemisphere volume (z, y, x).
    orientation : str
        BrainGlobe origin code of the volume axes.
    values : mapping of int to int, optional
        Explicit map {file value: 0/1/2}.
    source : str, optional
        Names the volume in messages.

    Returns
    -------
    ndarray of uint8
        1 (left), 2 (right), 0 (outside), same shape.

    Raises
    ------
    InputFileError
        If the volume is not integer, or its values cannot be assigned to sides.
    ConfigError
        If ``values`` does not map every value in the volume to 0, 1 or 2.

    Examples
    --------
    The Allen CCF style (0 on one half, 255 on the other); in ``"asr"`` the l/r axis
    (x) starts on the right:

    >>> convert_hemispheres(np.array([[[0, 0, 255, 255]]]), "asr").tolist()
    [[[2, 2, 1, 1]]]
    >>> convert_hemispheres(np.array([[[3, 4]]]), "asr", values={3: 1, 4: 2}).tolist()
    [[[1, 2]]]
    """
    vol = np.asarray(volume)
    if vol.dtype.kind not in "iu":
        raise InputFileError(f"{source}: hemisphere volume must hold integers, got dtype {vol.dtype}")
    present = [int(v) for v in np.unique(vol)]
    if values is not None:
        table = {int(k): int(v) for k, v in values.items()}
        bad = [v for v in table.values() if v not in (0, LEFT, RIGHT)]
        unlisted = [v for v in present if v not in table]
        if bad or unlisted:
            raise ConfigError(
                f"{source}: hemisphere_values must map every value in the file "
                f"({present}) to 0, 1 (left) or 2 (right); got {dict(values)}"
            )
        out = np.zeros(vol.shape, dtype=np.uint8)
        for k, v in table.items():
            if v:
                out[vol == k] = v
        return out
    if set(present) <= {0, LEFT, RIGHT}:
        return vol.astype(np.uint8)
    if len(present) != 2:
        raise InputFileError(
            f"{source}: cannot convert hemisphere values {present[:10]} to left/right: "
            "expected 0/1/2 (BrainGlobe) or exactly two values (one per side)"
        )
    ax = lr_axis(orientation)
    others = tuple(i for i in range(3) if i != ax)
    positions = np.arange(vol.shape[ax], dtype=np.float64)
    means = []
    for v in present:
        profile = np.count_nonzero(vol == v, axis=others).astype(np.float64)
        means.append(float((profile * positions).sum() / profile.sum()))
    if abs(means[0] - means[1]) < vol.shape[ax] / 4:
        raise InputFileError(
            f"{source}: the two hemisphere values {present} are not on opposite sides "
            f"of the l/r axis (axis {ax}); give an explicit value mapping"
        )
    start_value = present[int(np.argmin(means))]
    code = check_origin_code(orientation)
    start_side = LEFT if code[ax] == "l" else RIGHT
    end_side = RIGHT if start_side == LEFT else LEFT
    return np.where(vol == start_value, np.uint8(start_side), np.uint8(end_side)).astype(np.uint8)


def _read_metadata(folder: Path) -> dict:
    path = folder / "metadata.json"
    if not path.is_file():
        raise InputFileError(f"{path}: BrainGlobe atlas metadata not found (expected metadata.json in {folder})")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise InputFileError(f"{path}: expected a JSON object")
    missing = [k for k in ("resolution", "orientation", "shape") if k not in meta]
    if missing:
        raise InputFileError(f"{path}: missing key(s) {', '.join(missing)}")
    for key in ("resolution", "shape"):
        v = meta[key]
        if not isinstance(v, list) or len(v) != 3 or not all(isinstance(x, (int, float)) and x > 0 for x in v):
            raise InputFileError(f"{path}: '{key}' must be three positive numbers (z, y, x), got {v!r}")
    try:
        meta["orientation"] = check_origin_code(meta["orientation"])
    except ConfigError as exc:
        raise InputFileError(f"{path}: {exc}") from None
    return meta


def load_brainglobe(folder: str | Path) -> Atlas:
    """Load a BrainGlobe atlas folder.

    Without ``hemispheres.tiff`` a symmetric atlas gets the midline split; an asymmetric
    one has ``hemispheres=None``.

    Parameters
    ----------
    folder : str or Path
        Holds ``metadata.json`` (resolution µm, orientation, shape, name, symmetric),
        ``structures.json``, ``annotation.tiff``, optional ``reference.tiff`` and
        ``hemispheres.tiff``.

    Returns
    -------
    Atlas

    Raises
    ------
    InputFileError
        If a required file is missing or malformed, or shapes disagree.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(f"{folder}: BrainGlobe atlas folder not found")
    meta = _read_metadata(folder)
    structures = folder / "structures.json"
    if not structures.is_file():
        raise InputFileError(f"{folder}: atlas has no ontology: expected structures.json in {folder}")
    ontology = Ontology.from_brainglobe(structures)
    shape = tuple(int(s) for s in meta["shape"])
    ann_path = folder / "annotation.tiff"
    annotation = read_volume(ann_path, "annotation")
    _check_shape(annotation, shape, ann_path, "metadata.json shape")
    reference = None
    if (folder / "reference.tiff").is_file():
        reference = read_volume(folder / "reference.tiff", "reference")
        _check_shape(reference, shape, folder / "reference.tiff", "metadata.json shape")
    hem_path = folder / "hemispheres.tiff"
    if hem_path.is_file():
        hemispheres = read_volume(hem_path, "hemispheres")
        _check_shape(hemispheres, shape, hem_path, "metadata.json shape")
        if hemispheres.dtype.kind not in "iu" or hemispheres.min() < 0 or hemispheres.max() > 2:
            raise InputFileError(f"{hem_path}: BrainGlobe hemispheres must hold 0, 1 (left) or 2 (right)")
        hemispheres = hemispheres.astype(np.uint8)
    elif meta.get("symmetric"):
        hemispheres = midline_hemispheres(shape, meta["orientation"])
    else:
        hemispheres = None
    return Atlas(
        annotation=annotation,
        reference=reference,
        hemispheres=hemispheres,
        voxel_size=tuple(float(v) for v in meta["resolution"]),
        orientation=meta["orientation"],
        ontology=ontology,
        name=str(meta.get("name") or folder.name),
        source=str(folder),
    )


def load_allen(
    annotation: str | Path,
    ontology: str | Path | Ontology,
    voxel_size: Sequence[float],
    orientation: str,
    reference: str | Path | None = None,
    hemispheres: str | Path | None = None,
    hemisphere_values: Mapping[int, int] | None = None,
    name: str | None = None,
) -> Atlas:
    """Load an atlas from separate files (Allen / ClearMap style).

    Parameters
    ----------
    annotation : str or Path
        Label volume (.tif, .tif.lzma, .nrrd, .mhd, ...; see :func:`read_volume`).
    ontology : str or Path or Ontology
        Allen JSON / BrainGlobe structures.json / Allen CSV file, or an :class:`Ontology`.
    voxel_size : sequence of float
        Voxel size (z, y, x), µm.
    orientation : str
        BrainGlobe origin code of the volume's axes.
    reference : str or Path, optional
        Reference (template) volume.
    hemispheres : str or Path, optional
        Hemisphere volume, converted by :func:`convert_hemispheres`.
    hemisphere_values : mapping of int to int, optional
        Explicit map {file value: 0/1/2} for the hemisphere volume.
    name : str, optional
        Atlas name; default the annotation file name without suffixes.

    Returns
    -------
    Atlas

    Raises
    ------
    ConfigError
        If the orientation code or hemisphere values are invalid.
    InputFileError
        If a file is missing or malformed, or shapes disagree.
    """
    annotation = Path(annotation)
    try:
        orientation = check_origin_code(orientation)
    except ConfigError as exc:
        raise ConfigError(f"atlas.orientation: {exc}") from None
    onto = ontology if isinstance(ontology, Ontology) else Ontology.from_file(Path(ontology))
    labels = read_volume(annotation, "annotation")
    if labels.dtype.kind not in "iu":
        raise InputFileError(f"{annotation}: annotation must hold integer labels, got dtype {labels.dtype}")
    ref = None
    if reference is not None:
        ref = read_volume(reference, "reference")
        _check_shape(ref, labels.shape, Path(reference), f"annotation {annotation.name}")
    hemi = None
    if hemispheres is not None:
        raw = read_volume(hemispheres, "hemispheres")
        _check_shape(raw, labels.shape, Path(hemispheres), f"annotation {annotation.name}")
        hemi = convert_hemispheres(raw, orientation, hemisphere_values, source=str(hemispheres))
    return Atlas(
        annotation=labels,
        reference=ref,
        hemispheres=hemi,
        voxel_size=tuple(voxel_size),
        orientation=orientation,
        ontology=onto,
        name=name or annotation.name.split(".")[0],
        source=str(annotation),
    )


#: Largest fraction of the labelled atlas voxels whose label may be missing from the
#: ontology (a warning); above it the atlas is refused (every cell there would have no
#: acronym and no parent region).
MAX_UNKNOWN_LABEL_FRACTION = 0.01


def check_unknown_labels(atlas: Atlas) -> None:
    """Warn about annotation labels missing from the ontology; refuse the atlas above
    :data:`MAX_UNKNOWN_LABEL_FRACTION` of its labelled voxels.

    Parameters
    ----------
    atlas : Atlas
        The loaded atlas.

    Raises
    ------
    InputFileError
        If too many labelled voxels carry labels the ontology does not know.
    """
    unknown = atlas.unknown_labels()
    if not unknown:
        return
    total = sum(unknown.values())
    labelled = max(int(np.count_nonzero(atlas.annotation)), 1)
    shown = ", ".join(f"{k} ({v} voxels)" for k, v in list(unknown.items())[:20])
    more = " ..." if len(unknown) > 20 else ""
    text = (
        f"{atlas.source}: {len(unknown)} label(s) in the annotation are not in the ontology "
        f"({total} voxels, {100 * total / labelled:.2f}% of the labelled voxels): {shown}{more}"
    )
    if total / labelled > MAX_UNKNOWN_LABEL_FRACTION:
        raise InputFileError(
            f"{text}; expected at most {100 * MAX_UNKNOWN_LABEL_FRACTION:g}% — is the ontology "
            "(structures.json / ontology JSON) the one of this annotation?"
        )
    log.warning("%s; they keep their raw id and have no acronym", text)


def load_atlas(cfg, base: str | Path = ".") -> Atlas:
    """Load the atlas a config describes and crop it to the configured hemisphere.

    Logs a warning listing annotation labels that the ontology does not know.

    Parameters
    ----------
    cfg : AtlasConfig
        The ``atlas`` section of the config (:class:`~spimflow.config.AtlasConfig`).
    base : str or Path, optional
        Folder that the config's paths are relative to.

    Returns
    -------
    Atlas
        Cropped to ``cfg.hemisphere`` unless it is "both".

    Raises
    ------
    ConfigError
        If the config is invalid, or an atlas given by ``name`` is not in the BrainGlobe
        cache folder (it is not fetched here; see :mod:`spimflow.atlas.cache`).
    InputFileError
        If a file is missing or malformed.
    """
    base = Path(base)
    if cfg.format == "brainglobe":
        atlas = load_brainglobe(cfg.folder(base))  # ``path``, or ``name`` found in the BrainGlobe cache
    elif cfg.format == "allen":
        atlas = load_allen(
            base / cfg.annotation,
            base / cfg.ontology,
            cfg.voxel_size,
            cfg.orientation,
            reference=base / cfg.reference if cfg.reference is not None else None,
            hemispheres=base / cfg.hemispheres if cfg.hemispheres is not None else None,
        )
    else:  # the config model only allows the two formats above
        raise ConfigError(f"atlas.format: unknown atlas format {cfg.format!r}")
    check_unknown_labels(atlas)
    if cfg.hemisphere != "both":
        atlas = atlas.crop_hemisphere(cfg.hemisphere)
    return atlas
