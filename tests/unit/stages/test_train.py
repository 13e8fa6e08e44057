from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from mlops_template import PipelineError
from mlops_template.config import Params, parse_params
from mlops_template.io import storage
from mlops_template.stages import split, train
from tests.conftest import repo_params_dict


@pytest.fixture
def split_data(params: Params, penguins: pd.DataFrame) -> Params:
    train_frame, test_frame = split.split(penguins, params.contract, 0.25, seed=params.seed)
    storage.write_parquet(params.paths.train, train_frame)
    storage.write_parquet(params.paths.test, test_frame)
    return params


@pytest.mark.parametrize(
    "model",
    [
        {"kind": "random_forest", "n_estimators": 20},
        {"kind": "hist_gradient_boosting", "max_iter": 20},
        {"kind": "logistic_regression"},
    ],
)
def test_each_model_kind_trains_and_predicts_probabilities(
    make_params: Callable[..., Params], penguins: pd.DataFrame, model: dict
) -> None:
    params = make_params(model=model)
    train_frame, test_frame = split.split(penguins, params.contract, 0.25, seed=params.seed)
    pipeline = train.fit(train_frame, params)
    features = test_frame[params.contract.feature_names()]
    proba = pipeline.predict_proba(features)
    assert proba.shape == (len(test_frame), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    accuracy = (pipeline.predict(features) == test_frame["species"]).mean()
    assert accuracy > 0.9


def test_model_handles_missing_values_and_unseen_categories(
    params: Params, penguins: pd.DataFrame
) -> None:
    pipeline = train.fit(penguins.dropna(), params)
    odd = penguins[params.contract.feature_names()].head(3).astype(object)
    odd.loc[0, "bill_length_mm"] = np.nan
    odd.loc[1, "island"] = "Atlantis"
    odd.loc[2, "sex"] = None
    assert pipeline.predict_proba(odd).shape == (3, 3)


def test_run_writes_model_with_its_sha256(split_data: Params) -> None:
    params = split_data
    train.run(params)
    sidecar = storage.sha256_sidecar(params.paths.model).read_text()
    assert sidecar == f"{storage.sha256_file(params.paths.model)}  model.joblib\n"
    timing = storage.read_json(params.paths.train_timing)
    assert timing["train_rows"] == 258
    assert timing["model_bytes"] == params.paths.model.stat().st_size
    model = storage.load_verified_model(params.paths.model)
    assert list(model.classes_) == ["Adelie", "Chinstrap", "Gentoo"]


def test_training_is_deterministic(split_data: Params) -> None:
    train.run(split_data)
    first = split_data.paths.model.read_bytes()
    train.run(split_data)
    assert split_data.paths.model.read_bytes() == first


def test_tampered_model_is_refused(split_data: Params) -> None:
    train.run(split_data)
    with split_data.paths.model.open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(PipelineError, match="does not match the recorded"):
        storage.load_verified_model(split_data.paths.model)


def test_reference_profile_holds_class_shares_and_missing_rates(
    params: Params, penguins: pd.DataFrame
) -> None:
    profile = train.reference_profile(penguins, params.contract)
    assert profile["task"] == "multiclass"
    assert profile["rows"] == 344
    assert profile["class_shares"] == pytest.approx(
        {"Adelie": 152 / 344, "Chinstrap": 68 / 344, "Gentoo": 124 / 344}, abs=1e-6
    )
    assert set(profile["missing_rate"]) == set(params.contract.feature_names())
    assert profile["missing_rate"]["sex"] == pytest.approx(11 / 344, abs=1e-6)


@pytest.mark.parametrize(
    ("kind", "regression", "message"),
    [
        ("ridge", False, "ridge does not do classification"),
        ("logistic_regression", True, "logistic_regression does not do regression"),
    ],
)
def test_a_model_kind_of_the_wrong_task_is_a_clear_error(
    kind: str, regression: bool, message: str
) -> None:
    settings = parse_params({**repo_params_dict(), "model": {"kind": kind}}).model
    with pytest.raises(PipelineError, match=message):
        train.build_estimator(settings, seed=0, regression=regression)
