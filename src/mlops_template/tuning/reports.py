"""What a `mlops model tune` search leaves and says (tuning/search.py searches): the line per
trial, the closing summary, reports/tune/ (trials.csv, best.json, the plots) and the settings it
logs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mlops_template.config import Params, Range
from mlops_template.contract.metrics import LOWER_IS_BETTER
from mlops_template.io import storage
from mlops_template.tuning.trials import Search, Trial

REPORTS = ("trials.csv", "best.json", "trials.png", "params.png")


def shown(values: Mapping[str, Any]) -> str:
    return " ".join(f"{name}={value}" for name, value in values.items())


def progress_line(progress: Search) -> str:
    """One line for the trial that just finished: its score, the best so far, its values."""
    trial, best, total = progress.trials[-1], progress.best, progress.planned - 1
    return (
        f"tune: trial {trial.number:>{len(str(total))}}/{total}"
        f"{' (current)' if trial.number == 0 else ''}  {progress.metric} {trial.mean:.4f}"
        f" ± {trial.std:.4f}  best {best.mean:.4f} (trial {best.number})"
        f"  {shown(trial.values)}  {trial.seconds:.1f} s  [{progress.seconds:.0f} s]"
    )


def trials_table(search: Search) -> pd.DataFrame:
    rank = {trial.number: place for place, trial in enumerate(search.ranked(), start=1)}
    metric = search.metric
    return pd.DataFrame(  # object columns: max_depth 8 stays 8 beside a None
        (
            {
                "trial": trial.number,
                "rank": rank[trial.number],
                **trial.values,
                f"cv_{metric}": round(trial.mean, 6),
                f"cv_{metric}_std": round(trial.std, 6),
                **{f"fold_{i}": round(score, 6) for i, score in enumerate(trial.scores, start=1)},
                "seconds": round(trial.seconds, 3),
            }
            for trial in search.trials
        ),
        dtype=object,
    )


def _scored(trial: Trial) -> dict[str, Any]:
    return {"values": trial.values, "cv_mean": round(trial.mean, 6), "cv_std": round(trial.std, 6)}


def verdict(search: Search) -> str:
    """Whether the best trial is proposed (what APPLY writes), with the numbers that decided."""
    best, proposed = search.best, search.proposed
    if best.number == 0:
        return "the current values (trial 0) score best: nothing to propose"
    gain, error = search.gain(best)
    by = (
        f"best trial {best.number} beats the current values by {gain:.6f} {search.metric}"
        " (the mean of the paired fold differences), {} their standard error"
        f" ({error:.6f})"
    )
    if proposed is best:
        return by.format("more than") + ": its values are proposed"
    return by.format("not more than") + ": within the noise, the current values are kept"


def parent_run(search: Search) -> tuple[dict[str, float], dict[str, str]]:
    """The MLflow `tune` run's metrics and tags: the best score, its gain on the current
    values and that gain's standard error, the best and the proposed trial, the verdict."""
    best, (gain, error) = search.best, search.gain(search.best)
    metrics = {f"best_cv_{search.metric}": best.mean, "trials": float(len(search.trials))}
    tags = {"best_trial": str(best.number), "proposed_trial": str(search.proposed.number)}
    return (
        {**metrics, "best_gain": gain, "best_gain_se": error},
        {**tags, "verdict": verdict(search)},
    )


def summary(search: Search, params: Params, rows: int, source: Mapping[str, str]) -> dict[str, Any]:
    """best.json: the best values, the current ones (trial 0), the proposed ones (what APPLY
    writes) and why, and how the search ran: on which training split (its md5) and commit."""
    gain, error = search.gain(search.best)
    proposed = search.proposed
    return {
        "metric": search.metric,
        "lower_is_better": search.metric in LOWER_IS_BETTER,
        "best": {"trial": search.best.number, **_scored(search.best)},
        "current": _scored(search.trials[0]),
        "gain": {"mean": round(gain, 6), "standard_error": round(error, 6)},
        "proposed": {"trial": proposed.number, "values": proposed.values},
        "verdict": verdict(search),
        "trials": len(search.trials),
        "planned": search.planned,
        "stopped": search.stopped,
        "seconds": round(search.seconds, 3),
        "settings": {**settings(params, search.metric), "train": str(params.paths.train), **source},
        "rows": rows,
    }


def write_reports(
    search: Search, params: Params, rows: int, source: Mapping[str, str]
) -> list[Path]:
    """trials.csv, best.json and the plots (below) in paths.tune; `source`: the git commit
    and the training split's md5, which best.json records."""
    out = params.paths.tune
    storage.write_text(out / "trials.csv", trials_table(search).to_csv(index=False))
    storage.write_json(out / "best.json", summary(search, params, rows, source))
    space = params.tune.space.of(params.model.kind) or {}
    return [out / "trials.csv", out / "best.json", *write_tune_figures(search, space, out)]


def settings(params: Params, metric: str) -> dict[str, Any]:
    """How the search ran: the seed, the model kind, the tune section with scoring resolved."""
    tune = params.tune.model_dump(exclude={"space", "scoring", "dvc_experiments"})
    return {
        "seed": params.seed,
        "model.kind": params.model.kind,
        "tune.scoring": metric,
        "tune.space": params.tune.space.model_dump()[params.model.kind],
        **{f"tune.{key}": value for key, value in tune.items()},
    }


def outcome(result: Search, params: Params, names: list[str]) -> str:
    best, current = result.best, result.trials[0]
    return (
        f"tune: best trial {best.number} of {len(result.trials)}: {result.metric}"
        f" {best.mean:.4f} ± {best.std:.4f} ({shown(best.values)}), current {current.mean:.4f}"
        + (f"; stopped early: {result.stopped}" if result.stopped else "")
        + f"\ntune: {verdict(result)}"
        + f"\ntune: wrote {', '.join(REPORTS)} in {params.paths.tune}"
        + (f"\ntune: DVC experiments {', '.join(names)}: dvc exp show --only-changed" * bool(names))
    )


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
