"""Limits a hostile client meets: per-route body limits from the schema, the body-read timeout,
the concurrency slot taken before the body is read, capped validation errors, empty records."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from mlops_template.config import ServeSettings
from mlops_template.contract import load_contract
from mlops_template.serve.app import Guard, create_app
from mlops_template.serve.limits import body_limits, max_record_bytes
from mlops_template.serve.model import ServedModel
from tests.conftest import DEFAULT_CONTRACT
from tests.support.tasks import TaskModel
from tests.unit.serve.conftest import GENTOO, wait_ready

Client = Callable[..., TestClient]


def test_body_limits_come_from_the_contract(
    penguin_task: TaskModel, binary_task: TaskModel
) -> None:
    features = penguin_task.contract.features
    widest = max_record_bytes(features)
    assert 150 < widest < 300  # six fields; a numeric one written as its longest float
    limits = body_limits(ServeSettings(max_batch_rows=100), features)
    assert limits["/predict"] < 2 * 1024  # one record, not the 1 MB every route had
    assert 100 * widest < limits["/predict/batch"] < 100 * 5 * widest
    # 30 numeric features with long names: a record may be larger, and is allowed to be.
    assert max_record_bytes(binary_task.contract.features) > 4 * widest
    capped = body_limits(ServeSettings(max_batch_rows=100_000), features)
    assert capped["/predict/batch"] == ServeSettings().max_body_bytes


def test_a_record_larger_than_one_record_can_be_is_413(make_client: Client) -> None:
    client = make_client()
    padded = json.dumps(GENTOO) + " " * 4000  # valid JSON, but no record needs 4 KB
    response = client.post("/predict", content=padded, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.headers["connection"] == "close"
    # The same bytes are fine inside a batch's limit.
    batch = '{"records": [' + padded + "]}"
    assert (
        client.post("/predict/batch", content=batch, headers={"content-type": "application/json"})
    ).status_code != 413


def test_130000_extra_keys_get_a_small_422_fast(make_client: Client) -> None:
    client = make_client(max_body_bytes=4_000_000, max_batch_rows=10_000)
    record = {**GENTOO, **{f"k{index}": 1 for index in range(130_000)}}
    body = json.dumps({"records": [record]})
    assert len(body) > 1_500_000
    began = time.perf_counter()
    response = client.post(
        "/predict/batch", content=body, headers={"content-type": "application/json"}
    )
    elapsed = time.perf_counter() - began
    assert response.status_code == 422
    assert len(response.content) < 4_000, len(response.content)
    assert elapsed < 1.0, elapsed
    payload = response.json()
    assert payload["error_count"] == 130_000
    shown = payload["detail"]
    assert len(shown) == 11  # the first 10, then how many more
    assert shown[0] == {
        "loc": ["body", "records", 0, "k0"],
        "msg": "Extra inputs are not permitted",
        "type": "extra_forbidden",
    }
    assert shown[-1]["type"] == "too_many_errors"
    assert shown[-1]["msg"] == "129990 more errors not shown"


def test_validation_errors_are_capped_with_a_count(make_client: Client) -> None:
    client = make_client(max_validation_errors=3)
    bad = {"island": "Atlantis", "bill_length_mm": 999.0, "sex": 1}
    response = client.post("/predict/batch", json={"records": [bad] * 50})
    assert response.status_code == 422
    payload = response.json()
    assert payload["error_count"] == 150
    assert [item["loc"] for item in payload["detail"][:3]] == [
        ["body", "records", 0, "island"],
        ["body", "records", 0, "bill_length_mm"],
        ["body", "records", 0, "sex"],
    ]
    assert payload["detail"][3]["msg"] == "147 more errors not shown"


def test_a_long_unknown_key_is_not_echoed_whole(make_client: Client) -> None:
    response = make_client().post("/predict", json={**GENTOO, "x" * 900: 1})
    assert response.status_code == 422
    assert len(response.content) < 400
    assert response.json()["detail"][0]["loc"][1].endswith("...")


def test_nesting_too_deep_is_422_not_500(make_client: Client) -> None:
    body = '{"records": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = make_client().post(
        "/predict/batch", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"
    assert response.json()["error_count"] == 1


@pytest.mark.parametrize("record", [{}, {name: None for name in GENTOO}])
def test_a_record_with_every_feature_missing_is_422(
    make_client: Client, settings: ServeSettings, record: dict[str, Any]
) -> None:
    client = make_client()
    wait_ready(client)
    response = client.post("/predict", json=record)
    assert response.status_code == 422
    assert response.json()["detail"][0] == {
        "loc": ["body"],
        "msg": "at least 1 features must be given (not null); got 0",
        "type": "too_few_features",
    }
    batch = client.post("/predict/batch", json={"records": [GENTOO, record]})
    assert batch.status_code == 422
    assert batch.json()["detail"][0]["loc"] == ["body", "records", 1]
    client.__exit__(None, None, None)  # flushes the log: nothing was logged
    assert not settings.prediction_log.exists() or settings.prediction_log.read_text() == ""


def test_the_minimum_of_present_features_is_a_setting(make_client: Client) -> None:
    strict = make_client(min_present_features=3)
    wait_ready(strict)
    assert strict.post("/predict", json={"island": "Dream", "sex": "male"}).status_code == 422
    three = {"island": "Dream", "sex": "male", "body_mass_g": 3700.0}
    assert strict.post("/predict", json=three).status_code == 200
    lenient = make_client(min_present_features=0)
    wait_ready(lenient)
    assert lenient.post("/predict", json={}).status_code == 200


def test_openapi_says_which_records_are_too_empty(make_client: Client) -> None:
    spec = make_client(min_present_features=1).get("/openapi.json").json()
    alternatives = spec["components"]["schemas"]["Features"]["anyOf"]
    assert len(alternatives) == 6
    assert alternatives[0] == {
        "required": ["island"],
        "properties": {"island": {"not": {"type": "null"}}},
    }


# ASGI-level: a client whose body never finishes arriving.


def _guard(model_path: Path, tmp_path: Path, **overrides: Any) -> Guard:
    settings = ServeSettings(prediction_log=tmp_path / "p.jsonl", **overrides)
    contract = load_contract(DEFAULT_CONTRACT)
    return create_app(settings, lambda: ServedModel.load(model_path), contract=contract)


def _scope(path: str = "/predict", length: int = 100) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(length).encode()),
        ],
        "server": ("127.0.0.1", 8000),
    }


class Stalled:
    """Sends `first` and then nothing (more_body=True): a slow or stalled upload."""

    def __init__(self, first: bytes = b"{ "):
        self.first = first
        self.sent = False

    async def __call__(self) -> dict[str, Any]:
        if not self.sent:
            self.sent = True
            return {"type": "http.request", "body": self.first, "more_body": True}
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


class Replies:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return self.messages[0]["status"]

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0]["headers"])


def test_a_stalled_body_gets_408_and_the_connection_closed(
    model_path: Path, tmp_path: Path
) -> None:
    guard = _guard(model_path, tmp_path, body_timeout_seconds=0.3)
    replies = Replies()

    async def run() -> None:
        await asyncio.wait_for(guard(_scope(), Stalled(), replies), 5)

    began = time.perf_counter()
    asyncio.run(run())
    assert 0.3 <= time.perf_counter() - began < 2
    assert replies.status == 408
    assert replies.headers[b"connection"] == b"close"  # uvicorn closes it after the reply
    assert guard.state.inflight == 0


def test_the_concurrency_slot_is_taken_before_the_body_is_read(
    model_path: Path, tmp_path: Path
) -> None:
    guard = _guard(model_path, tmp_path, max_concurrent_requests=1, body_timeout_seconds=5)
    slow, second = Replies(), Replies()

    async def run() -> None:
        uploading = asyncio.create_task(guard(_scope(), Stalled(), slow))
        await asyncio.sleep(0.05)
        assert guard.state.inflight == 1
        await asyncio.wait_for(guard(_scope(), Stalled(), second), 2)
        uploading.cancel()

    asyncio.run(run())
    assert second.status == 503  # at once: the stalled upload holds the only slot


def test_a_body_in_many_small_chunks_is_read_in_linear_time(
    model_path: Path, tmp_path: Path
) -> None:
    """100,000 chunks of 8 bytes: joined once, not grown by `+=` (40 GB of copying)."""
    guard = _guard(model_path, tmp_path)
    chunks = [b" " * 8] * 100_000 + [json.dumps({"records": [{"sex": 1}]}).encode()]
    size = sum(map(len, chunks))
    assert size < guard.limits["/predict/batch"]
    replies = Replies()

    chunks.reverse()

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop()
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    began = time.perf_counter()
    asyncio.run(guard(_scope("/predict/batch", size), receive, replies))
    assert time.perf_counter() - began < 3
    assert replies.status == 422  # read whole, then validated (sex: 1 is not a category)


def test_bodies_being_received_have_a_byte_budget(model_path: Path, tmp_path: Path) -> None:
    """A flood of large uploads is turned away unread once their declared lengths fill
    serve.max_body_bytes_in_flight (memory stays bounded); uploads without a length count
    as their bytes arrive."""
    guard = _guard(model_path, tmp_path, max_body_bytes_in_flight=4096, body_timeout_seconds=5)
    holding, refused, unsized = Replies(), Replies(), Replies()

    async def run() -> None:
        big = asyncio.create_task(guard(_scope("/predict/batch", 3000), Stalled(), holding))
        await asyncio.sleep(0.05)
        assert guard.body_bytes == 3000
        await asyncio.wait_for(guard(_scope("/predict/batch", 2000), Stalled(), refused), 2)
        scope = _scope("/predict/batch")
        scope["headers"] = [(b"content-type", b"application/json")]  # chunked: no length
        await asyncio.wait_for(guard(scope, Stalled(b" " * 1500), unsized), 2)
        big.cancel()
        await asyncio.gather(big, return_exceptions=True)

    asyncio.run(run())
    assert refused.status == 503
    assert refused.headers[b"connection"] == b"close"
    assert unsized.status == 503
    assert guard.body_bytes == 0
