"""Keep cells whose measured columns fall in ranges (ClearMap's ``thresholdPoints``)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from spimflow.errors import ConfigError
from spimflow.steps.detect.chain import MEASURED_COLUMNS


def threshold_cells(cells: pd.DataFrame, ranges: Mapping[str, tuple[float | None, float | None]]) -> pd.DataFrame:
    """Keep the cells with min <= column <= max for every (column, (min, max)).

    Parameters
    ----------
    cells : pandas.DataFrame
        Cell table (see :data:`~spimflow.steps.detect.CELL_COLUMNS`).
    ranges : mapping of str to (float or None, float or None)
        Column → (min, max), in the column's units (e.g. ``volume_um3`` in µm³); None is
        an open end. NaN never passes a bound.

    Returns
    -------
    pandas.DataFrame
        The kept rows, with a fresh index.

    Raises
    ------
    ConfigError
        Naming ``steps.threshold.ranges.<column>`` when a column does not exist.

    Examples
    --------
    >>> import pandas as pd
    >>> cells = pd.DataFrame({"z": [0.0, 1.0, 2.0], "size": [3, 8, 0], "volume_um3": [100.0, 250.0, np.nan]})
    >>> threshold_cells(cells, {"volume_um3": (200.0, None)})["z"].tolist()
    [1.0]
    >>> threshold_cells(cells, {"volume_um3": (None, 300.0), "size": (2, None)})["z"].tolist()
    [0.0, 1.0]
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
    """Find problems with threshold ranges before any job runs.

    Reports unknown columns, and shape measures while ``steps.detect.shape`` is off
    (they would be 0 / NaN for every cell).

    Parameters
    ----------
    ranges : mapping of str to (float or None, float or None)
        Column → (min, max), as for :func:`threshold_cells`.
    shape_enabled : bool, optional
        Whether ``steps.detect.shape.enabled`` is true.
    key : str, optional
        Config key used in the messages.

    Returns
    -------
    list of str
        One message per problem; empty when all is well.

    Examples
    --------
    >>> check_threshold_config({"volume_um3": (200.0, None)})
    []
    >>> problems = check_threshold_config({"volume_um3": (200.0, None)}, shape_enabled=False)
    >>> print(problems[0])  # doctest: +ELLIPSIS
    steps.threshold.ranges.volume_um3: needs the cell shape, but steps.detect.shape.enabled is false ...
    """
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
