"""How well the predicted probabilities are calibrated: the Brier score and a reliability
curve (predicted probability in tenths against the observed rate), for the evaluate stage,
the PR report and the model card.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlops_template.contract import Contract

BINS = 10  # the reliability curve: predicted probability in tenths


DIGITS = 6


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
