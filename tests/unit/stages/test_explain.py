"""The explain stage: SHAP values on the test split for the three tasks, tree and linear
models, summed back from one-hot columns to the contract's features exactly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_template.config import Params
from mlops_template.contract import profile
from mlops_template.contract.features import model_input
from mlops_template.io import storage
from mlops_template.stages import explain, split, train
from tests.support.tables import breast_cancer, diabetes

PENGUIN_FEATURES = {"island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm"}
PENGUIN_FEATURES |= {"body_mass_g", "sex"}


def trained(params: Params, frame: pd.DataFrame) -> Params:
    train_frame, test_frame = split.split(frame, params.contract, 0.25, seed=params.seed)
    storage.write_parquet(params.paths.train, train_frame)
    storage.write_parquet(params.paths.test, test_frame)
    train.run(params)
    return params


def fork(
    workdir: Path, make_params: Callable[..., Params], frame: pd.DataFrame, target: str, **over: Any
) -> Params:
    """A fork's table and the contract init-schema writes for it."""
    data, contract = workdir / "table.csv", workdir / "table.yaml"
    frame.to_csv(data, index=False)
    profile.run(data, target, contract)
    return make_params(
        data={"source": str(data), "contract": str(contract)},
        evaluate={"primary_metric": "auto"},
        **over,
    )


def test_forest_on_the_penguins_writes_every_output(
    make_params: Callable[..., Params], penguins: pd.DataFrame
) -> None:
    params = trained(
        make_params(model={"kind": "random_forest", "n_estimators": 20}, explain={"max_rows": 40}),
        penguins,
    )
    result = explain.run(params)
    paths = params.paths
    assert storage.read_json(paths.shap_summary) == result
    assert result["explainer"] == "TreeExplainer"
    assert result["output_space"] == "probability"
    assert result["rows"] == 40
    assert set(result["mean_abs_shap"]) == PENGUIN_FEATURES
    assert set(result["per_class"]) == {"Adelie", "Chinstrap", "Gentoo"}
    assert sum(result["base_value"].values()) == pytest.approx(1.0, abs=1e-6)
    bars = storage.read_json(paths.shap_importance)["shap"]
    assert [bar["mean_abs_shap"] for bar in bars] == sorted(result["mean_abs_shap"].values())[::-1]
    assert paths.shap_plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    background = storage.read_json(paths.background)
    assert len(background["rows"]) == params.explain.background_rows
    assert set(background["rows"][0]) == PENGUIN_FEATURES


def test_one_hot_values_summed_back_are_exact(
    make_params: Callable[..., Params], penguins: pd.DataFrame
) -> None:
    """Base value plus a row's values per feature is the forest's probability, per class:
    nothing was lost summing the one-hot columns back to island and sex."""
    params = trained(make_params(model={"kind": "random_forest", "n_estimators": 10}), penguins)
    model = storage.load_verified_model(params.paths.model)
    test = storage.read_parquet(params.paths.test)
    result = explain.explain(model, test, storage.read_parquet(params.paths.train), params)
    assert result.values.shape == (len(test), 6, 3)
    proba = model.predict_proba(model_input(test, params.contract))
    assert result.base + result.values.sum(axis=1) == pytest.approx(proba, abs=1e-6)


def test_gradient_boosting_on_a_binary_fork_is_in_log_odds(
    workdir: Path, make_params: Callable[..., Params]
) -> None:
    model = {"kind": "hist_gradient_boosting", "max_iter": 20}
    params = trained(fork(workdir, make_params, breast_cancer(), "diagnosis", model=model),
                     breast_cancer())  # fmt: skip
    result = explain.run(params)
    positive = str(params.contract.positive)
    assert result["output_space"] == "log_odds"
    assert result["outputs"] == [positive]
    assert set(result["per_class"]) == {positive}
    assert len(result["mean_abs_shap"]) == 30


def test_ridge_on_a_regression_fork_explains_the_prediction(
    workdir: Path, make_params: Callable[..., Params]
) -> None:
    params = fork(
        workdir, make_params, diabetes(), "progression",
        model={"kind": "ridge"}, explain={"max_rows": 10, "background_rows": 10},
    )  # fmt: skip
    params = trained(params, diabetes())
    model = storage.load_verified_model(params.paths.model)
    test = storage.read_parquet(params.paths.test)
    result = explain.explain(model, test, storage.read_parquet(params.paths.train), params)
    assert result.explainer == "shapley.exact"
    assert result.space == "prediction"
    predicted = model.predict(model_input(result.rows, params.contract))
    assert result.base[0] + result.values[:, :, 0].sum(axis=1) == pytest.approx(predicted)
    summary = explain.run(params)
    assert "per_class" not in summary
    assert summary["outputs"] == ["progression"]


def test_logistic_regression_on_the_penguins_is_model_agnostic(
    make_params: Callable[..., Params], penguins: pd.DataFrame
) -> None:
    params = make_params(
        model={"kind": "logistic_regression"}, explain={"max_rows": 10, "background_rows": 10}
    )
    result = explain.run(trained(params, penguins))
    assert result["explainer"] == "shapley.exact"
    assert result["output_space"] == "probability"
    assert np.isclose(sum(result["base_value"].values()), 1.0)


def test_the_multiclass_image_shows_each_rows_predicted_class(contract: Any) -> None:
    """The classes' probability values sum to zero per row: the image plots the predicted
    class's, not an average that would be zero."""
    values = np.zeros((2, 6, 3))
    values[0, 0] = [0.3, -0.1, -0.2]  # row 0 leans to class 0
    values[1, 1] = [-0.3, -0.1, 0.4]  # row 1 to class 2
    rows = pd.DataFrame({name: [0.0, 1.0] for name in contract.feature_names()})
    explanation = explain.Explanation(
        values, np.full(3, 1 / 3), ["Adelie", "Chinstrap", "Gentoo"], "TreeExplainer",
        "probability", rows,
    )  # fmt: skip
    plotted, which = explain.plotted_values(explanation, contract)
    assert which == "each row's predicted class"
    assert plotted[0, 0] == 0.3
    assert plotted[1, 1] == 0.4


@pytest.mark.slow  # a real MLflow store, and the train stage logging its model: ~40 s
def test_mlflow_gets_the_mean_shap_and_the_files(
    make_params: Callable[..., Params],
    penguins: pd.DataFrame,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Logged to the train stage's run (found by the model's sha256), as evaluate logs."""
    import mlflow

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    model = {"kind": "random_forest", "n_estimators": 10}
    params = trained(make_params(model=model, tracking={"enabled": True}), penguins)
    explain.run(params)
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("mlops-template").experiment_id])
    metrics = run.data.metrics
    summary = storage.read_json(params.paths.shap_summary)
    assert metrics["shap_bill_length_mm"] == summary["mean_abs_shap"]["bill_length_mm"]
    assert metrics["shap_island_Gentoo"] == summary["per_class"]["Gentoo"]["island"]
    files = {item.path for item in client.list_artifacts(run.info.run_id, "explanation")}
    assert files == {f"explanation/{name}" for name in
                     ("shap.json", "shap_importance.json", "shap_summary.png")}  # fmt: skip
