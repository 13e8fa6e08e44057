"""What the pull-request report shows, gathered: DVC's metrics and params diffs against the
base revision, the base's data contract (from git), and what the stages wrote (validation
summary or failure, timing, model size, plot images, explanations, behaviour checks), as one
`ReportInputs`. report.py renders it; keeping the subprocesses and files here leaves the
rendering a pure function that every case can test without DVC.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml

from mlops_template import PipelineError
from mlops_template.config import Params
from mlops_template.contract import Contract
from mlops_template.contract.metrics import HEADLINE, TASK_METRICS
from mlops_template.evaluation import plots
from mlops_template.io import storage
from mlops_template.reporting import explain

NOT_METRICS = ("test_rows", "threshold", "beats_baseline")  # facts in metrics.json, not scores


@dataclass(frozen=True)
class MetricDiff:
    name: str
    old: float | None
    new: float | None

    @property
    def delta(self) -> float | None:
        if self.old is None or self.new is None:
            return None
        return self.new - self.old


@dataclass(frozen=True)
class ReportInputs:
    base: str
    primary_metric: str
    metrics: list[MetricDiff] = field(default_factory=list)
    params_changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    validation: dict[str, Any] | None = None
    validation_failure: dict[str, Any] | None = None
    stage_failure: dict[str, Any] | None = None
    train_seconds: float | None = None
    model_bytes: int | None = None
    parity: dict[str, Any] | None = None  # the compiled model against scikit-learn (train)
    images: dict[str, str] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)  # this branch's, by metric
    beats_baseline: bool | None = None
    task: str = "multiclass"
    # Why the base's metrics are not comparable (another task, target or features), if so.
    contract_change: str | None = None
    explanation: dict[str, Any] | None = None  # the explain stage's shap.json
    shap_image: str | None = None  # its summary image, relative to the report
    behaviour: dict[str, Any] | None = None  # the behaviour stage's results (behaviour.py)

    @property
    def failed(self) -> bool:
        return self.validation_failure is not None or self.stage_failure is not None


def _dvc_json(*args: str) -> dict[str, Any]:
    result = subprocess.run(["dvc", *args, "--json"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PipelineError(f"dvc {' '.join(args)} failed: {result.stderr.strip()}")
    return cast(dict[str, Any], json.loads(result.stdout or "{}"))


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def metric_diffs(
    diff: dict[str, Any], metrics_path: Path, primary: str, task: str = "multiclass"
) -> list[MetricDiff]:
    """The task's metrics first (primary on top), then per-class ones, from `dvc metrics
    diff`; the baseline's are shown beside this branch's, not diffed."""
    entries = diff.get(str(metrics_path), {})
    found = {
        name: MetricDiff(name, _as_float(values.get("old")), _as_float(values.get("new")))
        for name, values in entries.items()
        if name not in NOT_METRICS and not name.startswith("baseline.")
    }
    order = [primary, *(m for m in (*HEADLINE[task], *TASK_METRICS[task]) if m != primary)]
    head = [found.pop(name) for name in order if name in found]
    return head + [found[name] for name in sorted(found)]


def contract_change(base_raw: Any, contract: Contract) -> str | None:
    """How the base's contract differs in what metrics depend on (task, target, features),
    or None when the metrics compare (or the base has no contract file to tell)."""
    if not isinstance(base_raw, dict):
        return None
    target = (base_raw.get("target") or {}).get("name")
    features = [
        item.get("name") for item in base_raw.get("features") or [] if isinstance(item, dict)
    ]
    if base_raw.get("task") != contract.task or target != contract.target.name:
        return f"{base_raw.get('task')} on `{target}` → {contract.task} on `{contract.target.name}`"
    if features != contract.feature_names():
        return "other features"
    return None


def _base_contract(base: str, path: Path) -> Any:
    result = subprocess.run(
        ["git", "show", f"{base}:{path.as_posix()}"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        return None
    try:
        return yaml.safe_load(result.stdout)
    except yaml.YAMLError:
        return None


def _not_compared(metrics: list[MetricDiff]) -> list[MetricDiff]:
    """This branch's metrics alone: the base's measured another problem."""
    return [MetricDiff(m.name, None, m.new) for m in metrics if m.new is not None]


def params_changes(diff: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {
        name: (values.get("old"), values.get("new"))
        for entries in diff.values()
        for name, values in entries.items()
        if values.get("old") != values.get("new")
    }


def gather(params: Params, base: str, image_dir: Path, report_dir: Path) -> ReportInputs:
    metrics = _dvc_json("metrics", "diff", base, "--all")
    params_diff = _dvc_json("params", "diff", base, "--all")
    timing = storage.read_json_if_present(params.paths.train_timing)
    model = params.paths.model
    images = plots.render_images(params.paths, image_dir)
    shap_image = explain.copy_image(params.paths.shap_plot, image_dir)
    current = storage.read_json_if_present(params.paths.metrics) or {}
    beats = current.get("beats_baseline")
    change = contract_change(_base_contract(base, params.data.contract), params.contract)
    diffs = metric_diffs(metrics, params.paths.metrics, params.primary_metric, params.contract.task)
    return ReportInputs(
        base=base,
        primary_metric=params.primary_metric,
        metrics=diffs if change is None else _not_compared(diffs),
        contract_change=change,
        params_changed=params_changes(params_diff),
        validation=storage.read_json_if_present(params.paths.validation_report),
        validation_failure=storage.read_json_if_present(params.paths.validation_failure),
        stage_failure=storage.read_json_if_present(params.paths.stage_failure),
        train_seconds=None if timing is None else float(timing["train_seconds"]),
        model_bytes=model.stat().st_size if model.is_file() else None,
        parity=storage.read_json_if_present(params.paths.parity),
        images={title: explain.relative(path, report_dir) for title, path in images.items()},
        explanation=storage.read_json_if_present(params.paths.shap_summary),
        shap_image=None if shap_image is None else explain.relative(shap_image, report_dir),
        baseline={k: float(v) for k, v in (current.get("baseline") or {}).items()},
        beats_baseline=beats if isinstance(beats, bool) else None,
        task=params.contract.task,
        behaviour=storage.read_json_if_present(params.paths.behaviour),
    )
