"""The "seed" baseline: one script, no validation, no tracking, no evaluation artefacts.

This is the starting point many MLOps guides show before any structure is added: read the
table, drop every row with a missing value, one-hot encode with `pd.get_dummies`, a 75/25 split,
a default `RandomForestClassifier`, print the accuracy and `joblib.dump` the model.
`benchmarks/pipeline.py` runs it beside the pipeline to show what our structure costs.

Usage: python benchmarks/baseline_seed_train.py DATA.parquet MODEL.joblib
"""

from __future__ import annotations

import sys

import joblib
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

FEATURES = [
    "island",
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
    "sex",
]


def main(data_path: str, model_path: str) -> None:
    frame = pd.read_parquet(data_path).dropna()
    features = pd.get_dummies(frame[FEATURES], columns=["island", "sex"])
    x_train, x_test, y_train, y_test = train_test_split(
        features, frame["species"], test_size=0.25, random_state=42
    )
    model = RandomForestClassifier()
    model.fit(x_train, y_train)
    print(f"accuracy: {accuracy_score(y_test, model.predict(x_test)):.4f}")
    joblib.dump(model, model_path)


if __name__ == "__main__":
    main(*sys.argv[1:3])
