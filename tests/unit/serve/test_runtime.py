"""The two runtimes: the model compiled to ONNX (the default; no pandas, scikit-learn or SciPy
in the service) and the scikit-learn pipeline (serve.runtime sklearn); their answers agree,
also on missing values and on a category the model never saw."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from mlops_template import PipelineError
from mlops_template.io import storage
from mlops_template.serve.__main__ import check_served_file
from mlops_template.serve.model import ServedModel, runtime_of
from tests.support.tasks import TaskModel
from tests.unit.serve.conftest import GENTOO, service_params_file, wait_ready

Client = Callable[..., TestClient]
PIPELINE_LIBRARIES = ("sklearn", "scipy", "pandas", "joblib", "pandera", "mlflow", "dvc")


def test_the_service_imports_no_pipeline_library(penguin_task: TaskModel) -> None:
    """The whole service (its entry point and app) and a scored ONNX model, in a fresh
    interpreter: none of the pipeline's libraries is imported."""
    code = f"""
import json, sys
from pathlib import Path
import mlops_template.serve.__main__, mlops_template.serve.app
from mlops_template.contract import load_contract
from mlops_template.serve.model import ServedModel
model = ServedModel.load(Path({str(penguin_task.onnx_path)!r}),
                         contract=load_contract(Path({str(penguin_task.contract_path)!r})))
print(model.runtime, model.decode(model.score([{GENTOO!r}])[0])[0])
print(json.dumps([m for m in {PIPELINE_LIBRARIES!r} if m in sys.modules]))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    answer, imported = result.stdout.strip().splitlines()
    assert answer == "onnx Gentoo"
    assert json.loads(imported) == []


def _records(task: TaskModel) -> list[dict[str, Any]]:
    """Rows of the table (some with gaps), a record with every feature missing, and one with
    a category the model never saw (the service's request model refuses it; the model must
    still answer as scikit-learn does)."""
    records = [task.record(index) for index in range(0, len(task.frame), len(task.frame) // 7)]
    records.append({})
    categorical = task.contract.categorical_features()
    if categorical:
        records.append({**task.record(0), categorical[0]: "never seen"})
    numeric = task.contract.numeric_features()
    records.append({name: value for name, value in task.record(1).items() if name != numeric[0]})
    return records


@pytest.mark.parametrize("name", ["penguin_task", "binary_task", "regression_task"])
def test_onnx_answers_as_scikit_learn_does(name: str, request: pytest.FixtureRequest) -> None:
    task: TaskModel = request.getfixturevalue(name)
    onnx = ServedModel.load(task.onnx_path, contract=task.contract)
    sklearn = ServedModel.load(task.model_path, contract=task.contract)
    assert (onnx.runtime, sklearn.runtime) == ("onnx", "sklearn")
    assert onnx.classes == sklearn.classes
    records = _records(task)
    if task.contract.categorical_features():
        assert any(not record for record in records)  # the penguins: gaps and an unseen one
    ours, theirs = onnx.score(records), sklearn.score(records)
    assert ours.shape == theirs.shape
    tolerance = 1e-4 * max(1.0, float(np.abs(theirs).max())) if not onnx.is_classifier else 1e-5
    np.testing.assert_allclose(ours, theirs, atol=tolerance, rtol=0)
    if onnx.is_classifier:
        assert [onnx.decode(row)[0] for row in ours] == [sklearn.decode(row)[0] for row in theirs]


def test_probabilities_read_as_the_float32_they_are(penguin_task: TaskModel) -> None:
    """0.07, not 0.07000000029802322: the shortest decimal of the model's float32."""
    model = ServedModel.load(penguin_task.onnx_path, contract=penguin_task.contract)
    _, probabilities = model.decode(np.array([0.07, 0.13, 0.8], dtype=np.float32))
    assert probabilities == {"Adelie": 0.07, "Chinstrap": 0.13, "Gentoo": 0.8}


def test_the_sklearn_runtime_serves_the_same_answer(
    make_client: Client, penguin_task: TaskModel
) -> None:
    def load_sklearn() -> ServedModel:
        return ServedModel.load(penguin_task.model_path, contract=penguin_task.contract)

    answers = []
    for load in (None, load_sklearn):
        client = make_client(load=load)
        wait_ready(client)
        body = client.post("/predict", json={**GENTOO, "sex": None}).json()
        answers.append(body)
    onnx, sklearn = answers
    assert onnx["prediction"] == sklearn["prediction"] == "Gentoo"
    assert onnx["probabilities"] == pytest.approx(sklearn["probabilities"], abs=1e-5)
    assert onnx["model_version"] == storage.read_recorded_sha256(penguin_task.onnx_path)[:12]
    assert sklearn["model_version"] == storage.read_recorded_sha256(penguin_task.model_path)[:12]


def test_a_model_compiled_for_other_features_or_classes_is_refused(
    penguin_task: TaskModel, binary_task: TaskModel
) -> None:
    contract = penguin_task.contract
    fewer = dataclasses.replace(contract, features=contract.features[:-1])
    with pytest.raises(PipelineError, match=r"the model takes .* the contract's features are"):
        ServedModel.load(penguin_task.onnx_path, contract=fewer)
    with pytest.raises(PipelineError, match=r"the model predicts .* the contract's classes are"):
        ServedModel.load(binary_task.onnx_path, contract=contract)


def test_an_empty_onnx_model_points_to_serve_runtime(tmp_path: Path) -> None:
    """With serve.runtime sklearn the train stage writes model.onnx empty: serving it says
    what to do, at start-up and at load."""
    empty = tmp_path / "model.onnx"
    empty.write_bytes(b"")
    digest = storage.sha256_file(empty)
    storage.sha256_sidecar(empty).write_text(f"{digest}  model.onnx\n")
    with pytest.raises(PipelineError, match=r"serve\.runtime: sklearn"):
        check_served_file(empty, digest)
    with pytest.raises(PipelineError, match=r"serve\.runtime: sklearn"):
        ServedModel.load(empty)
    with pytest.raises(PipelineError, match=r"\.onnx file .* \.joblib file"):
        runtime_of(tmp_path / "model.pkl")


def _serve(params: Path, **environ: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlops_template.serve", "--params", str(params)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **environ},
    )


def test_the_service_refuses_an_empty_onnx_model(tmp_path: Path, penguin_task: TaskModel) -> None:
    params, _ = service_params_file(tmp_path, penguin_task.onnx_path)
    served = tmp_path / "models" / "model.onnx"
    served.write_bytes(b"")
    storage.sha256_sidecar(served).write_text(f"{storage.sha256_file(served)}  model.onnx\n")
    result = _serve(params)
    assert result.returncode == 1
    assert "empty" in result.stderr
    assert "serve.runtime: sklearn" in result.stderr


def test_the_runtime_override_must_be_known(tmp_path: Path, penguin_task: TaskModel) -> None:
    params, _ = service_params_file(tmp_path, penguin_task.onnx_path)
    result = _serve(params, MLOPS_SERVE_RUNTIME="tensorflow")
    assert result.returncode == 1
    assert "MLOPS_SERVE_RUNTIME: one of onnx, sklearn" in result.stderr
    # sklearn chosen by the environment (the image's RUNTIME): it serves model.joblib, which
    # this folder lacks, and says so.
    result = _serve(params, MLOPS_SERVE_RUNTIME="sklearn")
    assert result.returncode == 1
    assert "model.joblib.sha256: missing" in result.stderr


def test_the_objects_made_at_start_are_out_of_the_collectors_sight() -> None:
    """A full collection walking every import's objects was the slowest answers' delay."""
    import gc

    from mlops_template.serve.__main__ import GC_YOUNG_THRESHOLD, settle_garbage_collector

    before = gc.get_threshold()
    try:
        settle_garbage_collector()
        assert gc.get_freeze_count() > 10_000  # FastAPI, pydantic, the app: frozen
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
        assert gc.isenabled()  # cycles made later are still collected
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_binary_decisions_at_the_threshold_are_scikit_learns(
    binary_task: TaskModel, make_client: Client
) -> None:
    """A 20-tree forest gives many exact 0.5s, which float32 returns as 0.49999994: the served
    decision must still be the one the evaluate stage scored (positive at >= threshold)."""
    from mlops_template.contract.metrics import decide

    served = ServedModel.load(binary_task.onnx_path, contract=binary_task.contract)
    reference = ServedModel.load(binary_task.model_path, contract=binary_task.contract)
    records = [binary_task.record(index) for index in range(len(binary_task.frame))]
    probabilities = reference.score(records)
    positive = binary_task.contract.positive
    expected = [
        reference.classes[i] for i in decide(probabilities, reference.classes, positive, 0.5)
    ]
    assert [served.decode(row)[0] for row in served.score(records)] == expected
    # An exact 0.5 as onnxruntime returns it (float32): still the positive class.
    tie = np.zeros(2, dtype=np.float32)
    tie[served.classes.index(positive)] = np.float32(0.5) - np.float32(6e-8)
    tie[1 - served.classes.index(positive)] = np.float32(0.5) + np.float32(6e-8)
    assert tie[served.classes.index(positive)] < 0.5
    assert served.decode(tie)[0] == positive


def test_numbers_beyond_float32_are_refused_and_an_infinite_answer_is_a_4xx(
    tmp_path: Path, make_client: Client
) -> None:
    """A feature without a maximum, a linear model: 1e39 cannot reach a float32 model (422),
    and 3e38 times the slope is beyond float32 (422 on /predict, 400 on /v2), never a 500."""
    import pandas as pd
    import yaml

    from mlops_template.config import parse_params
    from mlops_template.stages.train import fit
    from tests.conftest import repo_params_dict, small_contract
    from tests.support.tasks import save_model, save_onnx

    raw_contract = small_contract("regression")
    del raw_contract["features"][0]["maximum"]
    contract_path = tmp_path / "contract.yaml"
    contract_path.write_text(yaml.safe_dump(raw_contract))
    raw = repo_params_dict()
    raw["data"] = {"source": "unused.csv", "contract": str(contract_path)}
    raw["model"] = {"kind": "ridge"}
    raw["evaluate"] = {**raw["evaluate"], "primary_metric": "auto"}
    params = parse_params(raw)
    x = np.linspace(0, 10, 60)
    frame = pd.DataFrame({"x": x, "colour": ["blue", "red"] * 30, "y": 1000 * x})
    pipeline = fit(frame, params)
    model_path = save_model(pipeline, tmp_path / "ridge.joblib")
    task = TaskModel(
        params.contract,
        contract_path,
        model_path,
        frame,
        save_onnx(pipeline, params.contract, model_path),
    )
    client = make_client(task=task)
    wait_ready(client)

    assert client.post("/predict", json={"x": 1e39, "colour": "red"}).status_code == 422
    answer = client.post("/predict", json={"x": 3e38, "colour": "red"})
    assert answer.status_code == 422
    assert "not a finite number" in answer.json()["detail"][0]["msg"]
    infer = {
        "inputs": [
            {"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [3e38]},
            {"name": "colour", "shape": [1, 1], "datatype": "BYTES", "data": ["red"]},
        ]
    }
    v2 = client.post("/v2/models/mlops-template/infer", json=infer)
    assert v2.status_code == 400
    assert "not a finite number" in v2.json()["error"]
    assert client.post("/predict", json={"x": 3.0, "colour": "red"}).json()["prediction"] > 2900
