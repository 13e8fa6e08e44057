"""`make up`, traffic, a drift alert firing in Prometheus, MLflow on PostgreSQL with artefacts
in S3, the drift report from the shipped log, screenshots in headless Chromium, and `make
down`: the local stack of deploy/compose, for real, on the session's Docker engine and
service image (conftest.py), with LOCAL_IMAGES=1 (no registry is reachable here).

One stack for the module, started once; the tests run in file order and the last one takes
it down (the fixture takes it down again, whatever happened). Every wait is bounded."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.integration.docker.conftest import DOCKER, Engine
from tests.support import dashboard
from tests.support.processes import VENV_BIN, free_port
from tests.support.project import sh

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1500)]

PROJECT = "mlops-stack-test"
POLL_SECONDS = 120
ALERT_FOR = "10s"  # the stack cuts every alert's `for:` to this (production: alerts.yml's own)


@dataclass(frozen=True)
class Stack:
    root: Path
    env: dict[str, str]
    make_args: list[str]
    urls: dict[str, str]
    moments: dict[str, float] = field(default_factory=dict)  # what happened when (time.time())

    @property
    def state(self) -> Path:
        return Path(self.env["STACK_STATE"])

    def make(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh(
            self.root,
            "make",
            "--no-print-directory",
            *args,
            *self.make_args,
            env=self.env,
            check=check,
        )


def _compose_installed(docker: Engine) -> bool:
    v2 = subprocess.run([str(DOCKER), "compose", "version"], env=docker.env, capture_output=True)
    return v2.returncode == 0 or shutil.which("docker-compose") is not None


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    engine: Engine,
    image: str,
    image_context: Path,
) -> Iterator[Stack]:
    if not _compose_installed(engine):
        pytest.skip("no compose: apt-get install docker-compose (.ci/provision does)")
    # make's `install` step would sync a new environment in the copy: a stub uv instead,
    # and the recipes' `python` is the tests' venv (first on PATH, from sh()).
    tools = tmp_path_factory.mktemp("stack-tools")
    (tools / "uv").write_text("#!/bin/sh\nexit 0\n")
    (tools / "uv").chmod(0o755)
    ports = {
        name: str(free_port())
        for name in ("SERVICE_PORT", "PROMETHEUS_PORT", "MLFLOW_PORT", "S3_PORT")
    }
    env = {
        **engine.env,
        **ports,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",  # engine.env's would win over sh()'s
        "COMPOSE_PROJECT_NAME": PROJECT,
        "STACK_STATE": str(tmp_path_factory.mktemp("stack-state")),
        "ALERT_FOR": ALERT_FOR,
        "STACK_TIMEOUT": "180",
    }
    # The stack's own copy of the image's context, where the whole pipeline runs (the model is
    # the image's: train already ran) so that `make stack-register` can register and promote.
    root = tmp_path_factory.mktemp("stack") / "project"
    shutil.copytree(image_context, root, symlinks=True)
    sh(root, "dvc", "repro")
    stack = Stack(
        root=root,
        env=env,
        make_args=[
            f"UV={tools / 'uv'}",
            "RUN=",
            f"DOCKER={DOCKER}",
            f"IMAGE={image}",
            "LOCAL_IMAGES=1",
        ],
        urls={
            "service": f"http://127.0.0.1:{ports['SERVICE_PORT']}",
            "prometheus": f"http://127.0.0.1:{ports['PROMETHEUS_PORT']}",
            "mlflow": f"http://127.0.0.1:{ports['MLFLOW_PORT']}",
            "s3": f"http://127.0.0.1:{ports['S3_PORT']}",
        },
    )
    try:
        started = time.monotonic()
        up = stack.make("up")
        print(f"make up: {time.monotonic() - started:.0f} s\n{up.stdout}")
        for url in stack.urls.values():
            assert url in up.stdout, up.stdout
        yield stack
    finally:
        stack.make("down", "VOLUMES=1", check=False)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def _prometheus(stack: Stack, endpoint: str, **query: str) -> Any:
    url = f"{stack.urls['prometheus']}/api/v1/{endpoint}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    body = _get(url)
    assert body["status"] == "success", body
    return body["data"]


def _poll(what: str, probe: Callable[[], Any], seconds: float = POLL_SECONDS) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {seconds:.0f} s")
        time.sleep(1)


def _value(stack: Stack, promql: str, **at: str) -> float | None:
    result = _prometheus(stack, "query", query=promql, **at)["result"]
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_the_service_with_every_rule_loaded(stack: Stack) -> None:
    (target,) = _poll(
        "an active target",
        lambda: _prometheus(stack, "targets", state="active")["activeTargets"],
    )
    assert target["labels"] == {"instance": "mlops-service:8000", "job": "mlops-service"}
    _poll("the target up", lambda: _value(stack, 'up{job="mlops-service"}') == 1.0)
    # The traffic service's first, unshifted run (300 records) reaches the service.
    _poll("the start-up traffic", lambda: (_value(stack, "sum(predictions_total)") or 0) >= 300)
    groups = _prometheus(stack, "rules", type="alert")["groups"]
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    shipped = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    assert sorted(rules) == sorted(r["alert"] for g in shipped["groups"] for r in g["rules"])
    assert all(rule["duration"] <= 10 for rule in rules.values())
    _poll(
        "every rule evaluated",
        lambda: all(
            rule["health"] == "ok"
            for group in _prometheus(stack, "rules", type="alert")["groups"]
            for rule in group["rules"]
        ),
    )


def test_mlflow_keeps_runs_in_postgres_and_artefacts_in_s3(stack: Stack, tmp_path: Path) -> None:
    import boto3

    script = (
        "import mlflow, pathlib, sys\n"
        "note = pathlib.Path(sys.argv[1])\n"
        "note.write_text('logged through the stack')\n"
        "with mlflow.start_run() as run:\n"
        "    mlflow.log_metric('score', 0.5)\n"
        "    mlflow.log_artifact(str(note))\n"
        "print(run.info.run_id)\n"
    )
    logged = sh(
        tmp_path,
        str(VENV_BIN / "python"),
        "-c",
        script,
        str(tmp_path / "note.txt"),
        env={"MLFLOW_TRACKING_URI": stack.urls["mlflow"]},
    )
    run_id = logged.stdout.strip().splitlines()[-1]
    s3 = boto3.client(
        "s3",
        endpoint_url=stack.urls["s3"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    keys = [
        item["Key"] for item in s3.list_objects_v2(Bucket="mlflow-artifacts").get("Contents", [])
    ]
    assert any(key.endswith(f"{run_id}/artifacts/note.txt") for key in keys), keys
    # The run is in PostgreSQL (MLflow's own tables), not in a file store.
    rows = subprocess.run(
        [
            str(DOCKER),
            "exec",
            *_postgres(stack),
            "psql",
            "-U",
            "mlflow",
            "-d",
            "mlflow",
            "-tAc",
            f"select status from runs where run_uuid = '{run_id}'",
        ],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert rows.stdout.strip() == "FINISHED"


def test_the_registered_champion_is_in_the_stack_mlflow(stack: Stack) -> None:
    from mlflow import MlflowClient

    registered = stack.make("stack-register")
    assert "registered version 1" in registered.stdout + registered.stderr, registered.stdout
    name = yaml.safe_load((stack.root / "params.yaml").read_text())["registry"]["model_name"]
    model = MlflowClient(tracking_uri=stack.urls["mlflow"]).get_registered_model(name)
    assert model.aliases.get("champion") == "1", model.aliases


def _postgres(stack: Stack) -> list[str]:
    """The PostgreSQL container's id, found by compose's labels (v1 and v2 name them apart)."""
    found = subprocess.run(
        [
            str(DOCKER),
            "ps",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={PROJECT}",
            "--filter",
            "label=com.docker.compose.service=postgres",
        ],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    (container,) = found.stdout.split()
    return [container]


def test_shifted_traffic_fires_the_drift_alert(stack: Stack) -> None:
    before = _value(stack, "prediction_drift_psi")  # after the unshifted start-up traffic
    assert before is not None
    assert before < 0.2
    sent = stack.make("stack-traffic", "REQUESTS=1000", "SHIFT=island=Biscoe flipper_length_mm=15")
    assert "status: 200: 1000" in sent.stdout, sent.stdout
    stack.moments["shifted traffic sent"] = time.time()
    _poll("PSI above 0.2", lambda: (_value(stack, "prediction_drift_psi") or 0) > 0.2)

    def drift_alert() -> str:
        alerts = _prometheus(stack, "alerts")["alerts"]
        states = [a["state"] for a in alerts if a["labels"]["alertname"] == "MlopsPredictionDrift"]
        return "firing" if "firing" in states else ""

    _poll("MlopsPredictionDrift firing", drift_alert)
    stack.moments["drift alert firing"] = time.time()


def test_the_drift_report_reads_the_log_shipped_to_the_object_store(stack: Stack) -> None:
    """The log shipper copies the service's log to s3://prediction-logs; `make stack-drift`
    fetches it from there (as from production's bucket) into the stack's own folder, not the
    checkout's logs/ and reports/, and finds the shifted features."""
    report_file = stack.state / "drift" / "drift.json"
    checkout = [stack.root / "reports" / "drift", stack.root / "logs" / "production"]
    before = [_listing(path) for path in checkout]

    def every_prediction_reported() -> dict[str, Any] | None:
        stack.make("stack-drift")
        report: dict[str, Any] = json.loads(report_file.read_text())
        return report if report["window_rows"] == 1300 else None  # 300 at start, 1000 shifted

    report = _poll("the whole log shipped and reported", every_prediction_reported, seconds=60)
    assert report["drifted"] is True
    drifted = {check["column"] for check in report["checks"] if check["drifted"]}
    assert {"island", "flipper_length_mm"} <= drifted, drifted
    assert (stack.state / "drift" / "drift.html").is_file()
    assert [_listing(path) for path in checkout] == before  # the checkout's own: untouched


def _listing(folder: Path) -> list[tuple[str, int]]:
    """A folder's files with their modification times (empty if there is no folder)."""
    if not folder.is_dir():
        return []
    return sorted((str(p), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file())


def test_screenshots_show_the_champion_the_firing_alert_and_the_drift_report(
    stack: Stack, tmp_path: Path
) -> None:
    """`make screenshots` in headless Chromium: each page checked (API, then the rendered
    DOM) before its PNG is kept. STACK_SCREENSHOTS=docs/images makes the docs' pictures."""
    from PIL import Image

    out = Path(os.environ.get("STACK_SCREENSHOTS") or tmp_path).resolve()
    taken = stack.make("screenshots", f"SCREENSHOTS={out}")
    expected = {
        "stack-mlflow-champion.png": ("'champion'", (1280, 900)),
        "stack-prometheus-alerts.png": ("'MlopsPredictionDrift (1 active)'", (1280, 900)),
        "stack-drift-report.png": ("'drift report'", (1280, 1400)),
    }
    for name, (shows, size) in expected.items():
        assert f"{out / name} shows" in taken.stdout, taken.stdout
        assert shows in taken.stdout
        with Image.open(out / name) as picture:
            assert picture.format == "PNG"
            assert picture.size == size
            colours = picture.convert("RGB").getcolors(maxcolors=1_000_000) or []
            assert len(colours) > 50, f"{name}: {len(colours)} colours, a blank page?"
    assert not list(out.glob(".*.partial.png"))


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    """Under the shifted traffic (evaluated at the moment the drift alert fired, or 45 s after
    the traffic if later: the rates' one-minute window still holds it), each panel's every
    query that reads a classifier's metrics returns at least one finite value; the rest read
    a regressor's only (tests/integration/test_prometheus.py runs those). The stack shadow-scores
    the served model as its own challenger, so the shadow panel has real rows."""
    moment = min(stack.moments["drift alert firing"], stack.moments["shifted traffic sent"] + 45)
    empty = []
    for query in dashboard.queries():
        if not dashboard.applies(query, regression=False):
            assert dashboard.applies(query, regression=True), query
            continue
        result = _prometheus(stack, "query", query=query.promql(), time=f"{moment:.3f}")
        values = [float(sample["value"][1]) for sample in result["result"]]
        if not any(math.isfinite(value) for value in values):
            empty.append(f"{query} -> {values}")
    assert not empty, "\n".join(empty)
    at = {"time": f"{moment:.3f}"}
    assert (_value(stack, 'shadow_window_rows{job="mlops-service"}', **at) or 0) > 0
    assert _value(stack, 'shadow_agreement_ratio{job="mlops-service"}', **at) == 1.0


def test_make_down_leaves_nothing(stack: Stack) -> None:
    assert (stack.state / "drift" / "drift.html").is_file()  # written by the tests above
    stack.make("down", "VOLUMES=1")
    assert not stack.state.exists()  # what up and stack-drift wrote there, then the folder
    label = f"label=com.docker.compose.project={PROJECT}"
    for kind in ("container", "volume", "network"):
        left = subprocess.run(
            [
                str(DOCKER),
                kind,
                "ls",
                "-q",
                *(["-a"] if kind == "container" else []),
                "--filter",
                label,
            ],
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert left.stdout.strip() == "", (kind, left.stdout)
    for url in stack.urls.values():
        assert not _answers(url), url


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
