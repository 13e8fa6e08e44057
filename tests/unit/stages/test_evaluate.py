from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from mlops_template.config import Params
from mlops_template.contract import Contract
from mlops_template.contract.metrics import baseline_verdict, below_baseline
from mlops_template.evaluation import plots
from mlops_template.io import storage
from mlops_template.stages import evaluate, split, train

CLASSES = ["Adelie", "Chinstrap", "Gentoo"]


@pytest.fixture
def trained(make_params: Callable[..., Params], penguins: pd.DataFrame) -> Params:
    params = make_params(model={"kind": "random_forest", "n_estimators": 20})
    train_frame, test_frame = split.split(penguins, params.contract, 0.25, seed=params.seed)
    storage.write_parquet(params.paths.train, train_frame)
    storage.write_parquet(params.paths.test, test_frame)
    train.run(params)
    return params


def test_curves_are_bounded_and_span_zero_to_one(contract: Contract) -> None:
    rng = np.random.default_rng(0)
    actual = pd.Series(rng.choice(CLASSES, size=5000))
    proba = rng.dirichlet([1, 1, 1], size=5000)
    roc, pr = plots.one_vs_rest_curves(actual, proba, CLASSES, contract)
    assert set(roc) == set(pr) == set(CLASSES)
    for points in roc.values():
        assert len(points) <= plots.MAX_CURVE_POINTS
        assert points[0] == {"fpr": 0.0, "tpr": 0.0}
        assert points[-1] == {"fpr": 1.0, "tpr": 1.0}
    for points in pr.values():
        assert len(points) <= plots.MAX_CURVE_POINTS
        assert points[0]["recall"] == 0.0


def test_run_writes_metrics_and_plot_data(trained: Params) -> None:
    metrics = evaluate.run(trained)
    paths = trained.paths
    assert storage.read_json(paths.metrics) == metrics
    assert metrics["accuracy"] > 0.9
    assert metrics["test_rows"] == 86
    assert set(metrics["per_class"]) == set(CLASSES)
    # the majority baseline (always Adelie) is far behind
    assert metrics["baseline"]["accuracy"] == pytest.approx(38 / 86, abs=0.01)
    assert metrics["baseline"]["f1_macro"] < 0.25
    assert metrics["beats_baseline"] is True
    for absent in (paths.predicted_actual, paths.residuals):
        assert not absent.exists()
    confusion = pd.read_csv(paths.confusion)
    assert list(confusion.columns) == ["actual", "predicted"]
    assert len(confusion) == 86
    roc = storage.read_json(paths.roc)["roc"]
    assert {row["class"] for row in roc} == set(CLASSES)
    assert set(roc[0]) == {"class", "fpr", "tpr"}
    pr = storage.read_json(paths.precision_recall)["precision_recall"]
    assert {row["class"] for row in pr} == set(CLASSES)
    assert set(pr[0]) == {"class", "recall", "precision"}
    importance = storage.read_json(paths.feature_importance)["importance"]
    assert {row["feature"] for row in importance} == {
        "island",
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "sex",
    }
    # Bill length separates the species best; the island is a strong proxy too.
    top = max(importance, key=lambda row: row["importance"])
    assert top["feature"] in {"bill_length_mm", "island", "flipper_length_mm"}


def test_evaluate_refuses_a_tampered_model(trained: Params) -> None:
    trained.paths.model.write_bytes(b"not the model")
    with pytest.raises(Exception, match="does not match the recorded"):
        evaluate.run(trained)
    assert not trained.paths.metrics.exists()


def test_beating_the_baseline_follows_the_metric_direction() -> None:
    baseline = {"rmse": 2.0, "mae": 1.5, "r2": 0.0}
    assert (
        below_baseline({"rmse": 1.0, "mae": 1.0, "r2": 0.5}, baseline, "rmse", "regression") == []
    )
    assert below_baseline({"rmse": 1.0, "mae": 1.0, "r2": -0.1}, baseline, "r2", "regression") == [
        "r2"
    ]
    tie = {"f1": 0.5, "log_loss": 0.3}
    assert below_baseline(tie, {"f1": 0.5, "log_loss": 0.6}, "f1", "binary") == ["f1"]


def test_a_model_must_also_beat_the_prior_on_log_loss() -> None:
    """Macro F1 of always-the-majority is easy to beat by chance; the class shares' log loss
    is not: a model with no signal has worse probabilities than the prior."""
    metrics = {"f1_macro": 0.14, "log_loss": 2.66}
    baseline = {"f1_macro": 0.03, "log_loss": 1.96}
    assert below_baseline(metrics, baseline, "f1_macro", "multiclass") == ["log_loss"]
    line = baseline_verdict({**metrics, "baseline": baseline}, "f1_macro", "multiclass")
    assert line == (
        "does not beat its baseline on log_loss:"
        " f1_macro 0.1400 vs 0.0300, log_loss 2.6600 vs 1.9600 (lower is better)"
    )
