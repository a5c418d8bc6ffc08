"""Rule ``ingest``: one channel's source → ``results/<sample>/raw/<channel>.ome.zarr``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from spimflow.config import Channel, IngestParams
from spimflow.io.readers import open_source
from spimflow.steps.ingest import ingest_channel, voxel_size_mismatch

log = logging.getLogger(__name__)


def _channel_name(smk: Any, out: Path) -> str:
    wildcards = getattr(smk, "wildcards", None)
    name = getattr(wildcards, "channel", None) if wildcards is not None else None
    return str(name) if name else out.name.removesuffix(".ome.zarr")


def _config_key(name: str) -> str:
    return f"channels.{name}" if name in ("signal", "autofluorescence") else f"channels.extra.{name}"


def run(smk: Any) -> None:
    channel = Channel.model_validate(dict(smk.params.channel))
    params = IngestParams.model_validate(dict(smk.params.ingest))
    out = Path(smk.output[0])
    name = _channel_name(smk, out)
    with open_source(channel.source, base_dir=".", crop=channel.crop) as reader:
        log.info("%s: %r", name, reader)
        if voxel_size_mismatch(channel.voxel_size, reader.file_voxel_size):
            log.warning(
                "%s: the file header says voxel size (z, y, x) = %s µm but the config says %s "
                "(%s.voxel_size); using the configured value",
                reader.path,
                tuple(round(v, 4) for v in reader.file_voxel_size),
                tuple(channel.voxel_size),
                _config_key(name),
            )
        ingest_channel(
            reader,
            out,
            channel.voxel_size,
            params.chunks,
            params.pyramid_levels,
            name,
            source=channel.source.model_dump(mode="json"),
            orientation=channel.model_dump(mode="json")["orientation"],
        )
