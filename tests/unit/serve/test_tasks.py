"""The service for each task, as a client sees it: binary (breast cancer, a threshold on the
positive class) and regression (diabetes, a number), with contracts profiled from
scikit-learn's embedded tables as a fork's would be."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from mlops_template import PipelineError
from mlops_template.contract import ColumnSpec, Contract
from mlops_template.contract.metrics import decide
from mlops_template.serve.__main__ import main
from mlops_template.serve.app import ServiceState
from mlops_template.serve.model import ServedModel
from tests.support.tasks import TaskModel, save_model
from tests.unit.serve.conftest import service_params_file, wait_ready

Client = Callable[..., TestClient]


def gauge(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_binary_answers_a_class_and_both_probabilities(
    make_client: Client, binary_task: TaskModel
) -> None:
    client = make_client(task=binary_task)
    wait_ready(client)
    body = client.post("/predict", json=binary_task.contract.example).json()
    assert body["prediction"] in {"malignant", "benign"}
    assert set(body["probabilities"]) == {"malignant", "benign"}
    assert sum(body["probabilities"].values()) == pytest.approx(1.0)


def test_binary_honours_the_threshold_on_the_positive_class(
    make_client: Client, binary_task: TaskModel
) -> None:
    model = ServedModel.load(binary_task.onnx_path, contract=binary_task.contract)
    # A record the model is unsure about: its malignant probability strictly between 0 and 1.
    for index in range(len(binary_task.frame)):
        record = binary_task.record(index)
        p = float(model.score([record])[0][model.classes.index("malignant")])
        if 0.1 < p < 0.9:
            break
    else:
        pytest.fail("no uncertain record")
    below = make_client(task=binary_task, threshold=p - 0.05)
    above = make_client(task=binary_task, threshold=p + 0.05)
    wait_ready(below)
    wait_ready(above)
    assert below.post("/predict", json=record).json()["prediction"] == "malignant"
    answer = above.post("/predict", json=record).json()
    assert answer["prediction"] == "benign"
    assert answer["probabilities"]["malignant"] == pytest.approx(p)  # still returned


def test_binary_openapi_and_description_come_from_the_contract(
    make_client: Client, binary_task: TaskModel
) -> None:
    spec = make_client(task=binary_task).get("/openapi.json").json()
    assert spec["info"]["title"] == "breast_cancer prediction service"
    assert "malignant when its probability reaches the threshold" in spec["info"]["description"]
    assert "penguin" not in json.dumps(spec).lower()
    features = spec["components"]["schemas"]["Features"]
    assert features["example"] == binary_task.contract.example
    assert len(features["properties"]) == 30


def test_regression_answers_a_number(make_client: Client, regression_task: TaskModel) -> None:
    client = make_client(task=regression_task)
    wait_ready(client)
    example = regression_task.contract.example
    body = client.post("/predict", json=example).json()
    assert set(body) == {"prediction", "model_version", "prediction_id"}
    assert isinstance(body["prediction"], float)
    target = regression_task.contract.target
    assert target.minimum <= body["prediction"] <= target.maximum
    batch = client.post("/predict/batch", json={"records": [example, example]}).json()
    assert [answer["prediction"] for answer in batch["predictions"]] == [body["prediction"]] * 2


def test_regression_openapi_says_the_prediction_is_a_number(
    make_client: Client, regression_task: TaskModel
) -> None:
    client = make_client(task=regression_task)
    spec = client.get("/openapi.json").json()
    prediction = spec["components"]["schemas"]["Prediction"]
    assert prediction["properties"]["prediction"]["type"] == "number"
    assert "probabilities" not in prediction["properties"]
    assert isinstance(prediction["example"]["prediction"], float)
    assert "predicted target, a number" in spec["info"]["description"]
    assert "diabetes" in client.get("/docs").text


@pytest.mark.parametrize("task", ["binary_task", "regression_task"])
def test_a_value_outside_the_contract_is_422_naming_it(
    make_client: Client, request: pytest.FixtureRequest, task: str
) -> None:
    chosen: TaskModel = request.getfixturevalue(task)
    spec = chosen.contract.features[0]
    assert spec.maximum is not None
    client = make_client(task=chosen)
    wait_ready(client)
    record = {**chosen.contract.example, spec.name: spec.maximum * 10 + 1}
    response = client.post("/predict", json=record)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", spec.name]
    unknown = client.post("/predict", json={**chosen.contract.example, "species": "Adelie"})
    assert unknown.status_code == 422


def test_regression_metrics_log_and_live_mean(
    make_client: Client, regression_task: TaskModel, tmp_path: Path
) -> None:
    frame = regression_task.frame
    reference = {
        "rows": len(frame),
        "task": "regression",
        "missing_rate": {name: 0.0 for name in regression_task.contract.feature_names()},
        "target_mean": float(frame["target"].mean()),
        "target_std": float(frame["target"].std(ddof=0)),
        "target_quantiles": [
            float(q) for q in frame["target"].quantile([i / 10 for i in range(11)])
        ],
    }
    log = tmp_path / "regression.jsonl"
    client = make_client(task=regression_task, reference=reference, prediction_log=log)
    wait_ready(client)
    records = [regression_task.record(index) for index in range(200)]
    answers = client.post("/predict/batch", json={"records": records}).json()["predictions"]
    mean = sum(answer["prediction"] for answer in answers) / len(answers)
    text = client.get("/metrics").text
    assert gauge(text, "predictions_total") == 200
    assert gauge(text, "prediction_mean") == pytest.approx(mean)
    assert gauge(text, "prediction_mean_reference") == pytest.approx(reference["target_mean"])
    shift = (mean - reference["target_mean"]) / reference["target_std"]
    assert gauge(text, "prediction_mean_shift") == pytest.approx(shift)
    assert abs(shift) < 0.25  # the table's own rows: no shift to speak of
    assert "prediction_class_share" not in text
    assert "prediction_drift_psi" not in text
    client.__exit__(None, None, None)
    logged = json.loads(log.read_text().splitlines()[0])
    assert isinstance(logged["prediction"], float)
    assert "probabilities" not in logged


def test_regression_shadow_exports_the_mean_difference(
    make_client: Client, regression_task: TaskModel
) -> None:
    def challenger() -> ServedModel:
        return ServedModel.load(regression_task.onnx_path, contract=regression_task.contract)

    client = make_client(task=regression_task, challenger=challenger)
    wait_ready(client)
    client.post("/predict/batch", json={"records": [regression_task.contract.example] * 4})
    text = ""
    for _ in range(200):
        text = client.get("/metrics").text
        if "shadow_window_rows 4.0" in text:
            break
        threading.Event().wait(0.02)
    assert gauge(text, "shadow_mean_abs_difference") == 0.0  # the same model: no difference
    assert "shadow_agreement_ratio" not in text


def test_a_model_for_another_contract_never_becomes_ready(
    make_client: Client,
    regression_task: TaskModel,
    penguin_task: TaskModel,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = ServiceState()
    client = make_client(
        load=lambda: ServedModel.load(regression_task.onnx_path, contract=penguin_task.contract),
        state=state,
    )
    assert state.loaded.wait(10)
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["reason"] == "model_incompatible"
    assert "the model is a regressor; the contract's task is multiclass" in caplog.text


def test_example_flag_prints_the_contract_example(
    tmp_path: Path, regression_task: TaskModel, capsys: pytest.CaptureFixture[str]
) -> None:
    params, _ = service_params_file(
        tmp_path, regression_task.onnx_path, regression_task.contract_path
    )
    assert main(["--params", str(params), "--example"]) == 0
    assert json.loads(capsys.readouterr().out) == regression_task.contract.example


def _with_kind(contract: Contract, name: str, kind: str) -> Contract:
    """`contract` with feature `name` of another kind (a column re-profiled after a change)."""
    features = tuple(
        ColumnSpec(spec.name, kind, nullable=True, categories=("1", "2") * (kind != "numeric"))
        if spec.name == name
        else spec
        for spec in contract.features
    )
    example = {key: value for key, value in contract.example.items() if key != name}
    return dataclasses.replace(contract, features=features, example=example)


@pytest.mark.parametrize(
    ("column", "now", "before"),
    [("island", "numeric", "categorical"), ("sex", "categorical", "numeric")],
)
def test_a_model_trained_with_a_feature_of_another_kind_never_becomes_ready(
    make_client: Client,
    penguin_task: TaskModel,
    regression_task: TaskModel,
    column: str,
    now: str,
    before: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    task = penguin_task if before == "categorical" else regression_task
    contract = _with_kind(task.contract, column, now)
    with pytest.raises(
        PipelineError, match=f"{column} \\(trained as {before}, the contract says {now}\\)"
    ):
        ServedModel.load(task.onnx_path, contract=contract)
    state = ServiceState()
    client = make_client(
        load=lambda: ServedModel.load(task.onnx_path, contract=contract), state=state
    )
    assert state.loaded.wait(10)
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["reason"] == "model_incompatible"
    assert f"{column} (trained as {before}" in caplog.text


def test_a_pipeline_of_another_shape_skips_the_kinds_check(
    tmp_path: Path, penguin_task: TaskModel
) -> None:
    from sklearn.dummy import DummyClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    contract = penguin_task.contract
    frame = penguin_task.frame.dropna(subset=[contract.target.name])
    pipeline = Pipeline([("identity", FunctionTransformer()), ("model", DummyClassifier())])
    pipeline.fit(frame[contract.feature_names()], frame[contract.target.name].astype(str))
    path = save_model(pipeline, tmp_path / "other-shape.joblib")
    model = ServedModel.load(path, contract=contract)
    assert set(model.classes) == set(contract.classes)


def test_the_service_decides_as_the_evaluate_stage_does() -> None:
    """ServedModel.decode applies contract.metrics.decide, the rule the evaluate stage uses:
    binary at the threshold (reaching it is enough), multiclass by the most probable class."""
    binary = ServedModel(None, ("benign", "malignant"), "v", positive="malignant", threshold=0.3)
    rows = np.array([[0.7, 0.3], [0.71, 0.29], [0.2, 0.8]])
    assert [binary.decode(row)[0] for row in rows] == ["malignant", "benign", "malignant"]
    assert decide(rows, binary.classes, "malignant", 0.3).tolist() == [1, 0, 1]
    assert decide(rows, binary.classes, "benign", 0.705).tolist() == [1, 0, 1]
    three = ServedModel(None, ("a", "b", "c"), "v")
    matrix = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    assert [three.decode(row)[0] for row in matrix] == ["b", "a"]
    assert decide(matrix, three.classes, None, 0.5).tolist() == [1, 0]
    assert decide(matrix[0], three.classes, None, 0.5) == 1
