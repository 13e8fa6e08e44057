"""The evaluate stage's plot data (drawn by dvc.yaml's `plots:`, plots.py and the plots page):
curves thinned to a few hundred points and scatters to a thousand, so the files stay small
and diffable in git."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve

from mlops_template import quality, storage
from mlops_template.config import Params
from mlops_template.schema import Contract

MAX_CURVE_POINTS = 200
MAX_SCATTER_POINTS = 1000
DIGITS = 6


def _round(value: float) -> float:
    return round(float(value), DIGITS)


def _thin(points: list[dict[str, float]], limit: int = MAX_CURVE_POINTS) -> list[dict[str, float]]:
    """Keep at most `limit` evenly spaced points (first and last included)."""
    if len(points) <= limit:
        return points
    keep = np.unique(np.linspace(0, len(points) - 1, limit).round().astype(int))
    return [points[i] for i in keep]


def one_vs_rest_curves(
    actual: pd.Series, proba: np.ndarray, classes: list[str], contract: Contract
) -> tuple[dict[str, list[dict[str, float]]], dict[str, list[dict[str, float]]]]:
    """ROC and precision-recall curves per class; for binary, of the positive class only."""
    shown = [str(contract.positive)] if contract.task == "binary" else classes
    roc: dict[str, list[dict[str, float]]] = {}
    pr: dict[str, list[dict[str, float]]] = {}
    for name in shown:
        i = classes.index(name)
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


def _curve_rows(curves: dict[str, list[dict[str, float]]]) -> list[dict[str, float | str]]:
    """One table for all classes, tagged by `class` (the DVC template colours by it)."""
    return [{"class": name, **point} for name, points in curves.items() for point in points]


def write_classification_plots(
    params: Params, actual: pd.Series, proba: np.ndarray, classes: list[str], predicted: np.ndarray
) -> None:
    """Confusion (one row per test example), ROC, precision-recall and reliability curves;
    `predicted` holds the predicted labels."""
    paths, contract = params.paths, params.contract
    rows = pd.DataFrame({"actual": actual.to_numpy(), "predicted": predicted})
    storage.write_with(paths.confusion, lambda tmp: rows.to_csv(tmp, index=False))
    roc, pr = one_vs_rest_curves(actual, proba, classes, contract)
    storage.write_json(paths.roc, {"roc": _curve_rows(roc)})
    storage.write_json(paths.precision_recall, {"precision_recall": _curve_rows(pr)})
    calibration = quality.reliability(actual, proba, classes, contract)
    storage.write_json(paths.calibration, {"calibration": calibration})


def write_regression_plots(params: Params, actual: np.ndarray, predicted: np.ndarray) -> None:
    paths = params.paths
    points = [
        {"actual": _round(a), "predicted": _round(p), "residual": _round(a - p)}
        for a, p in zip(actual, predicted, strict=True)
    ]
    order = sorted(range(len(points)), key=lambda i: points[i]["predicted"])
    points = _thin([points[i] for i in order], MAX_SCATTER_POINTS)
    storage.write_json(
        paths.predicted_actual,
        {
            "predicted_actual": [
                {"actual": p["actual"], "predicted": p["predicted"]} for p in points
            ]
        },
    )
    storage.write_json(
        paths.residuals,
        {"residuals": [{"predicted": p["predicted"], "residual": p["residual"]} for p in points]},
    )
