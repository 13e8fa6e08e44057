"""The drift checks' statistics on small, hand-made windows (checks.compare): what a column
with no values, a category the training data never had, a constant feature or a rising
missing rate gives, and the rule that drift needs both a significant p-value and a material
PSI. tests/unit/monitoring/test_drift.py covers the same checks on realistic, sampled traffic."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_template.config import MonitoringSettings
from mlops_template.contract import parse_contract
from mlops_template.monitoring import checks, logs
from mlops_template.monitoring.records import PredictionRecord
from tests.conftest import small_contract

# Target `y` (low, mid, high); features `x` (numeric, 0 to 10) and `colour` (blue, red).
CONTRACT = parse_contract(small_contract("multiclass"), Path("small_multiclass.yaml"))
CLASSES = ["low", "mid", "high"]
SETTINGS = MonitoringSettings(min_rows=10)


def cycle(values: Sequence[Any], rows: int) -> list[Any]:
    return [values[i % len(values)] for i in range(rows)]


def reference(rows: int = 300, **columns: Sequence[Any]) -> pd.DataFrame:
    """Training rows: x spread evenly over 0..10, colours and classes in equal shares."""
    frame = pd.DataFrame(
        {
            "x": np.linspace(0.0, 10.0, rows),
            "colour": cycle(["blue", "red"], rows),
            "y": cycle(CLASSES, rows),
        }
    )
    for name, values in columns.items():
        frame[name] = list(values)
    return frame


def window(rows: int = 300, **columns: Sequence[Any]) -> logs.Traffic:
    """Logged traffic like `reference`'s rows unless `columns` replace some (None: missing)."""
    frame = reference(rows, **columns)
    records = [
        PredictionRecord(
            ts=1_764_000_000.0,
            id=f"r{index}",
            role="champion",
            model_version="v1",
            features={name: None if pd.isna(row[name]) else row[name] for name in ("x", "colour")},
            prediction=str(row["y"]),
        )
        for index, row in frame.iterrows()
    ]
    return logs.Traffic(records, {}, ["memory"])


def check(report: checks.DriftReport, column: str, kind: str) -> checks.Check:
    (found,) = [c for c in report.checks if c.column == column and c.kind == kind]
    return found


def compare(traffic: logs.Traffic, ref: pd.DataFrame | None = None) -> checks.DriftReport:
    ref = reference() if ref is None else ref
    return checks.compare(ref, traffic, {}, None, SETTINGS, CONTRACT)


def test_traffic_like_the_training_rows_has_no_drift() -> None:
    report = compare(window(200))
    assert report.verdict == "no drift"
    assert [(c.column, c.kind) for c in report.checks] == [
        ("x", "numeric"),
        ("x", "missing"),
        ("colour", "categorical"),
        ("colour", "missing"),
        ("prediction", "prediction"),
    ]
    assert check(report, "x", "numeric").psi == pytest.approx(0.0, abs=0.01)
    assert check(report, "colour", "categorical").psi == pytest.approx(0.0)


def test_a_feature_missing_from_every_request_is_missing_rate_drift_not_a_crash() -> None:
    report = compare(window(50, x=[None] * 50, colour=[None] * 50))
    numeric, categorical = check(report, "x", "numeric"), check(report, "colour", "categorical")
    for empty in (numeric, categorical):
        assert empty.detail == "no values to compare"
        assert (empty.p_value, empty.psi, empty.drifted) == (None, None, False)
    missing = check(report, "x", "missing")
    assert missing.drifted
    assert missing.detail == "missing 0.0% -> 100.0% (limit +10%)"
    assert report.verdict == "drift"


def test_the_missing_rate_is_judged_as_a_rise_over_the_reference() -> None:
    gappy = reference(x=[None if i % 5 == 0 else v for i, v in enumerate(reference()["x"])])
    little = [None if i % 4 == 0 else 5.0 + i % 3 for i in range(200)]  # 25%: +5 points
    much = [None if i % 3 == 0 else 5.0 + i % 3 for i in range(300)]  # 33%: +13 points
    within = check(compare(window(200, x=little), gappy), "x", "missing")
    assert within.detail == "missing 20.0% -> 25.0% (limit +10%)"
    assert not within.drifted
    beyond = check(compare(window(300, x=much), gappy), "x", "missing")
    assert beyond.reference == pytest.approx(0.2)
    assert beyond.current == pytest.approx(1 / 3)
    assert beyond.drifted


def test_a_category_the_training_rows_never_had_is_significant_at_once() -> None:
    all_blue = reference(colour=["blue"] * 300)
    unchanged = check(
        compare(window(100, colour=["blue"] * 100), all_blue), "colour", "categorical"
    )
    assert unchanged.psi == pytest.approx(0.0)
    assert not unchanged.drifted
    red = check(compare(window(100), all_blue), "colour", "categorical")
    assert red.p_value == 0.0  # no test can say "as expected" for a value never expected
    assert red.detail == "share of blue 100.0% -> 50.0%"
    assert red.drifted


def test_a_constant_numeric_feature_is_compared_without_empty_quantile_bins() -> None:
    constant = reference(x=[5.0] * 300)
    same = check(compare(window(100, x=[5.0] * 100), constant), "x", "numeric")
    assert same.psi == pytest.approx(0.0)
    assert not same.drifted
    moved = check(compare(window(100, x=[3.0] * 100), constant), "x", "numeric")
    assert moved.detail == "median 5 -> 3"
    assert moved.drifted
    # upward too: values above the only value training saw get a bin of their own
    up = check(compare(window(100, x=[7.0] * 100), constant), "x", "numeric")
    assert up.detail == "median 5 -> 7"
    assert up.psi is not None
    assert up.psi > SETTINGS.psi_threshold
    assert up.drifted


def test_values_beyond_a_cap_the_training_rows_pile_up_at_are_drift() -> None:
    """A feature capped at its maximum (a fifth of the training rows at 10): live values
    above the cap, never seen in training, are drift; the same mix below the cap is not."""
    capped = np.concatenate([np.linspace(0.0, 10.0, 240), [10.0] * 60])
    training = reference(300, x=capped)
    same = check(compare(window(300, x=list(capped)), training), "x", "numeric")
    assert not same.drifted
    beyond = np.concatenate([np.linspace(0.0, 10.0, 240), [14.0] * 60])
    over = check(compare(window(300, x=list(beyond)), training), "x", "numeric")
    assert over.psi is not None
    assert over.psi > SETTINGS.psi_threshold
    assert over.drifted


def test_drift_needs_a_material_psi_and_a_significant_p_value() -> None:
    # The same colour mix (80% blue where training had 50%) in 10 and in 100 requests: PSI
    # 0.42 both times, significant only with enough requests.
    few = check(compare(window(10, colour=["blue"] * 8 + ["red"] * 2)), "colour", "categorical")
    many = check(compare(window(100, colour=["blue"] * 80 + ["red"] * 20)), "colour", "categorical")
    assert few.psi == pytest.approx(many.psi)
    assert few.psi is not None
    assert few.psi > SETTINGS.psi_threshold
    assert not few.drifted
    assert many.drifted
    # Significant but immaterial: a small shift of x in a large window.
    rows = 20_000
    nudged = reference(rows, x=np.linspace(0.3, 10.3, rows))
    shifted = check(compare(window(rows, x=list(nudged["x"])), reference(rows)), "x", "numeric")
    assert shifted.p_value is not None
    assert shifted.p_value < 1e-6
    assert shifted.psi is not None
    assert shifted.psi < SETTINGS.psi_threshold
    assert not shifted.drifted


def test_predictions_of_one_class_only_are_prediction_drift() -> None:
    report = compare(window(100, y=["low"] * 100))
    prediction = check(report, "prediction", "prediction")
    assert prediction.detail == "share of low 33.3% -> 100.0%"
    assert prediction.drifted
    assert report.drifted
