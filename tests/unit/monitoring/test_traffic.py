"""`mlops monitor traffic` against a stub HTTP server that records what it was sent."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from mlops_template import PipelineError
from mlops_template.cli.app import app
from mlops_template.config import Params
from mlops_template.contract import Contract
from mlops_template.monitoring import traffic


@dataclass
class Stub:
    url: str
    posts: list[tuple[str, Any]] = field(default_factory=list)
    delay: float = 0.0

    def records(self) -> list[dict[str, Any]]:
        return [
            record
            for path, body in self.posts
            for record in (body["records"] if path.endswith("/batch") else [body])
        ]


@pytest.fixture
def stub() -> Iterator[Stub]:
    """A threaded HTTP server on a free loopback port: records each POST, answers 200."""
    state = Stub("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.posts.append((self.path, body))
            time.sleep(state.delay)
            payload = b'{"prediction": "x"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def assert_valid(record: dict[str, Any], contract: Contract) -> None:
    """What the service's request model enforces: known features, in range or category."""
    specs = {spec.name: spec for spec in contract.features}
    assert set(record) <= set(specs), record
    for spec in contract.features:
        value = record.get(spec.name)
        if value is None:
            assert spec.nullable, (spec.name, record)
        elif spec.kind == "numeric":
            assert isinstance(value, int | float)
            assert not isinstance(value, bool)
            assert spec.minimum is None or value >= spec.minimum
            assert spec.maximum is None or value <= spec.maximum
        else:
            assert value in spec.categories, (spec.name, value)


def plan(stub: Stub, **changes: Any) -> traffic.TrafficPlan:
    return traffic.TrafficPlan(**{"url": stub.url, "requests": 50, "seed": 3, **changes})


def test_records_are_valid_and_counted(params: Params, stub: Stub) -> None:
    summary = traffic.run(plan(stub), params.data.source, params.contract)
    assert summary.sent == 50
    assert summary.statuses == {"200": 50}
    assert {path for path, _ in stub.posts} == {"/predict"}
    for record in stub.records():
        assert_valid(record, params.contract)
    assert summary.percentile(50) > 0
    assert not summary.stopped_early


def test_invalid_source_values_are_made_valid(params: Params, stub: Stub, tmp_path: Path) -> None:
    """Out-of-range numbers are clipped, unknown categories blanked, extra columns dropped."""
    frame = pd.read_csv(params.data.source)
    frame.loc[:, "body_mass_g"] = 99_999.0
    frame.loc[:, "island"] = "Atlantis"
    frame["extra"] = 1
    source = tmp_path / "odd.csv"
    frame.to_csv(source, index=False)
    traffic.run(plan(stub, requests=20), source, params.contract)
    for record in stub.records():
        assert_valid(record, params.contract)
        assert "island" not in record
        assert "extra" not in record
        assert record["body_mass_g"] == 7000.0  # the contract's maximum


def test_shift_moves_numbers_and_pins_categories(params: Params, stub: Stub) -> None:
    traffic.run(plan(stub, concurrency=1), params.data.source, params.contract)  # in order
    plain = stub.records()
    stub.posts.clear()
    shifts = {"bill_length_mm": "5", "island": "Dream"}
    traffic.run(plan(stub, shifts=shifts, concurrency=1), params.data.source, params.contract)
    shifted = stub.records()
    assert len(shifted) == len(plain) == 50
    for before, after in zip(plain, shifted, strict=True):  # the same draws, seed for seed
        assert_valid(after, params.contract)
        assert after["island"] == "Dream"
        if "bill_length_mm" in before:
            assert after["bill_length_mm"] == pytest.approx(min(before["bill_length_mm"] + 5, 70))


def test_missing_rate_and_batches(params: Params, stub: Stub) -> None:
    changes = {"missing": {"sex": "1"}, "batch_size": 7, "requests": 3}
    summary = traffic.run(plan(stub, **changes), params.data.source, params.contract)
    assert summary.sent == 3
    assert [path for path, _ in stub.posts] == ["/predict/batch"] * 3
    assert [len(body["records"]) for _, body in stub.posts] == [7, 7, 7]
    assert all("sex" not in record for record in stub.records())


def test_bounded_in_time(params: Params, stub: Stub) -> None:
    stub.delay = 0.2
    started = time.monotonic()
    summary = traffic.run(
        plan(stub, requests=1000, concurrency=2, max_seconds=0.5),
        params.data.source,
        params.contract,
    )
    assert time.monotonic() - started < 5
    assert summary.stopped_early
    assert 0 < summary.sent < 20


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"shifts": {"wingspan": "1"}}, "--shift wingspan: not a feature"),
        ({"shifts": {"island": "Mars"}}, "not one of its categories"),
        ({"shifts": {"bill_length_mm": "a lot"}}, "DELTA must be a number"),
        ({"missing": {"sex": "2"}}, "RATE must be between 0 and 1"),
        ({"requests": 0}, "--requests must be at least 1"),
    ],
)
def test_bad_plans_are_clear_errors(
    params: Params, stub: Stub, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(PipelineError, match=message):
        traffic.run(plan(stub, **changes), params.data.source, params.contract)
    assert not stub.posts


def test_cli_summary_and_exit_status(params: Params, stub: Stub) -> None:
    runner = CliRunner()
    args = ["monitor", "traffic", "--url", stub.url, "--requests", "10", "--shift", "island=Dream"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "sent 10 request(s)" in result.output
    assert "status: 200: 10" in result.output
    assert "latency: p50" in result.output

    down = runner.invoke(
        app, ["monitor", "traffic", "--url", "http://127.0.0.1:9", "--requests", "2"]
    )
    assert down.exit_code == 1
    assert "ConnectError: 2" in down.output
    assert "no request to http://127.0.0.1:9 succeeded" in down.output
