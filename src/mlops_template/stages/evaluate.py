"""Stage `evaluate`: score the model on the test split against a baseline; write DVC metrics
and plot data.

Metrics (`paths.metrics`) follow the contract's task, so `dvc metrics diff main` compares
branches:
- binary: ROC AUC, PR AUC (average precision), the positive class's precision, recall and F1
  at `evaluate.threshold`, accuracy, log loss;
- multiclass: accuracy, macro F1, log loss, one-vs-rest ROC AUC, and per class precision,
  recall and F1;
- classification also the Brier score (calibration.brier; not a gate metric);
- regression: RMSE, MAE, R².
`baseline` holds the same metrics for the simplest honest model, fitted on the training
split: the class shares (always the majority class) or the training mean. `beats_baseline`
says whether the model is better on the primary metric and on log loss (classification) or
MAE (regression); the PR report flags a model that is not and the promotion gate refuses it.

Plot data (in `paths.plots`, drawn by dvc.yaml's `plots:`): the confusion matrix (one row per
test example) and ROC and precision-recall curves (one per class; for binary, the positive
class) for classification; predicted against actual and the residuals for regression; and
permutation feature importance for every task; a reliability curve (classification); written
by evaluation/plots.py. Metrics
per category of each categorical feature go to `paths.slices` (evaluation/slices.py).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.pipeline import Pipeline

from mlops_template.config import Params
from mlops_template.contract import Contract
from mlops_template.contract.features import model_input
from mlops_template.contract.metrics import LOWER_IS_BETTER, baseline_verdict
from mlops_template.evaluation import plots, slices
from mlops_template.evaluation.scoring import (
    classification_metrics,
    metric_value,
    predict_labels,
    regression_metrics,
    rounded,
    with_baseline,
)
from mlops_template.io import storage, tracking

log = logging.getLogger(__name__)


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
        {"feature": name, "importance": rounded(mean), "std": rounded(std)}
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
        plots.write_classification_plots(params, actual, proba, classes, predicted)
    else:
        actual_values = test[contract.target.name].to_numpy(float)
        predicted = model.predict(features)
        metrics = regression_metrics(actual_values, predicted)
        plots.write_regression_plots(params, actual_values, predicted)
    metrics = with_baseline(metrics, train, test, params)
    primary = params.primary_metric
    storage.write_json(
        paths.slices,
        slices.slices(
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
