"""POST /explain: one record's Shapley values over the served model, for the three tasks and
both runtimes, with /predict's request model and errors, its own cap, and its switch."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from mlops_template.config import ExplainSettings
from mlops_template.serve import explain as serve_explain
from mlops_template.serve.model import ServedModel
from mlops_template.stages.explain import background_rows
from tests.support.tasks import TaskModel
from tests.unit.serve.conftest import GENTOO, PENGUIN_CLASSES, wait_ready

Client = Callable[..., TestClient]
JSON = {"content-type": "application/json"}


def background(task: TaskModel, rows: int = 20) -> list[dict[str, Any]]:
    return background_rows(task.frame, task.contract, rows, seed=0)


def explained(client: TestClient, record: dict[str, Any], **query: str) -> dict[str, Any]:
    wait_ready(client)
    response = client.post("/explain", json=record, params=query)
    assert response.status_code == 200, response.text
    return response.json()


def assert_additive(answer: dict[str, Any], features: int) -> None:
    """With top_k covering every feature, base + contributions is the explained output."""
    total = answer["base_value"] + sum(c["contribution"] for c in answer["contributions"])
    assert len(answer["contributions"]) == features
    assert total == pytest.approx(answer["output_value"], abs=1e-5)


def test_multiclass_explains_the_predicted_class(
    make_client: Client, penguin_task: TaskModel
) -> None:
    client = make_client(
        background=background(penguin_task), explain_settings=ExplainSettings(top_k=6)
    )
    answer = explained(client, GENTOO)
    assert answer["prediction"] == answer["class"] == "Gentoo"
    assert answer["output"] == "probability"
    assert answer["method"] == "exact"
    assert answer["background_rows"] == 20
    assert_additive(answer, 6)
    prediction = client.post("/predict", json=GENTOO).json()
    assert answer["output_value"] == pytest.approx(prediction["probabilities"]["Gentoo"], 1e-5)
    values = {c["feature"]: c["value"] for c in answer["contributions"]}
    assert values["island"] == "Biscoe"
    assert values["body_mass_g"] == 5000.0
    magnitudes = [abs(c["contribution"]) for c in answer["contributions"]]
    assert magnitudes == sorted(magnitudes, reverse=True)


def test_a_chosen_class_and_top_k(make_client: Client, penguin_task: TaskModel) -> None:
    client = make_client(
        background=background(penguin_task), explain_settings=ExplainSettings(top_k=2)
    )
    answer = explained(client, GENTOO, **{"class": "Adelie"})
    assert answer["prediction"] == "Gentoo"
    assert answer["class"] == "Adelie"
    assert len(answer["contributions"]) == 2
    wrong = client.post("/explain", json=GENTOO, params={"class": "Emperor"})
    assert wrong.status_code == 422
    assert wrong.json()["detail"][0]["loc"] == ["query", "class"]
    assert wrong.json()["error_count"] == 1
    assert "Adelie', 'Chinstrap' or 'Gentoo" in wrong.json()["detail"][0]["msg"]
    twice = client.post("/explain?class=Adelie&class=Gentoo", json=GENTOO)
    assert twice.status_code == 422
    assert "give one class to explain, not 2" in twice.json()["detail"][0]["msg"]


def test_missing_values_are_scored_as_predict_scores_them(
    make_client: Client, penguin_task: TaskModel
) -> None:
    client = make_client(
        background=background(penguin_task), explain_settings=ExplainSettings(top_k=6)
    )
    record = {key: value for key, value in GENTOO.items() if key not in {"sex", "body_mass_g"}}
    answer = explained(client, record)
    assert_additive(answer, 6)
    probability = client.post("/predict", json=record).json()["probabilities"][answer["class"]]
    assert answer["output_value"] == pytest.approx(probability, abs=1e-5)
    assert {c["feature"]: c["value"] for c in answer["contributions"]}["sex"] is None


def test_binary_samples_permutations_and_stays_additive(
    make_client: Client, binary_task: TaskModel
) -> None:
    """30 features: sampled orders (not 2^30 coalitions); still base + sum = output."""
    settings = ExplainSettings(top_k=30, permutations=4)
    client = make_client(
        task=binary_task, background=background(binary_task, 10), explain_settings=settings
    )
    answer = explained(client, binary_task.record(0))
    assert answer["method"] == "permutation"
    assert answer["class"] in {"malignant", "benign"}
    assert_additive(answer, 30)


def test_regression_explains_the_prediction(
    make_client: Client, regression_task: TaskModel
) -> None:
    settings = ExplainSettings(top_k=10)
    client = make_client(
        task=regression_task, background=background(regression_task, 10), explain_settings=settings
    )
    record = regression_task.record(3)
    answer = explained(client, record)
    assert answer["output"] == "prediction"
    assert answer["class"] is None
    assert answer["method"] == "exact"
    assert_additive(answer, 10)
    assert answer["output_value"] == pytest.approx(
        client.post("/predict", json=record).json()["prediction"], rel=1e-5
    )
    refused = client.post("/explain", json=record, params={"class": "x"})
    assert refused.status_code == 422
    # the same shape as every other 422: the problems and their count
    assert refused.json()["error_count"] == len(refused.json()["detail"]) == 1
    assert refused.json()["detail"][0]["loc"] == ["query", "class"]


def test_onnx_and_sklearn_runtimes_agree(penguin_task: TaskModel) -> None:
    rows = background(penguin_task)
    settings = ExplainSettings(top_k=6)
    answers = [
        serve_explain.explain(ServedModel.load(path, contract=penguin_task.contract), GENTOO,
                              rows, settings)
        for path in (penguin_task.onnx_path, penguin_task.model_path)
    ]  # fmt: skip
    onnx, sklearn = ({c["feature"]: c["contribution"] for c in a["contributions"]} for a in answers)
    assert onnx == pytest.approx(sklearn, abs=1e-5)  # float32 against float64


def test_a_bad_record_is_a_422_naming_the_field(
    make_client: Client, penguin_task: TaskModel
) -> None:
    client = make_client(background=background(penguin_task))
    wait_ready(client)
    response = client.post("/explain", json={**GENTOO, "bill_length_mm": "long"})
    assert response.status_code == 422
    assert "bill_length_mm" in response.json()["detail"][0]["loc"]
    nan = json.dumps(GENTOO).replace("47.5", "NaN")
    for body in (nan, "{not json", "{}", json.dumps({**GENTOO, "wings": 2})):
        answer = client.post("/explain", content=body, headers=JSON)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json() == client.post("/predict", content=body, headers=JSON).json()


def test_off_is_a_404_and_absent_from_the_openapi(
    make_client: Client, penguin_task: TaskModel
) -> None:
    client = make_client(background=background(penguin_task), explain="off")
    wait_ready(client)
    assert client.post("/explain", json=GENTOO).status_code == 404
    on = make_client(background=background(penguin_task))
    assert "/explain" in on.get("/openapi.json").json()["paths"]


def test_without_background_rows_it_says_so(make_client: Client) -> None:
    client = make_client()
    wait_ready(client)
    response = client.post("/explain", json=GENTOO)
    assert response.status_code == 503
    assert "explain stage" in response.json()["detail"]


class SlowModel:
    """Answers once released; counts the explanations inside it."""

    classes = PENGUIN_CLASSES
    columns = tuple(GENTOO)
    numeric = frozenset(k for k, v in GENTOO.items() if isinstance(v, float))
    inputs = ()
    version = "slow00000000"
    runtime = "sklearn"
    is_classifier = True
    positive = None
    threshold = 0.5
    decode = ServedModel.decode
    frame = ServedModel.frame

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.pipeline = self

    def predict_proba(self, frame: Any) -> np.ndarray:
        self.entered.set()
        self.release.wait(10)
        return np.tile([0.1, 0.2, 0.7], (len(frame), 1))

    def score(self, records: list[dict[str, Any]]) -> np.ndarray:
        return np.tile([0.1, 0.2, 0.7], (len(records), 1))


def test_beyond_the_cap_is_a_503_at_once_and_predict_still_answers(
    make_client: Client, penguin_task: TaskModel
) -> None:
    model = SlowModel()
    client = make_client(
        lambda: model, background=background(penguin_task), max_concurrent_explanations=1
    )
    wait_ready(client)
    first: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: first.update(response=client.post("/explain", json=GENTOO))
    )
    worker.start()
    assert model.entered.wait(5)
    busy = client.post("/explain", json=GENTOO)
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "1"
    assert client.post("/predict", json=GENTOO).json()["prediction"] == "Gentoo"
    model.release.set()
    worker.join(10)
    assert first["response"].status_code == 200
    metrics = client.get("/metrics").text
    assert 'http_request_duration_seconds_count{route="/explain",status="200"} 1.0' in metrics
    assert 'http_request_duration_seconds_count{route="/explain",status="503"} 1.0' in metrics
