"""Stage `ingest`: bring the source data into the repository as one Parquet table.

This is the single place a fork replaces to bring its own data. Out of the box it reads the
CSV or Parquet file named by `data.source` in params.yaml (by default `data/penguins.csv`, the
Palmer penguins table committed to the repository: nothing is downloaded). That file is a
dependency of this stage in dvc.yaml, so editing it re-runs the pipeline. It does no
cleaning: judging the data is the `validate` stage's job.
"""

from __future__ import annotations

import pandas as pd

from mlops_template.config import Params
from mlops_template.io import storage


def run(params: Params) -> pd.DataFrame:
    frame = storage.read_table(params.data.source)
    storage.write_parquet(params.paths.raw, frame)
    return frame
