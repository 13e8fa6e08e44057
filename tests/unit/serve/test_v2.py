"""The Open Inference Protocol (KServe V2 REST) routes, against the protocol's JSON shapes:
health, server and model metadata, inference, and each error as `{"error": ...}`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from mlops_template import PipelineError
from mlops_template.config import ServeSettings
from mlops_template.serve.app import DEFAULT_MODEL_NAME, create_app
from mlops_template.serve.model import ServedModel
from tests.support.tasks import TaskModel
from tests.unit.serve.conftest import GENTOO, BlockingModel, wait_ready

Client = Callable[..., TestClient]
MODEL = f"/v2/models/{DEFAULT_MODEL_NAME}"
INFER = f"{MODEL}/infer"


def tensors(*records: dict[str, Any], nested: bool = False) -> dict[str, Any]:
    """The records as an inference request: one tensor per feature, shape [rows, 1]."""
    inputs = []
    for name in records[0]:
        values = [record[name] for record in records]
        kind = "BYTES" if any(isinstance(value, str) for value in values) else "FP32"
        data = [[value] for value in values] if nested else values
        inputs.append({"name": name, "shape": [len(values), 1], "datatype": kind, "data": data})
    return {"inputs": inputs}


def test_health_and_server_metadata(make_client: Client) -> None:
    client = make_client()
    assert client.get("/v2/health/live").json() == {"live": True}
    wait_ready(client)
    assert client.get("/v2/health/ready").json() == {"ready": True}
    ready = client.get(f"{MODEL}/ready")
    assert ready.status_code == 200
    assert ready.json() == {"name": DEFAULT_MODEL_NAME, "ready": True}
    server = client.get("/v2").json()
    assert set(server) == {"name", "version", "extensions"}
    assert server["extensions"] == []


def test_not_ready_is_503_with_the_reason(make_client: Client) -> None:
    def broken() -> ServedModel:
        raise PipelineError("no model in this test")

    client = make_client(load=broken)
    assert client.get("/v2/health/live").status_code == 200
    for path in ("/v2/health/ready", f"{MODEL}/ready"):
        response = client.get(path)
        assert response.status_code == 503
        assert response.json()["ready"] is False
        # The reason code; the error's own text goes to the log only.
        assert response.json()["error"] == "model_load_failed"
    refused = client.post(INFER, json=tensors(GENTOO))
    assert refused.status_code == 503
    assert refused.json()["error"] == "not ready: model_load_failed"


def test_model_metadata_comes_from_the_contract(
    make_client: Client, penguin_task: TaskModel
) -> None:
    client = make_client()
    wait_ready(client)
    metadata = client.get(MODEL).json()
    assert metadata["name"] == DEFAULT_MODEL_NAME
    assert metadata["platform"] == "onnxruntime_onnx"
    assert len(metadata["versions"]) == 1
    assert metadata["inputs"] == [
        {
            "name": spec.name,
            "datatype": "FP32" if spec.kind == "numeric" else "BYTES",
            "shape": [-1, 1],
        }
        for spec in penguin_task.contract.features
    ]
    assert metadata["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "prediction_id", "datatype": "BYTES", "shape": [-1]},
    ]


def test_infer_answers_as_predict_does(make_client: Client, settings: ServeSettings) -> None:
    client = make_client()
    wait_ready(client)
    other = {**GENTOO, "island": "Torgersen", "bill_length_mm": 38.0, "sex": None}
    expected = client.post("/predict/batch", json={"records": [GENTOO, other]}).json()
    response = client.post(INFER, json={"id": "42", **tensors(GENTOO, other)})
    assert response.status_code == 200
    body = response.json()
    version = expected["predictions"][0]["model_version"]
    assert (body["model_name"], body["model_version"], body["id"]) == (
        DEFAULT_MODEL_NAME,
        version,
        "42",
    )
    outputs = {output["name"]: output for output in body["outputs"]}
    assert list(outputs) == ["label", "probabilities", "prediction_id"]
    labels = [answer["prediction"] for answer in expected["predictions"]]
    assert outputs["label"] == {"name": "label", "datatype": "BYTES", "shape": [2], "data": labels}
    probabilities = outputs["probabilities"]
    assert (probabilities["datatype"], probabilities["shape"]) == ("FP32", [2, 3])
    flat = [
        answer["probabilities"][name]
        for answer in expected["predictions"]
        for name in ("Adelie", "Chinstrap", "Gentoo")
    ]
    assert probabilities["data"] == pytest.approx(flat)
    ids = outputs["prediction_id"]["data"]
    client.__exit__(None, None, None)  # flushes the log: the same log as /predict
    logged = [json.loads(line) for line in settings.prediction_log.read_text().splitlines()]
    assert [line["id"] for line in logged[-2:]] == ids
    assert logged[-1]["features"] == {**other, "sex": None}


def test_infer_takes_nested_data_flat_shapes_and_chosen_outputs(make_client: Client) -> None:
    client = make_client()
    wait_ready(client)
    body = tensors(GENTOO, nested=True)
    body["outputs"] = [{"name": "label"}]
    answer = client.post(INFER, json=body).json()
    assert [output["name"] for output in answer["outputs"]] == ["label"]
    assert answer["outputs"][0]["data"] == ["Gentoo"]
    assert len(answer["id"]) == 32  # none given: one is made
    flat = tensors(GENTOO)
    for item in flat["inputs"]:
        item["shape"] = [1]
    flat["inputs"] = [item for item in flat["inputs"] if item["name"] != "sex"]  # nullable
    assert client.post(INFER, json=flat).json()["outputs"][0]["data"] == ["Gentoo"]


def test_infer_for_a_regressor(make_client: Client, regression_task: TaskModel) -> None:
    client = make_client(task=regression_task)
    wait_ready(client)
    record = regression_task.record(0)
    expected = client.post("/predict", json=record).json()["prediction"]
    body = client.post(INFER, json=tensors(record)).json()
    assert [output["name"] for output in body["outputs"]] == ["prediction", "prediction_id"]
    prediction = body["outputs"][0]
    assert (prediction["datatype"], prediction["shape"]) == ("FP32", [1])
    assert prediction["data"] == pytest.approx([expected])


def _changed(name: str, **change: Any) -> dict[str, Any]:
    body = tensors(GENTOO)
    for item in body["inputs"]:
        if item["name"] == name:
            item.update(change)
    return body


BAD_REQUESTS = [
    pytest.param(b"{", "not valid UTF-8 JSON", id="not-json"),
    pytest.param([], "must be a JSON object", id="not-an-object"),
    pytest.param({"inputs": []}, "non-empty list", id="no-inputs"),
    pytest.param({**tensors(GENTOO), "extra": 1}, "unknown field 'extra'", id="unknown-field"),
    pytest.param({**tensors(GENTOO), "id": 7}, "id: must be a string", id="id-not-text"),
    pytest.param(
        {"inputs": [*tensors(GENTOO)["inputs"], {**tensors(GENTOO)["inputs"][0], "name": "x"}]},
        "input 'x': the model has no such input",
        id="unknown-input",
    ),
    pytest.param(
        {"inputs": [*tensors(GENTOO)["inputs"], tensors(GENTOO)["inputs"][0]]},
        "given twice",
        id="duplicate-input",
    ),
    pytest.param(_changed("bill_length_mm", datatype="BYTES"), "expected FP32", id="datatype"),
    pytest.param(_changed("island", datatype="FP32"), "expected BYTES", id="datatype-bytes"),
    pytest.param(_changed("island", data=[3]), "must be strings", id="number-as-category"),
    pytest.param(_changed("bill_length_mm", data=["45"]), "must be numbers", id="text-number"),
    pytest.param(_changed("bill_length_mm", shape=[1, 2]), "[rows, 1]", id="shape-columns"),
    pytest.param(_changed("bill_length_mm", shape=[2, 1]), "data has 1", id="shape-length"),
    pytest.param(
        _changed("bill_length_mm", shape=[2, 1], data=[45.0, 46.0]),
        "as many rows",
        id="rows-differ",
    ),
    pytest.param(
        _changed("bill_length_mm", data=[999.0]), "input bill_length_mm, row 0", id="range"
    ),
    pytest.param(_changed("island", data=["Atlantis"]), "input island, row 0", id="category"),
    pytest.param(
        {"inputs": [{"name": "sex", "shape": [1], "datatype": "BYTES", "data": [None]}]},
        "row 0: at least 1 features must be given",
        id="too-few-features",
    ),
    pytest.param({**tensors(GENTOO), "outputs": [{"name": "x"}]}, "output 'x'", id="output"),
]


@pytest.mark.parametrize(("body", "message"), BAD_REQUESTS)
def test_a_request_the_model_cannot_take_is_400(
    make_client: Client, body: Any, message: str
) -> None:
    client = make_client()
    wait_ready(client)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.post(INFER, content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}
    assert message in response.json()["error"], response.json()


def test_too_many_rows_is_400(make_client: Client) -> None:
    client = make_client(max_batch_rows=2)
    wait_ready(client)
    assert client.post(INFER, json=tensors(GENTOO, GENTOO)).status_code == 200
    response = client.post(INFER, json=tensors(GENTOO, GENTOO, GENTOO))
    assert response.status_code == 400
    assert "from 1 to 2 rows" in response.json()["error"]


def test_an_unknown_model_is_404(make_client: Client) -> None:
    client = make_client()
    wait_ready(client)
    for response in (
        client.get("/v2/models/other"),
        client.get("/v2/models/other/ready"),
        client.post("/v2/models/other/infer", json=tensors(GENTOO)),
        client.get("/v2/nothing-here"),
    ):
        assert response.status_code == 404
        assert set(response.json()) == {"error"}


def test_the_model_name_is_given(settings: ServeSettings, penguin_task: TaskModel) -> None:
    app = create_app(
        settings,
        lambda: ServedModel.load(penguin_task.onnx_path, contract=penguin_task.contract),
        contract=penguin_task.contract,
        model_name="penguins",
    )
    with TestClient(app) as client:
        wait_ready(client)
        assert client.get("/v2/models/penguins").json()["name"] == "penguins"
        assert client.get(MODEL).status_code == 404


def test_infer_is_guarded_as_predict_is(make_client: Client) -> None:
    """The API key, the body limit and the timeout hold, answered in the protocol's shape;
    the request metrics name the route by its template."""
    client = make_client(api_key="s3cret-key")
    wait_ready(client)
    missing = client.post(INFER, json=tensors(GENTOO))
    assert (missing.status_code, set(missing.json())) == (401, {"error"})
    key = {"authorization": "Bearer s3cret-key"}
    assert client.post(INFER, json=tensors(GENTOO), headers=key).status_code == 200
    assert client.get(MODEL).status_code == 200  # metadata, like /openapi.json, is open
    padded = json.dumps(tensors(GENTOO)) + " " * 2_000_000
    too_large = client.post(
        INFER, content=padded, headers={**key, "content-type": "application/json"}
    )
    assert (too_large.status_code, set(too_large.json())) == (413, {"error"})
    text = client.get("/metrics").text
    assert 'http_requests_total{route="/v2/models/{name}/infer",status="200"} 1.0' in text
    assert 'predictions_total{predicted_class="Gentoo"} 1.0' in text


def test_slow_inference_times_out_with_503(make_client: Client) -> None:
    model = BlockingModel()
    client = make_client(load=lambda: model, request_timeout_seconds=0.2)
    wait_ready(client)
    response = client.post(INFER, json=tensors(GENTOO))
    model.release.set()
    assert response.status_code == 503
    assert response.json() == {"error": "request timed out"}


def test_a_large_request_is_validated_off_the_event_loop(make_client: Client) -> None:
    client = make_client(max_batch_rows=1000)
    wait_ready(client)
    body = tensors(*[GENTOO] * 400)
    assert len(json.dumps(body)) > 16_384
    response = client.post(INFER, json=body)
    assert response.status_code == 200
    assert response.json()["outputs"][0]["shape"] == [400]
    body["inputs"][1]["data"][399] = 999.0
    refused = client.post(INFER, json=body)
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("input bill_length_mm, row 399")
