"""Interventional Shapley values in plain NumPy, for any model that scores columns of features.

Used where shap is not (the service's image has no shap, numba or scikit-learn) or is too
slow (shap's model-agnostic explainers call the pipeline once per coalition batch and row;
here the coalitions' rows go to the model in batches of up to MAX_BATCH_ROWS). The
definition is shap's interventional one (ExactExplainer with an Independent masker): the
value of a coalition S of features is the model's mean output over the background rows with
the features in S set to the explained record's values. Then

    phi_i = sum over S without i of |S|! (n - |S| - 1)! / n! * (v(S + i) - v(S))

- exact: every coalition (2^n of them), for up to a few more than 10 features;
- permutation: the marginal contributions along `permutations` seeded random orders, each
  with its reverse (antithetic: lower variance for the same budget). Not exact, but additive.

Either way base + sum(phi) is the model's output for the record (v(all) - v(none) telescopes).
The model is called on at most `max_batch_rows` rows at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import factorial

import numpy as np

Columns = list[np.ndarray]  # one 1-D array per feature, in the model's feature order
Score = Callable[[Columns], np.ndarray]  # rows x outputs (or rows) for those columns
MAX_BATCH_ROWS = 16_384


@dataclass(frozen=True)
class Shapley:
    """One record's values: `values` features x outputs, `base` and `output` per output."""

    values: np.ndarray
    base: np.ndarray  # the mean output over the background: v(no feature)
    output: np.ndarray  # the model's output for the record: v(every feature)
    method: str  # exact | permutation


def all_coalitions(n: int) -> np.ndarray:
    """Every subset of n features as a 2^n x n boolean mask (row k: the bits of k)."""
    bits: np.ndarray = (np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1 == 1
    return bits


def exact_weights(masks: np.ndarray) -> np.ndarray:
    """2^n x n: phi = weights.T @ v. A coalition S holding i counts w(|S| - 1) toward
    phi_i, one without i counts -w(|S|), w(s) = s! (n - s - 1)! / n!."""
    n = masks.shape[1]
    w = np.array([factorial(s) * factorial(n - s - 1) / factorial(n) for s in range(n)])
    size = masks.sum(axis=1)
    with_i = w[np.clip(size - 1, 0, n - 1)][:, None]
    without_i = w[np.clip(size, 0, n - 1)][:, None]
    weights: np.ndarray = np.where(masks, with_i, -without_i)
    return weights


def coalition_values(
    score: Score, record: Columns, background: Columns, masks: np.ndarray, max_rows: int
) -> np.ndarray:
    """v(S) for each mask row: the mean output over the background, outputs as columns."""
    rows = len(background[0])
    step = max(1, max_rows // rows)
    parts = []
    for start in range(0, len(masks), step):
        chunk = masks[start : start + step]
        hybrid = [
            np.where(np.repeat(chunk[:, j], rows), record[j][0], np.tile(background[j], len(chunk)))
            for j in range(len(record))
        ]
        outputs = np.asarray(score(hybrid), dtype=float).reshape(len(chunk) * rows, -1)
        parts.append(outputs.reshape(len(chunk), rows, -1).mean(axis=1))
    return np.concatenate(parts)


def permutation_masks(n: int, permutations: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The prefix coalitions of each sampled order and its reverse: (orders x (n + 1)) x n
    masks, and the orders themselves."""
    rng = np.random.default_rng(seed)
    drawn = np.array([rng.permutation(n) for _ in range(permutations)]).reshape(-1, n)
    orders = np.concatenate([drawn, drawn[:, ::-1]])
    masks = np.zeros((len(orders), n + 1, n), dtype=bool)
    for k, order in enumerate(orders):
        for step, feature in enumerate(order):
            masks[k, step + 1 :, feature] = True
    return masks.reshape(-1, n), orders


def explain_record(
    score: Score,
    record: Columns,
    background: Columns,
    exact_max_features: int = 10,
    permutations: int = 32,
    seed: int = 0,
    max_rows: int = MAX_BATCH_ROWS,
) -> Shapley:
    """Shapley values of one record (each column of length 1) over `background`."""
    n = len(record)
    if n == 0 or len(background) != n or len(background[0]) == 0:
        raise ValueError("need at least one feature and one background row per feature")
    if n <= exact_max_features:
        masks = all_coalitions(n)
        v = coalition_values(score, record, background, masks, max_rows)
        return Shapley(exact_weights(masks).T @ v, v[0], v[-1], "exact")
    masks, orders = permutation_masks(n, permutations, seed)
    v = coalition_values(score, record, background, masks, max_rows).reshape(len(orders), n + 1, -1)
    gains = np.diff(v, axis=1)  # orders x n x outputs: the gain of the feature added at each step
    values = np.zeros((n, v.shape[2]))
    for k, order in enumerate(orders):
        values[order] += gains[k]
    return Shapley(values / len(orders), v[0, 0], v[0, -1], "permutation")


def top(values: Sequence[float] | np.ndarray, k: int) -> list[int]:
    """The indices of the k largest |values|, largest first (ties: feature order)."""
    magnitude = np.abs(np.asarray(values, dtype=float))
    return sorted(range(len(magnitude)), key=lambda i: (-magnitude[i], i))[:k]
