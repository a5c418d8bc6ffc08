"""Configuration reference (docs/configuration.md), generated from the pydantic models."""

from __future__ import annotations

import typing
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from spimflow.cohort import CohortConfig
from spimflow.config import SampleConfig


def _type_name(annotation: Any) -> str:
    text = repr(annotation) if not isinstance(annotation, type) else annotation.__name__
    for junk in ("typing.", "pathlib._local.", "pathlib.", "spimflow.config.", "spimflow.params."):
        text = text.replace(junk, "")
    return text.replace("NoneType", "null").replace("|", "or")


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()
    else:
        value = field.default
    if value is PydanticUndefined:
        return ""
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, PurePath):
        value = str(value)
    return f"`{value!r}`".replace("|", "\\|")


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    found = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    for arg in typing.get_args(annotation):
        found += _models_in(arg)
    return found


def _section(model: type[BaseModel], prefix: str, lines: list[str], seen: set) -> None:
    lines.append(f"### `{prefix or '<top level>'}`")
    lines.append("")
    doc = (model.__doc__ or "").strip()
    if doc:
        lines.append(" ".join(doc.split()))
        lines.append("")
    lines.append("| key | type | default | meaning |")
    lines.append("| --- | --- | --- | --- |")
    nested = []
    for name, field in model.model_fields.items():
        desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | {desc} |")
        for sub in _models_in(field.annotation):
            key = f"{prefix}.{name}" if prefix else name
            if len(_models_in(field.annotation)) > 1:
                fmt = sub.model_fields.get("format")
                tag = typing.get_args(fmt.annotation)[0] if fmt is not None else sub.__name__
                key = f"{key} (format: {tag})"
            if sub not in seen:
                seen.add(sub)
                nested.append((sub, key))
    lines.append("")
    for sub, key in nested:
        _section(sub, key, lines, seen)


def config_reference_markdown() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from the pydantic models in `src/spimflow/config.py` and",
        "`src/spimflow/params/` by `spimflow config-docs`; a test keeps it in sync.",
        "Unknown keys are errors. Voxel sizes are (z, y, x) in µm; voxel ranges are",
        "(z, y, x) indices. `spimflow validate <config>` checks a file and its inputs.",
        "",
    ]
    lines += ["## Sample config (one brain)", ""]
    _section(SampleConfig, "", lines, set())
    lines += [
        "## Cohort config (several brains in two groups)",
        "",
        "A config with a top-level `cohort` key. Each sample names its own sample config",
        "(above); `set` overrides keys of it, and `{sample}` in any text becomes the sample id.",
        "See [statistics.md](statistics.md).",
        "",
    ]
    _section(CohortConfig, "", lines, set())
    return "\n".join(lines).rstrip() + "\n"
