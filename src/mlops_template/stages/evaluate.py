"""Stage `evaluate`: score the model on the test split; write DVC metrics and plot data.

Metrics (`paths.metrics`): accuracy, macro F1, log loss and per-class precision/recall, so
`dvc metrics diff main` compares branches. Plot data, declared under `plots:` in dvc.yaml so
`dvc plots diff main` works: the confusion matrix (one row per test example), one-vs-rest ROC
and precision-recall curves (one row per point, tagged by class) and permutation feature
importance.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)
from sklearn.pipeline import Pipeline

from mlops_template import io, plots, tracking
from mlops_template.config import EvaluateSettings, Params
from mlops_template.schema import TARGET, feature_names

log = logging.getLogger(__name__)

MAX_CURVE_POINTS = 200
DIGITS = 6
SCORERS = {"accuracy": "accuracy", "f1_macro": "f1_macro", "log_loss": "neg_log_loss"}


def _round(value: float) -> float:
    return round(float(value), DIGITS)


def compute_metrics(actual: pd.Series, proba: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Scored on integer class codes: the same values as on the label strings, and about 15x
    faster on large test sets (scikit-learn sorts the labels again for every metric)."""
    labels = list(range(len(classes)))
    truth = pd.Categorical(actual, categories=list(classes)).codes  # -1: a class the model lacks
    predicted = proba.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=labels, zero_division=0
    )
    return {
        "accuracy": _round(accuracy_score(truth, predicted)),
        "f1_macro": _round(f1_score(truth, predicted, average="macro", zero_division=0)),
        "log_loss": _round(log_loss(truth, proba, labels=labels)),
        "roc_auc_ovr": _round(roc_auc_score(truth, proba, multi_class="ovr", labels=labels)),
        "test_rows": len(actual),
        "per_class": {
            name: {
                "precision": _round(precision[i]),
                "recall": _round(recall[i]),
                "f1": _round(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
    }


def _thin(points: list[dict[str, float]]) -> list[dict[str, float]]:
    """Keep at most MAX_CURVE_POINTS evenly spaced points (first and last included)."""
    if len(points) <= MAX_CURVE_POINTS:
        return points
    keep = np.unique(np.linspace(0, len(points) - 1, MAX_CURVE_POINTS).round().astype(int))
    return [points[i] for i in keep]


def one_vs_rest_curves(
    actual: pd.Series, proba: np.ndarray, classes: Sequence[str]
) -> tuple[dict[str, list[dict[str, float]]], dict[str, list[dict[str, float]]]]:
    roc: dict[str, list[dict[str, float]]] = {}
    pr: dict[str, list[dict[str, float]]] = {}
    for i, name in enumerate(classes):
        positive = (actual == name).to_numpy()
        fpr, tpr, _ = roc_curve(positive, proba[:, i])
        precision, recall, _ = precision_recall_curve(positive, proba[:, i])
        roc[name] = _thin(
            [{"fpr": _round(x), "tpr": _round(y)} for x, y in zip(fpr, tpr, strict=True)]
        )
        pr[name] = _thin(
            [
                {"recall": _round(x), "precision": _round(y)}
                for x, y in zip(recall, precision, strict=True)
            ][::-1]
        )
    return roc, pr


def feature_importance(
    model: Pipeline, test: pd.DataFrame, settings: EvaluateSettings, seed: int
) -> list[dict[str, float | str]]:
    """Permutation importance on the raw input columns (model-agnostic), on a seeded sample."""
    sample = test
    if len(test) > settings.importance_max_rows:
        sample = test.sample(n=settings.importance_max_rows, random_state=seed)
    result = permutation_importance(
        model,
        sample[feature_names()],
        sample[TARGET.name],
        scoring=SCORERS[settings.primary_metric],
        n_repeats=settings.importance_repeats,
        random_state=seed,
    )
    return [
        {"feature": name, "importance": _round(mean), "std": _round(std)}
        for name, mean, std in zip(
            feature_names(), result.importances_mean, result.importances_std, strict=True
        )
    ]


def _curve_rows(curves: dict[str, list[dict[str, float]]]) -> list[dict[str, float | str]]:
    """One table for all classes, tagged by `class` (the DVC template colours by it)."""
    return [{"class": name, **point} for name, points in curves.items() for point in points]


def _flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    flat = {key: float(value) for key, value in metrics.items() if key != "per_class"}
    for name, scores in metrics["per_class"].items():
        flat.update({f"{metric}_{name}": float(value) for metric, value in scores.items()})
    return flat


def run(params: Params) -> dict[str, Any]:
    paths = params.paths
    test = io.read_parquet(paths.test)
    model: Pipeline = io.load_verified_model(paths.model)
    sha256 = io.read_recorded_sha256(paths.model)
    classes = [str(name) for name in model.classes_]
    with tracking.tracker(
        params.tracking, run_name="evaluate", resume_tags={tracking.MODEL_SHA_TAG: sha256}
    ) as tracker:
        proba = model.predict_proba(test[feature_names()])
        actual = test[TARGET.name].astype(str)
        metrics = compute_metrics(actual, proba, classes)
        roc, pr = one_vs_rest_curves(actual, proba, classes)
        importance = feature_importance(model, test, params.evaluate, params.seed)
        predicted = np.asarray(classes)[proba.argmax(axis=1)]

        io.write_json(paths.metrics, metrics)
        confusion_rows = pd.DataFrame({"actual": actual.to_numpy(), "predicted": predicted})
        io.write_with(paths.confusion, lambda tmp: confusion_rows.to_csv(tmp, index=False))
        io.write_json(paths.roc, {"roc": _curve_rows(roc)})
        io.write_json(paths.precision_recall, {"precision_recall": _curve_rows(pr)})
        io.write_json(paths.feature_importance, {"importance": importance})
        log.info(
            "accuracy %.4f, macro F1 %.4f, log loss %.4f on %d test rows",
            metrics["accuracy"],
            metrics["f1_macro"],
            metrics["log_loss"],
            len(test),
        )

        tracker.log_metrics({f"test_{key}": value for key, value in _flat_metrics(metrics).items()})
        for path in (paths.metrics, paths.confusion, paths.feature_importance):
            tracker.log_artifact(path, "evaluation")
        with tempfile.TemporaryDirectory() as scratch:
            for image in plots.render_images(paths, Path(scratch)).values():
                tracker.log_artifact(image, "evaluation")
    return metrics
