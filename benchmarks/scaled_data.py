"""Scaled-up penguins: the 344 Palmer penguins rows resampled with replacement to N rows.

Numeric columns get Gaussian noise (NOISE x the column's std); missing values stay missing and
values are clipped to the ranges of the penguins contract (tests/data/penguins.yaml, the copy the
tests own: a fork's data/contract.yaml describes another table), so the result passes the
`validate` stage. The
output is seeded: the same N always gives the same file.

Usage: python benchmarks/scaled_data.py ROWS OUT.parquet

`pipeline.py` runs this as a separate process on purpose: a child's peak RSS (`ru_maxrss`)
starts at its parent's high-water mark, so the measuring process must never hold the data.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from palmerpenguins import load_penguins

from mlops_template.contract import load_contract

SEED = 20240601
NOISE = 0.02
PENGUINS = Path(__file__).resolve().parent.parent / "tests" / "data" / "penguins.yaml"


def scaled_penguins(rows: int, seed: int = SEED) -> pd.DataFrame:
    """`rows` rows resampled from the 344 penguins, numeric columns jittered and clipped."""
    base = load_penguins()
    rng = np.random.default_rng(seed)
    frame = base.iloc[rng.integers(0, len(base), size=rows)].reset_index(drop=True)
    for spec in load_contract(PENGUINS).features:
        if spec.kind != "numeric":
            continue
        values = frame[spec.name].to_numpy(dtype=float)  # NaN + noise stays NaN
        noisy = values + rng.normal(0.0, NOISE * float(base[spec.name].std()), size=rows)
        frame[spec.name] = np.clip(noisy, spec.minimum, spec.maximum)
    return frame


if __name__ == "__main__":
    rows, out = int(sys.argv[1]), sys.argv[2]
    scaled_penguins(rows).to_parquet(out, index=False)
