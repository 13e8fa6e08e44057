"""deploy/prometheus: the scrape config and alert rules, checked by promtool and loaded into a
real Prometheus (Debian's `prometheus` package) scraping the real prediction service."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mlops_template.stages.train import reference_profile
from tests.conftest import DEFAULT_CONTRACT, REPO_ROOT
from tests.support import dashboard
from tests.support.processes import free_port, start_server, stop, wait_healthy
from tests.support.tasks import TaskModel
from tests.unit.serve.conftest import (  # noqa: F401 (fixtures)
    GENTOO,
    model_path,
    penguin_task,
    regression_task,
    service_params_file,
)

pytestmark = pytest.mark.slow

DEPLOY = REPO_ROOT / "deploy" / "prometheus"
CONFIG = DEPLOY / "prometheus.yml"
RULES = DEPLOY / "alerts.yml"
RULE_TESTS = DEPLOY / "alerts_test.yml"
JOB = "mlops-service"
POLL_SECONDS = 60


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (apt-get install prometheus; .ci/run does)")
    return path


def _promtool(*args: str) -> str:
    result = subprocess.run(
        [_binary("promtool"), *args], capture_output=True, text=True, timeout=120, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def _alert_names() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"]]


def test_promtool_accepts_the_config_and_the_rules() -> None:
    assert "SUCCESS" in _promtool("check", "config", str(CONFIG))
    assert f"SUCCESS: {len(_alert_names())} rules found" in _promtool("check", "rules", str(RULES))


def test_alert_rule_unit_tests_pass() -> None:
    assert "SUCCESS" in _promtool("test", "rules", str(RULE_TESTS))


def test_every_alert_is_unit_tested_and_documented() -> None:
    tested = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    names = {case["alertname"] for test in tested for case in test["alert_rule_test"]}
    assert names == set(_alert_names())
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            assert f'job="{JOB}"' in rule["expr"], rule["alert"]
            assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
            assert {"summary", "description", "runbook"} <= rule["annotations"].keys()
            assert "Monitoring and retraining" in rule["annotations"]["runbook"]


def _scrape_config(service_port: int, root: Path) -> Path:
    """The shipped config, pointed at the test service, scraping and evaluating every second."""
    config = yaml.safe_load(CONFIG.read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == JOB
    assert job["static_configs"] == [{"targets": ["mlops-service:8000"]}]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{service_port}"]}]
    job["scrape_timeout"] = "1s"
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    assert config["rule_files"] == [RULES.name]
    shutil.copy(RULES, root / RULES.name)
    config["rule_files"] = [str(root / RULES.name)]
    path = root / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _api(base: str, endpoint: str, **query: str) -> Any:
    url = f"{base}/api/v1/{endpoint}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]


def _poll(what: str, probe: Callable[[], Any]) -> Any:
    """Call `probe` until it returns something truthy, for at most POLL_SECONDS."""
    deadline = time.monotonic() + POLL_SECONDS
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"Prometheus: {what} not seen within {POLL_SECONDS}s")
        time.sleep(0.5)


def _instant(base: str, promql: str) -> dict[str, float]:
    """An instant query's result as {instance: value}."""
    result = _api(base, "query", query=promql)["result"]
    return {sample["metric"].get("instance", ""): float(sample["value"][1]) for sample in result}


@contextmanager
def _scraped_service(
    tmp_path: Path,
    model: Path,
    contract: Path = DEFAULT_CONTRACT,
    reference: dict[str, object] | None = None,
) -> Iterator[tuple[str, str]]:
    """The service on `model` (with the train stage's `reference`, if given) and a real
    Prometheus scraping it with the shipped config and rules: (the service's URL,
    Prometheus's URL)."""
    prometheus = _binary("prometheus")
    params, service_port = service_params_file(tmp_path, model, contract, drain_seconds=0)
    if reference is not None:
        (tmp_path / "models" / "reference.json").write_text(json.dumps(reference))
    service_url = f"http://127.0.0.1:{service_port}"
    service = start_server(
        [
            sys.executable,
            "-m",
            "mlops_template.serve",
            "--params",
            str(params),
            "--host",
            "127.0.0.1",
            "--port",
            str(service_port),
        ],
        tmp_path / "service.log",
    )
    server = None
    try:
        wait_healthy(f"{service_url}/health/ready", service, tmp_path / "service.log")
        config = _scrape_config(service_port, tmp_path)
        prom_port = free_port()
        base = f"http://127.0.0.1:{prom_port}"
        server = start_server(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--log.level=warn",
            ],
            tmp_path / "prometheus.log",
        )
        wait_healthy(f"{base}/-/ready", server, tmp_path / "prometheus.log")
        yield service_url, base
    finally:
        if server is not None:
            stop(server)
        stop(service)


def test_real_prometheus_scrapes_the_service_and_loads_the_rules(
    tmp_path: Path,
    model_path: Path,  # noqa: F811
) -> None:
    with _scraped_service(tmp_path, model_path) as (service_url, base):
        target = service_url.removeprefix("http://")
        with httpx.Client(base_url=service_url, timeout=10) as client:
            for _ in range(3):
                assert client.post("/predict", json=GENTOO).status_code == 200
            assert client.post("/predict", json={**GENTOO, "island": "Atlantis"}).status_code == 422

        (target_info,) = _poll(
            "an active mlops-service target",
            lambda: _api(base, "targets", state="active")["activeTargets"],
        )
        assert target_info["labels"] == {"instance": target, "job": JOB}
        assert target_info["scrapeUrl"] == f"{service_url}/metrics"
        assert _poll("up == 1", lambda: _instant(base, f'up{{job="{JOB}"}}')) == {target: 1.0}
        # A scrape after the requests counts all three predictions (and the 422 apart).
        predicted = f'http_requests_total{{job="{JOB}", route="/predict", status="200"}}'
        assert _poll("the three predictions", lambda: _instant(base, f"{predicted} >= 3")) == {
            target: 3.0
        }
        rejected = f'http_requests_total{{job="{JOB}", route="/predict", status="422"}}'
        assert _instant(base, rejected) == {target: 1.0}

        def evaluated_rules() -> dict[str, dict[str, Any]]:
            groups = _api(base, "rules", type="alert")["groups"]
            rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
            return rules if all(rule["health"] != "unknown" for rule in rules.values()) else {}

        rules = _poll("the alert rules evaluated", evaluated_rules)
        assert sorted(rules) == sorted(_alert_names())
        for name, rule in rules.items():
            assert rule["health"] == "ok", (name, rule.get("lastError"))
        assert rules["MlopsServiceDown"]["state"] == "inactive"


def test_a_regressors_dashboard_queries_return_data(
    tmp_path: Path,
    regression_task: TaskModel,  # noqa: F811
) -> None:
    """The dashboard's queries on a regressor's own metrics (the mean prediction, its shift,
    the shadow difference) return data from a real Prometheus scraping a regressor under
    traffic; the local stack's test checks the rest, on a classifier."""
    own = [
        query
        for query in dashboard.queries()
        if dashboard.applies(query, regression=True)
        and not dashboard.applies(query, regression=False)
    ]
    assert len(own) >= 3, own
    task = regression_task
    reference = reference_profile(task.frame, task.contract)  # as the train stage writes it
    scraped = _scraped_service(tmp_path, task.onnx_path, task.contract_path, reference)
    with scraped as (service_url, base):
        with httpx.Client(base_url=service_url, timeout=10) as client:
            for index in range(300):
                response = client.post("/predict", json=task.record(index))
                assert response.status_code == 200, response.text

        def empty() -> list[str]:
            missing = []
            for query in own:
                values = _instant(base, query.promql()).values()
                if not any(math.isfinite(value) for value in values):
                    missing.append(f"{query} -> {list(values)}")
            return missing

        try:
            _poll("every regressor query with data", lambda: not empty())
        except AssertionError:
            assert not empty(), "\n".join(empty())
