"""The service as a process: start-up refusal, the imports it avoids, SIGTERM draining."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.processes import free_port, serve_process, wait_service_ready
from tests.unit.serve.conftest import GENTOO, service_params_file


def test_serving_imports_neither_mlflow_nor_dvc() -> None:
    code = (
        "import sys, mlops_template.serve.__main__;"
        "heavy = ['mlflow', 'dvc', 'pandera', 'matplotlib', 'typer', 'mlops_template.stages'];"
        "print([m for m in heavy if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


def test_tampered_model_refuses_to_start(tmp_path: Path, model_path: Path) -> None:
    params, _ = service_params_file(tmp_path, model_path)
    with (tmp_path / "models" / "model.onnx").open("ab") as handle:
        handle.write(b"\0")
    result = subprocess.run(
        [sys.executable, "-m", "mlops_template.serve", "--params", str(params)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "sha256 does not match" in result.stderr
    assert "refusing to start" in result.stderr


@pytest.mark.slow
def test_sigterm_drains_then_exits(tmp_path: Path, model_path: Path) -> None:
    params, port = service_params_file(tmp_path, model_path, drain_seconds=1.5)
    raw = yaml.safe_load(params.read_text())
    raw["registry"]["model_name"] = "penguin-species"
    params.write_text(yaml.safe_dump(raw))
    url = f"http://127.0.0.1:{port}"
    process = serve_process(params)
    try:
        wait_service_ready(url, process)
        with httpx.Client(base_url=url, timeout=5) as client:
            assert client.post("/predict", json=GENTOO).status_code == 200
            # The Open Inference Protocol names the model as the registry does.
            assert client.get("/v2/models/penguin-species").json()["name"] == "penguin-species"
            assert client.get("/v2/models/mlops-template").status_code == 404
            process.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            ready = client.get("/health/ready")
            assert ready.status_code == 503
            assert ready.json()["reason"] == "draining"
            # Still serving while load balancers take it out of rotation.
            assert client.post("/predict", json=GENTOO).status_code == 200
        # uvicorn re-raises the signal after its graceful shutdown: the conventional exit
        # status for a process stopped by SIGTERM (143 in a shell).
        assert process.wait(timeout=20) == -signal.SIGTERM
        assert "Finished server process" in process.communicate()[0]
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
    assert (tmp_path / "predictions.jsonl").read_text().count("\n") == 2


@pytest.mark.slow
def test_metrics_and_docs_on_an_internal_listener(tmp_path: Path, model_path: Path) -> None:
    internal = free_port()
    params, port = service_params_file(
        tmp_path, model_path, metrics="internal", docs="internal", internal_port=internal
    )
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "mlops_template.serve", "--params", str(params)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "MLOPS_API_KEY": "k"},
    )
    try:
        wait_service_ready(url, process)
        assert httpx.get(f"{url}/metrics").status_code == 404
        assert httpx.get(f"{url}/docs").status_code == 404
        assert httpx.post(f"{url}/predict", json=GENTOO).status_code == 401
        key = {"authorization": "Bearer k"}
        assert httpx.post(f"{url}/predict", json=GENTOO, headers=key).status_code == 200
        inside = f"http://127.0.0.1:{internal}"
        assert "http_requests_total" in httpx.get(f"{inside}/metrics").text
        assert httpx.get(f"{inside}/docs").status_code == 200
        assert httpx.post(f"{inside}/predict", json=GENTOO, headers=key).status_code == 404
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
