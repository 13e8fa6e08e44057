"""The pipeline on a table of each task, run in-process as `dvc repro` runs it: the tests'
penguins (multiclass), scikit-learn's breast cancer (binary) and diabetes (regression), each
with the contract `mlops contract init` writes for it. Small forests keep the file fast."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from mlops_template import PipelineError
from mlops_template.config import Params
from mlops_template.contract import profile
from mlops_template.io import storage
from mlops_template.release.registry import decide
from mlops_template.stages import evaluate, ingest, split, train, validate
from tests.conftest import DEFAULT_CONTRACT, DEFAULT_DATA
from tests.support.tables import breast_cancer, diabetes

SMALL_FOREST = {"kind": "random_forest", "n_estimators": 20, "n_jobs": 1}
FAST_EVALUATE = {"primary_metric": "auto", "importance_repeats": 1}

BINARY_METRICS = {"roc_auc", "average_precision", "f1", "precision", "recall", "accuracy"}
BINARY_METRICS |= {"log_loss"}
MULTICLASS_METRICS = {"f1_macro", "accuracy", "log_loss", "roc_auc_ovr"}
REGRESSION_METRICS = {"rmse", "mae", "r2"}
CLASSIFICATION_PLOTS = ("confusion", "roc", "precision_recall", "feature_importance")
REGRESSION_PLOTS = ("predicted_actual", "residuals", "feature_importance")
ALL_PLOTS = {*CLASSIFICATION_PLOTS, *REGRESSION_PLOTS}


@pytest.fixture
def bring(workdir: Path, make_params: Callable[..., Params]) -> Callable[..., Params]:
    """A user's table: write it to the work directory, profile its contract with init-schema,
    and return the params pointing at both (a 20-tree forest, primary metric auto)."""

    def build(
        frame: pd.DataFrame, target: str, name: str, options: dict[str, Any] | None = None, **over
    ) -> Params:
        data = workdir / f"{name}.csv"
        frame.to_csv(data, index=False)
        contract = workdir / f"{name}.yaml"
        profile.run(data, target, contract, **(options or {}))
        return params_for(make_params, data, contract, **over)

    return build


def params_for(
    make_params: Callable[..., Params], data: Path, contract: Path, **overrides: Any
) -> Params:
    return make_params(
        data={"source": str(data), "contract": str(contract)},
        model=overrides.pop("model", SMALL_FOREST),
        evaluate={**FAST_EVALUATE, **overrides.pop("evaluate", {})},
        **overrides,
    )


def run_pipeline(params: Params) -> dict[str, Any]:
    """The dvc.yaml stages in order; returns the evaluate stage's metrics."""
    ingest.run(params)
    validate.run(params)
    split.run(params)
    train.run(params)
    return evaluate.run(params)


def plots_written(params: Params) -> set[str]:
    return {name for name in ALL_PLOTS if getattr(params.paths, name).is_file()}


def splits(params: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    return storage.read_parquet(params.paths.train), storage.read_parquet(params.paths.test)


def test_binary_breast_cancer(
    bring: Callable[..., Params], make_params: Callable[..., Params], workdir: Path
) -> None:
    params = bring(breast_cancer(), "diagnosis", "breast_cancer")
    assert params.contract.task == "binary"
    assert params.contract.positive == "malignant"
    assert params.primary_metric == "roc_auc"
    metrics = run_pipeline(params)

    assert set(metrics) >= BINARY_METRICS
    assert "f1_macro" not in metrics
    assert metrics["threshold"] == 0.5
    assert metrics["roc_auc"] > 0.95
    assert metrics["beats_baseline"] is True
    assert storage.read_json(params.paths.metrics) == metrics

    # the baseline always answers the training split's majority class (benign)
    train_frame, test_frame = splits(params)
    majority = train_frame["diagnosis"].mode()[0]
    assert majority == "benign"
    malignant = (test_frame["diagnosis"] == "malignant").mean()
    baseline = metrics["baseline"]
    assert baseline["accuracy"] == pytest.approx(1 - malignant, abs=1e-6)
    assert baseline["recall"] == baseline["precision"] == baseline["f1"] == 0.0
    assert baseline["roc_auc"] == 0.5
    assert baseline["average_precision"] == pytest.approx(malignant, abs=1e-6)
    assert metrics["roc_auc"] > baseline["roc_auc"]

    assert plots_written(params) == set(CLASSIFICATION_PLOTS)
    roc = storage.read_json(params.paths.roc)["roc"]
    assert {row["class"] for row in roc} == {"malignant"}  # the positive class only

    # a stricter threshold predicts malignant less often: recall falls, ranking is unchanged
    strict = params_for(
        make_params,
        workdir / "breast_cancer.csv",
        workdir / "breast_cancer.yaml",
        evaluate={"threshold": 0.99},
    )
    model = storage.load_verified_model(strict.paths.model)
    stricter = evaluate.evaluate(strict, model, train_frame, test_frame)
    assert stricter["threshold"] == 0.99
    assert stricter["recall"] < metrics["recall"]
    assert stricter["precision"] >= metrics["precision"]
    assert stricter["roc_auc"] == metrics["roc_auc"]
    assert stricter["baseline"] == baseline  # the majority class whatever the threshold


def test_multiclass_penguins(make_params: Callable[..., Params]) -> None:
    params = params_for(make_params, DEFAULT_DATA, DEFAULT_CONTRACT)
    assert params.contract.task == "multiclass"
    assert params.primary_metric == "f1_macro"
    metrics = run_pipeline(params)

    assert set(metrics) >= MULTICLASS_METRICS
    assert set(metrics["per_class"]) == {"Adelie", "Chinstrap", "Gentoo"}
    assert "threshold" not in metrics
    assert "roc_auc" not in metrics
    assert metrics["f1_macro"] > 0.9
    assert metrics["beats_baseline"] is True

    train_frame, test_frame = splits(params)
    majority = train_frame["species"].mode()[0]
    assert majority == "Adelie"
    always = np.full(len(test_frame), majority)
    baseline = metrics["baseline"]
    assert baseline["accuracy"] == pytest.approx(
        (test_frame["species"] == majority).mean(), abs=1e-6
    )
    expected_f1 = f1_score(test_frame["species"], always, average="macro", zero_division=0)
    assert baseline["f1_macro"] == pytest.approx(expected_f1, abs=1e-6)
    assert baseline["roc_auc_ovr"] == 0.5

    assert plots_written(params) == set(CLASSIFICATION_PLOTS)
    roc = storage.read_json(params.paths.roc)["roc"]
    assert {row["class"] for row in roc} == {"Adelie", "Chinstrap", "Gentoo"}


def test_regression_diabetes(bring: Callable[..., Params]) -> None:
    params = bring(diabetes(), "progression", "diabetes")
    assert params.contract.task == "regression"
    assert params.primary_metric == "rmse"
    metrics = run_pipeline(params)

    assert set(metrics) == {*REGRESSION_METRICS, "test_rows", "baseline", "beats_baseline"}
    assert metrics["beats_baseline"] is True
    assert metrics["r2"] > 0.2

    # the baseline predicts the training split's mean
    train_frame, test_frame = splits(params)
    actual = test_frame["progression"].to_numpy(float)
    errors = actual - train_frame["progression"].mean()
    baseline = metrics["baseline"]
    assert baseline["rmse"] == pytest.approx(np.sqrt(np.mean(errors**2)), abs=1e-5)
    assert baseline["mae"] == pytest.approx(np.mean(np.abs(errors)), abs=1e-5)
    spread = np.sum((actual - actual.mean()) ** 2)
    assert baseline["r2"] == pytest.approx(1 - np.sum(errors**2) / spread, abs=1e-6)
    assert baseline["r2"] <= 0.0
    assert metrics["rmse"] < baseline["rmse"]

    assert plots_written(params) == set(REGRESSION_PLOTS)
    points = storage.read_json(params.paths.predicted_actual)["predicted_actual"]
    assert len(points) == metrics["test_rows"] == len(test_frame)
    assert set(points[0]) == {"actual", "predicted"}
    residuals = storage.read_json(params.paths.residuals)["residuals"]
    assert all(set(row) == {"predicted", "residual"} for row in residuals)
    reference = storage.read_json(params.paths.reference)
    assert reference["task"] == "regression"
    assert reference["target_mean"] == pytest.approx(train_frame["progression"].mean())


def test_a_model_of_noise_does_not_beat_its_baseline_and_the_gate_refuses_it(
    bring: Callable[..., Params],
) -> None:
    """The diabetes features with a target drawn independently of them: nothing to learn. One
    fully grown tree answers some training row's target, about twice as far off (in squared
    error) as the training mean; a larger forest averages towards that mean and could tie it
    or beat it by chance."""
    frame = diabetes()
    frame["progression"] = np.random.default_rng(0).normal(150, 50, len(frame)).round(1)
    one_tree = {"kind": "random_forest", "n_estimators": 1, "n_jobs": 1}
    params = bring(frame, "progression", "noise", model=one_tree)
    metrics = run_pipeline(params)
    assert metrics["beats_baseline"] is False
    assert metrics["rmse"] > metrics["baseline"]["rmse"]

    champion = {"rmse": 99.0, "mae": 80.0, "r2": -1.0}  # even a worse champion is kept
    decision = decide(metrics, champion, params)
    assert not decision.promoted
    assert decision.reason.startswith("does not beat its baseline on rmse")
    assert f"rmse {metrics['rmse']:.4f} vs {metrics['baseline']['rmse']:.4f}" in decision.reason


def test_a_classifier_below_the_majority_accuracy_does_not_beat_it(
    bring: Callable[..., Params],
) -> None:
    """The issue's case: an imbalanced binary target the features do not predict, judged on
    accuracy: always answering the majority class scores better than the model."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(400, 5)), columns=[f"x{i}" for i in range(5)])
    frame["churned"] = np.where(rng.random(400) < 0.15, "yes", "no")
    params = bring(frame, "churned", "churn", evaluate={"primary_metric": "accuracy"})
    assert params.contract.positive == "yes"
    metrics = run_pipeline(params)
    assert metrics["beats_baseline"] is False
    assert metrics["accuracy"] <= metrics["baseline"]["accuracy"]
    decision = decide(metrics, dict(metrics), params)
    assert not decision.promoted
    assert decision.reason.startswith("does not beat its baseline on accuracy")


def test_a_classification_metric_on_a_regression_contract_is_a_clear_error(
    bring: Callable[..., Params],
) -> None:
    params = bring(diabetes(), "progression", "diabetes", evaluate={"primary_metric": "f1_macro"})
    ingest.run(params)
    with pytest.raises(
        PipelineError,
        match=r"evaluate.primary_metric: 'f1_macro' is not a regression metric;"
        r" choose auto or one of rmse, mae, r2",
    ):
        validate.run(params)
    ingest.run(params)
    with pytest.raises(PipelineError):
        validate.run(params)
    assert not params.paths.validated.exists()


@pytest.mark.parametrize(
    ("table", "model", "message"),
    [
        (
            "penguins",
            {"kind": "ridge"},
            "model.kind: ridge does not do multiclass",
        ),
        (
            "diabetes",
            {"kind": "logistic_regression"},
            "model.kind: logistic_regression does not do regression",
        ),
    ],
)
def test_a_model_kind_of_the_other_task_is_a_clear_error(
    bring: Callable[..., Params],
    make_params: Callable[..., Params],
    table: str,
    model: dict[str, Any],
    message: str,
) -> None:
    if table == "penguins":
        params = params_for(make_params, DEFAULT_DATA, DEFAULT_CONTRACT, model=model)
    else:
        params = bring(diabetes(), "progression", "diabetes", model=model)
    # Caught when the contract is read (preflight), before any stage runs.
    with pytest.raises(PipelineError) as caught:
        _ = params.contract
    assert str(caught.value).startswith(message)
    assert str(caught.value).endswith(
        "choose random_forest, hist_gradient_boosting or "
        + ("logistic_regression" if table == "penguins" else "ridge")
    )
    ingest.run(params)
    with pytest.raises(PipelineError):
        validate.run(params)
    assert not params.paths.validated.exists()


def test_ridge_fits_a_regression(bring: Callable[..., Params]) -> None:
    params = bring(diabetes(), "progression", "diabetes", model={"kind": "ridge", "alpha": 1.0})
    metrics = run_pipeline(params)
    assert metrics["beats_baseline"] is True
    assert metrics["r2"] > 0.3
