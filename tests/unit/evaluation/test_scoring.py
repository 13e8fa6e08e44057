"""The task's metrics (scoring.py) from known predictions."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_template.contract import Contract, parse_contract
from mlops_template.evaluation import scoring

CLASSES = ["Adelie", "Chinstrap", "Gentoo"]


def test_metrics_from_known_predictions(contract: Contract) -> None:
    actual = pd.Series(["Adelie", "Adelie", "Gentoo", "Chinstrap"])
    proba = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]])
    metrics = scoring.classification_metrics(actual, proba, CLASSES, contract)
    assert metrics["accuracy"] == 0.75
    assert metrics["per_class"]["Adelie"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": 0.666667,
        "support": 2,
    }
    assert metrics["per_class"]["Chinstrap"]["precision"] == 0.5
    assert metrics["f1_macro"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3, abs=1e-6)
    expected_loss = -np.mean(np.log([0.8, 0.2, 0.8, 0.8]))
    assert metrics["log_loss"] == pytest.approx(expected_loss, abs=1e-6)


def test_metrics_on_codes_equal_metrics_on_label_strings(contract: Contract) -> None:
    from sklearn.metrics import f1_score, log_loss, precision_recall_fscore_support

    rng = np.random.default_rng(1)
    actual = pd.Series(rng.choice(CLASSES, size=2000))
    proba = rng.dirichlet([2, 1, 1], size=2000)
    predicted = np.asarray(CLASSES)[proba.argmax(axis=1)]
    metrics = scoring.classification_metrics(actual, proba, CLASSES, contract)
    assert metrics["f1_macro"] == round(f1_score(actual, predicted, average="macro"), 6)
    assert metrics["log_loss"] == round(log_loss(actual, proba, labels=CLASSES), 6)
    precision, recall, _, _ = precision_recall_fscore_support(actual, predicted, labels=CLASSES)
    for i, name in enumerate(CLASSES):
        assert metrics["per_class"][name]["precision"] == round(precision[i], 6)
        assert metrics["per_class"][name]["recall"] == round(recall[i], 6)


def _contract(task: str) -> Contract:
    """A one-feature contract of `task`: a binary target (no/yes, positive yes) or a number."""
    if task == "binary":
        target = {
            "name": "y",
            "kind": "categorical",
            "nullable": False,
            "categories": ["no", "yes"],
        }
        extra = {"positive": "yes"}
    else:
        target = {"name": "y", "kind": "numeric", "nullable": False}
        extra = {}
    raw = {
        "task": task,
        "target": target,
        "features": [{"name": "x", "kind": "numeric"}],
        "example": {"x": 1.0},
        **extra,
    }
    return parse_contract(raw, Path("test.yaml"))


def test_binary_metrics_are_of_the_positive_class_at_the_threshold() -> None:
    contract = _contract("binary")
    actual = pd.Series(["yes", "no", "yes", "no"])
    positive = np.array([0.9, 0.6, 0.4, 0.1])
    proba = np.column_stack([1 - positive, positive])  # columns in model.classes_ order
    metrics = scoring.classification_metrics(actual, proba, ["no", "yes"], contract, 0.5)
    assert metrics["accuracy"] == 0.5
    assert (metrics["precision"], metrics["recall"], metrics["f1"]) == (0.5, 0.5, 0.5)
    assert metrics["roc_auc"] == 0.75  # 3 of the 4 (positive, negative) pairs ranked right
    assert metrics["average_precision"] == pytest.approx((1 + 2 / 3) / 2, abs=1e-6)
    assert "f1_macro" not in metrics
    lower = scoring.classification_metrics(actual, proba, ["no", "yes"], contract, 0.3)
    assert lower["recall"] == 1.0
    assert lower["precision"] == pytest.approx(2 / 3, abs=1e-6)
    assert lower["roc_auc"] == metrics["roc_auc"]  # ranking metrics ignore the threshold


def test_regression_metrics_from_known_predictions() -> None:
    metrics = scoring.regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert metrics["rmse"] == pytest.approx(np.sqrt(4 / 3), abs=1e-6)
    assert metrics["mae"] == pytest.approx(2 / 3, abs=1e-6)
    assert metrics["r2"] == -1.0
    assert metrics["test_rows"] == 3


def test_baselines_are_the_training_mean_and_the_majority_class() -> None:
    mean = scoring.baseline_metrics(
        pd.Series([0.0, 10.0]), pd.Series([4.0, 6.0]), _contract("regression"), 0.5
    )
    assert mean == {"rmse": 1.0, "mae": 1.0, "r2": 0.0}
    majority = scoring.baseline_metrics(
        pd.Series(["no", "no", "no", "yes"]),
        pd.Series(["yes", "no", "no", "no"]),
        _contract("binary"),
        0.1,  # a low threshold does not make the baseline predict the rarer class
    )
    assert majority["accuracy"] == 0.75
    assert majority["recall"] == 0.0
    assert majority["roc_auc"] == 0.5
