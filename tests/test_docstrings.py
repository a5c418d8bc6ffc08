"""Every public function, method and class of the scientific core has a numpydoc docstring.

Checked modules: ``steps/`` (recursively, except private modules such as
``steps/detect/_filters_nb.py``), ``transforms.py``, ``atlas/``, ``blocks.py``,
``geometry.py`` and ``orientation.py``. The source is read with :mod:`ast` (nothing is
imported), so the check is fast and sees exactly what is written.

Rules:

* a public (name not starting with ``_``) module-level function or class, or a public
  method of a public class, has a docstring;
* a function or method with parameters (besides ``self``/``cls``) has a numpydoc
  ``Parameters`` section (the word underlined with dashes);
* a class with an explicit ``__init__`` taking parameters documents them in a
  ``Parameters`` section (of the class or of ``__init__``); dataclass fields (no
  ``__init__`` written) need no section;
* properties may have a one-line docstring (they take no parameters besides ``self``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "spimflow"
SECTION = re.compile(r"^\s*Parameters\s*\n\s*-{3,}\s*$", re.MULTILINE)


def _private_module(path: Path) -> bool:
    return path.name.startswith("_") and not path.name.startswith("__")


def checked_modules() -> list[Path]:
    files = [p for p in sorted((PACKAGE / "steps").rglob("*.py")) if not _private_module(p)]
    files += sorted((PACKAGE / "atlas").glob("*.py"))
    files += [PACKAGE / name for name in ("transforms.py", "blocks.py", "geometry.py", "orientation.py")]
    return files


def _is_public(name: str) -> bool:
    return not name.startswith("_")


def _decorator_names(node: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    names = set()
    for d in node.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        if isinstance(target, ast.Name):
            names.add(target.id)
        elif isinstance(target, ast.Attribute):
            names.add(target.attr)
    return names


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> list[str]:
    """Names of the parameters a caller passes (``self``/``cls`` of a method excluded)."""
    a = node.args
    names = [p.arg for p in (*a.posonlyargs, *a.args)]
    if method and "staticmethod" not in _decorator_names(node) and names and names[0] in ("self", "cls"):
        names = names[1:]
    names += [p.arg for p in a.kwonlyargs]
    names += [f"*{a.vararg.arg}"] if a.vararg else []
    names += [f"**{a.kwarg.arg}"] if a.kwarg else []
    return names


def _has_parameters_section(doc: str | None) -> bool:
    return bool(doc and SECTION.search(doc))


def _check_function(node, qualname: str, method: bool, problems: list[str]) -> None:
    if "overload" in _decorator_names(node):
        return
    doc = ast.get_docstring(node)
    if not doc:
        problems.append(f"{qualname} (line {node.lineno}): no docstring")
    elif _parameters(node, method) and not _has_parameters_section(doc):
        problems.append(f"{qualname} (line {node.lineno}): no 'Parameters' section")


def _check_class(node: ast.ClassDef, qualname: str, problems: list[str]) -> None:
    doc = ast.get_docstring(node)
    if not doc:
        problems.append(f"{qualname} (line {node.lineno}): no docstring")
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if item.name == "__init__" and _parameters(item, method=True):
                if not (_has_parameters_section(doc) or _has_parameters_section(ast.get_docstring(item))):
                    problems.append(f"{qualname}.__init__ (line {item.lineno}): parameters not documented")
            elif _is_public(item.name):
                _check_function(item, f"{qualname}.{item.name}", True, problems)
        elif isinstance(item, ast.ClassDef) and _is_public(item.name):
            _check_class(item, f"{qualname}.{item.name}", problems)


def docstring_problems(path: Path) -> list[str]:
    """Public definitions of ``path`` that break the rules above, as messages."""
    problems: list[str] = []
    for node in ast.parse(path.read_text(encoding="utf-8"), str(path)).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_public(node.name):
            _check_function(node, node.name, False, problems)
        elif isinstance(node, ast.ClassDef) and _is_public(node.name):
            _check_class(node, node.name, problems)
    return problems


def test_checked_modules_exist():
    files = checked_modules()
    assert all(p.is_file() for p in files)
    names = {p.relative_to(PACKAGE).as_posix() for p in files}
    assert {"steps/detect/chain.py", "atlas/ontology.py", "geometry.py", "transforms.py"} <= names
    assert "steps/detect/_filters_nb.py" not in names


@pytest.mark.parametrize("path", checked_modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_public_api_has_numpydoc_docstrings(path: Path):
    problems = docstring_problems(path)
    assert not problems, f"{path.relative_to(PACKAGE)}: missing numpydoc docstrings:\n  " + "\n  ".join(problems)


def test_the_check_catches_missing_docstrings(tmp_path: Path):
    src = tmp_path / "mod.py"
    src.write_text(
        "def documented(x):\n"
        '    """Do it.\n\n    Parameters\n    ----------\n    x : int\n        Input.\n    """\n'
        "def no_section(x):\n"
        '    """Do it with x."""\n'
        "def no_doc():\n    pass\n"
        "def _private(x):\n    pass\n"
        "class Thing:\n"
        '    """A thing."""\n'
        "    def __init__(self, a):\n        pass\n"
        "    @property\n"
        "    def size(self):\n"
        '        """Its size."""\n'
        "    def method(self):\n        pass\n"
    )
    assert docstring_problems(src) == [
        "no_section (line 9): no 'Parameters' section",
        "no_doc (line 11): no docstring",
        "Thing.__init__ (line 17): parameters not documented",
        "Thing.method (line 22): no docstring",
    ]
