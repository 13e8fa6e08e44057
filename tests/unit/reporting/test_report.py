"""The PR report for each situation a reviewer meets."""

from pathlib import Path

from mlops_template.config import Params
from mlops_template.contract import Contract, contract_dict
from mlops_template.evaluation import plots
from mlops_template.io import storage
from mlops_template.reporting.inputs import (
    MetricDiff,
    ReportInputs,
    contract_change,
    metric_diffs,
    params_changes,
)
from mlops_template.reporting.report import baseline_warning, render, verdict

VALIDATION = {
    "passed": True,
    "rows": 344,
    "columns": 7,
    "missing": {"species": 0, "sex": 11},
    "violations": 0,
}


def _inputs(**changes: object) -> ReportInputs:
    base = {
        "base": "main",
        "primary_metric": "f1_macro",
        "metrics": [
            MetricDiff("f1_macro", 0.90, 0.95),
            MetricDiff("accuracy", 0.91, 0.96),
            MetricDiff("log_loss", 0.30, 0.20),
            MetricDiff("per_class.Adelie.recall", 0.9, 1.0),
        ],
        "params_changed": {"model.n_estimators": (100, 300)},
        "validation": VALIDATION,
        "train_seconds": 1.234,
        "model_bytes": 2048,
        "images": {"ROC": "report_images/roc.png"},
    }
    return ReportInputs(**{**base, **changes})


def test_changed_metrics_report_deltas_params_and_verdict() -> None:
    text = render(_inputs())
    assert "✅ **Better** than `main` on `f1_macro`: 0.9000 → 0.9500 (+0.0500)." in text
    assert "| **f1_macro** | 0.9000 | 0.9500 | +0.0500 |" in text
    assert "| log_loss | 0.3000 | 0.2000 | -0.1000 |" in text
    assert "<details><summary>Per-class metrics</summary>" in text
    assert "| per_class.Adelie.recall | 0.9000 | 1 | +0.1000 |" in text
    assert "| `model.n_estimators` | `100` | `300` |" in text
    assert "✅ 344 rows, 7 columns, no violations." in text
    assert "Missing values: `sex` 11" in text
    assert "Training time: 1.23 s · model size: 2.0 KiB" in text
    assert "![ROC](report_images/roc.png)" in text


def test_worse_primary_metric_is_flagged() -> None:
    text = render(_inputs(metrics=[MetricDiff("f1_macro", 0.95, 0.90)]))
    assert "⚠️ **Worse** than `main` on `f1_macro`: 0.9500 → 0.9000 (-0.0500)." in text


def test_lower_is_better_for_log_loss() -> None:
    text = render(_inputs(primary_metric="log_loss", metrics=[MetricDiff("log_loss", 0.3, 0.2)]))
    assert "✅ **Better**" in text


def test_nothing_changed() -> None:
    text = render(
        _inputs(metrics=[MetricDiff("f1_macro", 0.95, 0.95)], params_changed={}, train_seconds=None)
    )
    assert "🟰 **No change** in `f1_macro` (0.9500) against `main`." in text
    assert "_No parameter changed against `main`._" in text
    assert "| **f1_macro** | 0.9500 | 0.9500 | 0 |" in text
    assert "Training time: not re-run" in text


def test_first_pull_request_without_base_metrics() -> None:
    text = render(_inputs(metrics=[MetricDiff("f1_macro", None, 0.95)]))
    assert "🆕 **First metrics**: `f1_macro` = 0.9500 (`main` has none to compare with)." in text
    assert "| **f1_macro** | — | 0.9500 | — |" in text


def test_failed_validation_lists_the_violations() -> None:
    failure = {
        "passed": False,
        "rows": 344,
        "violations": [
            {
                "column": "island",
                "check": "isin(['Biscoe', 'Dream', 'Torgersen'])",
                "count": 3,
                "failing_values": ["Atlantis"],
            }
        ],
    }
    text = render(_inputs(validation=None, validation_failure=failure))
    assert "❌ **Data validation failed**" in text
    assert "❌ 1 problem(s) in 344 row(s):" in text
    assert "| `island` | `isin(['Biscoe', 'Dream', 'Torgersen'])` | 3 | `Atlantis` |" in text


def test_duplicates_get_one_line_only_when_there_are_some() -> None:
    none = {"policy": "drop", "rows": 0, "dropped": 0, "conflicting_labels": 0}
    text = render(_inputs(validation={**VALIDATION, "duplicates": none}))
    assert "✅ 344 rows, 7 columns, no violations.\nMissing values: `sex` 11\n\n" in text
    assert "Duplicates" not in text

    some = {"policy": "drop", "rows": 12, "dropped": 12, "conflicting_labels": 4}
    text = render(_inputs(validation={**VALIDATION, "duplicates": some}))
    assert (
        "Missing values: `sex` 11\nDuplicates: 12 exact duplicate row(s) dropped;"
        " 4 row(s) with conflicting labels (same features, another label),"
        " kept on one side of the split.\n" in text
    )
    conflicts_only = {**none, "conflicting_labels": 2}
    text = render(_inputs(validation={**VALIDATION, "duplicates": conflicts_only}))
    assert "Duplicates: 2 row(s) with conflicting labels" in text
    assert "exact duplicate" not in text


def test_duplicates_failing_validation_are_a_row_of_the_violations_table() -> None:
    failure = {
        "passed": False,
        "rows": 348,
        "violations": [
            {
                "column": "(table)",
                "check": "no_duplicate_rows",
                "count": 4,
                "failing_values": ["row 344 = row 0", "row 345 = row 3"],
            }
        ],
    }
    text = render(_inputs(validation=None, validation_failure=failure))
    assert "| `(table)` | `no_duplicate_rows` | 4 | `row 344 = row 0`, `row 345 = row 3` |" in text


def test_missing_primary_metric_says_so() -> None:
    text = render(_inputs(metrics=[]))
    assert "❌ **No `f1_macro` on this branch**" in text
    assert "_No metrics._" in text


def test_dvc_diffs_are_parsed_in_reading_order() -> None:
    diff = {
        "reports/metrics.json": {
            "accuracy": {"old": 0.9, "new": 0.95, "diff": 0.05},
            "per_class.Gentoo.recall": {"old": 1.0, "new": 1.0, "diff": 0},
            "f1_macro": {"new": 0.8},
            "test_rows": {"old": 86, "new": 86, "diff": 0},
        },
        "reports/validation.json": {"rows": {"old": 344, "new": 344}},
    }
    found = metric_diffs(diff, Path("reports/metrics.json"), "f1_macro", "multiclass")
    assert [m.name for m in found] == ["f1_macro", "accuracy", "per_class.Gentoo.recall"]
    assert found[0] == MetricDiff("f1_macro", None, 0.8)

    params = {
        "params.yaml": {
            "model.n_estimators": {"old": 100, "new": 7, "diff": -93},
            "seed": {"old": 42, "new": 42, "diff": 0},
        }
    }
    assert params_changes(params) == {"model.n_estimators": (100, 7)}


def test_plots_are_rendered_from_the_evaluate_outputs(penguin_run: Params, tmp_path: Path) -> None:
    images = plots.render_images(penguin_run.paths, tmp_path / "images")
    assert set(images) == {
        "Confusion matrix",
        "ROC",
        "Precision-recall",
        "Reliability",
        "Feature importance",
    }
    for path in images.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_model_below_its_baseline_is_flagged_whatever_the_base_says() -> None:
    inputs = _inputs(
        baseline={"f1_macro": 0.96, "accuracy": 0.97, "log_loss": 0.1},
        beats_baseline=False,
    )
    warning = baseline_warning(inputs)
    assert warning is not None
    text = render(inputs)
    assert "✅ **Better** than `main`" in text  # better than the base, yet worthless
    assert (
        "🚫 **Does not beat its baseline** (always the majority class, or the training mean):"
        " `f1_macro` 0.9500 against 0.9600, `log_loss` 0.2000 against 0.1000." in text
    )
    assert "The promotion gate will refuse this model." in text
    assert "| metric | `main` | this branch | Δ | baseline |" in text
    assert "| **f1_macro** | 0.9000 | 0.9500 | +0.0500 | 0.9600 |" in text


def test_a_model_that_beats_its_baseline_gets_no_warning() -> None:
    inputs = _inputs(baseline={"f1_macro": 0.2}, beats_baseline=True)
    assert baseline_warning(inputs) is None
    text = render(inputs)
    assert "Does not beat" not in text
    assert "| **f1_macro** | 0.9000 | 0.9500 | +0.0500 | 0.2000 |" in text
    assert baseline_warning(_inputs()) is None  # metrics from before baselines: no claim


def test_a_failed_run_claims_nothing_about_the_baseline() -> None:
    failure = {"stage": "train", "error": "boom"}
    inputs = _inputs(stage_failure=failure, beats_baseline=False, baseline={"f1_macro": 0.9})
    assert baseline_warning(inputs) is None
    assert "Does not beat" not in render(inputs)


def test_regression_reports_lead_with_the_error_and_lower_is_better() -> None:
    diff = {
        "reports/metrics.json": {
            "r2": {"old": 0.40, "new": 0.45},
            "mae": {"old": 45.0, "new": 44.0},
            "rmse": {"old": 56.0, "new": 54.5},
            "baseline.rmse": {"old": 77.0, "new": 77.0},
            "beats_baseline": {"old": True, "new": True},
            "test_rows": {"old": 111, "new": 111},
        }
    }
    found = metric_diffs(diff, Path("reports/metrics.json"), "rmse", "regression")
    assert [m.name for m in found] == ["rmse", "mae", "r2"]
    text = render(_inputs(primary_metric="rmse", metrics=found, baseline={"rmse": 77.0}))
    assert "✅ **Better** than `main` on `rmse`: 56.0000 → 54.5000 (-1.5000)." in text
    assert "| **rmse** | 56 | 54.5000 | -1.5000 | 77 |" in text
    assert "baseline.rmse" not in text


def test_binary_reports_lead_with_the_primary_then_the_headline() -> None:
    diff = {
        "reports/metrics.json": {
            name: {"old": 0.5, "new": 0.6}
            for name in ("accuracy", "recall", "precision", "f1", "log_loss", "roc_auc")
        }
        | {"average_precision": {"old": 0.5, "new": 0.7}, "threshold": {"old": 0.5, "new": 0.5}}
    }
    found = metric_diffs(diff, Path("reports/metrics.json"), "average_precision", "binary")
    assert [m.name for m in found][:4] == ["average_precision", "roc_auc", "f1", "log_loss"]
    assert "threshold" not in [m.name for m in found]


def test_regression_plots_are_predicted_against_actual_and_residuals(
    params: Params, tmp_path: Path
) -> None:
    points = [{"actual": a, "predicted": a * 0.9 + 5} for a in (10.0, 50.0, 120.0, 300.0)]
    storage.write_json(params.paths.predicted_actual, {"predicted_actual": points})
    residuals = [{"predicted": p["predicted"], "residual": p["actual"] - p["predicted"]}
                 for p in points]  # fmt: skip
    storage.write_json(params.paths.residuals, {"residuals": residuals})
    images = plots.render_images(params.paths, tmp_path / "images")
    assert set(images) == {"Predicted vs actual", "Residuals"}
    for path in images.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_new_contract_is_not_compared_with_the_base(contract: Contract) -> None:
    """A fork's first table against the template's penguins: no deltas across problems."""
    base = {"task": "binary", "target": {"name": "churned"}, "features": [{"name": "age"}]}
    change = contract_change(base, contract)
    assert change == "binary on `churned` → multiclass on `species`"
    same = contract_dict(contract)
    assert contract_change(same, contract) is None
    assert contract_change({**same, "features": same["features"][:2]}, contract) == (
        "other features"
    )
    assert contract_change(None, contract) is None  # no contract at the base: compare
    inputs = _inputs(contract_change=change, metrics=[MetricDiff("f1_macro", None, 0.95)])
    assert verdict(inputs).startswith("🔀 **A new data contract** (binary on `churned`")
    assert "not compared" in verdict(inputs)


def test_a_base_that_is_not_a_revision_is_refused_before_git_or_dvc_see_it() -> None:
    """`--base=--output=/tmp/x` would be an option to git show and dvc."""
    import pytest

    from mlops_template import PipelineError
    from mlops_template.io.git import check_revision

    assert check_revision("origin/main") == "origin/main"
    for bad in ("--output=/tmp/x", "", "main\nrm", "a b"):
        with pytest.raises(PipelineError, match="is not a git revision"):
            check_revision(bad)


def test_the_report_says_how_the_model_will_be_served() -> None:
    compiled = {"runtime": "onnx", "compiled": True, "rows": 86, "max_abs_diff": 6.6e-07}
    text = render(_inputs(parity={**compiled, "labels_identical": True, "tolerance": 0.0001}))
    assert "Served compiled to ONNX: within 6.6e-07 of scikit-learn on 86 test rows" in text
    assert "(tolerance 0.0001), same decisions." in text

    sklearn = {"runtime": "sklearn", "compiled": False}
    assert "Served by scikit-learn (`serve.runtime: sklearn`)" in render(_inputs(parity=sklearn))
    assert "Served" not in render(_inputs())  # a failed run writes no parity


SHAP_MULTICLASS = {
    "explainer": "TreeExplainer",
    "output_space": "probability",
    "rows": 86,
    "outputs": ["Adelie", "Chinstrap", "Gentoo"],
    "mean_abs_shap": {"island": 0.1, "bill_length_mm": 0.16, "sex": 0.007},
    "per_class": {
        "Adelie": {"island": 0.05, "bill_length_mm": 0.24, "sex": 0.011},
        "Chinstrap": {"island": 0.14, "bill_length_mm": 0.16, "sex": 0.0095},
        "Gentoo": {"island": 0.11, "bill_length_mm": 0.08, "sex": 0.0016},
    },
}


def test_explanations_rank_features_per_class_with_the_summary_image() -> None:
    text = render(_inputs(explanation=SHAP_MULTICLASS, shap_image="report_images/shap.png"))
    section = text.split("### Explanations")[1]
    assert "TreeExplainer on 86 test rows: mean \\|SHAP\\| in the class probability" in section
    assert "| feature | mean \\|SHAP\\| | Adelie | Chinstrap | Gentoo |" in section
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows[0] == "| `bill_length_mm` | 0.1600 | 0.2400 | 0.1600 | 0.0800 |"
    assert [row.split("`")[1] for row in rows] == ["bill_length_mm", "island", "sex"]
    assert "![SHAP summary](report_images/shap.png)" in section


def test_binary_and_regression_explanations_have_one_column() -> None:
    binary = {
        **SHAP_MULTICLASS,
        "explainer": "TreeExplainer",
        "output_space": "log_odds",
        "outputs": ["malignant"],
        "per_class": {"malignant": SHAP_MULTICLASS["mean_abs_shap"]},
    }
    section = render(_inputs(explanation=binary)).split("### Explanations")[1]
    assert "in log-odds (malignant)" in section
    assert "| feature | mean \\|SHAP\\| |\n|---|---:|\n" in section
    assert "![SHAP summary]" not in section
    regression = {**SHAP_MULTICLASS, "output_space": "prediction", "outputs": ["y"]}
    del regression["per_class"]
    section = render(_inputs(explanation=regression)).split("### Explanations")[1]
    assert "in the prediction, the 3 largest of 3 features" in section


def test_explanations_are_absent_from_a_failed_run_and_missing_ones_said() -> None:
    failure = {"stage": "train", "error": "boom"}
    assert "### Explanations" not in render(_inputs(stage_failure=failure))
    assert "the explain stage wrote no shap.json" in render(_inputs())


BEHAVIOUR_FAILED = {
    "checks": [
        {
            "kind": "invariance",
            "feature": "sex",
            "measured": "largest change of any output",
            "pass_rate": 0.5,
            "min_pass_rate": 0.95,
            "tolerance": 0.2,
            "worst": 0.6,
            "rows": 86,
            "passed": False,
        },
        {
            "kind": "minimum",
            "feature": "island",
            "measured": "accuracy of the worst slice of at least 10 rows",
            "metric": "accuracy",
            "threshold": 0.9,
            "min_rows": 10,
            "worst": 0.95,
            "slices": [],
            "passed": True,
        },
    ],
    "summary": {"checks": 2, "passed": 1, "failed": 1},
}


def test_failed_behaviour_checks_are_flagged_on_the_verdict_and_tabled() -> None:
    inputs = _inputs(behaviour=BEHAVIOUR_FAILED)
    assert verdict(inputs).startswith("✅ **Better** than `main`")
    assert verdict(inputs).endswith("❌ **1 behaviour check(s) failed**: the gate will refuse it.")
    text = render(inputs)
    section = text[text.index("### Behaviour") : text.index("### Params changed")]
    assert (
        "| invariance | changing `sex` moves any output by at most 0.2 | 50.0% of 86 rows"
        " (largest change 0.6) | ≥ 95% | ❌ **fail** |" in section
    )
    assert (
        "| minimum | each `island` slice of 10+ test rows: accuracy | 0.9500 | ≥ 0.9 | ✅ pass |"
        in section
    )


def test_passing_or_undeclared_behaviour_checks_leave_the_verdict_alone() -> None:
    passing = {**BEHAVIOUR_FAILED, "checks": BEHAVIOUR_FAILED["checks"][1:]}
    assert "behaviour" not in verdict(_inputs(behaviour=passing))
    text = render(_inputs())
    assert "_No behaviour checks declared in the data contract (`behaviour:`)._" in text


def test_a_failed_pipeline_shows_no_behaviour_section() -> None:
    failure = {"stage": "train", "error": "boom"}
    inputs = _inputs(behaviour=BEHAVIOUR_FAILED, stage_failure=failure)
    assert "behaviour" not in verdict(inputs)
    assert "### Behaviour" not in render(inputs)
