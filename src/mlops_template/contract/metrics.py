"""Facts about metrics, in one place: which metrics each task computes, which is the primary
by default, which are compared by the promotion gate, which are lower-is-better, and how a
model is judged against its baseline. The evaluate stage, the PR report, the registry's gate
and the config all read them here."""

from __future__ import annotations

from typing import Any

# Metric facts, in one place. The headline metrics each task computes (scoring.py),
# compared by the PR report and the promotion gate; `primary_metric` must be one of its task's.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("roc_auc", "average_precision", "f1", "precision", "recall", "accuracy", "log_loss"),
    "multiclass": ("f1_macro", "accuracy", "log_loss", "roc_auc_ovr"),
    "regression": ("rmse", "mae", "r2"),
}
DEFAULT_PRIMARY = {"binary": "roc_auc", "multiclass": "f1_macro", "regression": "rmse"}
# What the promotion gate's tolerance covers (precision and recall trade off at a threshold,
# so binary tasks are held to F1 instead).
HEADLINE: dict[str, tuple[str, ...]] = {
    "binary": ("roc_auc", "average_precision", "f1", "log_loss"),
    "multiclass": ("accuracy", "f1_macro", "log_loss", "roc_auc_ovr"),
    "regression": ("rmse", "mae", "r2"),
}
# A model must beat its baseline (scoring.py) on the primary metric and on these: a
# proper score of the probabilities (majority-class accuracy and macro F1 are easy to beat by
# chance), or the absolute error.
BASELINE_ALSO: dict[str, tuple[str, ...]] = {
    "binary": ("log_loss",),
    "multiclass": ("log_loss",),
    "regression": ("mae",),
}
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})
# A mean over rows, so any labelled rows can be scored with it: the labelled feedback `mlops
# monitor drift` judges against the test split's, and the second column of the model card's slices.
PER_ROW: dict[str, str] = {"binary": "accuracy", "multiclass": "accuracy", "regression": "mae"}
# Errors in the target's own unit: the gate's margin and tolerance apply to them as a share
# of the champion's value (0.01 = 1% worse), not as an absolute difference.
RELATIVE = frozenset({"rmse", "mae"})


def better(metric: str, candidate: float, reference: float) -> bool:
    """Whether `candidate` is strictly better than `reference` on `metric`."""
    return candidate < reference if metric in LOWER_IS_BETTER else candidate > reference


def gain(metric: str, candidate: float, reference: float) -> float:
    """How much better `candidate` is than `reference` (negative: worse): a difference, or
    for errors in the target's unit (RELATIVE) a share of `reference`."""
    change = reference - candidate if metric in LOWER_IS_BETTER else candidate - reference
    if metric in RELATIVE:
        return change / abs(reference) if reference else (0.0 if change == 0 else change)
    return change


def below_baseline(
    metrics: dict[str, Any], baseline: dict[str, float], primary: str, task: str
) -> list[str]:
    """The metrics on which the model does not beat its baseline: checked are the primary
    metric and BASELINE_ALSO's (log loss for classification, MAE for regression)."""
    checked = dict.fromkeys((primary, *BASELINE_ALSO[task]))
    return [
        name
        for name in checked
        if name in baseline
        and name in metrics
        and not better(name, float(metrics[name]), float(baseline[name]))
    ]


def baseline_verdict(metrics: dict[str, Any], primary: str, task: str) -> str:
    """One line: the model against its baseline, naming every metric it does not beat."""
    baseline = metrics["baseline"]
    shortfalls = below_baseline(metrics, baseline, primary, task)
    checked = dict.fromkeys((primary, *BASELINE_ALSO[task]))
    shown = ", ".join(
        f"{name} {metrics[name]:.4f} vs {baseline[name]:.4f}"
        + (" (lower is better)" if name in LOWER_IS_BETTER else "")
        for name in checked
        if name in baseline and name in metrics
    )
    if shortfalls:
        return f"does not beat its baseline on {', '.join(shortfalls)}: {shown}"
    return f"beats its baseline: {shown}"


# A compiled (ONNX) model computes in float32: a forest's exact 0.5 comes back as 0.49999994.
# Its probabilities reach the threshold within this much (float32 carries ~7 digits).
FLOAT32_SLACK = 1e-6


def decide(
    proba: Any,
    classes: list[str] | tuple[str, ...],
    positive: str | None,
    threshold: float,
    slack: float = 0.0,
) -> Any:
    """The decision rule, shared by the evaluate stage and the service: the index of the
    chosen class in `classes`, for one row of class probabilities (an int) or for a matrix of
    rows (an array of ints). With two classes and a `positive` one, the positive class
    whenever its probability reaches `threshold`, the other class otherwise; else (multiclass,
    or no positive class named) the most probable class. `slack`: how far below the threshold
    a probability may be and still reach it (FLOAT32_SLACK for a compiled model's scores)."""
    import numpy as np  # here, not at the top: this module is imported by light-weight code

    scores = np.asarray(proba, dtype=float)
    if positive is not None and len(classes) == 2:
        chosen = list(classes).index(positive)
        picked = np.where(scores[..., chosen] >= threshold - slack, chosen, 1 - chosen)
    else:
        picked = scores.argmax(axis=-1)
    return int(picked) if scores.ndim == 1 else picked.astype(int)
