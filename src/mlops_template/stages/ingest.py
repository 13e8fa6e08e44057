"""Stage `ingest`: bring the source data into the repository as one Parquet table.

This is the single place a fork replaces to bring its own data. Out of the box it reads the
Palmer penguins data set shipped inside the `palmerpenguins` package (nothing is downloaded),
or a local CSV/Parquet file named by `data.source` in params.yaml. It does no cleaning:
judging the data is the `validate` stage's job.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlops_template import io
from mlops_template.config import Params

EMBEDDED_SOURCE = "palmerpenguins"


def load_source(source: str) -> pd.DataFrame:
    """Return the raw table named by `source`."""
    if source == EMBEDDED_SOURCE:
        from palmerpenguins import load_penguins

        return load_penguins()
    return io.read_table(Path(source))


def run(params: Params) -> pd.DataFrame:
    frame = load_source(params.data.source)
    io.write_parquet(params.paths.raw, frame)
    return frame
