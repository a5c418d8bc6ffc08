"""Point and region tables on disk: parquet (pyarrow) and CSV, always written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from spimflow.io.atomic import atomic_path


def write_table(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write ``table`` to ``path`` atomically, as CSV when the name ends in ``.csv``, else
    parquet (an empty table keeps its columns and dtypes there); no index column."""
    with atomic_path(path) as tmp:
        if Path(path).suffix.lower() == ".csv":
            table.to_csv(tmp, index=False)
        else:
            table.to_parquet(tmp, engine="pyarrow", index=False)
