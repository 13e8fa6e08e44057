"""Requests whose headers could mean two things, bodies that are not JSON, and where the API
key comes from: a repeated Content-Type, Content-Length or Authorization is a 400 naming it,
a body posted to a JSON route without `Content-Type: application/json` is a 415, both before
the body is read; MLOPS_REQUIRE_API_KEY stops the service from starting without a key."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from mlops_template import PipelineError
from mlops_template.serve.app import DEFAULT_MODEL_NAME
from mlops_template.serve.guard import (
    MIN_REQUIRED_KEY_CHARS,
    Guard,
    Message,
    api_key_from,
    repeated_header,
)
from tests.unit.serve.conftest import GENTOO, service_params_file, wait_ready
from tests.unit.serve.test_v2 import tensors

Client = Callable[..., TestClient]
INFER = f"/v2/models/{DEFAULT_MODEL_NAME}/infer"
JSON_TYPE = ("content-type", "application/json")
KEY = "k" * MIN_REQUIRED_KEY_CHARS


def flood(keys: int) -> bytes:
    """Issue 27's body: a batch of one record with `keys` unknown keys (792 KB for 73,000;
    the issue's was 723 KB)."""
    record = {**GENTOO, **{f"k{index}": 1 for index in range(keys)}}
    return ('{"records": [' + json.dumps(record, separators=(",", ":")) + "]}").encode()


def test_json_then_text_plain_is_400_before_the_body_is_read(make_client: Client) -> None:
    """The guard read the last Content-Type, FastAPI the first: with `application/json` then
    `text/plain`, the guard skipped its cheap check and FastAPI validated 73,000 unknown keys
    on the event loop. Now the request is refused as soon as its headers are in."""
    client = make_client(max_body_bytes=2_000_000, max_batch_rows=5000)
    wait_ready(client)
    body = flood(73_000)
    assert 700_000 < len(body) < 800_000
    twice = [JSON_TYPE, ("content-type", "text/plain")]
    began = time.perf_counter()
    response = client.post("/predict/batch", content=body, headers=twice)
    elapsed = time.perf_counter() - began
    assert response.status_code == 400
    assert response.json() == {
        "detail": "the Content-Type header is given more than once; send it once"
    }
    assert response.headers["connection"] == "close"
    assert elapsed < 0.2, elapsed
    # The same body, said once, meets the cheap check: a small 422 with the count.
    once = client.post("/predict/batch", content=body, headers=[JSON_TYPE])
    assert once.status_code == 422
    assert once.json()["error_count"] == 73_000


@pytest.mark.parametrize(
    ("route", "header", "name"),
    [
        ("/predict", ("Content-Type", "application/json"), "Content-Type"),
        ("/predict/batch", ("content-length", "9"), "Content-Length"),
        ("/predict", ("authorization", f"Bearer {KEY}"), "Authorization"),
        ("/explain", ("authorization", "Bearer other"), "Authorization"),
        (INFER, ("content-type", "text/plain"), "Content-Type"),
        ("/health/live", ("authorization", "Bearer other"), "Authorization"),
    ],
)
def test_a_repeated_header_is_400_naming_it_and_the_body_is_not_read(
    make_client: Client, route: str, header: tuple[str, str], name: str
) -> None:
    """At the ASGI level, so the scope holds exactly the headers given (a client library
    would merge or refuse some): the body's receive() is never called, the app never runs."""
    client = make_client(api_key=KEY)
    guard = client.app
    assert isinstance(guard, Guard)
    body = json.dumps(tensors(GENTOO) if route == INFER else GENTOO).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"authorization", f"Bearer {KEY}".encode()),
        (header[0].encode(), header[1].encode()),
    ]
    read: list[Message] = []
    sent: list[Message] = []

    async def receive() -> Message:
        read.append({})
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    method = "GET" if route.startswith("/health") else "POST"
    scope: dict[str, Any] = {
        "type": "http", "method": method, "path": route, "headers": headers,
        "server": ("testserver", 8000), "query_string": b"",
    }  # fmt: skip
    asyncio.run(guard(scope, receive, send))
    start, answer = sent
    assert start["status"] == 400
    assert (b"connection", b"close") in start["headers"]
    detail = f"the {name} header is given more than once; send it once"
    expected = {"error": detail} if route.startswith("/v2") else {"detail": detail}
    assert json.loads(answer["body"]) == expected
    assert read == []


def test_headers_that_may_repeat_still_may(make_client: Client) -> None:
    client = make_client()
    wait_ready(client)
    headers = [JSON_TYPE, ("accept", "application/json"), ("accept", "*/*")]
    response = client.post("/predict", content=json.dumps(GENTOO), headers=headers)
    assert response.status_code == 200


def test_repeated_header_names_the_first_repeated() -> None:
    assert repeated_header([(b"x-a", b"1"), (b"x-a", b"2")]) is None
    assert repeated_header([(b"authorization", b"a"), (b"Authorization", b"b")]) == "Authorization"
    both = [(b"content-length", b"1"), (b"content-type", b"a"), (b"content-type", b"b"),
            (b"content-length", b"2")]  # fmt: skip
    assert repeated_header(both) == "Content-Type"


@pytest.mark.parametrize("route", ["/predict", "/predict/batch", "/explain", INFER])
@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/merge-patch+json"],
)
def test_a_body_that_is_not_json_is_415_naming_the_type(
    make_client: Client, route: str, content_type: str | None
) -> None:
    client = make_client()
    wait_ready(client)
    document = tensors(GENTOO) if route == INFER else GENTOO
    if route == "/predict/batch":
        document = {"records": [GENTOO]}
    headers = {} if content_type is None else {"content-type": content_type}
    response = client.post(route, content=json.dumps(document), headers=headers)
    assert response.status_code == 415
    assert response.headers["connection"] == "close"
    message = f"Content-Type must be application/json (given: {content_type or 'none'})"
    expected = {"error": message} if route == INFER else {"detail": message}
    assert response.json() == expected
    # The same document as application/json (a charset is fine) is read and answered.
    right = {"content-type": "application/json; charset=utf-8"}
    answered = client.post(route, content=json.dumps(document), headers=right)
    assert answered.status_code == (503 if route == "/explain" else 200)  # no background


def test_the_openapi_documents_400_and_415(make_client: Client) -> None:
    paths = make_client().get("/openapi.json").json()["paths"]
    for path in ("/predict", "/predict/batch", "/explain"):
        assert {"400", "415"} <= set(paths[path]["post"]["responses"]), path
    infer = paths["/v2/models/{name}/infer"]["post"]
    assert {"400", "415"} <= set(infer["responses"])
    assert set(infer["requestBody"]["content"]) == {"application/json"}
    assert "415" not in paths["/v2/health/ready"]["get"]["responses"]


def test_the_api_key_from_the_environment_or_a_file(tmp_path: Path) -> None:
    assert api_key_from({}) is None
    assert api_key_from({"MLOPS_API_KEY": ""}) is None
    assert api_key_from({"MLOPS_API_KEY": " s3cret\n"}) == "s3cret"
    key_file = tmp_path / "api-key"
    key_file.write_text(KEY + "\n")  # as `kubectl create secret --from-file` keeps it
    assert api_key_from({"MLOPS_API_KEY_FILE": str(key_file)}) == KEY
    required = {"MLOPS_REQUIRE_API_KEY": "true", "MLOPS_API_KEY_FILE": str(key_file)}
    assert api_key_from(required) == KEY
    with pytest.raises(PipelineError, match="both set"):
        api_key_from({"MLOPS_API_KEY": KEY, "MLOPS_API_KEY_FILE": str(key_file)})
    with pytest.raises(PipelineError, match=r"MLOPS_API_KEY_FILE .*missing"):
        api_key_from({"MLOPS_API_KEY_FILE": str(tmp_path / "missing")})
    with pytest.raises(PipelineError, match="MLOPS_REQUIRE_API_KEY: true or false"):
        api_key_from({"MLOPS_REQUIRE_API_KEY": "required"})


@pytest.mark.parametrize(
    ("environ", "said"),
    [
        ({}, "is empty"),
        ({"MLOPS_API_KEY": "  \n"}, "is empty"),
        ({"MLOPS_API_KEY": "short"}, "is 5 characters"),
    ],
    ids=["unset", "blank", "short"],
)
def test_a_required_key_that_is_missing_or_short_is_refused(
    environ: dict[str, str], said: str
) -> None:
    with pytest.raises(PipelineError, match=f"{said}, not at least {MIN_REQUIRED_KEY_CHARS}"):
        api_key_from({"MLOPS_REQUIRE_API_KEY": "1", **environ})


def test_the_service_refuses_to_start_unauthenticated_when_a_key_is_required(
    tmp_path: Path, model_path: Path
) -> None:
    """What the pods do with an empty Secret: exit 1 before listening, saying why."""
    params, _ = service_params_file(tmp_path, model_path)
    empty = tmp_path / "api-key"
    empty.write_text("\n")
    result = subprocess.run(
        [sys.executable, "-m", "mlops_template.serve", "--params", str(params)],
        capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "MLOPS_REQUIRE_API_KEY": "true",
             "MLOPS_API_KEY_FILE": str(empty)},
    )  # fmt: skip
    assert result.returncode == 1
    assert "refusing to start unauthenticated" in result.stderr
