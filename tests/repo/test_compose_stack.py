"""The local stack's files, without Docker: compose.yaml publishes only on 127.0.0.1 and pins
every public image by digest, the Prometheus files `make up` writes keep deploy/prometheus's
job and expressions, and the Grafana dashboard queries the service's job. The stack itself
runs in tests/integration/docker/test_stack.py."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.support import dashboard

COMPOSE = REPO_ROOT / "deploy" / "compose" / "compose.yaml"
GRAFANA = REPO_ROOT / "deploy" / "grafana"
RULES = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
# The project's own images, built locally (`make image`, `make stack-images`): no digest.
OWN_IMAGES = {"SERVICE_IMAGE", "TOOLS_IMAGE"}


def _stack_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stack", REPO_ROOT / "deploy/compose/stack.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def test_every_published_port_is_on_loopback() -> None:
    published = [port for service in _services().values() for port in service.get("ports", [])]
    assert published
    for port in published:
        assert port.startswith("127.0.0.1:"), port


def test_every_image_is_a_variable_public_ones_pinned_by_digest() -> None:
    for name, service in _services().items():
        match = re.fullmatch(r"\$\{([A-Z_]+):-([^}]+)\}", service["image"])
        assert match, (name, service["image"])
        variable, default = match.groups()
        if variable in OWN_IMAGES:
            assert default.endswith(":local"), (name, default)
        else:
            assert re.search(r":[\w.-]+@sha256:[0-9a-f]{64}$", default), (name, default)


def test_compose_accepts_the_file() -> None:
    """With the compose stack.py picks: Compose v2 (`docker compose`, GitHub's runners) or
    Debian's docker-compose 1.29 (this project's machines)."""
    try:
        command = _stack_module().compose()
    except SystemExit as missing:
        pytest.skip(str(missing))
    checked = subprocess.run(
        [*command, "config", "--quiet"], capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0, checked.stderr


def test_prometheus_files_keep_the_job_and_expressions_with_short_waits(tmp_path: Path) -> None:
    folder = _stack_module().write_prometheus_files(tmp_path, "30s")
    config = yaml.safe_load((folder / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "mlops-service"
    assert job["static_configs"] == [{"targets": ["mlops-service:8000"]}]
    written = yaml.safe_load((folder / "alerts.yml").read_text())["groups"]
    shipped = yaml.safe_load(RULES.read_text())["groups"]
    for ours, theirs in zip(written, shipped, strict=True):
        for rule, original in zip(ours["rules"], theirs["rules"], strict=True):
            assert {k: v for k, v in rule.items() if k != "for"} == {
                k: v for k, v in original.items() if k != "for"
            }
            assert rule["for"] in {"30s", original["for"]}
    assert {r["for"] for g in written for r in g["rules"]} == {"30s"}


def test_the_dashboard_queries_the_service_through_the_provisioned_source() -> None:
    source = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yaml").read_text())
    (datasource,) = source["datasources"]
    dashboard = json.loads((GRAFANA / "dashboards/mlops-service.json").read_text())
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert 'job="mlops-service"' in target["expr"], (panel["title"], target["expr"])
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/mlops.yaml").read_text())
    grafana = _services()["grafana"]
    mounted = {volume.split(":")[1] for volume in grafana["volumes"]}
    assert provider["providers"][0]["options"]["path"] in mounted


def test_getting_started_shows_the_screenshots_the_stack_test_takes() -> None:
    """The pictures of the docs' "See it running" are the PNGs `make screenshots` writes
    (docs/images), committed."""
    page = (REPO_ROOT / "docs" / "getting-started.md").read_text()
    source = (REPO_ROOT / "deploy" / "compose" / "screenshots.py").read_text()
    taken = set(re.findall(r'"(stack-[a-z-]+\.png)"', source))
    shown = set(re.findall(r"\]\(images/(stack-[a-z-]+\.png)\)", page))
    assert taken == shown, (taken, shown)
    assert len(shown) == 3
    for name in shown:
        assert (REPO_ROOT / "docs" / "images" / name).read_bytes().startswith(b"\x89PNG\r\n")


def test_every_dashboard_query_reads_metrics_the_service_defines() -> None:
    """A query reading a metric no task defines would show no data forever; every panel shows
    something for a classifier and for a regressor (the live checks:
    tests/integration/docker/test_stack.py, tests/integration/test_prometheus.py)."""
    queries = dashboard.queries()
    defined = dashboard.exported(False) | dashboard.exported(True) | dashboard.PROMETHEUS_SERIES
    for query in queries:
        assert query.metrics, query
        assert query.metrics <= defined, f"{query}: no task defines {query.metrics - defined}"
        tasks = [dashboard.applies(query, regression) for regression in (False, True)]
        assert any(tasks), f"{query}: mixes a classifier's and a regressor's metrics"
    for panel in {query.panel for query in queries}:
        for regression in (False, True):
            assert any(
                dashboard.applies(query, regression) for query in queries if query.panel == panel
            ), (panel, "regressor" if regression else "classifier")
