from collections.abc import Callable
from pathlib import Path

import pandas as pd

from mlops_template.config import Params
from mlops_template.io import storage
from mlops_template.stages import ingest


def test_embedded_penguins_become_the_raw_table(params: Params) -> None:
    ingest.run(params)
    raw = storage.read_parquet(params.paths.raw)
    assert raw.shape == (344, 8)
    assert raw["species"].nunique() == 3


def test_local_csv_source(
    workdir: Path, penguins: pd.DataFrame, make_params: Callable[..., Params]
) -> None:
    penguins.head(50).to_csv(workdir / "mine.csv", index=False)
    params = make_params(data={"source": "mine.csv"})
    ingest.run(params)
    assert len(storage.read_parquet(params.paths.raw)) == 50


def test_local_parquet_source(
    workdir: Path, penguins: pd.DataFrame, make_params: Callable[..., Params]
) -> None:
    penguins.tail(40).to_parquet(workdir / "mine.parquet")
    params = make_params(data={"source": str(workdir / "mine.parquet")})
    ingest.run(params)
    assert len(storage.read_parquet(params.paths.raw)) == 40
