"""Render the evaluate stage's plot data as PNG figures (for MLflow and the PR report).

The data files (CSV/JSON) are what DVC versions and diffs; these figures are a view of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mlops_template import storage
from mlops_template.config import Paths, Range
from mlops_template.metric_facts import LOWER_IS_BETTER

if TYPE_CHECKING:
    from mlops_template.tune import Search

Point = Mapping[str, float]


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


# --- `mlops tune`: what a search found (reports/tune/) ------------------------------------


def tune_trials_figure(search: Search) -> Figure:
    """Each trial's cross-validated score (mean and std over the folds) and the best so far."""
    lower = search.metric in LOWER_IS_BETTER
    numbers, means = [t.number for t in search.trials], [t.mean for t in search.trials]
    running = [min(means[: i + 1]) if lower else max(means[: i + 1]) for i in range(len(means))]
    best = search.best
    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    axes.errorbar(
        numbers, means, yerr=[t.std for t in search.trials], fmt="o", color="tab:blue",
        ecolor="lightgrey", capsize=3, label="trial: mean ± std over the folds",
    )  # fmt: skip
    axes.step(numbers, running, where="post", color="tab:orange", label="best so far")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.scatter([best.number], [best.mean], marker="*", s=250, color="tab:red", zorder=3)
    axes.set_xlabel("trial (0: the model section params.yaml holds)")
    axes.set_ylabel(f"{search.metric} (cross-validated)")
    better = "lower" if lower else "higher"
    axes.set_title(f"{search.metric} per trial, {better} is better; best: trial {best.number}")
    axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    return figure


def _tune_panel(axes: Any, search: Search, name: str, choices: Any) -> None:
    """The score against one hyperparameter: a number line for a range, else one tick per
    value (None, the estimator's default, among them)."""
    pairs = [(t.values[name], t.mean, t is search.best) for t in search.trials]
    if isinstance(choices, Range):
        pairs = [pair for pair in pairs if pair[0] is not None]
        if choices.log:
            axes.set_xscale("log")
    else:
        labels = list(dict.fromkeys(str(value) for value in [*choices, *(p[0] for p in pairs)]))
        axes.set_xticks(range(len(labels)), labels=labels)
        pairs = [(labels.index(str(value)), mean, best) for value, mean, best in pairs]
    axes.scatter([p[0] for p in pairs], [p[1] for p in pairs], color="tab:blue", alpha=0.7)
    stars = [p for p in pairs if p[2]]
    axes.scatter([p[0] for p in stars], [p[1] for p in stars], marker="*", s=250, color="tab:red")
    axes.set_xlabel(name)


def tune_params_figure(search: Search, space: Mapping[str, Any]) -> Figure:
    """The score against each searched hyperparameter (the best trial starred)."""
    names = list(space) or ["(nothing searched)"]
    columns = 2 if len(names) == 4 else min(3, len(names))
    rows = math.ceil(len(names) / columns)
    figure, grid = plt.subplots(
        rows, columns, figsize=(4 * columns, 3.2 * rows), dpi=100, squeeze=False, sharey=True
    )
    for axes, name in zip(grid.flat, names, strict=False):
        if name in space:
            _tune_panel(axes, search, name, space[name])
    for axes in list(grid.flat)[len(names) :]:
        axes.set_visible(False)
    for axes in grid[:, 0]:
        axes.set_ylabel(search.metric)
    figure.suptitle(f"{search.metric} (cross-validated) against each searched hyperparameter")
    figure.tight_layout()
    return figure


def write_tune_figures(search: Search, space: Mapping[str, Any], out: Path) -> list[Path]:
    """trials.png and params.png in `out`."""
    written = []
    for name, figure in (
        ("trials.png", tune_trials_figure(search)),
        ("params.png", tune_params_figure(search, space)),
    ):
        storage.write_with(out / name, partial(figure.savefig, format="png"))
        plt.close(figure)
        written.append(out / name)
    return written
