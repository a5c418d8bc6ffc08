"""A config key that does nothing is a defect: every field of the sample and cohort models
must be read somewhere by the code (a rule, a task, a step or a check).

The check is mechanical: every field name must appear as an attribute access
(``x.<field>``) in ``src/spimflow`` (outside the model definitions) or in the rule files.
A planted unused field proves the check can fail.
"""

from __future__ import annotations

import ast
import re
import typing
from pathlib import Path

from pydantic import BaseModel

from spimflow.cohort import CohortConfig
from spimflow.config import SampleConfig

REPO = Path(__file__).resolve().parents[1]
# Read by name rather than as attributes, with where: (a stale entry fails the test below)
READ_BY_NAME: dict[str, str] = {}


def _models(model: type[BaseModel], seen: set[type] | None = None) -> set[type[BaseModel]]:
    """``model`` and every model reachable through its field annotations."""
    seen = set() if seen is None else seen
    if model in seen:
        return seen
    seen.add(model)
    for field in model.model_fields.values():
        stack = [field.annotation]
        while stack:
            tp = stack.pop()
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                _models(tp, seen)
            stack.extend(typing.get_args(tp))
    return seen


def fields_of(*roots: type[BaseModel]) -> dict[str, str]:
    """field name -> 'Model.field' for every field of every reachable model."""
    out = {}
    for root in roots:
        for m in _models(root):
            for name in m.model_fields:
                out.setdefault(name, f"{m.__name__}.{name}")
    return out


def _is_model(node: ast.ClassDef) -> bool:
    return any(isinstance(b, ast.Name) and b.id.endswith("Model") for b in node.bases)


def _attributes(node: ast.AST, names: set[str]) -> None:
    """Attribute names accessed under ``node``, skipping model classes (their validators)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ClassDef) and _is_model(child):
            continue
        if isinstance(child, ast.Attribute):
            names.add(child.attr)
        _attributes(child, names)


def attributes_read() -> set[str]:
    """Attribute names accessed in the package (outside the model classes) and in the rules."""
    names: set[str] = set()
    for path in (REPO / "src" / "spimflow").rglob("*.py"):
        _attributes(ast.parse(path.read_text()), names)
    for path in [REPO / "Snakefile", *(REPO / "workflow" / "rules").glob("*.smk")]:
        names.update(re.findall(r"\.([A-Za-z_]\w*)", path.read_text()))
    return names


def unread_fields(*roots: type[BaseModel]) -> list[str]:
    read = attributes_read()
    return sorted(qual for name, qual in fields_of(*roots).items() if name not in read)


def test_every_config_field_is_read_by_the_code():
    unread = unread_fields(SampleConfig, CohortConfig)
    assert sorted(set(unread) - set(READ_BY_NAME)) == []
    assert sorted(set(READ_BY_NAME) - set(unread)) == [], "stale READ_BY_NAME entries"


def test_the_check_catches_an_unused_field():
    class Planted(BaseModel):
        a_key_nobody_reads_xyz: int = 0

    class Root(BaseModel):
        sample: str = "s"
        planted: Planted = Planted()

    assert unread_fields(Root) == ["Root.planted", "Planted.a_key_nobody_reads_xyz"] or set(unread_fields(Root)) == {
        "Root.planted",
        "Planted.a_key_nobody_reads_xyz",
    }
