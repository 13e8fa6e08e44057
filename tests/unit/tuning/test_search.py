"""`mlops model tune`: the search space in params.yaml, the search on the training split only, its
bounds, and the values it writes back (tests/integration/test_tune.py runs `make tune` end to
end)."""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from sklearn.model_selection import GridSearchCV
from typer.testing import CliRunner

from mlops_template import PipelineError, config
from mlops_template.cli.app import app
from mlops_template.config import Params
from mlops_template.contract import profile
from mlops_template.contract.features import model_input
from mlops_template.evaluation.scoring import metric_value
from mlops_template.io import storage
from mlops_template.stages import ingest, split, validate
from mlops_template.stages.train import build_pipeline
from mlops_template.tuning import reports, search
from tests.conftest import REPO_ROOT, repo_params_dict
from tests.support.tables import write_table

SMALL_FOREST = {"kind": "random_forest", "n_estimators": 10, "n_jobs": -1}
SMALL_SEARCH = {
    "method": "random",
    "n_trials": 3,
    "cv_folds": 3,
    "dvc_experiments": 0,
    "space": {
        "random_forest": {"n_estimators": [5, 20], "min_samples_leaf": {"low": 1, "high": 9}}
    },
}


@pytest.fixture
def prepared(workdir: Path, make_params: Callable[..., Params]) -> Callable[..., Params]:
    """Params for the tests' penguins with the split written (train and test), ready to tune."""

    def build(**overrides: Any) -> Params:
        tune_section = {**SMALL_SEARCH, **overrides.pop("tune", {})}
        make_params(model=overrides.pop("model", SMALL_FOREST), **overrides)
        path = workdir / "params.yaml"  # the tune section as given, not merged with the repo's
        raw = yaml.safe_load(path.read_text())
        raw["tune"] = tune_section
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        params = config.load_params(path)
        ingest.run(params)
        validate.run(params)
        split.run(params)
        return params

    return build


def _error(tune_section: dict[str, Any], model: dict[str, Any] | None = None) -> str:
    raw = repo_params_dict()
    raw["tune"] = tune_section
    raw["model"] = model or raw["model"]
    with pytest.raises(PipelineError) as caught:
        config.parse_params(raw)
    return str(caught.value)


def test_the_repository_space_parses_into_lists_and_ranges() -> None:
    settings = config.load_params(REPO_ROOT / "params.yaml").tune
    for kind in config.MODEL_KINDS:
        assert settings.space.of(kind), f"params.yaml: tune.space has no {kind}"
    forest = settings.space.of("random_forest")
    assert forest is not None
    assert forest["max_depth"] == (None, 4, 8, 16)
    assert isinstance(forest["min_samples_leaf"], config.Range)


def test_list_values_are_read_as_the_model_section_reads_them() -> None:
    raw = repo_params_dict()
    raw["tune"] = {"space": {"random_forest": {"max_samples": [0.5, 1]}}}
    [_, whole] = config.parse_params(raw).tune.space.of("random_forest")["max_samples"]
    assert whole == 1.0
    assert isinstance(whole, float)  # an int 1 would be one sample to scikit-learn


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        ({"random_forest": {"n_estimator": [10]}}, "tune.space.random_forest: Value error,"
         " n_estimator is not a random_forest hyperparameter the search can vary; choose from"
         " n_estimators, max_depth, min_samples_leaf, max_samples"),
        ({"random_forest": {"n_jobs": [1, 2]}}, "n_jobs is not a random_forest hyperparameter"
         " the search can vary (it does not change the model: tune.n_jobs sets it)"),
        ({"ridge": {"C": [1.0]}}, "C is not a ridge hyperparameter"),
        ({"random_forest": {"max_depth": [0, 4]}},
         "max_depth: 0: Input should be greater than or equal to 1"),
        ({"random_forest": {"max_depth": 4}}, "max_depth: 4: give a non-empty list of values"),
        ({"random_forest": {"max_depth": []}}, "max_depth: []: give a non-empty list"),
        ({"random_forest": {"min_samples_leaf": {"low": 1.5, "high": 4}}},
         "min_samples_leaf is an integer: low and high must be whole numbers"),
        ({"logistic_regression": {"C": {"low": 0, "high": 1, "log": True}}},
         "C: log: true needs low above 0, got 0"),
        ({"logistic_regression": {"C": {"low": 2, "high": 1}}},
         "C: low (2) must be below high (1)"),
        ({"logistic_regression": {"C": {"low": 1, "hi": 2}}},
         "C: high: Field required; hi: Extra inputs are not permitted"),
        ({"ridge": {"alpha": {"low": -1, "high": 1}}},
         "alpha: -1.0: Input should be greater than or equal to 0"),
        ({"gradient_boosting": {}}, "tune.space.gradient_boosting: Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_a_bad_space_is_an_error_naming_the_key(space: dict[str, Any], expected: str) -> None:
    assert expected in _error({"space": space})


def test_other_tune_settings_are_checked() -> None:
    assert "tune.n_jobs: Value error, 0 runs nothing" in _error({"n_jobs": 0})
    assert "tune.cv_folds: Input should be greater than or equal to 2" in _error({"cv_folds": 1})
    assert "tune.scoring: Input should be" in _error({"scoring": "f2"})


def test_method_grid_needs_lists_in_the_searched_space_only() -> None:
    """Switching the repository's params.yaml to method grid: one error, for model.kind's
    space, naming each of its ranges; the other kinds' ranges are left alone."""
    raw = repo_params_dict()
    raw["tune"]["method"] = "grid"
    forest = "tune: Value error, method grid needs a list of values for each hyperparameter of"
    assert _error(raw["tune"]) == (
        f"params.yaml: invalid parameters\n  {forest} space.random_forest (model.kind);"
        " min_samples_leaf: a {low, high} range needs method random"
    )
    boosting = _error(raw["tune"], model={"kind": "hist_gradient_boosting"})
    assert boosting.endswith(
        "space.hist_gradient_boosting (model.kind); learning_rate, max_leaf_nodes,"
        " min_samples_leaf, l2_regularization: a {low, high} range needs method random"
    )
    raw["tune"]["space"]["random_forest"]["min_samples_leaf"] = [1, 5]
    parsed = config.parse_params(raw).tune
    assert parsed.method == "grid"
    assert isinstance(parsed.space.of("ridge")["alpha"], config.Range)  # not searched: kept
    raw["tune"]["space"]["ridge"]["alpha"] = {"low": 1, "hi": 2}  # still checked as a space
    assert "alpha: high: Field required; hi: Extra inputs are not permitted" in _error(raw["tune"])


def test_a_grid_larger_than_the_budget_is_refused(prepared: Callable[..., Params]) -> None:
    params = prepared(
        tune={"method": "grid", "n_trials": 3, "space": {"random_forest": {
            "n_estimators": [5, 10], "max_depth": [2, 4]}}}
    )  # fmt: skip
    with pytest.raises(PipelineError, match="has 4 combinations, more than n_trials"):
        search.plan(params)


def test_the_budget_bounds_the_trials(prepared: Callable[..., Params]) -> None:
    params = prepared(tune={"n_trials": 4})
    planned = search.plan(params)
    assert len(planned) == 5  # the current model section, then at most n_trials draws
    assert planned[0] == {"n_estimators": 10, "min_samples_leaf": 1}
    assert len({repr(values) for values in planned}) == len(planned)
    grid = {"method": "grid", "n_trials": 6, "space": {"random_forest": {"n_estimators": [5, 10]}}}
    assert search.plan(prepared(tune=grid)) == [{"n_estimators": 10}, {"n_estimators": 5}]


def _search(params: Params) -> search.Search:
    return search.search(params, storage.read_parquet(params.paths.train), lambda _: None)


def test_the_same_params_give_the_same_trials(prepared: Callable[..., Params]) -> None:
    params = prepared()
    first, second = _search(params), _search(params)
    assert [(t.values, t.scores) for t in first.trials] == [
        (t.values, t.scores) for t in second.trials
    ]
    assert first.best.number == second.best.number


def test_results_do_not_depend_on_n_jobs(prepared: Callable[..., Params]) -> None:
    params = prepared(tune={"n_trials": 2})
    parallel = params.model_copy(update={"tune": params.tune.model_copy(update={"n_jobs": 2})})
    one, two = _search(params), _search(parallel)
    assert [t.scores for t in one.trials] == [t.scores for t in two.trials]


@pytest.mark.parametrize(
    "model",
    [{"kind": "hist_gradient_boosting", "max_iter": 10}, {"kind": "logistic_regression"}],
)
def test_every_fit_runs_on_one_thread(
    prepared: Callable[..., Params], monkeypatch: pytest.MonkeyPatch, model: dict[str, Any]
) -> None:
    """Gradient boosting (OpenMP) and the linear models (BLAS) are fitted with their thread
    pools at one thread, even where the caller allows four: tune.n_jobs is the parallelism."""
    from threadpoolctl import threadpool_info, threadpool_limits

    grid = {"method": "grid", "space": {"hist_gradient_boosting": {"max_iter": [5]},
                                        "logistic_regression": {"C": [0.5]}}}  # fmt: skip
    params = prepared(model=model, tune=grid)
    pools: list[dict[str, Any]] = []
    fit = search.train_stage.fit

    def recording(*args: Any) -> Any:
        pools.extend(threadpool_info())
        return fit(*args)

    monkeypatch.setattr(search.train_stage, "fit", recording)
    with threadpool_limits(limits=4):
        result = _search(params)  # tune.n_jobs 1: the fits run in this process
    assert len(result.trials) == 2
    assert {pool["user_api"] for pool in pools} >= {"openmp", "blas"}
    assert {pool["num_threads"] for pool in pools} == {1}


def test_the_scores_are_gridsearchcv_scores(prepared: Callable[..., Params]) -> None:
    """Same folds, same scorer (evaluate's metric): our loop gives GridSearchCV's numbers."""
    params = prepared(tune={"method": "grid", "space": {"random_forest": {"max_depth": [2, 6]}}})
    train, contract = storage.read_parquet(params.paths.train), params.contract
    ours = _search(params)
    single = params.model_copy(update={"model": search.trial_params(params, {}).model})

    def scorer(model: Any, features: pd.DataFrame, truth: pd.Series) -> float:
        frame = features.assign(**{contract.target.name: truth.to_numpy()})
        return metric_value("f1_macro", model, frame, contract, 0.5)

    grid = GridSearchCV(
        build_pipeline(single.model, contract, params.seed),
        {"model__max_depth": [None, 2, 6]},
        scoring=scorer,
        cv=search.folds(train, contract, 3, params.seed),
    )
    grid.fit(model_input(train, contract), train[contract.target.name].astype(str))
    results = grid.cv_results_
    theirs = {
        str(candidate["model__max_depth"]): [results[f"split{i}_test_score"][n] for i in range(3)]
        for n, candidate in enumerate(results["params"])
    }
    assert {str(t.values["max_depth"]): list(t.scores) for t in ours.trials} == theirs


def test_the_test_split_is_never_read(
    prepared: Callable[..., Params], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    params = prepared()
    params.paths.test.write_bytes(b"not a parquet file")
    params.paths.validated.unlink()
    params.paths.raw.unlink()
    read: list[Path] = []
    original = pd.read_parquet
    monkeypatch.setattr(
        pd, "read_parquet", lambda path, **kw: read.append(Path(path)) or original(path, **kw)
    )
    result = search.run(params, Path("params.yaml"))
    assert read == [params.paths.train]
    assert len(result.trials) == 4
    assert params.paths.test.read_bytes() == b"not a parquet file"
    lines = [
        line for line in capsys.readouterr().err.splitlines() if line.startswith("tune: trial")
    ]
    assert len(lines) == 4  # one progress line per trial
    assert lines[0].startswith("tune: trial 0/3 (current)  f1_macro ")


def test_a_lower_is_better_metric_is_minimised(prepared: Callable[..., Params]) -> None:
    """log_loss: a near-uniform model (tiny C) is the worst; the best is the lowest mean."""
    settings = {"method": "grid", "scoring": "log_loss",
                "space": {"logistic_regression": {"C": [0.0001, 10.0]}}}  # fmt: skip
    params = prepared(model={"kind": "logistic_regression", "C": 1.0}, tune=settings)
    result = _search(params)
    assert result.metric == "log_loss"
    assert result.best.values == {"C": 10.0}
    assert result.best.mean == min(t.mean for t in result.trials)
    assert [t.values["C"] for t in result.ranked()] == [10.0, 1.0, 0.0001]
    higher = prepared(model={"kind": "logistic_regression", "C": 1.0},
                      tune={**settings, "scoring": "accuracy"})  # fmt: skip
    accuracy = _search(higher)
    assert accuracy.best.mean == max(t.mean for t in accuracy.trials)


def test_a_regression_is_folded_by_groups_and_minimises_rmse(
    workdir: Path, prepared: Callable[..., Params]
) -> None:
    """diabetes (regression): grouped folds without strata; rmse, lower is better, by default.
    A ridge this stiff predicts about the mean: the worst of the three."""
    data, target, _ = write_table("diabetes", workdir)
    profile.run(data, target, workdir / "diabetes.yaml")
    params = prepared(
        data={"source": str(data), "contract": str(workdir / "diabetes.yaml")},
        model={"kind": "ridge", "alpha": 1.0},
        evaluate={"primary_metric": "auto"},
        tune={"method": "grid", "space": {"ridge": {"alpha": [1e6, 0.1]}}},
    )
    result = _search(params)
    assert result.metric == "rmse"
    assert result.ranked()[-1].values == {"alpha": 1e6}
    assert result.best.mean == min(t.mean for t in result.trials)
    train = storage.read_parquet(params.paths.train)
    for fit_rows, score_rows in search.folds(train, params.contract, 3, params.seed):
        assert not set(fit_rows) & set(score_rows)


def test_a_metric_of_another_task_is_named(prepared: Callable[..., Params]) -> None:
    with pytest.raises(PipelineError, match=r"tune\.scoring: 'rmse' is not a multiclass metric"):
        search.scoring_metric(prepared(tune={"scoring": "rmse"}))


def test_max_seconds_stops_the_search(prepared: Callable[..., Params]) -> None:
    # The first trial must finish within the budget on a loaded machine (under coverage
    # too); the callback's sleep then spends the rest of it.
    params = prepared(tune={"max_seconds": 3})
    train = storage.read_parquet(params.paths.train)
    result = search.search(params, train, lambda progress: time.sleep(3.1))
    assert [t.number for t in result.trials] == [0]
    assert result.stopped == "tune.max_seconds (3 s) reached"
    never = prepared(tune={"max_seconds": 1e-6})
    with pytest.raises(PipelineError, match=r"no trial finished within tune\.max_seconds"):
        _search(never)


def test_the_reports(prepared: Callable[..., Params]) -> None:
    params = prepared()
    result = search.run(params, Path("params.yaml"))
    out = params.paths.tune
    assert sorted(path.name for path in out.iterdir()) == sorted(reports.REPORTS)
    table = pd.read_csv(out / "trials.csv")
    assert list(table["trial"]) == [0, 1, 2, 3]
    assert table.loc[table["rank"] == 1, "trial"].item() == result.best.number
    best = storage.read_json(out / "best.json")
    assert best["best"]["values"] == result.best.values
    assert best["current"]["values"] == {"n_estimators": 10, "min_samples_leaf": 1}
    train = params.paths.train.read_bytes()
    assert best["settings"]["train_md5"] == hashlib.md5(train, usedforsecurity=False).hexdigest()
    assert best["settings"]["git_commit"] == "unknown"  # the test's folder is no git work tree
    assert (out / "trials.png").read_bytes()[:4] == b"\x89PNG"


PARAMS_TEXT = """\
seed: 42
model:
  # the forest
  kind: random_forest
  n_estimators: 100 # trees
  max_depth: null

evaluate:
  threshold: 0.5
"""


def test_set_model_values_changes_only_those_values() -> None:
    values = {"n_estimators": 200, "max_depth": 8, "max_samples": 0.5}
    assert config.set_model_values(PARAMS_TEXT, values) == PARAMS_TEXT.replace(
        "n_estimators: 100 # trees\n  max_depth: null\n",
        "n_estimators: 200 # trees\n  max_depth: 8\n  max_samples: 0.5\n",
    )
    tiny = config.set_model_values(PARAMS_TEXT, {"n_estimators": 1e-05})
    assert yaml.safe_load(tiny)["model"]["n_estimators"] == 1e-05  # not the string "1e-05"
    with pytest.raises(PipelineError, match="no block `model:` section"):
        config.set_model_values("model: {kind: ridge}\n", {"alpha": 2.0})


def test_apply_writes_the_best_values_and_nothing_else(
    prepared: Callable[..., Params], workdir: Path
) -> None:
    """A forest of stumps is worse on three species than one grown in full (max_depth null)."""
    grid = {"method": "grid", "space": {"random_forest": {"max_depth": [None]}}}
    params = prepared(model={**SMALL_FOREST, "max_depth": 1}, tune=grid)
    before = (workdir / "params.yaml").read_text()
    result = CliRunner().invoke(app, ["model", "tune", "--apply"])
    assert result.exit_code == 0, result.output
    after = (workdir / "params.yaml").read_text()
    assert after == before.replace("  max_depth: 1\n", "  max_depth: null\n")
    assert "-  max_depth: 1\n+  max_depth: null\n" in result.output
    assert config.load_params(workdir / "params.yaml").tune == params.tune
    assert "tune: best trial 1 beats the current values by " in result.output
    assert ": its values are proposed" in result.output
    again = CliRunner().invoke(app, ["model", "tune", "--apply"])
    assert "params.yaml already holds the proposed values" in again.output
    assert (workdir / "params.yaml").read_text() == after
    assert CliRunner().invoke(app, ["model", "tune"]).exit_code == 0  # without --apply: unchanged
    assert (workdir / "params.yaml").read_text() == after


def _diabetes_ridge(workdir: Path, prepared: Callable[..., Params], **tune_section: Any) -> Params:
    data, target, _ = write_table("diabetes", workdir)
    profile.run(data, target, workdir / "diabetes.yaml")
    return prepared(
        data={"source": str(data), "contract": str(workdir / "diabetes.yaml")},
        model={"kind": "ridge", "alpha": 1.0},
        evaluate={"primary_metric": "auto"},
        tune={"cv_folds": 5, **tune_section},
    )


def test_a_best_within_the_noise_is_not_proposed(
    prepared: Callable[..., Params], workdir: Path
) -> None:
    """Ridge on diabetes: alpha 0.985 cross-validates 0.0001 RMSE better than 1.0, far less
    than the fold differences vary. The best trial, but APPLY writes nothing, and says why."""
    _diabetes_ridge(workdir, prepared, method="grid", space={"ridge": {"alpha": [0.985]}})
    before = (workdir / "params.yaml").read_text()
    result = CliRunner().invoke(app, ["model", "tune", "--apply"])
    assert result.exit_code == 0, result.output
    assert (workdir / "params.yaml").read_text() == before
    assert "params.yaml already holds the proposed values: nothing to change" in result.output
    best = storage.read_json(workdir / "reports" / "tune" / "best.json")
    assert best["best"]["trial"] == 1
    assert best["proposed"] == {"trial": 0, "values": {"alpha": 1.0}}
    gain, error = best["gain"]["mean"], best["gain"]["standard_error"]
    assert 0 < gain < error
    assert best["verdict"] == (
        f"best trial 1 beats the current values by {gain:.6f} rmse (the mean of the paired fold"
        f" differences), not more than their standard error ({error:.6f}): within the noise,"
        " the current values are kept"
    )
    assert f"tune: {best['verdict']}" in result.output


def test_the_margin_is_the_standard_error_of_the_paired_differences() -> None:
    """Fold by fold against trial 0: a gain that varies in sign is noise, however large the
    folds' own spread; a small but consistent one is not. Lower-is-better metrics likewise."""
    current = search.Trial(0, {"C": 1.0}, (0.80, 0.90, 0.70), 0.1)
    mixed = search.Trial(1, {"C": 2.0}, (0.82, 0.87, 0.73), 0.1)  # +0.02 -0.03 +0.03
    steady = search.Trial(2, {"C": 3.0}, (0.801, 0.901, 0.701), 0.1)  # +0.001 each
    noisy = search.Search("accuracy", (current, mixed), 2, 1.0, "")
    assert noisy.best is mixed
    assert noisy.proposed is current
    mean, error = noisy.gain(mixed)
    assert mean == pytest.approx(0.02 / 3)
    assert error == pytest.approx(pd.Series([0.02, -0.03, 0.03]).std() / 3**0.5)
    assert search.Search("accuracy", (current, steady), 2, 1.0, "").proposed is steady
    lower = search.Search("rmse", (current, steady), 2, 1.0, "")
    assert lower.best is current
    assert lower.proposed is current
    assert reports.verdict(lower) == ("the current values (trial 0) score best: nothing to propose")


def test_write_model_values_checks_the_result(workdir: Path) -> None:
    path = workdir / "params.yaml"
    raw = repo_params_dict()
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(PipelineError, match="Input should be greater than or equal to 1"):
        config.write_model_values(path, {"n_estimators": 0})
    assert yaml.safe_load(path.read_text()) == raw  # nothing written
    diff = config.write_model_values(path, {"n_estimators": 300})
    assert "-  n_estimators: 100\n+  n_estimators: 300\n" in diff
    assert config.write_model_values(path, {"n_estimators": 300}) == ""


def _git(root: Path, *args: str) -> str:
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    return subprocess.run(
        ["git", *identity, *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout


def test_the_best_trials_become_dvc_experiments(workdir: Path) -> None:
    """`dvc exp save` records: params.yaml as each trial sets it, its CV score, the workspace
    left as it was (nothing else of DVC's runs: no stage, dvc.lock untouched)."""
    from dvc.repo import Repo

    (workdir / "params.yaml").write_text(PARAMS_TEXT)
    _git(workdir, "init", "-q", "-b", "main")
    Repo.init(str(workdir)).close()
    _git(workdir, "add", "-A")
    _git(workdir, "commit", "-q", "-m", "base")
    trials = tuple(
        search.Trial(number, {"n_estimators": trees}, (score, score), 0.1)
        for number, trees, score in ((0, 100, 0.8), (1, 50, 0.9), (2, 25, 0.7))
    )
    result = search.Search("f1_macro", trials, 3, 1.0, "")
    names = search.record_experiments(result, Path("params.yaml"), Path("reports/tune"), 2)
    assert names == ["tune-1", "tune-0"]
    assert _git(workdir, "status", "--porcelain") == ""
    assert (workdir / "params.yaml").read_text() == PARAMS_TEXT
    listed = _git(workdir, "for-each-ref", "--format=%(refname)", "refs/exps").split()
    refs = [ref for ref in listed if ref.rsplit("/", 1)[1].startswith("tune-")]
    assert sorted(ref.rsplit("/", 1)[1] for ref in refs) == ["tune-0", "tune-1"]
    [best] = [ref for ref in refs if ref.endswith("/tune-1")]
    saved = yaml.safe_load(_git(workdir, "show", f"{best}:params.yaml"))
    assert saved["model"]["n_estimators"] == 50
    score = yaml.safe_load(_git(workdir, "show", f"{best}:reports/tune/experiment/cv.json"))
    assert score == {"cv_f1_macro": 0.9, "cv_f1_macro_std": 0.0, "rank": 1}
