"""Scoring a model: the task's metrics (binary, multiclass, regression) of a model on a frame,
the baseline's, and one metric alone. Pure functions of a model and data, shared by the
evaluate stage, the behaviour checks, tuning and the registry's re-scoring (a module that
is not a stage imports them here, not from the stage). Which metrics a task has and which
are lower-is-better: contract/metrics.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_fscore_support,
    r2_score,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline

from mlops_template.config import Params
from mlops_template.contract import Contract
from mlops_template.contract.features import model_input
from mlops_template.contract.metrics import below_baseline, decide
from mlops_template.evaluation import calibration

DIGITS = 6


def rounded(value: float) -> float:
    return round(float(value), DIGITS)


def predict_labels(
    proba: np.ndarray, classes: list[str], contract: Contract, threshold: float
) -> np.ndarray:
    """Class codes by the service's rule (contract.metrics.decide): the most likely class, or for
    binary the positive class whenever its probability reaches the threshold."""
    return np.asarray(decide(proba, classes, contract.positive, threshold))


def _per_class(truth: np.ndarray, predicted: np.ndarray, classes: list[str]) -> dict[str, Any]:
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=list(range(len(classes))), zero_division=0
    )
    return {
        name: {
            "precision": rounded(precision[i]),
            "recall": rounded(recall[i]),
            "f1": rounded(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    }


def classification_metrics(
    actual: pd.Series,
    proba: np.ndarray,
    classes: list[str],
    contract: Contract,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Scored on integer class codes: the same values as on the label strings, and about 15x
    faster on large test sets (scikit-learn sorts the labels again for every metric)."""
    labels = list(range(len(classes)))
    truth = pd.Categorical(actual, categories=classes).codes  # -1: a class the model lacks
    predicted = predict_labels(proba, classes, contract, threshold)
    metrics: dict[str, Any] = {
        "accuracy": rounded(accuracy_score(truth, predicted)),
        "log_loss": rounded(log_loss(truth, proba, labels=labels)),
        "brier": calibration.brier(np.asarray(truth), proba),
    }
    if contract.task == "binary":
        positive = classes.index(str(contract.positive))
        is_positive = truth == positive
        scores = proba[:, positive]
        both = is_positive.any() and not is_positive.all()
        precision, recall, f1, _ = precision_recall_fscore_support(
            is_positive, predicted == positive, average="binary", zero_division=0
        )
        metrics |= {
            "roc_auc": rounded(roc_auc_score(is_positive, scores)) if both else 0.5,
            "average_precision": rounded(average_precision_score(is_positive, scores)),
            "precision": rounded(precision),
            "recall": rounded(recall),
            "f1": rounded(f1),
        }
    else:
        metrics |= {
            "f1_macro": rounded(f1_score(truth, predicted, average="macro", zero_division=0)),
            "roc_auc_ovr": rounded(roc_auc_score(truth, proba, multi_class="ovr", labels=labels)),
        }
    metrics["test_rows"] = len(actual)
    metrics["per_class"] = _per_class(truth, predicted, classes)
    return metrics


def regression_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    return {
        "rmse": rounded(np.sqrt(mean_squared_error(actual, predicted))),
        "mae": rounded(mean_absolute_error(actual, predicted)),
        "r2": rounded(r2_score(actual, predicted)),
        "test_rows": len(actual),
    }


def compute_metrics(
    model: Pipeline, test: pd.DataFrame, contract: Contract, threshold: float = 0.5
) -> dict[str, Any]:
    """The task's metrics of `model` on `test` (also the registry's re-scoring)."""
    features = model_input(test, contract)
    if contract.is_classification:
        classes = [str(name) for name in model.classes_]
        actual = test[contract.target.name].astype(str)
        return classification_metrics(
            actual, model.predict_proba(features), classes, contract, threshold
        )
    actual_values = test[contract.target.name].to_numpy(float)
    return regression_metrics(actual_values, model.predict(features))


def baseline_metrics(
    train: pd.Series, test: pd.Series, contract: Contract, threshold: float
) -> dict[str, float]:
    """The same metrics for the simplest honest model fitted on the training target: the
    training class shares as probabilities (so the majority class is always predicted), or
    the training mean for regression."""
    if not contract.is_classification:
        actual = test.to_numpy(float)
        mean = np.full(len(actual), float(train.astype(float).mean()))
        return {
            key: value
            for key, value in regression_metrics(actual, mean).items()
            if key != "test_rows"
        }
    classes = list(contract.classes)
    shares = train.astype(str).value_counts(normalize=True).reindex(classes, fill_value=0.0)
    prior = np.tile(shares.to_numpy(float), (len(test), 1))
    if contract.task == "binary":  # always the majority class, whatever evaluate.threshold
        threshold = 0.0 if shares[str(contract.positive)] >= 0.5 else float("inf")
    metrics = classification_metrics(test.astype(str), prior, classes, contract, threshold)
    return {key: value for key, value in metrics.items() if key not in {"test_rows", "per_class"}}


def with_baseline(
    metrics: dict[str, Any], train: pd.DataFrame, test: pd.DataFrame, params: Params
) -> dict[str, Any]:
    """`metrics` with the baseline's (fitted on `train`, scored on `test`) and whether the
    model beats it (contract.metrics.below_baseline)."""
    contract, target = params.contract, params.contract.target.name
    baseline = baseline_metrics(train[target], test[target], contract, params.evaluate.threshold)
    shortfalls = below_baseline(metrics, baseline, params.primary_metric, contract.task)
    return {**metrics, "baseline": baseline, "beats_baseline": not shortfalls}


def metric_value(
    metric: str, model: Pipeline, frame: pd.DataFrame, contract: Contract, threshold: float
) -> float:
    """One of the task's metrics of `model` on `frame`: the same numbers as compute_metrics,
    without computing the others (permutation importance calls this hundreds of times)."""
    features = model_input(frame, contract)
    if not contract.is_classification:
        actual = frame[contract.target.name].to_numpy(float)
        return float(regression_metrics(actual, model.predict(features))[metric])
    classes = [str(name) for name in model.classes_]
    truth = pd.Categorical(frame[contract.target.name].astype(str), categories=classes).codes
    proba = model.predict_proba(features)
    if metric == "log_loss":
        return float(log_loss(truth, proba, labels=list(range(len(classes)))))
    if metric == "roc_auc_ovr":
        return float(
            roc_auc_score(truth, proba, multi_class="ovr", labels=list(range(len(classes))))
        )
    predicted = predict_labels(proba, classes, contract, threshold)
    if metric == "accuracy":
        return float(accuracy_score(truth, predicted))
    if metric == "f1_macro":
        return float(f1_score(truth, predicted, average="macro", zero_division=0))
    positive = classes.index(str(contract.positive))
    is_positive = truth == positive
    if metric == "roc_auc":
        both = is_positive.any() and not is_positive.all()
        return float(roc_auc_score(is_positive, proba[:, positive])) if both else 0.5
    if metric == "average_precision":
        return float(average_precision_score(is_positive, proba[:, positive]))
    scores = precision_recall_fscore_support(
        is_positive, predicted == positive, average="binary", zero_division=0
    )
    return float(scores[("precision", "recall", "f1").index(metric)])
