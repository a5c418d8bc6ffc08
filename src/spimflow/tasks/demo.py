"""Rule ``demo_data``: write the synthetic demo atlas, sample and ground truth."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from spimflow.demo import make_demo

log = logging.getLogger(__name__)


def run(smk: Any) -> None:
    manifest = make_demo(
        Path(smk.params.out_dir),
        preset=str(smk.params.preset),
        seed=int(smk.params.seed),
        density_factors=dict(smk.params.density_factors),
    )
    log.info(
        "demo: %d cells, sample %s at %s µm, in %.1f s",
        manifest["n_cells"],
        manifest["sample_shape"],
        manifest["sample_voxel_size_um"],
        manifest["seconds"],
    )
