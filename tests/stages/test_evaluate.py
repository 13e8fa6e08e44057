import numpy as np
import pandas as pd
import pytest

from mlops_template import io
from mlops_template.config import Params
from mlops_template.stages import evaluate, split, train

CLASSES = ["Adelie", "Chinstrap", "Gentoo"]


@pytest.fixture
def trained(params: Params, penguins: pd.DataFrame) -> Params:
    train_frame, test_frame = split.split(penguins, 0.25, seed=params.seed)
    io.write_parquet(params.paths.train, train_frame)
    io.write_parquet(params.paths.test, test_frame)
    train.run(params)
    return params


def test_metrics_from_known_predictions() -> None:
    actual = pd.Series(["Adelie", "Adelie", "Gentoo", "Chinstrap"])
    proba = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]])
    metrics = evaluate.compute_metrics(actual, proba, CLASSES)
    assert metrics["accuracy"] == 0.75
    assert metrics["per_class"]["Adelie"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": 0.666667,
        "support": 2,
    }
    assert metrics["per_class"]["Chinstrap"]["precision"] == 0.5
    assert metrics["f1_macro"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3, abs=1e-6)
    expected_loss = -np.mean(np.log([0.8, 0.2, 0.8, 0.8]))
    assert metrics["log_loss"] == pytest.approx(expected_loss, abs=1e-6)


def test_curves_are_bounded_and_span_zero_to_one() -> None:
    rng = np.random.default_rng(0)
    actual = pd.Series(rng.choice(CLASSES, size=5000))
    proba = rng.dirichlet([1, 1, 1], size=5000)
    roc, pr = evaluate.one_vs_rest_curves(actual, proba, CLASSES)
    assert set(roc) == set(pr) == set(CLASSES)
    for points in roc.values():
        assert len(points) <= evaluate.MAX_CURVE_POINTS
        assert points[0] == {"fpr": 0.0, "tpr": 0.0}
        assert points[-1] == {"fpr": 1.0, "tpr": 1.0}
    for points in pr.values():
        assert len(points) <= evaluate.MAX_CURVE_POINTS
        assert points[0]["recall"] == 0.0


def test_run_writes_metrics_and_plot_data(trained: Params) -> None:
    metrics = evaluate.run(trained)
    paths = trained.paths
    assert io.read_json(paths.metrics) == metrics
    assert metrics["accuracy"] > 0.9
    assert metrics["test_rows"] == 86
    assert set(metrics["per_class"]) == set(CLASSES)
    confusion = pd.read_csv(paths.confusion)
    assert list(confusion.columns) == ["actual", "predicted"]
    assert len(confusion) == 86
    roc = io.read_json(paths.roc)["roc"]
    assert {row["class"] for row in roc} == set(CLASSES)
    assert set(roc[0]) == {"class", "fpr", "tpr"}
    pr = io.read_json(paths.precision_recall)["precision_recall"]
    assert {row["class"] for row in pr} == set(CLASSES)
    assert set(pr[0]) == {"class", "recall", "precision"}
    importance = io.read_json(paths.feature_importance)["importance"]
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


def test_metrics_on_codes_equal_metrics_on_label_strings() -> None:
    from sklearn.metrics import f1_score, log_loss, precision_recall_fscore_support

    rng = np.random.default_rng(1)
    actual = pd.Series(rng.choice(CLASSES, size=2000))
    proba = rng.dirichlet([2, 1, 1], size=2000)
    predicted = np.asarray(CLASSES)[proba.argmax(axis=1)]
    metrics = evaluate.compute_metrics(actual, proba, CLASSES)
    assert metrics["f1_macro"] == round(f1_score(actual, predicted, average="macro"), 6)
    assert metrics["log_loss"] == round(log_loss(actual, proba, labels=CLASSES), 6)
    precision, recall, _, _ = precision_recall_fscore_support(actual, predicted, labels=CLASSES)
    for i, name in enumerate(CLASSES):
        assert metrics["per_class"][name]["precision"] == round(precision[i], 6)
        assert metrics["per_class"][name]["recall"] == round(recall[i], 6)
