"""The Prometheus alert rules (deploy/prometheus/alerts.yml) repeat thresholds that live in
params.yaml: PromQL cannot read params.yaml, so the rule files carry the numbers, and this
test keeps the two equal. Change a threshold in params.yaml and this test names the rule,
the expression and the description to change with it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT

RULES = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
PARAMS = REPO_ROOT / "params.yaml"


@dataclass(frozen=True)
class Mirror:
    """An alert whose threshold is a params.yaml value, and how its description says it."""

    alert: str
    key: str  # dotted params.yaml key
    described: str  # the description's wording, with {value} or {percent}


MIRRORS = (
    Mirror("MlopsPredictionDrift", "monitoring.psi_threshold", "(above {value})"),
    Mirror(
        "MlopsInputMissingRateUp",
        "monitoring.max_missing_rate_increase",
        "(threshold {percent} percentage points)",
    ),
)
# The window-size guard of the drift alerts: `monitor_window_rows >= N`. The window never
# holds more than serve.monitor_window rows, so a smaller window would silence the alerts.
WINDOW_GUARD = re.compile(r"monitor_window_rows\{[^}]*\}\s*>=\s*(\d+)")
# The comparison that fires the alert: `> X` just before the `and on(...)` window guard.
FIRES_ABOVE = re.compile(r">\s*([0-9.]+)\s*\n\s*and on\(")


def _rules(text: str) -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(text)["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def _param(params: dict[str, Any], key: str) -> Any:
    value: Any = params
    for part in key.split("."):
        value = value[part]
    return value


def mismatches(rules_text: str, params: dict[str, Any]) -> list[str]:
    """Every place the rules disagree with params, as a sentence naming both sides."""
    rules = _rules(rules_text)
    problems = []
    for mirror in MIRRORS:
        rule = rules[mirror.alert]
        wanted = float(_param(params, mirror.key))
        found = FIRES_ABOVE.search(rule["expr"])
        if found is None or float(found.group(1)) != wanted:
            problems.append(
                f"{mirror.alert}: expr fires above {found.group(1) if found else '?'}, "
                f"params.yaml {mirror.key} is {wanted:g}"
            )
        described = mirror.described.format(value=f"{wanted:g}", percent=f"{wanted * 100:g}")
        if described not in rule["annotations"]["description"]:
            problems.append(f"{mirror.alert}: the description should say {described!r}")
    window = int(_param(params, "serve.monitor_window"))
    for name, rule in rules.items():
        for guard in WINDOW_GUARD.findall(rule["expr"]):
            if int(guard) > window:
                problems.append(
                    f"{name}: waits for {guard} rows in the window, but params.yaml "
                    f"serve.monitor_window is {window}: it could never fire"
                )
    return problems


def test_the_alert_rules_use_the_thresholds_of_params_yaml() -> None:
    assert mismatches(RULES.read_text(), yaml.safe_load(PARAMS.read_text())) == []


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("monitoring.psi_threshold", 0.25, "MlopsPredictionDrift: expr fires above 0.2"),
        (
            "monitoring.max_missing_rate_increase",
            0.15,
            "MlopsInputMissingRateUp: the description should say "
            "'(threshold 15 percentage points)'",
        ),
        ("serve.monitor_window", 150, "params.yaml serve.monitor_window is 150"),
    ],
)
def test_a_params_change_the_rules_do_not_follow_is_named(
    key: str, value: float, expected: str
) -> None:
    params = yaml.safe_load(PARAMS.read_text())
    section, name = key.split(".")
    params[section][name] = value
    found = mismatches(RULES.read_text(), params)
    assert any(expected in problem for problem in found), found


def test_every_mirrored_rule_exists() -> None:
    """Renaming an alert must not silently drop it from this check."""
    names = set(_rules(RULES.read_text()))
    assert {mirror.alert for mirror in MIRRORS} <= names
