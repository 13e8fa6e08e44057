"""The embedded tables the tests run the whole pipeline on, besides the default penguins: both
ship inside scikit-learn, so nothing is downloaded. Written as a user would bring them: one
CSV with a readable target column."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sklearn.datasets import load_breast_cancer, load_diabetes


def breast_cancer() -> pd.DataFrame:
    """Binary: 569 tumours, 30 numeric features; `diagnosis` is malignant (212) or benign."""
    frame = load_breast_cancer(as_frame=True).frame
    target = frame.pop("target").map({0: "malignant", 1: "benign"})
    return frame.assign(diagnosis=target)


def diabetes() -> pd.DataFrame:
    """Regression: 442 patients, 10 numeric features (unscaled); `progression` is a number."""
    frame = load_diabetes(as_frame=True, scaled=False).frame
    return frame.rename(columns={"target": "progression"})


# name: (table, target column, task)
TABLES = {
    "breast_cancer": (breast_cancer, "diagnosis", "binary"),
    "diabetes": (diabetes, "progression", "regression"),
}


def write_table(name: str, folder: Path) -> tuple[Path, str, str]:
    """Write the named table as CSV in `folder`; returns (path, target, task)."""
    build, target, task = TABLES[name]
    path = folder / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    build().to_csv(path, index=False)
    return path, target, task
