"""Calibration and slices (evaluation/calibration.py and slices.py), as evaluate writes them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_template.config import Params
from mlops_template.contract import Contract
from mlops_template.evaluation import calibration, slices
from mlops_template.io import storage


def test_brier_is_the_mean_summed_squared_error_of_the_probabilities() -> None:
    truth = np.array([0, 1, 2, -1])  # -1: a class the model lacks, wrong for every class
    proba = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.2, 0.6], [0.5, 0.5, 0.0]])
    expected = (0.0 + 0.5 + (0.04 + 0.04 + 0.16) + 0.5) / 4
    assert calibration.brier(truth, proba) == pytest.approx(expected)


def test_reliability_bins_by_tenths_per_class(contract: Contract) -> None:
    classes = ["Adelie", "Chinstrap", "Gentoo"]
    actual = pd.Series(["Adelie", "Adelie", "Gentoo", "Chinstrap"])
    proba = np.array([[0.95, 0.05, 0.0], [0.91, 0.0, 0.09], [0.15, 0.0, 0.85], [1.0, 0.0, 0.0]])
    rows = calibration.reliability(actual, proba, classes, contract)
    adelie_top = next(r for r in rows if r["class"] == "Adelie" and r["predicted"] > 0.9)
    assert adelie_top == {"class": "Adelie", "predicted": 0.953333, "observed": 0.666667, "rows": 3}
    assert sum(r["rows"] for r in rows) == 3 * len(actual)


def test_evaluate_writes_brier_calibration_and_slices(penguin_run: Params) -> None:
    evaluated = penguin_run
    metrics = storage.read_json(evaluated.paths.metrics)
    assert 0 <= metrics["brier"] < metrics["baseline"]["brier"]
    points = storage.read_json(evaluated.paths.calibration)["calibration"]
    assert {p["class"] for p in points} == {"Adelie", "Chinstrap", "Gentoo"}
    assert sum(p["rows"] for p in points) == 3 * metrics["test_rows"]
    slices = storage.read_json(evaluated.paths.slices)
    assert set(slices) == {"island", "sex"}
    assert sum(s["rows"] for s in slices["island"].values()) == metrics["test_rows"]
    assert set(slices["island"]["Biscoe"]) == {"rows", "f1_macro", "accuracy"}


def test_a_slice_missing_values_is_its_own_and_undefined_metrics_are_null(
    contract: Contract,
) -> None:
    test = pd.DataFrame(
        {
            "island": ["Dream", "Dream", None],
            "sex": ["male", None, "female"],
            "species": ["Adelie"] * 3,
        }
    )
    predicted = np.array(["Adelie", "Gentoo", "Adelie"])

    def undefined(rows: pd.DataFrame) -> float:
        raise ValueError("one class only")

    out = slices.slices(test, predicted, contract, "roc_auc_ovr", undefined)
    assert out["island"]["(missing)"] == {"rows": 1, "roc_auc_ovr": None, "accuracy": 1.0}
    assert out["island"]["Dream"]["accuracy"] == 0.5


def test_binary_brier_is_the_positive_class_squared_error() -> None:
    """scikit-learn's brier_score_loss, whichever column is the positive class."""
    from sklearn.metrics import brier_score_loss

    truth = np.array([0, 1, 1, 0, 1])
    yes = np.array([0.1, 0.8, 0.4, 0.6, 1.0])
    proba = np.column_stack([1 - yes, yes])
    assert calibration.brier(truth, proba) == pytest.approx(brier_score_loss(truth, yes), abs=1e-6)
    assert calibration.brier(truth, proba) == pytest.approx(
        brier_score_loss(truth == 0, 1 - yes), abs=1e-6
    )


def test_ranking_metrics_of_a_one_class_slice_are_null() -> None:
    from pathlib import Path

    from mlops_template.contract import parse_contract
    from tests.conftest import small_contract

    binary = parse_contract(small_contract("binary"), Path("small.yaml"))
    test = pd.DataFrame({"x": [1.0, 2, 3, 4], "colour": ["red", "red", "blue", "blue"]})
    test["y"] = ["yes", "yes", "no", "yes"]
    predicted = np.array(["yes", "no", "no", "yes"])
    for metric in ("roc_auc", "average_precision"):
        out = slices.slices(test, predicted, binary, metric, lambda rows: 0.5)
        assert out["colour"]["red"][metric] is None, metric
        assert out["colour"]["blue"][metric] == 0.5
    out = slices.slices(test, predicted, binary, "accuracy", lambda rows: 0.5)
    assert out["colour"]["red"]["accuracy"] == 0.5
