"""What a `mlops model tune` search leaves and says (tuning/search.py searches): the line per
trial, the closing summary, reports/tune/ (trials.csv, best.json, the plots) and the settings it
logs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from mlops_template.config import Params
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
    from mlops_template.tuning.figures import write_tune_figures  # matplotlib: only here

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
