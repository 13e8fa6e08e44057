"""What a headline metric hides: how the model does on each category of each categorical
feature (slices), for the evaluate stage, the behaviour checks and the model card.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlops_template.contract import Contract

DIGITS = 6
MISSING = "(missing)"


# Ranking metrics need both classes (binary) or every class (one-vs-rest) among the truth.
NEEDS_EVERY_CLASS = frozenset({"roc_auc", "average_precision", "roc_auc_ovr"})


def _slice_scores(
    rows: pd.DataFrame, predicted: np.ndarray, contract: Contract, primary: str, score: Any
) -> dict[str, Any]:
    """rows, the primary metric and accuracy (classification) or MAE (regression); binary also
    the share of rows predicted positive."""
    defined = not undefined(primary, rows, contract)
    out: dict[str, Any] = {"rows": len(rows), primary: safe(score, rows) if defined else None}
    actual = rows[contract.target.name]
    if not contract.is_classification:
        error = np.abs(actual.astype(float).to_numpy() - predicted)
        return {**out, "mae": round(float(error.mean()), DIGITS)}
    out["accuracy"] = round(float((actual.astype(str).to_numpy() == predicted).mean()), DIGITS)
    if contract.task == "binary":  # the fairness section's selection rate
        out["selection_rate"] = round(float((predicted == contract.positive).mean()), DIGITS)
    return out


def slices(
    test: pd.DataFrame, predicted: np.ndarray, contract: Contract, primary: str, score: Any
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per categorical feature, per category present in the test split (missing values as
    `(missing)`): rows and scores. `predicted` holds the test rows' predicted labels (or
    values); `score(frame)` is the primary metric of the model on a frame. A metric a slice
    cannot define (ROC AUC or average precision of a one-class slice) is null."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for feature in contract.categorical_features():
        keys = test[feature].astype("string").fillna(MISSING)
        out[feature] = {}
        for value in sorted(keys.unique()):
            mask = (keys == value).to_numpy()
            out[feature][str(value)] = _slice_scores(
                test[mask], predicted[mask], contract, primary, score
            )
    return out


def undefined(metric: str, rows: pd.DataFrame, contract: Contract) -> bool:
    """Whether `metric` is undefined on `rows`: a ranking metric (NEEDS_EVERY_CLASS) where
    the truth lacks a class (binary ROC AUC would be 0.5, average precision 0 or 1, by
    convention rather than measured)."""
    if metric not in NEEDS_EVERY_CLASS or not contract.is_classification:
        return False
    present = set(rows[contract.target.name].dropna().astype(str))
    return not set(contract.classes) <= present


def safe(score: Any, rows: pd.DataFrame) -> float | None:
    """The score rounded, or None where the slice cannot define it."""
    try:
        value = float(score(rows))
    except ValueError:
        return None
    return None if np.isnan(value) else round(value, DIGITS)


def largest_gap(
    groups: dict[str, dict[str, Any]], name: str
) -> tuple[tuple[str, float], tuple[str, float]] | None:
    """The best and the worst group on metric `name` ((group, score) each), among the groups
    that have a score; None with fewer than two."""
    scored = {value: s[name] for value, s in groups.items() if s.get(name) is not None}
    if len(scored) < 2:
        return None
    high, low = max(scored, key=scored.__getitem__), min(scored, key=scored.__getitem__)
    return (high, scored[high]), (low, scored[low])
