"""Rule ``resolved_config``: the validated config, every default filled in, as YAML beside the results."""

from __future__ import annotations

from typing import Any

import yaml

from spimflow.io.atomic import atomic_path


def run(smk: Any) -> None:
    text = yaml.safe_dump(dict(smk.params.resolved), sort_keys=False)
    with atomic_path(smk.output.yaml) as tmp:
        tmp.write_text(text)
