"""Stage `split`: a stratified, seeded train/test split of the validated table."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

from mlops_template import io
from mlops_template.config import Params
from mlops_template.errors import PipelineError
from mlops_template.schema import TARGET


def split(frame: pd.DataFrame, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    counts = frame[TARGET.name].value_counts()
    too_small = counts[counts < 2]
    if not too_small.empty:
        raise PipelineError(
            f"column '{TARGET.name}': classes {sorted(too_small.index)} have fewer than 2 rows;"
            " a stratified split needs at least 2 per class"
        )
    try:
        train, test = train_test_split(
            frame, test_size=test_size, random_state=seed, stratify=frame[TARGET.name]
        )
    except ValueError as error:
        raise PipelineError(
            f"split.test_size={test_size}: cannot split {len(frame)} rows: {error}"
        ) from None
    return train.reset_index(drop=True), test.reset_index(drop=True)


def run(params: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = io.read_parquet(params.paths.validated)
    train, test = split(frame, params.split.test_size, params.seed)
    io.write_parquet(params.paths.train, train)
    io.write_parquet(params.paths.test, test)
    return train, test
