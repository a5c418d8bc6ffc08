"""Rules of the annotation stage (``params.action`` picks one):

- ``export``: every detection of ``cells/cells_raw.parquet`` → ``annotation/cells.cdb``, a
  ClickPoints-compatible project (types ``cell`` and ``rejected``, one image row per plane
  of the signal). A project holding edits made after its export is never replaced unless
  ``steps.annotate.overwrite_edits`` is set.
- ``import``: the (edited) project → ``cells/cells_curated.parquet`` (+ csv): moved,
  deleted, added and re-typed markers honoured, moved and added cells measured again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spimflow.annotate import Project, frame_to_markers, markers_to_frame
from spimflow.atlas import load_atlas
from spimflow.config import AtlasConfig, Channel, FolderSource, PatternSource
from spimflow.errors import InputFileError
from spimflow.io.atomic import atomic_path
from spimflow.io.omezarr import open_ome_zarr
from spimflow.io.tables import write_table
from spimflow.io.tiff_readers import list_folder_files, list_pattern_files
from spimflow.params.annotate import AnnotateParams
from spimflow.params.detect import DetectParams
from spimflow.steps.cells_atlas import cells_to_atlas
from spimflow.steps.curate import KEPT, REJECTED, curated_cells, detections_as_markers, kept_mask
from spimflow.steps.detect.filters import IlluminationField
from spimflow.transforms import SampleAtlasTransform

log = logging.getLogger(__name__)

EXPORT_OPTION = "spimflow_export"
COLOURS = {KEPT: "#00ff00", REJECTED: "#ff00ff"}


def marker_checksum(project: Project) -> str:
    """A digest of every marker (position, type, text, style): changes with any edit."""
    m = project.get_markers()
    cols = [c for c in ("id", "image_id", "x", "y", "type_id", "text", "style", "track_id") if c in m.columns]
    text = m[cols].sort_values("id").to_csv(index=False) if len(m) else ""
    return hashlib.sha256(text.encode()).hexdigest()


def edits_since_export(path: Path) -> str | None:
    """Why an existing project must not be replaced (edited after its export, or not an
    export of ours), or None when replacing it loses nothing."""
    if not path.exists():
        return None
    with Project.open(path, "r") as project:
        record = project.get_option(EXPORT_OPTION)
        if record is None:
            return "it was not written by a spimflow export"
        if json.loads(record).get("markers") != marker_checksum(project):
            return "its markers were edited after the export"
    return None


def plane_images(channel: Channel, raw_zarr: str, n_planes: int, base: Path = Path(".")) -> list[str] | str:
    """What each image row points to: the source's plane files when the signal came from
    one file per plane without a y/x crop (so ClickPoints itself can show them), otherwise
    the ingested OME-Zarr (``frame`` = z)."""
    crop = channel.crop
    if isinstance(channel.source, PatternSource | FolderSource) and (
        crop is None or (crop.y is None and crop.x is None)
    ):
        files = (
            list_pattern_files(channel.source.path, base, channel.source.allow_gaps)
            if isinstance(channel.source, PatternSource)
            else list_folder_files(base / channel.source.path)
        )
        z0 = crop.z[0] if crop is not None and crop.z is not None else 0
        files = [str(f) for f in files[z0 : z0 + n_planes]]
        if len(files) == n_planes:
            return files
    return raw_zarr


def region_acronyms(cells_raw: pd.DataFrame, registration: str | None, atlas_cfg: dict | None) -> list[str] | None:
    """Region acronym of every detection (None without a registration)."""
    if not registration or not atlas_cfg or not len(cells_raw):
        return None
    atlas = load_atlas(AtlasConfig.model_validate(dict(atlas_cfg)))
    transform = SampleAtlasTransform.load(Path(registration).parent)
    return cells_to_atlas(cells_raw, transform, atlas, channel="signal")["region_acronym"].tolist()


def export(smk: Any) -> None:
    params = AnnotateParams.model_validate(dict(smk.params.annotate))
    out = Path(smk.output.cdb)
    why = edits_since_export(out)
    if why and not params.overwrite_edits:
        raise InputFileError(
            f"{out}: not replaced: {why}. Import it first (rule annotation_import runs on the edited project), "
            "move it away, or set steps.annotate.overwrite_edits: true to replace it."
        )
    cells_raw = pd.read_parquet(smk.input.cells_raw)
    kept = kept_mask(cells_raw, pd.read_parquet(smk.input.cells))
    acronyms = region_acronyms(cells_raw, smk.input.get("registration"), smk.params.atlas)
    signal = open_ome_zarr(smk.input.signal)
    channel = Channel.model_validate(dict(smk.params.channel))
    images = plane_images(channel, str(smk.input.signal), signal.shape[0])
    with atomic_path(out) as tmp:
        with Project.create(tmp) as project:
            project.set_marker_type(KEPT, color=COLOURS[KEPT])
            project.set_marker_type(REJECTED, color=COLOURS[REJECTED])
            project.add_volume_planes(
                images, signal.shape[0], layer="signal", width=signal.shape[2], height=signal.shape[1]
            )
            frame_to_markers(project, detections_as_markers(cells_raw, kept, acronyms))
            project.set_option("spimflow_voxel_size_um", json.dumps(list(signal.voxel_size)))
            record = {"markers": marker_checksum(project), "time": time.time(), "cells_raw": str(smk.input.cells_raw)}
            project.set_option(EXPORT_OPTION, json.dumps(record))
    source = "plane files" if isinstance(images, list) else "the OME-Zarr (frame = z)"
    log.info(
        "%d detections (%d kept, %d rejected) on %d planes pointing to %s",
        len(cells_raw),
        int(kept.sum()),
        int((~kept).sum()),
        signal.shape[0],
        source,
    )


def import_(smk: Any) -> None:
    detect = DetectParams.model_validate(dict(smk.params.detect))
    cells_raw = pd.read_parquet(smk.input.cells_raw)
    kept = kept_mask(cells_raw, pd.read_parquet(smk.input.cells))
    with Project.open(smk.input.cdb, "r") as project:
        markers = markers_to_frame(project)
    unknown = sorted(set(markers["type"].dropna()) - {KEPT, REJECTED})
    if unknown:
        log.warning("markers of type(s) %s are neither %s nor %s: not counted", unknown, KEPT, REJECTED)
    signal = open_ome_zarr(smk.input.signal)
    field = IlluminationField.load(smk.input.illumination) if "illumination" in smk.input.keys() else None
    try:
        table = curated_cells(cells_raw, markers, kept, signal.array, signal.voxel_size, detect, field)
    except ValueError as exc:
        raise InputFileError(f"{smk.input.cdb}: {exc}") from None
    write_table(table, smk.output.parquet)
    write_table(table, smk.output.csv)
    counts = table["curation"].value_counts().to_dict()
    dropped = int(kept.sum()) - int(((table["cell_id"] >= 0) & kept[np.maximum(table["cell_id"], 0)]).sum())
    log.info(
        "%d curated cells (%s); %d kept detections deleted or rejected",
        len(table),
        ", ".join(f"{n} {k}" for k, n in sorted(counts.items())),
        dropped,
    )


ACTIONS = {"export": export, "import": import_}


def run(smk: Any) -> None:
    ACTIONS[smk.params.action](smk)
