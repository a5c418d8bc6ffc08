"""Keep cells whose measured columns fall in ranges (ClearMap's ``thresholdPoints``)."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from spimflow.errors import ConfigError


def threshold_cells(cells: pd.DataFrame, ranges: Mapping[str, tuple[float | None, float | None]]) -> pd.DataFrame:
    """Rows with min <= column <= max for every (column, (min, max)); None = open end.

    NaN never passes a bound. Raises :class:`ConfigError` naming
    ``steps.threshold.ranges.<column>`` when a column does not exist.
    """
    keep = np.ones(len(cells), bool)
    for col, (lo, hi) in ranges.items():
        if col not in cells.columns:
            raise ConfigError(f"steps.threshold.ranges.{col}: no such cell column; expected one of "
                              f"{', '.join(c for c in cells.columns if c not in ('z', 'y', 'x', 'block'))}")
        v = cells[col].to_numpy(dtype=float)
        if lo is not None:
            keep &= v >= lo
        if hi is not None:
            keep &= v <= hi
    return cells.loc[keep].reset_index(drop=True)
