"""Train and evaluate against a real MLflow tracking server, then read the run back."""

from __future__ import annotations

from collections.abc import Callable

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from mlops_template.config import Params
from mlops_template.io import storage, tracking
from mlops_template.stages import evaluate, split, train

pytestmark = pytest.mark.slow


@pytest.fixture
def tracked_params(
    make_params: Callable[..., Params],
    mlflow_server: str,
    monkeypatch: pytest.MonkeyPatch,
    penguins: pd.DataFrame,
) -> Params:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    params = make_params(
        tracking={"enabled": True, "experiment": "server-test", "on_unreachable": "fail"},
        model={"kind": "random_forest", "n_estimators": 30},
    )
    train_frame, test_frame = split.split(
        penguins, params.contract, params.split.test_size, params.seed
    )
    storage.write_parquet(params.paths.train, train_frame)
    storage.write_parquet(params.paths.test, test_frame)
    return params


def test_train_and_evaluate_log_one_run_to_the_server(
    tracked_params: Params, mlflow_server: str
) -> None:
    train.run(tracked_params)
    metrics = evaluate.run(tracked_params)

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("server-test")
    assert experiment is not None
    sha256 = storage.read_recorded_sha256(tracked_params.paths.model)
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.{tracking.MODEL_SHA_TAG} = '{sha256}'"
    )
    assert len(runs) == 1, "evaluate must join the run that trained the same model"
    run = runs[0]

    assert run.data.params["model.kind"] == "random_forest"
    assert run.data.params["model.n_estimators"] == "30"
    assert run.data.params["seed"] == str(tracked_params.seed)
    assert run.data.metrics["train_rows"] == 258
    assert run.data.metrics["test_accuracy"] == pytest.approx(metrics["accuracy"])
    assert run.data.metrics["test_f1_macro"] == pytest.approx(metrics["f1_macro"])
    assert run.data.metrics["test_recall_Gentoo"] == pytest.approx(
        metrics["per_class"]["Gentoo"]["recall"]
    )

    artifacts = {item.path for item in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/confusion_matrix.png" in artifacts
    assert "evaluation/metrics.json" in artifacts

    # The logged model has a signature and input example, and predicts like ours.
    mlflow.set_tracking_uri(mlflow_server)
    logged = client.search_logged_models([experiment.experiment_id])
    assert len(logged) == 1
    model_info = mlflow.models.get_model_info(f"models:/{logged[0].model_id}")
    assert model_info.signature is not None
    features = tracked_params.contract.feature_names()
    assert [spec.name for spec in model_info.signature.inputs] == features
    pyfunc = mlflow.pyfunc.load_model(f"models:/{logged[0].model_id}")
    rows = storage.read_parquet(tracked_params.paths.test)[features].head(20)
    ours = storage.load_verified_model(tracked_params.paths.model).predict(rows)
    assert list(pyfunc.predict(rows)) == list(ours)
