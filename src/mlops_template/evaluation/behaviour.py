"""Behaviour checks: what the model must do beyond a good score, as the contract declares it
(declarations.py). Invariance: changing a feature the contract calls irrelevant barely moves
the predictions. Directional: raising a monotone feature moves a class probability (or the
prediction) the declared way. Minimum: every large enough slice of a categorical feature
scores at least a floor.

Each check returns a plain record (kind, feature, what was measured, the threshold, passed)
for reports/behaviour.json, the PR report and the model card. A failing check does not stop
the pipeline: the report shows it and the promotion gate refuses the model (gate_refusal).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from mlops_template.contract import Contract
from mlops_template.contract.features import model_input
from mlops_template.contract.metrics import LOWER_IS_BETTER
from mlops_template.contract.spec import Directional, Invariance, Minimum
from mlops_template.evaluation.scoring import metric_value
from mlops_template.evaluation.slices import safe as safe_score
from mlops_template.evaluation.slices import undefined as metric_undefined

DIGITS = 6
GATE_KEY = "behaviour_refusal"  # in the registry's scores of a candidate: why checks failed
QUANTILES = (0.1, 0.9)  # a numeric feature under invariance is set to these of the test split
UNIT = "target standard deviations"  # regression changes are shares of the target's std
NO_ROWS = "no test row has the feature: nothing judged"


def _outputs(model: Pipeline, features: pd.DataFrame, contract: Contract) -> np.ndarray:
    """Class probabilities (rows x classes) or predictions (rows x 1)."""
    if contract.is_classification:
        return np.asarray(model.predict_proba(features), dtype=float)
    return np.asarray(model.predict(features), dtype=float).reshape(-1, 1)


def _spread(test: pd.DataFrame, contract: Contract) -> float:
    """Regression changes are shares of the target's standard deviation (1 for probabilities)."""
    if contract.is_classification:
        return 1.0
    spread = float(test[contract.target.name].astype(float).std())
    return spread if spread > 0 else 1.0


def _alternatives(test: pd.DataFrame, contract: Contract, feature: str) -> list[Any]:
    spec = next(spec for spec in contract.features if spec.name == feature)
    if spec.kind == "categorical":
        return list(spec.categories)
    present = test[feature].dropna().astype(float)
    return sorted({float(present.quantile(q)) for q in QUANTILES}) if len(present) else []


def _unit(contract: Contract) -> dict[str, str]:
    """What a regression tolerance is counted in (classification: probabilities, no key)."""
    return {} if contract.is_classification else {"unit": UNIT}


def _record(kind: str, feature: str, passed: bool, **facts: Any) -> dict[str, Any]:
    rounded = {k: round(v, DIGITS) if isinstance(v, float) else v for k, v in facts.items()}
    return {"kind": kind, "feature": feature, **rounded, "passed": passed}


def _nothing_judged(
    kind: str, feature: str, measured: str, contract: Contract, check: Invariance | Directional
) -> dict[str, Any]:
    """A check over no usable row fails: a check that judged nothing must not pass."""
    return _record(
        kind,
        feature,
        False,
        measured=measured,
        **_unit(contract),
        pass_rate=0.0,
        min_pass_rate=check.min_pass_rate,
        tolerance=check.tolerance,
        worst=0.0,
        rows=0,
    )


def invariance(
    model: Pipeline, test: pd.DataFrame, contract: Contract, check: Invariance
) -> dict[str, Any]:
    """Per row, the largest change of any output when the feature takes each other value; a
    row passes when that is within the tolerance."""
    alternatives = _alternatives(test, contract, check.feature)
    if test.empty or not alternatives:  # a numeric feature missing in every row: no deciles
        return _nothing_judged("invariance", check.feature, NO_ROWS, contract, check)
    features = model_input(test, contract)
    before = _outputs(model, features, contract)
    largest = np.zeros(len(features))
    for value in alternatives:
        changed = _outputs(model, features.assign(**{check.feature: value}), contract)
        largest = np.maximum(largest, np.abs(changed - before).max(axis=1))
    largest /= _spread(test, contract)
    rate = float((largest <= check.tolerance).mean())
    return _record(
        "invariance",
        check.feature,
        rate >= check.min_pass_rate,
        measured="largest change of any output",
        **_unit(contract),
        pass_rate=rate,
        min_pass_rate=check.min_pass_rate,
        tolerance=check.tolerance,
        worst=float(largest.max(initial=0.0)),
        rows=len(largest),
    )


def directional(
    model: Pipeline, test: pd.DataFrame, contract: Contract, check: Directional
) -> dict[str, Any]:
    """Per row with the feature present, the change of P(class) (or the prediction) when the
    feature grows by `step`, signed so that the declared direction is positive; a row passes
    unless it moves the wrong way by more than the tolerance."""
    present = test[test[check.feature].notna()]
    if present.empty:
        measured = f"{check.direction} for +{check.step:g}: {NO_ROWS}"
        return _nothing_judged("directional", check.feature, measured, contract, check)
    features = model_input(present, contract)
    column, output = 0, "prediction"
    if contract.is_classification:
        name = check.target_class or str(contract.positive)
        column, output = [str(c) for c in model.classes_].index(name), f"P({name})"
    before = _outputs(model, features, contract)[:, column]
    grown = features.assign(**{check.feature: features[check.feature] + check.step})
    change = (_outputs(model, grown, contract)[:, column] - before) / _spread(test, contract)
    signed = change if check.direction == "increasing" else -change
    rate = float((signed >= -check.tolerance).mean())
    return _record(
        "directional",
        check.feature,
        rate >= check.min_pass_rate,
        measured=f"{output} {check.direction} for +{check.step:g}",
        **_unit(contract),
        pass_rate=rate,
        min_pass_rate=check.min_pass_rate,
        tolerance=check.tolerance,
        worst=max(0.0, float(-signed.min(initial=0.0))),
        rows=len(signed),
    )


def minimum(
    model: Pipeline, test: pd.DataFrame, contract: Contract, check: Minimum, threshold: float
) -> dict[str, Any]:
    """Every slice with at least `min_rows` rows reaches the floor (or stays under the ceiling
    of a lower-is-better metric); smaller slices, and slices the metric is undefined on (ROC
    AUC of a one-class slice), are listed, not judged. A check that judges no slice fails."""
    lower = check.metric in LOWER_IS_BETTER
    slices: list[dict[str, Any]] = []
    scores: list[float] = []
    for value, rows in test.groupby(test[check.feature].astype("string").fillna("(missing)")):
        score = None
        if len(rows) >= check.min_rows and not metric_undefined(check.metric, rows, contract):
            score = safe_score(
                lambda frame: metric_value(check.metric, model, frame, contract, threshold), rows
            )
        ok = score is None or (score <= check.threshold if lower else score >= check.threshold)
        if score is not None:
            scores.append(score)
        slices.append({"value": str(value), "rows": len(rows), "score": score, "passed": ok})
    worst = (max if lower else min)(scores) if scores else None
    judged = f"{check.metric} of the worst slice of at least {check.min_rows} rows"
    return _record(
        "minimum",
        check.feature,
        bool(scores) and all(item["passed"] for item in slices),
        measured=judged if scores else f"no slice of at least {check.min_rows} rows was judged",
        min_rows=check.min_rows,
        metric=check.metric,
        threshold=check.threshold,
        worst=worst,
        slices=slices,
    )


def run_checks(
    model: Pipeline, test: pd.DataFrame, contract: Contract, threshold: float = 0.5
) -> dict[str, Any]:
    """Every declared check on `test`; an empty result when none is declared."""
    declared = contract.behaviour
    checks = [
        *(invariance(model, test, contract, check) for check in declared.invariance),
        *(directional(model, test, contract, check) for check in declared.directional),
        *(minimum(model, test, contract, check, threshold) for check in declared.minimum),
    ]
    passed = sum(check["passed"] for check in checks)
    summary = {"checks": len(checks), "passed": passed, "failed": len(checks) - passed}
    return {"checks": checks, "summary": summary}


def failed(results: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [check for check in (results or {}).get("checks", []) if not check["passed"]]


def describe(check: dict[str, Any]) -> str:
    """One check in words, for tables and refusals."""
    feature = f"`{check['feature']}`"
    if check["kind"] == "minimum":
        return f"each {feature} slice of {check['min_rows']}+ test rows: {check['metric']}"
    unit = f" {check['unit']}" if check.get("unit") else ""
    if check["kind"] == "invariance":
        output = "the prediction" if unit else "any output"
        return f"changing {feature} moves {output} by at most {check['tolerance']:g}{unit}"
    return f"{feature} {check['measured']}, tolerance {check['tolerance']:g}{unit}"


def result_text(check: dict[str, Any]) -> tuple[str, str]:
    """(measured, required) as short text, with the worst case: the slice that scored it, or
    the largest change (invariance) or move the wrong way (directional) of any row."""
    if check["kind"] == "minimum":
        bound = "≤" if check["metric"] in LOWER_IS_BETTER else "≥"
        return _worst_slice(check), f"{bound} {check['threshold']:g}"
    rate = f"{check['pass_rate']:.1%} of {check['rows']} rows"
    if check["rows"]:
        largest = (
            "largest change" if check["kind"] == "invariance" else "largest move the wrong way"
        )
        rate += f" ({largest} {check['worst']:.3g})"
    return rate, f"≥ {check['min_pass_rate']:.0%}"


def _worst_slice(check: dict[str, Any]) -> str:
    worst = check["worst"]
    if worst is None:
        return "—"
    names = [
        item["value"]
        for item in check.get("slices", [])
        if item["score"] is not None and round(item["score"], DIGITS) == worst
    ]
    return f"{worst:.4f}" + (f" (`{names[0]}`)" if names else "")


def table(results: dict[str, Any] | None) -> list[str]:
    """The checks as a markdown table (the PR report and the model card)."""
    checks = (results or {}).get("checks", [])
    if not checks:
        return ["_No behaviour checks declared in the data contract (`behaviour:`)._"]
    rows = ["| check | what | measured | required | result |", "|---|---|---:|---:|---|"]
    for check in checks:
        measured, required = result_text(check)
        mark = "✅ pass" if check["passed"] else "❌ **fail**"
        rows.append(f"| {check['kind']} | {describe(check)} | {measured} | {required} | {mark} |")
    return rows


def gate_refusal(results: dict[str, Any] | None) -> str | None:
    """Why the promotion gate refuses a model whose behaviour checks failed (None: it passed)."""
    failures = failed(results)
    if not failures:
        return None
    return "behaviour checks failed: " + "; ".join(
        f"{check['kind']} {describe(check)} ({result_text(check)[0]})" for check in failures
    )
