"""The search's two figures: each trial's cross-validated score with the best so far, and the
score against each hyperparameter. Imported only when a search writes its reports, so the
search's worker processes never load matplotlib."""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mlops_template.config import Range
from mlops_template.contract.metrics import LOWER_IS_BETTER
from mlops_template.io import storage
from mlops_template.tuning.trials import Search


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
