"""The Grafana dashboard's queries and the metrics they read, by task.

The service exports different prediction metrics for a classifier and a regressor
(serve/metrics.py), so some of the dashboard's queries show data for one task only. A query's
metrics are the names followed by a selector (`name{...}`); `exported()` lists what the
service's own registry defines for a task, sample suffixes included (`_total`, `_bucket`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from mlops_template.serve.metrics import ServiceMetrics
from tests.conftest import REPO_ROOT

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "mlops-service.json"
# Series Prometheus makes itself, for any task: the scrape's `up` and the alerts' ALERTS.
PROMETHEUS_SERIES = frozenset({"up", "ALERTS"})
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


@dataclass(frozen=True)
class Query:
    panel: str
    ref_id: str
    expr: str

    @property
    def metrics(self) -> frozenset[str]:
        return frozenset(re.findall(r"\b([A-Za-z_:][A-Za-z0-9_:]*)\{", self.expr))

    def promql(self) -> str:
        """As Grafana sends it, with $__rate_interval a minute."""
        return self.expr.replace("$__rate_interval", "1m")

    def __str__(self) -> str:
        return f"{self.panel} / {self.ref_id}: {self.expr}"


def queries() -> list[Query]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [
        Query(panel["title"], target["refId"], target["expr"])
        for panel in panels
        for target in panel["targets"]
    ]


def exported(regression: bool) -> frozenset[str]:
    """Every series name the service's registry defines for this task."""
    metrics = ServiceMetrics(regression=regression)
    return frozenset(
        family.name + suffix
        for family in metrics.registry.collect()
        for suffix in SUFFIXES.get(family.type, ("",))
    )


def applies(query: Query, regression: bool) -> bool:
    """Whether every metric the query reads is there for this task."""
    return query.metrics <= exported(regression) | PROMETHEUS_SERIES
