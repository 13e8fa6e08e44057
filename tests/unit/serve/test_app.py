"""The service as a client sees it: every status code, the schema, metrics and the log."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from mlops_template.config import ServeSettings
from mlops_template.io import storage
from mlops_template.monitoring.records import PredictionRecord
from mlops_template.serve.app import ServiceState
from mlops_template.serve.model import ServedModel
from tests.support.tasks import TaskModel
from tests.unit.serve.conftest import GENTOO, BlockingModel, wait_ready

Client = Callable[..., TestClient]


def test_predict_one_record(make_client: Client, model_path: Path) -> None:
    client = make_client()
    wait_ready(client)
    response = client.post("/predict", json=GENTOO)
    assert response.status_code == 200
    body = response.json()
    assert body["prediction"] == "Gentoo"
    assert set(body["probabilities"]) == {"Adelie", "Chinstrap", "Gentoo"}
    assert sum(body["probabilities"].values()) == pytest.approx(1.0)
    assert body["model_version"] == storage.read_recorded_sha256(model_path)[:12]


def test_nullable_fields_may_be_missing_or_null(make_client: Client) -> None:
    client = make_client()
    wait_ready(client)
    response = client.post("/predict", json={"island": "Dream", "sex": None})
    assert response.status_code == 200


def test_predict_batch_matches_single_predictions(make_client: Client) -> None:
    client = make_client()
    wait_ready(client)
    records = [GENTOO, {**GENTOO, "island": "Torgersen", "bill_length_mm": 38.0}]
    batch = client.post("/predict/batch", json={"records": records}).json()["predictions"]
    singles = [client.post("/predict", json=record).json() for record in records]
    for answer in (*batch, *singles):
        assert len(answer.pop("prediction_id")) == 32  # each prediction's own id
    assert batch == singles


@pytest.mark.parametrize(
    ("body", "field", "error"),
    [
        ({**GENTOO, "beak_colour": "red"}, "beak_colour", "extra_forbidden"),
        ({**GENTOO, "bill_length_mm": "45"}, "bill_length_mm", "float_type"),
        ({**GENTOO, "bill_length_mm": 999.0}, "bill_length_mm", "less_than_equal"),
        ({**GENTOO, "island": "Atlantis"}, "island", "literal_error"),
        ({**GENTOO, "island": 3}, "island", "literal_error"),
        ({**GENTOO, "sex": 1}, "sex", "literal_error"),
    ],
)
def test_invalid_records_are_422_naming_the_field(
    make_client: Client, body: dict, field: str, error: str
) -> None:
    client = make_client()
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    problems = response.json()["detail"]
    assert {"loc": ["body", field], "type": error} == {
        key: problems[0][key] for key in ("loc", "type")
    }


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_422_not_500(make_client: Client, literal: str) -> None:
    client = make_client()
    body = json.dumps(GENTOO).replace("47.5", literal)
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "bill_length_mm"]


@pytest.mark.parametrize("body", [b"\x00\xff", b"`\xb1j\xa5a<&", b"{", b"[]"])
def test_a_body_that_is_not_a_json_record_is_422(make_client: Client, body: bytes) -> None:
    response = make_client().post(
        "/predict", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "body"


def test_batch_bounds(make_client: Client) -> None:
    client = make_client(max_batch_rows=3)
    wait_ready(client)
    assert client.post("/predict/batch", json={"records": []}).status_code == 422
    assert client.post("/predict/batch", json={"records": [GENTOO] * 3}).status_code == 200
    too_many = client.post("/predict/batch", json={"records": [GENTOO] * 4})
    assert too_many.status_code == 422
    assert too_many.json()["detail"][0]["loc"] == ["body", "records"]


def test_body_size_limit_is_413(make_client: Client) -> None:
    client = make_client(max_body_bytes=2048)
    big = {"records": [GENTOO] * 40}
    response = client.post("/predict/batch", json=big)
    assert response.status_code == 413

    def chunks():  # no content-length: the limit is enforced while reading
        yield json.dumps(big).encode()

    streamed = client.post(
        "/predict/batch", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413


def test_ready_is_503_until_the_model_is_loaded(
    make_client: Client, penguin_task: TaskModel
) -> None:
    gate = threading.Event()

    def slow_load() -> ServedModel:
        gate.wait(10)
        return ServedModel.load(penguin_task.onnx_path, contract=penguin_task.contract)

    client = make_client(load=slow_load)
    assert client.get("/health/live").status_code == 200
    not_ready = client.get("/health/ready")
    assert not_ready.status_code == 503
    assert not_ready.json() == {"status": "not ready", "ready": False, "reason": "loading"}
    refused = client.post("/predict", json=GENTOO)
    assert (refused.status_code, refused.json()) == (503, {"detail": "not ready: loading"})
    gate.set()
    wait_ready(client)
    assert client.post("/predict", json=GENTOO).status_code == 200


def test_ready_is_503_while_draining(make_client: Client) -> None:
    state = ServiceState()
    client = make_client(state=state)
    wait_ready(client)
    state.draining = True
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["reason"] == "draining"
    assert client.get("/health/live").status_code == 200


def test_tampered_model_never_becomes_ready(
    make_client: Client, model_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tampered = tmp_path / model_path.name
    tampered.write_bytes(model_path.read_bytes() + b"\0")
    storage.sha256_sidecar(tampered).write_text(storage.sha256_sidecar(model_path).read_text())
    state = ServiceState()
    client = make_client(load=lambda: ServedModel.load(tampered), state=state)
    assert state.loaded.wait(10)
    response = client.get("/health/ready")
    assert response.status_code == 503
    # A reason code, not the error's text (which names files): that goes to the log.
    assert response.json()["reason"] == "model_hash_mismatch"
    assert "does not match the recorded" not in response.text
    assert "does not match the recorded" in caplog.text
    assert client.post("/predict", json=GENTOO).status_code == 503


def test_too_many_requests_in_flight_is_503(make_client: Client) -> None:
    model = BlockingModel()
    client = make_client(load=lambda: model, max_concurrent_requests=1)
    wait_ready(client)
    first = threading.Thread(target=client.post, args=("/predict",), kwargs={"json": GENTOO})
    first.start()
    assert model.entered.wait(30)
    response = client.post("/predict", json=GENTOO)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    model.release.set()
    first.join()


def test_slow_scoring_times_out_with_503(make_client: Client) -> None:
    model = BlockingModel()
    client = make_client(load=lambda: model, request_timeout_seconds=0.2)
    wait_ready(client)
    response = client.post("/predict", json=GENTOO)
    model.release.set()
    assert response.status_code == 503
    assert response.json()["detail"] == "request timed out"


def test_metrics(make_client: Client) -> None:
    client = make_client()
    wait_ready(client)
    client.post("/predict", json=GENTOO)
    client.post("/predict", json={**GENTOO, "island": "Atlantis"})
    text = client.get("/metrics").text
    assert 'http_requests_total{route="/predict",status="200"} 1.0' in text
    assert 'http_requests_total{route="/predict",status="422"} 1.0' in text
    assert 'http_request_duration_seconds_bucket{le="0.005",route="/predict"' in text
    assert 'predictions_total{predicted_class="Gentoo"} 1.0' in text
    assert "model_info{version=" in text
    assert "micro_batch_rows_count" in text


def test_every_prediction_is_logged(make_client: Client, settings: ServeSettings) -> None:
    client = make_client()
    wait_ready(client)
    client.post("/predict/batch", json={"records": [GENTOO, GENTOO]})
    client.__exit__(None, None, None)  # flushes the log
    lines = settings.prediction_log.read_text().splitlines()
    assert len(lines) == 2
    record = json.loads(lines[0])
    assert record["features"] == GENTOO
    assert record["prediction"] == "Gentoo"
    assert set(record) == {
        "ts",
        "id",
        "role",
        "model_version",
        "features",
        "prediction",
        "probabilities",
    }
    assert PredictionRecord.from_json(lines[0]).to_json() == lines[0]  # the one line format


def test_openapi_is_derived_from_the_contract(make_client: Client, penguin_task: TaskModel) -> None:
    spec = make_client().get("/openapi.json").json()
    contract = penguin_task.contract
    assert spec["info"]["title"] == "penguins prediction service"
    assert spec["info"]["description"].startswith(contract.description)
    features = spec["components"]["schemas"]["Features"]
    assert set(features["properties"]) == set(contract.feature_names())
    assert features["additionalProperties"] is False
    assert features["example"] == contract.example
    prediction = spec["components"]["schemas"]["Prediction"]
    assert prediction["properties"]["prediction"]["enum"] == list(contract.classes)
    assert prediction["example"]["prediction"] in contract.classes
    island = features["properties"]["island"]
    assert island["anyOf"][0]["enum"] == ["Biscoe", "Dream", "Torgersen"]
    mass = features["properties"]["body_mass_g"]["anyOf"][0]
    assert (mass["minimum"], mass["maximum"]) == (2000.0, 7000.0)
    assert set(spec["paths"]) >= {"/predict", "/predict/batch", "/health/ready", "/metrics"}


@pytest.mark.parametrize("broken", ["disk full", "cannot be opened"])
def test_a_log_that_cannot_be_written_makes_the_service_not_ready(
    make_client: Client, tmp_path: Path, broken: str
) -> None:
    if broken == "disk full":
        log_path = tmp_path / "full" / "predictions.jsonl"
        log_path.parent.mkdir()
        log_path.symlink_to("/dev/full")  # never touch /dev/full itself
    else:
        (tmp_path / "a-file").write_text("")
        log_path = tmp_path / "a-file" / "predictions.jsonl"
    client = make_client(prediction_log=log_path)
    wait_ready(client)  # nothing written yet
    assert client.post("/predict", json=GENTOO).status_code == 200  # answers still go out
    deadline = time.monotonic() + 5
    while client.get("/health/ready").status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["reason"] == "prediction_log_failed"
    text = client.get("/metrics").text
    assert "prediction_log_healthy 0.0" in text
    assert "prediction_log_dropped 1.0" in text
    assert client.get("/health/live").status_code == 200
