"""`mlops monitor drift`: has production traffic moved away from what the model was trained on?

Reads the newest logged predictions (logs.py: the service's JSONL log, rotated files
included, and any labelled feedback), runs the checks against the training split
(checks.py, which says which tests and how they are judged) and writes drift.json, drift.md
(for pull requests) and drift.html (with plots; render.py) to `paths.drift`. The exit code of
`mlops monitor drift` is DRIFT_EXIT_CODE on drift.

Regression predictions are compared with the model's own predictions on the test split
(`paths.test`; the model verified by its recorded sha256), and labelled feedback with the
test split's accuracy or MAE (`paths.metrics`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from mlops_template import PipelineError
from mlops_template.config import Params
from mlops_template.contract import Contract
from mlops_template.contract.features import model_input
from mlops_template.contract.metrics import PER_ROW
from mlops_template.io import storage
from mlops_template.monitoring.checks import DriftReport, compare
from mlops_template.monitoring.logs import read_feedback, read_traffic
from mlops_template.monitoring.records import is_number
from mlops_template.monitoring.render import figure_png, html_page, markdown, skipped_sentence

log = logging.getLogger(__name__)

DRIFT_EXIT_CODE = 3


def run(params: Params, log_path: Path | None = None, feedback: Path | None = None) -> DriftReport:
    """Compare, then write drift.json, drift.md and drift.html to `paths.drift`."""
    settings = params.monitoring
    contract = params.contract
    traffic = read_traffic(log_path or params.serve.prediction_log, settings.window_rows, contract)
    labels = read_feedback(feedback or settings.feedback, contract)
    reference = storage.read_parquet(params.paths.train)
    baseline = _baseline(params, contract) if labels else None
    expected = None if contract.is_classification else _test_predictions(params, contract)
    report = compare(reference, traffic, labels, baseline, settings, contract, expected)
    payload = asdict(report)
    payload["drifted"] = report.drifted
    payload["task"] = contract.task
    payload["log_files"] = traffic.files
    image = figure_png(reference, traffic, report, contract) if report.checks else None
    # Everything is rendered before anything is written: no half set of reports.
    out = params.paths.drift
    storage.write_json(out / "drift.json", _finite(payload))
    storage.write_text(out / "drift.md", markdown(report))
    storage.write_text(out / "drift.html", html_page(report, image))
    if report.skipped_records:
        log.warning("drift: %s", skipped_sentence(report))
    log.info("drift: %s (%d predictions); wrote %s", report.verdict, report.window_rows, out)
    return report


def _baseline(params: Params, contract: Contract) -> float:
    """The test split's accuracy (classification) or MAE (regression), from metrics.json."""
    key = PER_ROW[contract.task]
    path = params.paths.metrics
    if not path.is_file():
        raise PipelineError(f"{path}: needed to judge labelled feedback (run the pipeline)")
    value = storage.read_json(path).get(key)
    if not is_number(value):
        raise PipelineError(
            f"{path}: no `{key}` for the {contract.task} task; re-run evaluate for this contract"
        )
    return float(value)


def _test_predictions(params: Params, contract: Contract) -> pd.Series:
    """The regression model's predictions on the test split: the reference for the logged
    predictions (compare's docstring says why not the target)."""
    model_path, test_path = params.paths.model, params.paths.test
    try:
        model = storage.load_verified_model(model_path, storage.read_recorded_sha256(model_path))
        test = storage.read_parquet(test_path)
    except (OSError, PipelineError) as error:
        raise PipelineError(
            f"the model and the test split are the reference of regression predictions"
            f" (run the pipeline, or `dvc pull`): {error}"
        ) from None
    return pd.Series(model.predict(model_input(test, contract)), dtype=float)


def _finite(value: Any) -> Any:
    """JSON has no infinity: write it as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value
