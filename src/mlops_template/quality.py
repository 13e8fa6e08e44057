"""What a headline metric hides, for the evaluate stage and the model card: how well the
probabilities are calibrated (the Brier score and a reliability curve) and how the model does
on each category of each categorical feature (slices).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlops_template.schema import Contract

BINS = 10  # the reliability curve: predicted probability in tenths
DIGITS = 6
MISSING = "(missing)"
# Ranking metrics need both classes (binary) or every class (one-vs-rest) among the truth.
NEEDS_EVERY_CLASS = frozenset({"roc_auc", "average_precision", "roc_auc_ovr"})


def brier(truth: np.ndarray, proba: np.ndarray) -> float:
    """The Brier score (0: perfect). Binary (two columns): the mean squared error of the
    positive class's probability, scikit-learn's brier_score_loss (either column gives the
    same, since the two probabilities and truths sum to 1). Multiclass: the mean over rows of
    the summed squared errors of the class probabilities against the one-hot truth (ranges
    to 2). A class code of -1 (a class the model lacks) counts as wrong for every class."""
    onehot = np.zeros_like(proba, dtype=float)
    known = truth >= 0
    onehot[np.flatnonzero(known), truth[known]] = 1.0
    if proba.shape[1] == 2:  # binary: the positive class's, as sklearn's brier_score_loss
        return round(float(((proba[:, 1] - onehot[:, 1]) ** 2).mean()), DIGITS)
    return round(float(((proba - onehot) ** 2).sum(axis=1).mean()), DIGITS)


def reliability(
    actual: pd.Series, proba: np.ndarray, classes: list[str], contract: Contract
) -> list[dict[str, Any]]:
    """Per class (binary: the positive class), per tenth of predicted probability holding
    rows: the mean predicted probability, the observed share of the class, the row count."""
    shown = [str(contract.positive)] if contract.task == "binary" else classes
    bins = np.minimum((proba * BINS).astype(int), BINS - 1)
    rows = []
    for name in shown:
        i = classes.index(name)
        observed = (actual.to_numpy() == name).astype(float)
        for b in range(BINS):
            mask = bins[:, i] == b
            if mask.any():
                rows.append(
                    {
                        "class": name,
                        "predicted": round(float(proba[mask, i].mean()), DIGITS),
                        "observed": round(float(observed[mask].mean()), DIGITS),
                        "rows": int(mask.sum()),
                    }
                )
    return rows


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


def pooled_reliability(points: list[dict[str, Any]]) -> list[list[Any]]:
    """The reliability curve (per class, in tenths) pooled over the classes into fifths, for
    a table small enough to read (the plot has the detail): per fifth of predicted
    probability, its label, the mean predicted probability, the observed share, the count."""
    rows = []
    for low in range(0, 100, 20):
        inside = [
            p
            for p in points
            if low / 100 <= p["predicted"] < (low + 20) / 100 or (low == 80 and p["predicted"] == 1)
        ]
        count = sum(p["rows"] for p in inside)
        if count:
            predicted = sum(p["predicted"] * p["rows"] for p in inside) / count
            observed = sum(p["observed"] * p["rows"] for p in inside) / count
            rows.append([f"{low / 100:.1f} to {(low + 20) / 100:.1f}", predicted, observed, count])
    return rows


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
