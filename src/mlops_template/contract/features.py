"""The features as every model here takes them: the frame the train stage fits on, the
evaluate, behaviour and explain stages score, the registry's gate re-scores and the drift
check compares (the service builds the same values from JSON, without pandas)."""

from __future__ import annotations

import pandas as pd

from mlops_template.contract.spec import MISSING_CATEGORY, Contract


def model_input(frame: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """The contract's features of `frame` as every model here takes them: numbers as float64,
    categories as text with MISSING_CATEGORY for a missing value (not NaN: see contract/spec.py)."""
    columns: dict[str, pd.Series] = {}
    for name in contract.feature_names():
        values = frame[name]
        if name in contract.numeric_features():
            columns[name] = values.astype("float64")
        else:
            text = values.astype(object).where(values.notna(), MISSING_CATEGORY)
            columns[name] = text.map(str).astype(object)
    return pd.DataFrame(columns, index=frame.index)
