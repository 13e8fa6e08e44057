"""The local stack's helper scripts without Docker: the log shipper against a real S3 API
(moto's server), and `make screenshots` refusing, page by page, what the stack cannot show yet.
The real stack runs both in tests/integration/docker/test_stack.py."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from tests.support.processes import free_port
from tests.support.servers import s3_env

COMPOSE_DIR = REPO_ROOT / "deploy" / "compose"


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, COMPOSE_DIR / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    sys.path.insert(0, str(COMPOSE_DIR))  # screenshots.py imports stack.py beside it
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(COMPOSE_DIR))
    return module


@pytest.fixture
def bucket(s3_endpoint: str, request: pytest.FixtureRequest) -> tuple[Any, str]:
    """A client of the real S3 API (moto server) and a bucket name of this test's own."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        **{k.lower(): v for k, v in s3_env().items()},
    )
    return client, re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:60].strip("-")


def _objects(s3: Any, bucket: str) -> dict[str, bytes]:
    """The bucket's objects, none while it does not exist."""
    from botocore.exceptions import ClientError

    try:
        listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    except ClientError:
        return {}
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def _poll(what: str, probe: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not probe():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.1)


def test_the_shipper_ships_the_log_as_it_grows(
    bucket: tuple[Any, str], s3_endpoint: str, tmp_path: Path
) -> None:
    """ship_logs.py as the stack runs it: it makes its bucket, then follows the log."""
    s3, name = bucket
    log = tmp_path / "predictions.jsonl"
    log.write_text('{"id": "1"}\n')
    env = {
        **os.environ,
        **s3_env(),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
        "LOG_DIR": str(tmp_path),
        "LOG_BUCKET": name,
        "SHIP_SECONDS": "0.2",
    }
    shipper = subprocess.Popen(
        [sys.executable, str(COMPOSE_DIR / "ship_logs.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first = {"predictions.jsonl": b'{"id": "1"}\n'}
        _poll("the first line shipped", lambda: _objects(s3, name) == first)
        with log.open("a") as growing:
            growing.write('{"id": "2"}\n')
        grown = {"predictions.jsonl": b'{"id": "1"}\n{"id": "2"}\n'}
        _poll("the second line shipped", lambda: _objects(s3, name) == grown)
    finally:
        shipper.terminate()
        output, _ = shipper.communicate(timeout=10)
    assert f"-> s3://{name}/predictions.jsonl" in output


def test_the_shipper_follows_rotation_and_ships_only_changes(
    bucket: tuple[Any, str], tmp_path: Path
) -> None:
    s3, name = bucket
    s3.create_bucket(Bucket=name)
    ship_once = _module("ship_logs").ship_once
    shipped: dict[str, tuple[int, int]] = {}
    log = tmp_path / "predictions.jsonl"
    log.write_text('{"id": "1"}\n')
    ship_once(s3, tmp_path, name, shipped)
    assert _objects(s3, name) == {"predictions.jsonl": b'{"id": "1"}\n'}

    # Unchanged: not uploaded again (the object is replaced behind its back to tell).
    s3.put_object(Bucket=name, Key="predictions.jsonl", Body=b"sentinel")
    ship_once(s3, tmp_path, name, shipped)
    assert _objects(s3, name)["predictions.jsonl"] == b"sentinel"

    # The service rotates: the full file becomes .1 and a new one starts; later .1 is dropped.
    log.rename(tmp_path / "predictions.jsonl.1")
    log.write_text('{"id": "2"}\n{"id": "3"}\n')
    ship_once(s3, tmp_path, name, shipped)
    assert _objects(s3, name) == {
        "predictions.jsonl": b'{"id": "2"}\n{"id": "3"}\n',
        "predictions.jsonl.1": b'{"id": "1"}\n',
    }
    (tmp_path / "predictions.jsonl.1").unlink()
    ship_once(s3, tmp_path, name, shipped)
    assert set(_objects(s3, name)) == {"predictions.jsonl"}
    assert set(shipped) == {"predictions.jsonl"}


def test_the_shipper_retries_a_file_it_could_not_upload(
    bucket: tuple[Any, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s3, name = bucket
    ship_once = _module("ship_logs").ship_once
    shipped: dict[str, tuple[int, int]] = {}
    (tmp_path / "predictions.jsonl").write_text("{}\n")
    ship_once(s3, tmp_path, name, shipped)  # the bucket does not exist yet
    assert "predictions.jsonl: not shipped this round" in capsys.readouterr().out
    assert shipped == {}
    s3.create_bucket(Bucket=name)
    ship_once(s3, tmp_path, name, shipped)
    assert set(_objects(s3, name)) == {"predictions.jsonl"}


def test_visible_text_leaves_out_scripts_and_styles() -> None:
    visible_text = _module("screenshots").visible_text
    dom = (
        "<html><head><style>.champion{}</style><script>var a = 'champion';</script></head>"
        "<body><h1>mlops-template</h1><noscript>champion</noscript><p>@ champion</p></body>"
    )
    assert visible_text(dom) == "mlops-template @ champion"
    assert "champion" not in visible_text(dom.replace("<p>@ champion</p>", ""))


def test_screenshots_of_a_stack_that_is_not_up_name_each_page_and_write_nothing(
    tmp_path: Path,
) -> None:
    out = tmp_path / "images"
    out.mkdir()
    previous = out / "stack-mlflow-champion.png"
    previous.write_bytes(b"the previous picture")
    (tmp_path / "params.yaml").write_text(
        "registry: {model_name: my-model}\npaths: {drift: reports/drift}\n"
    )
    closed = {name: str(free_port()) for name in ("MLFLOW_PORT", "PROMETHEUS_PORT")}
    state = tmp_path / "state"  # no stack started here: no report can be this stack's
    taken = subprocess.run(
        [
            sys.executable,
            str(COMPOSE_DIR / "screenshots.py"),
            "--out",
            str(out),
            "--params",
            str(tmp_path / "params.yaml"),
        ],
        env={**os.environ, **closed, "STACK_STATE": str(state), "CHROMIUM": "/bin/false"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert taken.returncode != 0
    assert "stack-mlflow-champion.png: " in taken.stderr
    assert "is the stack up?" in taken.stderr
    assert "stack-prometheus-alerts.png: " in taken.stderr
    drift_html = state / "drift" / "drift.html"
    refusal = f"no drift report at {drift_html} (none): `make stack-drift`"
    assert f"stack-drift-report.png: {refusal}" in taken.stderr
    assert sorted(p.name for p in out.iterdir()) == ["stack-mlflow-champion.png"]
    assert previous.read_bytes() == b"the previous picture"


def test_a_report_from_before_the_stack_started_is_not_taken(tmp_path: Path) -> None:
    screenshots = _module("screenshots")
    report = tmp_path / "drift.html"
    report.write_text("<h1>Drift report: drift</h1>")
    os.utime(report, (1_000_000, 1_000_000))
    page = screenshots.drift_page(report, since=2_000_000)
    with pytest.raises(screenshots.NotReadyError, match="older than this stack"):
        page.ready()
    screenshots.drift_page(report, since=500_000).ready()


def test_a_page_that_renders_without_its_text_is_refused(tmp_path: Path) -> None:
    """Real Chromium on a drift report that is not one: no picture."""
    screenshots = _module("screenshots")
    if not any(map(shutil.which, screenshots.BROWSERS)):
        pytest.skip("no Chromium: apt-get install chromium (.ci/provision does)")
    report = tmp_path / "drift.html"
    report.write_text(
        "<html><body><h1>Something else</h1>"
        "<script>document.title = 'Drift report'</script></body></html>"
    )
    with pytest.raises(screenshots.NotReadyError, match=r"rendered without \['drift report'\]"):
        screenshots.capture(screenshots.drift_page(report), tmp_path, tmp_path / "profile")
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".png") == []
    report.write_text("<html><body><h1>Drift report: no drift</h1></body></html>")
    saved = screenshots.capture(screenshots.drift_page(report), tmp_path, tmp_path / "profile")
    assert saved.read_bytes().startswith(b"\x89PNG")
