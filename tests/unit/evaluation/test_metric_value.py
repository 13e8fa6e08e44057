"""metric_value (one metric, for permutation importance and the tuning scorer) gives the same
number as compute_metrics (all of them, for metrics.json, which rounds to 6 decimals) for
every metric of every task."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlops_template.contract.metrics import TASK_METRICS
from mlops_template.evaluation.scoring import compute_metrics, metric_value
from mlops_template.io import storage
from tests.support import tasks


def trained(directory: Path, task: str, penguins: pd.DataFrame) -> tasks.TaskModel:
    if task == "multiclass":
        return tasks.penguin_task(directory, penguins)
    if task == "binary":
        return tasks.profiled_task(directory, tasks.breast_cancer(), "cancer", positive="malignant")
    return tasks.profiled_task(directory, tasks.diabetes(), "diabetes")


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_one_metric_equals_the_same_metric_among_all(
    tmp_path: Path, penguins: pd.DataFrame, task: str
) -> None:
    model = trained(tmp_path, task, penguins)
    pipeline = storage.load_verified_model(model.model_path)
    frame = model.frame.dropna(subset=[model.contract.target.name]).sample(frac=0.5, random_state=0)
    thresholds = (0.5, 0.8) if task == "binary" else (0.5,)
    for threshold in thresholds:
        every = compute_metrics(pipeline, frame, model.contract, threshold)
        assert set(TASK_METRICS[task]) <= set(every)
        for metric in TASK_METRICS[task]:
            one = metric_value(metric, pipeline, frame, model.contract, threshold)
            assert round(one, 6) == pytest.approx(every[metric]), (metric, threshold)


def test_the_threshold_moves_the_binary_label_metrics_only(
    tmp_path: Path, penguins: pd.DataFrame
) -> None:
    model = trained(tmp_path, "binary", penguins)
    pipeline = storage.load_verified_model(model.model_path)
    frame = model.frame
    values = {
        threshold: {
            metric: metric_value(metric, pipeline, frame, model.contract, threshold)
            for metric in ("roc_auc", "average_precision", "log_loss", "recall")
        }
        for threshold in (0.05, 0.95)
    }
    low, high = values[0.05], values[0.95]
    for ranking in ("roc_auc", "average_precision", "log_loss"):
        assert low[ranking] == high[ranking]
    assert low["recall"] > high["recall"]  # a lower bar for the positive class finds more of it
