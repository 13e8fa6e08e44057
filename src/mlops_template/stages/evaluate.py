"""Stage `evaluate`: score the model on the test split against a baseline; write DVC metrics
and plot data.

Metrics (`paths.metrics`) follow the contract's task, so `dvc metrics diff main` compares
branches:
- binary: ROC AUC, PR AUC (average precision), the positive class's precision, recall and F1
  at `evaluate.threshold`, accuracy, log loss;
- multiclass: accuracy, macro F1, log loss, one-vs-rest ROC AUC, and per class precision,
  recall and F1;
- classification also the Brier score (quality.brier; not a gate metric);
- regression: RMSE, MAE, R².
`baseline` holds the same metrics for the simplest honest model, fitted on the training
split: the class shares (always the majority class) or the training mean. `beats_baseline`
says whether the model is better on the primary metric and on log loss (classification) or
MAE (regression); the PR report flags a model that is not and the promotion gate refuses it.

Plot data (in `paths.plots`, drawn by dvc.yaml's `plots:`): the confusion matrix (one row per
test example) and ROC and precision-recall curves (one per class; for binary, the positive
class) for classification; predicted against actual and the residuals for regression; and
permutation feature importance for every task; a reliability curve (classification); written
by plot_data.py. Metrics
per category of each categorical feature go to `paths.slices` (quality.py).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
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

from mlops_template import plot_data, plots, quality, storage, tracking
from mlops_template.compile import model_input
from mlops_template.config import Params
from mlops_template.metric_facts import (
    LOWER_IS_BETTER,
    baseline_verdict,
    below_baseline,
    decide,
)
from mlops_template.plot_data import MAX_CURVE_POINTS, one_vs_rest_curves  # noqa: F401 (re-exported)
from mlops_template.schema import Contract

log = logging.getLogger(__name__)

DIGITS = 6


def _round(value: float) -> float:
    return round(float(value), DIGITS)


def predict_labels(
    proba: np.ndarray, classes: list[str], contract: Contract, threshold: float
) -> np.ndarray:
    """Class codes by the service's rule (metric_facts.decide): the most likely class, or for
    binary the positive class whenever its probability reaches the threshold."""
    return np.asarray(decide(proba, classes, contract.positive, threshold))


def _per_class(truth: np.ndarray, predicted: np.ndarray, classes: list[str]) -> dict[str, Any]:
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=list(range(len(classes))), zero_division=0
    )
    return {
        name: {
            "precision": _round(precision[i]),
            "recall": _round(recall[i]),
            "f1": _round(f1[i]),
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
        "accuracy": _round(accuracy_score(truth, predicted)),
        "log_loss": _round(log_loss(truth, proba, labels=labels)),
        "brier": quality.brier(np.asarray(truth), proba),
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
            "roc_auc": _round(roc_auc_score(is_positive, scores)) if both else 0.5,
            "average_precision": _round(average_precision_score(is_positive, scores)),
            "precision": _round(precision),
            "recall": _round(recall),
            "f1": _round(f1),
        }
    else:
        metrics |= {
            "f1_macro": _round(f1_score(truth, predicted, average="macro", zero_division=0)),
            "roc_auc_ovr": _round(roc_auc_score(truth, proba, multi_class="ovr", labels=labels)),
        }
    metrics["test_rows"] = len(actual)
    metrics["per_class"] = _per_class(truth, predicted, classes)
    return metrics


def regression_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    return {
        "rmse": _round(np.sqrt(mean_squared_error(actual, predicted))),
        "mae": _round(mean_absolute_error(actual, predicted)),
        "r2": _round(r2_score(actual, predicted)),
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
    model beats it (metric_facts.below_baseline)."""
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


def _scorer(contract: Contract, metric: str, threshold: float) -> Any:
    """A scikit-learn scorer (greater is better) for any of the task's metrics."""
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    target = contract.target.name

    def score(estimator: Pipeline, features: pd.DataFrame, truth: pd.Series) -> float:
        frame = features.assign(**{target: truth.to_numpy()})
        return sign * metric_value(metric, estimator, frame, contract, threshold)

    return score


def feature_importance(
    model: Pipeline, test: pd.DataFrame, contract: Contract, params: Params
) -> list[dict[str, float | str]]:
    """Permutation importance on the raw input columns (model-agnostic), on a seeded sample:
    how much the primary metric worsens when a column is shuffled."""
    settings = params.evaluate
    sample = test
    if len(test) > settings.importance_max_rows:
        sample = test.sample(n=settings.importance_max_rows, random_state=params.seed)
    result = permutation_importance(
        model,
        model_input(sample, contract),
        sample[contract.target.name],
        scoring=_scorer(contract, params.primary_metric, settings.threshold),
        n_repeats=settings.importance_repeats,
        random_state=params.seed,
    )
    return [
        {"feature": name, "importance": _round(mean), "std": _round(std)}
        for name, mean, std in zip(
            contract.feature_names(),
            result.importances_mean,
            result.importances_std,
            strict=True,
        )
    ]


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Numbers only, nested keys joined with `_` (per_class_Adelie_f1 -> f1_Adelie)."""
    flat = {
        key: float(value)
        for key, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    for name, scores in metrics.get("per_class", {}).items():
        flat.update({f"{metric}_{name}": float(value) for metric, value in scores.items()})
    for key, value in metrics.get("baseline", {}).items():
        flat[f"baseline_{key}"] = float(value)
    return flat


def evaluate(
    params: Params, model: Pipeline, train: pd.DataFrame, test: pd.DataFrame
) -> dict[str, Any]:
    """Metrics, baseline and plot data; returns the metrics written to `paths.metrics`."""
    contract, paths = params.contract, params.paths
    for stale in paths.plot_files():  # a previous run (or task) may have left other plots
        stale.unlink(missing_ok=True)
    features = model_input(test, contract)
    threshold = params.evaluate.threshold
    if contract.is_classification:
        classes = [str(name) for name in model.classes_]
        actual = test[contract.target.name].astype(str)
        proba = model.predict_proba(features)
        metrics = classification_metrics(actual, proba, classes, contract, threshold)
        if contract.task == "binary":
            metrics["threshold"] = threshold
        predicted = np.asarray(classes)[predict_labels(proba, classes, contract, threshold)]
        plot_data.write_classification_plots(params, actual, proba, classes, predicted)
    else:
        actual_values = test[contract.target.name].to_numpy(float)
        predicted = model.predict(features)
        metrics = regression_metrics(actual_values, predicted)
        plot_data.write_regression_plots(params, actual_values, predicted)
    metrics = with_baseline(metrics, train, test, params)
    primary = params.primary_metric
    storage.write_json(
        paths.slices,
        quality.slices(
            test,
            predicted,
            contract,
            primary,
            lambda rows: metric_value(primary, model, rows, contract, threshold),
        ),
    )
    importance = feature_importance(model, test, contract, params)
    storage.write_json(paths.feature_importance, {"importance": importance})
    storage.write_json(paths.metrics, metrics)
    return metrics


def _summary(metrics: dict[str, Any], primary: str, task: str) -> str:
    rows = metrics["test_rows"]
    return f"{baseline_verdict(metrics, primary, task)} ({rows} test rows)"


def run(params: Params) -> dict[str, Any]:
    paths = params.paths
    train = storage.read_parquet(paths.train)
    test = storage.read_parquet(paths.test)
    model: Pipeline = storage.load_verified_model(paths.model)
    sha256 = storage.read_recorded_sha256(paths.model)
    with tracking.tracker(
        params.tracking, run_name="evaluate", resume_tags={tracking.MODEL_SHA_TAG: sha256}
    ) as tracker:
        metrics = evaluate(params, model, train, test)
        summary = _summary(metrics, params.primary_metric, params.contract.task)
        (log.info if metrics["beats_baseline"] else log.warning)("%s", summary)
        tracker.log_metrics({f"test_{key}": value for key, value in flat_metrics(metrics).items()})
        for path in (paths.metrics, *[p for p in paths.plot_files() if p.is_file()]):
            tracker.log_artifact(path, "evaluation")
        if tracker.run_id is not None:  # drawing costs seconds: only for a real run
            with tempfile.TemporaryDirectory() as scratch:
                for image in plots.render_images(paths, Path(scratch)).values():
                    tracker.log_artifact(image, "evaluation")
    return metrics
