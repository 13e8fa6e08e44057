"""The evaluate stage's plots: their data, and the figures drawn from it.

The data files (CSV/JSON: curves thinned to a few hundred points and scatters to a thousand,
so they stay small and diffable in git) are what DVC versions, diffs and draws (dvc.yaml's
`plots:`); `render_images` draws the same data as PNG figures for MLflow, the PR report and
the plots page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from mlops_template.config import Params, Paths
from mlops_template.contract import Contract
from mlops_template.evaluation.calibration import reliability
from mlops_template.io import storage

MAX_CURVE_POINTS = 200
MAX_SCATTER_POINTS = 1000
DIGITS = 6

Point = Mapping[str, float]


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
    curve = reliability(actual, proba, classes, contract)
    storage.write_json(paths.calibration, {"calibration": curve})


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


def confusion_figure(matrix: np.ndarray, classes: Sequence[str]) -> Figure:
    figure, axes = plt.subplots(figsize=(5, 4.5), dpi=100)
    image = axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(classes)), labels=classes, rotation=30, ha="right")
    axes.set_yticks(range(len(classes)), labels=classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, col), count in np.ndenumerate(matrix):
        color = "white" if count > threshold else "black"
        axes.text(col, row, str(count), ha="center", va="center", color=color)
    figure.colorbar(image, ax=axes)
    axes.set_title("Confusion matrix (test split)")
    figure.tight_layout()
    return figure


def curves_figure(
    curves: Mapping[str, Sequence[Point]], x: str, y: str, title: str, diagonal: bool = False
) -> Figure:
    figure, axes = plt.subplots(figsize=(5, 4.5), dpi=100)
    for label, points in sorted(curves.items()):
        axes.plot([p[x] for p in points], [p[y] for p in points], label=label)
    if diagonal:
        axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    axes.set_xlabel(x)
    axes.set_ylabel(y)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.legend(loc="best")
    axes.set_title(title)
    figure.tight_layout()
    return figure


def importance_figure(rows: Sequence[Mapping[str, float | str]]) -> Figure:
    ordered = sorted(rows, key=lambda row: float(row["importance"]))
    figure, axes = plt.subplots(figsize=(6, 0.45 * len(ordered) + 1.2), dpi=100)
    axes.barh(
        [str(row["feature"]) for row in ordered],
        [float(row["importance"]) for row in ordered],
        xerr=[float(row["std"]) for row in ordered],
        color="tab:blue",
    )
    axes.set_xlabel("permutation importance (drop in score)")
    axes.set_title("Feature importance (test split)")
    figure.tight_layout()
    return figure


def scatter_figure(points: Sequence[Point], x: str, y: str, title: str, reference: str) -> Figure:
    """Regression diagnostics: `reference` is "diagonal" (predicted = actual) or "zero"
    (no residual)."""
    figure, axes = plt.subplots(figsize=(5, 4.5), dpi=100)
    xs = [p[x] for p in points]
    ys = [p[y] for p in points]
    axes.scatter(xs, ys, s=10, alpha=0.6, color="tab:blue")
    if xs and reference == "diagonal":
        low, high = min(*xs, *ys), max(*xs, *ys)
        axes.plot([low, high], [low, high], linestyle="--", color="grey", linewidth=1)
    elif xs:
        axes.axhline(0.0, linestyle="--", color="grey", linewidth=1)
    axes.set_xlabel(x)
    axes.set_ylabel(y)
    axes.set_title(title)
    figure.tight_layout()
    return figure


def render_images(paths: Paths, image_dir: Path) -> dict[str, Path]:
    """Draw the evaluate stage's plot data files as PNGs in `image_dir`; plots whose data is
    missing are skipped. The report and MLflow both show these."""
    figures = {}
    if paths.confusion.is_file():
        rows = pd.read_csv(paths.confusion)
        classes = sorted(set(rows["actual"]) | set(rows["predicted"]))
        matrix = pd.crosstab(rows["actual"], rows["predicted"]).reindex(
            index=classes, columns=classes, fill_value=0
        )
        figures["Confusion matrix"] = confusion_figure(matrix.to_numpy(np.int64), classes)
    for title, path, key, x, y in (
        ("ROC", paths.roc, "roc", "fpr", "tpr"),
        ("Precision-recall", paths.precision_recall, "precision_recall", "recall", "precision"),
        ("Reliability", paths.calibration, "calibration", "predicted", "observed"),
    ):
        if path.is_file():
            curves: dict[str, list[dict[str, float]]] = {}
            for row in storage.read_json(path)[key]:
                curves.setdefault(row["class"], []).append(row)
            suffix = "" if len(curves) == 1 else ", one vs rest"
            diagonal = key in ("roc", "calibration")  # chance; perfect calibration
            figures[title] = curves_figure(curves, x, y, f"{title}{suffix}", diagonal=diagonal)
    if paths.predicted_actual.is_file():
        points = storage.read_json(paths.predicted_actual)["predicted_actual"]
        figures["Predicted vs actual"] = scatter_figure(
            points, "actual", "predicted", "Predicted vs actual (test split)", "diagonal"
        )
    if paths.residuals.is_file():
        points = storage.read_json(paths.residuals)["residuals"]
        figures["Residuals"] = scatter_figure(
            points, "predicted", "residual", "Residuals (actual - predicted)", "zero"
        )
    if paths.feature_importance.is_file():
        rows_ = storage.read_json(paths.feature_importance)["importance"]
        figures["Feature importance"] = importance_figure(rows_)
    written = {}
    for title, figure in figures.items():
        target = image_dir / (title.lower().replace(" ", "_").replace("-", "_") + ".png")
        storage.write_with(target, partial(figure.savefig, format="png"))
        plt.close(figure)
        written[title] = target
    return written
