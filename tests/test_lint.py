"""Lint and format are part of the suite: ruff, ruff format, snakefmt and snakemake --lint
(every note except the software-environment one), all through `.ci/lint`."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(
    shutil.which("ruff") is None or shutil.which("snakefmt") is None,
    reason="ruff/snakefmt not installed (pip install -e '.[test]')",
)
def test_lint_and_format_are_clean():
    env_bin = str(Path(sys.executable).parent)
    res = subprocess.run(
        ["bash", str(REPO / ".ci" / "lint")],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": f"{env_bin}:/usr/bin:/bin"},
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
