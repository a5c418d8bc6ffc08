"""The repository keeps its promises: README's two commands, .ci/run, headless core."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "README must open with a bash block of two commands"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_exactly_two_commands():
    cmds = readme_commands()
    assert len(cmds) == 2
    assert "snakemake --configfile config/sample.yaml" in cmds[0]
    assert "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci


def test_core_is_headless():
    offenders = []
    for path in (REPO / "src" / "spimflow").rglob("*.py"):
        if "napari" in path.relative_to(REPO / "src" / "spimflow").parts:
            continue
        for line in path.read_text().splitlines():
            if re.match(r"\s*(import|from)\s+(napari|qtpy|PyQt5|PyQt6|PySide2|PySide6|magicgui)\b", line):
                offenders.append(f"{path}: {line.strip()}")
    assert not offenders, offenders


def test_every_rule_has_a_log():
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        rules = re.split(r"\n\s*(?:rule|checkpoint) \w+:", text)[1:]
        for body in rules:
            assert "log:" in body, f"{smk.name}: a rule without log:"
