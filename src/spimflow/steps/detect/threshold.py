"""Keep cells whose measured columns fall in ranges (ClearMap's ``thresholdPoints``)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from spimflow.errors import ConfigError
from spimflow.steps.detect.chain import MEASURED_COLUMNS


def threshold_cells(cells: pd.DataFrame, ranges: Mapping[str, tuple[float | None, float | None]]) -> pd.DataFrame:
    """Rows with min <= column <= max for every (column, (min, max)); None = open end.

    NaN never passes a bound. Raises :class:`ConfigError` naming
    ``steps.threshold.ranges.<column>`` when a column does not exist.
    """
    keep = np.ones(len(cells), bool)
    for col, (lo, hi) in ranges.items():
        if col not in cells.columns:
            raise ConfigError(
                f"steps.threshold.ranges.{col}: no such cell column; expected one of "
                f"{', '.join(c for c in cells.columns if c not in ('z', 'y', 'x', 'block'))}"
            )
        v = cells[col].to_numpy(dtype=float)
        if lo is not None:
            keep &= v >= lo
        if hi is not None:
            keep &= v <= hi
    return cells.loc[keep].reset_index(drop=True)


def check_threshold_config(
    ranges: Mapping[str, tuple[float | None, float | None]],
    shape_enabled: bool = True,
    key: str = "steps.threshold.ranges",
) -> list[str]:
    """Problems with threshold ranges, found before any job runs (unknown column; a shape
    measure while steps.detect.shape is off, which makes it 0 / NaN for every cell)."""
    problems = []
    for col in ranges:
        if col not in MEASURED_COLUMNS:
            problems.append(f"{key}.{col}: no such cell column; expected one of {', '.join(MEASURED_COLUMNS)}")
        elif not shape_enabled and col in ("size", "volume_um3", "mean_raw", "mean_bg", "mean_dog"):
            problems.append(
                f"{key}.{col}: needs the cell shape, but steps.detect.shape.enabled is false "
                "(every cell would have size 0)"
            )
    return problems
