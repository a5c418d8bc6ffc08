"""Rule ``register``: atlas ↔ resampled autofluorescence with itk-elastix.

Writes into ``results/<sample>/registration/``: the elastix TransformParameters files,
``annotation_in_sample.ome.zarr``, ``reference_in_sample.ome.zarr``, ``qc_{0,1,2}.png``
and, last, ``registration.json`` (grids of every channel, transform files, similarity
before/after, timings, guard results). :class:`spimflow.transforms.SampleAtlasTransform`
loads the folder for point transforms.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from spimflow.atlas import load_atlas
from spimflow.config import AtlasConfig, Channel
from spimflow.errors import ConfigError, OrientationError
from spimflow.geometry import ResampleGrid
from spimflow.io.omezarr import open_ome_zarr, write_ome_zarr
from spimflow.orientation import Orientation
from spimflow.params.register import RegisterParams
from spimflow.qc import write_qc_pngs
from spimflow.steps.register import (
    GuardContext,
    RegistrationRejected,
    register_to_atlas,
)
from spimflow.transforms import ElastixChain, SampleAtlasTransform

log = logging.getLogger(__name__)


def _key(name: str) -> str:
    return f"channels.{name}" if name in ("signal", "autofluorescence") else f"channels.extra.{name}"


def orientation_keys(channels: dict[str, Channel]) -> str:
    """The config key(s) holding the autofluorescence orientation (and the channels sharing it)."""
    af = channels["autofluorescence"].orientation
    same = [n for n, c in channels.items() if c.orientation == af]
    return " and ".join(
        f"{_key(n)}.orientation" for n in ["autofluorescence"] + [n for n in same if n != "autofluorescence"]
    )


def rejected_qc(reg, sample: np.ndarray, voxel_size, atlas_code: str, folder: Path | None) -> str:
    """QC pictures of a registration the similarity guard rejected; returns a line naming them."""
    if folder is None:
        return "(no log folder: no QC pictures of the failed registration)"
    pngs = [Path(folder) / f"register_failed_qc_{a}.png" for a in range(3)]
    write_qc_pngs(
        sample, reg.annotation_in_sample, voxel_size, atlas_code, pngs, title=f"NCC {reg.similarity_after:.2f} (FAILED)"
    )
    return f"QC pictures of the failed registration: {', '.join(str(p) for p in pngs)}"


def run(smk: Any) -> None:
    params = RegisterParams.model_validate(dict(smk.params.registration))
    atlas_cfg = AtlasConfig.model_validate(dict(smk.params.atlas))
    channels = {n: Channel.model_validate(dict(c)) for n, c in dict(smk.params.channels).items()}
    out_json = Path(smk.output.summary)
    folder = out_json.parent
    log_dir = Path(smk.log[0]).parent if len(smk.log) else None

    atlas = load_atlas(atlas_cfg)
    if atlas.reference is None:
        raise ConfigError(
            "atlas.reference: registration needs the atlas reference (template) intensity volume; "
            f"{atlas.source or atlas.name} has none"
        )
    vs, code = tuple(atlas.voxel_size), atlas.orientation

    af_img = open_ome_zarr(smk.input.autofluorescence)
    sample = np.asarray(af_img.array[...], np.float32)
    signal = None
    if params.channel_correction:
        signal = np.asarray(open_ome_zarr(smk.input.signal).array[...], np.float32)
    grids = {}
    for name, ch in channels.items():
        raw = open_ome_zarr(getattr(smk.input, f"raw_{name}"))
        grids[name] = ResampleGrid.for_channel(raw.shape, ch.voxel_size, ch.orientation, vs, code)
    if tuple(grids["autofluorescence"].shape) != sample.shape:
        raise ConfigError(
            f"{smk.input.autofluorescence}: shape {sample.shape} does not match the grid "
            f"{grids['autofluorescence'].shape} implied by the config; re-run the resample rule"
        )

    ctx = GuardContext(
        current=Orientation.resolve(channels["autofluorescence"].orientation, code),
        atlas_code=code,
        keys=orientation_keys(channels),
        user_value=channels["autofluorescence"].model_dump(mode="json")["orientation"],
        threads=int(getattr(smk, "threads", 1) or 1),
    )
    t0 = time.perf_counter()
    try:
        reg = register_to_atlas(
            sample,
            atlas.reference.astype(np.float32),
            atlas.annotation,
            vs,
            params,
            ctx,
            signal=signal,
            log_dir=log_dir,
        )
    except RegistrationRejected as exc:
        raise OrientationError(f"{exc}\n  {rejected_qc(exc.registration, sample, vs, code, log_dir)}") from None
    log.info(
        "registration: NCC %.3f -> %.3f in %.1f s", reg.similarity_before, reg.similarity_after, reg.seconds["total"]
    )

    write_ome_zarr(
        smk.output.annotation,
        reg.annotation_in_sample.astype(np.uint32),
        vs,
        chunks=(64, 64, 64),
        n_levels=1,
        name="atlas annotation in sample space",
    )
    write_ome_zarr(
        smk.output.reference,
        reg.reference_in_sample,
        vs,
        chunks=(64, 64, 64),
        n_levels=1,
        name="atlas reference in sample space",
    )
    qc = write_qc_pngs(
        sample, reg.annotation_in_sample, vs, code, list(smk.output.qc), title=f"NCC {reg.similarity_after:.2f}"
    )
    transform = SampleAtlasTransform(
        vs,
        atlas.shape,
        grids,
        ElastixChain.from_maps(reg.atlas_maps),
        {"signal": ElastixChain.from_maps(reg.correction_maps)} if reg.correction_maps else {},
    )
    transform.save(
        folder,
        {
            "similarity": {
                "metric": "normalised cross-correlation inside the warped atlas brain mask",
                "before": reg.similarity_before,
                "after": reg.similarity_after,
            },
            "seconds": {**reg.seconds, "task": time.perf_counter() - t0},
            "cpu_seconds": reg.cpu_seconds,
            "guard": reg.guard,
            "qc": qc,
            "atlas_orientation": code,
            "atlas_offset": list(atlas.offset),  # voxel of the uncropped atlas that is atlas voxel (0, 0, 0)
            "orientation": {
                n: {
                    "config": c.model_dump(mode="json")["orientation"],
                    "clearmap": list(grids[n].orientation.to_clearmap()),
                }
                for n, c in channels.items()
            },
            "threads": ctx.threads,
        },
    )
