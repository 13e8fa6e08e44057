"""Who may call what: the optional API key, /metrics and /docs internal or off, offline /docs."""

from __future__ import annotations

import hmac
import html
import json
import re
import shlex
from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

from mlops_template import PipelineError
from mlops_template.config import ServeSettings
from mlops_template.contract import contract_dict, load_contract, parse_contract
from mlops_template.serve import app as app_module
from mlops_template.serve import guard
from mlops_template.serve.model import ServedModel
from tests.conftest import DEFAULT_CONTRACT
from tests.unit.serve.conftest import GENTOO, wait_ready

Client = Callable[..., TestClient]
INTERNAL = "http://testserver:9000"  # the request arrives on serve.internal_port


def test_with_an_api_key_the_predict_routes_need_it(
    make_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared = []
    original = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(guard.hmac, "compare_digest", spy)
    client = make_client(api_key="s3cret-key")
    wait_ready(client)
    missing = client.post("/predict", json=GENTOO)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = {"authorization": "Bearer s3cret-kez"}
    assert client.post("/predict", json=GENTOO, headers=wrong).status_code == 401
    assert client.post("/predict/batch", json={"records": [GENTOO]}).status_code == 401
    right = {"authorization": "Bearer s3cret-key"}
    assert client.post("/predict", json=GENTOO, headers=right).status_code == 200
    batch = client.post("/predict/batch", json={"records": [GENTOO]}, headers=right)
    assert batch.status_code == 200
    assert (b"s3cret-kez", b"s3cret-key") in compared  # constant-time comparison
    # Probes and scrapes need no key; the OpenAPI documents the scheme.
    assert client.get("/health/ready").status_code == 200
    assert client.get("/metrics").status_code == 200
    spec = client.get("/openapi.json").json()
    assert spec["paths"]["/predict"]["post"]["security"] == [{"HTTPBearer": []}]
    assert "401" in spec["paths"]["/predict"]["post"]["responses"]


def test_the_key_is_checked_before_the_body_is_read(make_client: Client) -> None:
    client = make_client(api_key="k", max_body_bytes=2048)
    big = {"records": [GENTOO] * 100}  # over the limit: 413 for a client with the key
    assert client.post("/predict/batch", json=big).status_code == 401


def test_without_a_key_the_service_is_open(make_client: Client) -> None:
    client = make_client()
    wait_ready(client)
    assert client.post("/predict", json=GENTOO).status_code == 200
    assert "security" not in client.get("/openapi.json").json()["paths"]["/predict"]["post"]


def test_metrics_and_docs_on_the_internal_port_only(make_client: Client) -> None:
    client = make_client(metrics="internal", docs="internal", internal_port=9000)
    wait_ready(client)
    for path in ("/metrics", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 404, path
        assert client.get(INTERNAL + path).status_code == 200, path
    # The internal port serves the health routes too, and never predictions.
    assert client.get(INTERNAL + "/health/ready").status_code == 200
    assert client.post(INTERNAL + "/predict", json=GENTOO).status_code == 404
    assert client.post("/predict", json=GENTOO).status_code == 200


def test_metrics_and_docs_off(make_client: Client) -> None:
    client = make_client(metrics="off", docs="off")
    for path in ("/metrics", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 404, path
        assert client.get(INTERNAL + path).status_code == 404, path


def test_docs_work_offline(make_client: Client) -> None:
    page = make_client().get("/docs")
    assert page.status_code == 200
    html = page.text
    assert "<script" not in html  # nothing to fetch: no CDN, no JavaScript
    assert "http://" not in html
    assert "https://" not in html
    assert "/predict/batch" in html
    assert "bill_length_mm" in html
    assert "minimum 25.0" in html
    assert "&quot;Biscoe&quot;" in html  # the categories
    assert make_client().get("/redoc").status_code == 404  # also loads from a CDN


HOSTILE = "x'; touch /tmp/pwned; echo '"  # a category that would end a single-quoted payload


def test_docs_quote_the_contract_for_the_shell_and_escape_it_for_html(
    settings: ServeSettings,
) -> None:
    raw = contract_dict(load_contract(DEFAULT_CONTRACT))
    raw["name"] = "<b>penguins</b>"
    raw["description"] = "<script>alert('description')</script>"
    island = next(spec for spec in raw["features"] if spec["name"] == "island")
    island["categories"] = [*island["categories"], HOSTILE, "</pre><script>x()</script>"]
    island["description"] = "<img src=x onerror=alert(1)>"
    raw["example"]["island"] = HOSTILE
    contract = parse_contract(raw, DEFAULT_CONTRACT)

    def no_model() -> ServedModel:
        raise PipelineError("no model in this test")

    with TestClient(app_module.create_app(settings, no_model, contract=contract)) as client:
        page = client.get("/docs").text
    for markup in ("<script", "<img", "<b>"):
        assert markup not in page  # the contract's strings are text, not markup
    assert "&lt;/pre&gt;&lt;script&gt;x()&lt;/script&gt;" in page
    commands = re.findall(r"<pre>(curl .*?)</pre>", page)
    assert len(commands) == 3  # /predict, /predict/batch and /explain
    for command in commands:
        words = shlex.split(html.unescape(command))
        assert words[:-1] == ["curl", "-s", words[2], "-H", "content-type: application/json", "-d"]
        payload = json.loads(words[-1])
        record = payload["records"][0] if "records" in payload else payload
        assert record["island"] == HOSTILE
