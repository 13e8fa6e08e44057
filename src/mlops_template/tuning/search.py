"""`mlops model tune` (make tune): a bounded, seeded hyperparameter search on the training split.

Why it is built this way (more in docs/tuning.md):
- Candidates come from scikit-learn's ParameterGrid / ParameterSampler, which GridSearchCV and
  RandomizedSearchCV draw from, seeded with `seed`. Optuna's TPE did no better here (measured).
- A candidate is a `model:` section, validated by config/, fitted by the train stage's `fit`
  and scored by `scoring.metric_value` (as evaluate scores): what `make run` trains after
  `make tune APPLY=1`.
  Trial 0 is the current section, so APPLY never writes values that cross-validate worse,
  nor values better by less than the noise of the folds (Search.proposed).
- Only `paths.train` is read. Folds keep identical feature rows together, as the split does.
- Every fit runs on one thread (forests: n_jobs 1; OpenMP and BLAS: threadpoolctl), so the
  only parallelism is tune.n_jobs processes, and no fit competes with another for the cores.
- The loop is ours for what GridSearchCV lacks: a time bound, a line per trial, an MLflow child
  run per trial as it finishes. Inside, the same fit-and-score per fold (the tests compare the
  scores with GridSearchCV's) and the same joblib parallelism over (candidate, fold) pairs.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn import model_selection
from sklearn.utils import check_random_state
from threadpoolctl import threadpool_limits

from mlops_template import PipelineError, config
from mlops_template.config import Choices, Params, Range
from mlops_template.contract import Contract
from mlops_template.contract.metrics import LOWER_IS_BETTER, TASK_METRICS
from mlops_template.evaluation.scoring import metric_value
from mlops_template.io import storage, tracking
from mlops_template.stages import train as train_stage
from mlops_template.stages.split import feature_groups
from mlops_template.tuning import reports
from mlops_template.tuning.trials import Search, Trial

log = logging.getLogger(__name__)


Fold = tuple[np.ndarray, np.ndarray]  # rows to fit on, rows to score


def scoring_metric(params: Params) -> str:
    """tune.scoring, `auto` being evaluate.primary_metric as evaluate resolves it."""
    task, scoring = params.contract.task, params.tune.scoring
    if scoring != "auto" and scoring not in TASK_METRICS[task]:
        raise PipelineError(
            f"tune.scoring: {scoring!r} is not a {task} metric; choose auto"
            f" ({params.primary_metric}) or one of {', '.join(TASK_METRICS[task])}"
        )
    return params.primary_metric if scoring == "auto" else scoring


@dataclass(frozen=True)
class _Draw:
    """A Range as ParameterSampler draws from it (`rvs`). Floats keep 3 significant digits,
    finer than CV noise: the value evaluated is the value a params.yaml diff shows."""

    spec: Range
    integer: bool

    def rvs(self, random_state: Any = None) -> int | float:
        rng = check_random_state(random_state)
        low, high = self.spec.low, self.spec.high + self.integer  # integers: [low, high + 1)
        value = (
            math.exp(rng.uniform(math.log(low), math.log(high)))
            if self.spec.log
            else rng.uniform(low, high)
        )
        if self.integer:
            return min(math.floor(value), int(self.spec.high))
        return float(f"{value:.3g}")


def candidates(
    settings: config.TuneSettings, kind: str, space: dict[str, Choices], seed: int
) -> list[dict[str, Any]]:
    """The values to try, in the order drawn: at most tune.n_trials of them."""
    if settings.method == "random":
        dists = {
            name: _Draw(choices, config.number_type(kind, name) is int)
            if isinstance(choices, Range)
            else choices
            for name, choices in space.items()
        }
        with warnings.catch_warnings():  # a small all-list space: every combination, once
            warnings.simplefilter("ignore", UserWarning)
            sampler = model_selection.ParameterSampler(dists, settings.n_trials, random_state=seed)
            return list(sampler)
    grid = list(model_selection.ParameterGrid(space))
    if len(grid) > settings.n_trials:
        raise PipelineError(
            f"tune.n_trials: the grid in tune.space.{kind} has {len(grid)} combinations, more"
            f" than n_trials ({settings.n_trials}): raise n_trials, shorten the lists, or use"
            " method: random"
        )
    return grid


def trial_params(params: Params, values: Mapping[str, Any]) -> Params:
    """params with these model values, validated as params.yaml's `model:` would be. Forests
    run on one thread (score_fold limits the other kinds): the search parallelises over fits
    instead (tune.n_jobs)."""
    model = {**params.model.model_dump(), **values}
    if "n_jobs" in model:
        model["n_jobs"] = 1
    return params.model_copy(update={"model": type(params.model).model_validate(model)})


def folds(train: pd.DataFrame, contract: Contract, k: int, seed: int) -> list[Fold]:
    """k seeded folds of the training split; identical feature rows stay in one fold."""
    groups = feature_groups(train, contract.feature_names())
    distinct = int(groups.max()) + 1 if len(groups) else 0
    if distinct < k:
        raise PipelineError(
            f"tune.cv_folds: {k} folds need {k} distinct feature rows; the training split"
            f" has {distinct}"
        )
    if contract.is_classification:
        labels = train[contract.target.name].astype(str)
        stratified = model_selection.StratifiedGroupKFold(k, shuffle=True, random_state=seed)
        return list(stratified.split(train, labels, groups))
    grouped = model_selection.GroupKFold(k, shuffle=True, random_state=seed)
    return list(grouped.split(train, groups=groups))


def score_fold(trial: Params, train: pd.DataFrame, fold: Fold, metric: str) -> tuple[float, float]:
    """Fit as the train stage does on one side of the fold, score as evaluate does the other.
    On one thread: OpenMP (gradient boosting) and BLAS (linear models) would otherwise start a
    thread per core in every tune.n_jobs process, and compete with them and each other."""
    fit_rows, score_rows = fold
    started = time.perf_counter()
    with threadpool_limits(limits=1):
        model = train_stage.fit(train.iloc[fit_rows], trial)
        threshold = trial.evaluate.threshold
        score = metric_value(metric, model, train.iloc[score_rows], trial.contract, threshold)
    return score, time.perf_counter() - started


def plan(params: Params) -> list[dict[str, Any]]:
    """The current model section's values (trial 0), then the candidates."""
    kind, settings = params.model.kind, params.tune
    space = settings.space.of(kind)
    if not space:
        raise PipelineError(f"tune.space has no {kind} entry (model.kind): nothing to search")
    current = {name: getattr(params.model, name) for name in space}
    unique = {repr(current): current}  # in the space's order, each combination once
    for values in candidates(settings, kind, space, params.seed):
        ordered = {name: values[name] for name in space}
        unique.setdefault(repr(ordered), ordered)
    return list(unique.values())


def search(params: Params, train: pd.DataFrame, on_trial: Callable[[Search], None]) -> Search:
    """Cross-validate every planned trial, stopping at tune.max_seconds; `on_trial(the search
    so far)` as each one finishes, in order."""
    settings, metric = params.tune, scoring_metric(params)
    trials_values = plan(params)
    splits = folds(train, params.contract, settings.cv_folds, params.seed)
    tasks = (
        delayed(score_fold)(trial_params(params, values), train, fold, metric)
        for values in trials_values
        for fold in splits
    )
    started, done, pending, stopped = time.perf_counter(), list[Trial](), [], ""
    results = Parallel(n_jobs=settings.n_jobs, return_as="generator")(tasks)
    try:
        for result in results:
            pending.append(result)
            elapsed = time.perf_counter() - started
            if len(pending) == len(splits):
                scores, fold_seconds = zip(*pending, strict=True)
                done.append(Trial(len(done), trials_values[len(done)], scores, sum(fold_seconds)))
                pending = []
                on_trial(Search(metric, tuple(done), len(trials_values), elapsed, ""))
            if len(done) < len(trials_values) and elapsed > settings.max_seconds:
                stopped = f"tune.max_seconds ({settings.max_seconds:g} s) reached"
                break
    finally:
        results.close()  # cancels what is queued when stopped early
    if not done:
        raise PipelineError(f"no trial finished within tune.max_seconds ({settings.max_seconds:g})")
    seconds = time.perf_counter() - started
    return Search(metric, tuple(done), len(trials_values), seconds, stopped)


def record_experiments(search: Search, params_path: Path, out: Path, limit: int) -> list[str]:
    """The best `limit` trials as DVC experiments tune-<trial> (`dvc exp save`): the workspace
    with the trial's values in params.yaml and its CV score as a metric declared in
    out/experiment/dvc.yaml, which only the experiment commits hold. Nothing is trained and
    dvc.lock is untouched (why not `dvc exp run`: docs/tuning.md). The workspace is restored."""
    if limit == 0:
        return []
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        repo = Repo(".")
    except DvcException as error:
        log.warning("trials not saved as DVC experiments: %s", error)
        return []
    if not Path(repo.root_dir).resolve() == Path.cwd().resolve() == params_path.resolve().parent:
        log.warning("trials not saved as DVC experiments: run from the DVC project's root")
        repo.close()
        return []
    original, folder, names = params_path.read_bytes(), out / "experiment", []
    metric, dvc_log = f"cv_{search.metric}", logging.getLogger("dvc")
    level = dvc_log.level
    dvc_log.setLevel(logging.ERROR)  # it warns of every untracked file while saving: noise
    try:
        for rank, trial in enumerate(search.ranked()[:limit], start=1):
            text = config.set_model_values(original.decode(), trial.values)
            storage.write_text(params_path, text)
            score = {metric: round(trial.mean, 6), f"{metric}_std": round(trial.std, 6)}
            storage.write_json(folder / "cv.json", {**score, "rank": rank})
            storage.write_text(folder / "dvc.yaml", "metrics:\n  - cv.json\n")
            repo.experiments.save(
                targets=[str(folder / "dvc.yaml")],  # no stage: nothing cached, dvc.lock kept
                name=f"tune-{trial.number}",
                force=True,  # a new search replaces the last one's trial of that number
                include_untracked=[str(folder)],
                message=f"mlops model tune: trial {trial.number}, {metric} {trial.mean:.4f}",
            )
            names.append(f"tune-{trial.number}")
    except DvcException as error:
        log.warning("saving DVC experiments stopped: %s", error)
    finally:
        dvc_log.setLevel(level)
        storage.write_bytes(params_path, original)
        shutil.rmtree(folder, ignore_errors=True)
        repo.close()
    return names


def run(params: Params, params_path: Path = config.DEFAULT_PARAMS, apply: bool = False) -> Search:
    """Search, then write reports/tune/, an MLflow run with a child run per trial and the DVC
    experiments; with `apply`, the proposed values (Search.proposed) into params_path's
    `model:` section."""
    if not params.paths.train.is_file():  # storage.read_parquet's message blames the previous stage
        raise PipelineError(f"{params.paths.train} not found: `make tune` runs `dvc repro split`")
    train, metric = storage.read_parquet(params.paths.train), scoring_metric(params)
    direction = "lower" if metric in LOWER_IS_BETTER else "higher"
    print(
        f"tune: {params.tune.method} search over {params.model.kind}, {params.tune.cv_folds}-fold"
        f" CV on the {len(train)} rows of {params.paths.train}; {metric}, {direction} is better",
        file=sys.stderr,
    )
    source = {
        "git_commit": tracking.git_commit(),
        "train_md5": storage.md5_file(params.paths.train),
    }
    with tracking.tracker(params.tracking, run_name="tune") as tracker:
        logged = reports.settings(params, metric)
        tracker.log_params({**logged, "tune.space": json.dumps(logged["tune.space"])})
        tracker.set_tags(source)  # which code and which training split (dvc.lock's md5)

        def on_trial(progress: Search) -> None:
            print(reports.progress_line(progress), file=sys.stderr, flush=True)
            trial = progress.trials[-1]
            scores = {f"cv_{metric}": trial.mean, f"cv_{metric}_std": trial.std}
            values = {f"model.{name}": value for name, value in trial.values.items()}
            tracker.log_child(f"trial-{trial.number}", values, {**scores, "seconds": trial.seconds})

        result = search(params, train, on_trial)
        metrics, tags = reports.parent_run(result)
        tracker.log_metrics(metrics)
        tracker.set_tags(tags)
        for path in reports.write_reports(result, params, len(train), source):
            tracker.log_artifact(path, "tune")
    names = record_experiments(result, params_path, params.paths.tune, params.tune.dvc_experiments)
    print(reports.outcome(result, params, names))
    if apply:
        diff = config.write_model_values(params_path, result.proposed.values)
        print(diff or f"{params_path} already holds the proposed values: nothing to change")
    return result
