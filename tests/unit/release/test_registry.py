"""The promotion gate and the release outcome, without a server (the registry itself is
tested against a real MLflow server in tests/integration/test_registry.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from mlops_template import PipelineError
from mlops_template.config import Params
from mlops_template.evaluation.behaviour import GATE_KEY
from mlops_template.io import storage
from mlops_template.release.registry import Release, decide, publish_release, served_onnx
from mlops_template.stages import train
from mlops_template.stages.compile import to_onnx

CHAMPION = {"accuracy": 0.95, "f1_macro": 0.94, "log_loss": 0.20, "roc_auc_ovr": 0.99}


def scores(**changes: float) -> dict[str, float]:
    return {**CHAMPION, **changes}


def test_a_tie_promotes_the_newest_reviewed_model(params: Params) -> None:
    decision = decide(scores(), CHAMPION, params)
    assert decision.promoted
    assert "tied" in decision.reason


def test_a_better_model_is_promoted(params: Params) -> None:
    assert decide(scores(f1_macro=0.96), CHAMPION, params).promoted


def test_any_loss_on_the_primary_metric_is_refused_with_no_margin(params: Params) -> None:
    decision = decide(scores(f1_macro=0.9399), CHAMPION, params)
    assert not decision.promoted
    assert "f1_macro 0.9399 vs champion 0.94: worse by 0.000100" in decision.reason


def test_a_loss_within_the_margin_is_promoted(make_params: Callable[..., Params]) -> None:
    params = make_params(registry={"margin": 0.01})
    assert decide(scores(f1_macro=0.935), CHAMPION, params).promoted
    assert not decide(scores(f1_macro=0.92), CHAMPION, params).promoted


def test_a_lower_is_better_primary_metric(make_params: Callable[..., Params]) -> None:
    params = make_params(evaluate={"primary_metric": "log_loss"})
    assert decide(scores(log_loss=0.19), CHAMPION, params).promoted
    assert not decide(scores(log_loss=0.21), CHAMPION, params).promoted


def test_another_headline_metric_worse_than_the_tolerance_is_refused(params: Params) -> None:
    decision = decide(scores(f1_macro=0.99, roc_auc_ovr=0.97), CHAMPION, params)
    assert not decision.promoted
    assert "roc_auc_ovr" in decision.reason


def test_a_candidate_below_its_baseline_is_refused_whatever_the_champion(
    params: Params,
) -> None:
    baseline = {"accuracy": 0.96, "f1_macro": 0.97, "log_loss": 0.9, "roc_auc_ovr": 0.5}
    candidate = {**scores(f1_macro=0.96), "baseline": baseline, "beats_baseline": False}
    decision = decide(candidate, CHAMPION, params)
    assert not decision.promoted
    assert decision.reason == (
        "does not beat its baseline on f1_macro:"
        " f1_macro 0.9600 vs 0.9700, log_loss 0.2000 vs 0.9000 (lower is better)"
    )
    beating = {**candidate, "baseline": {**baseline, "f1_macro": 0.3}, "beats_baseline": True}
    assert decide(beating, CHAMPION, params).promoted


REGRESSION_CHAMPION = {"rmse": 50.0, "mae": 40.0, "r2": 0.5}


@pytest.fixture
def regression_params(
    make_params: Callable[..., Params], contract_file: Callable[[str], Path]
) -> Callable[..., Params]:
    def build(**overrides: object) -> Params:
        return make_params(
            data={"contract": str(contract_file("regression"))},
            evaluate={"primary_metric": "auto"},
            **overrides,
        )

    return build


def test_regression_margin_is_a_share_of_the_champions_error(
    regression_params: Callable[..., Params],
) -> None:
    strict = regression_params()
    assert strict.primary_metric == "rmse"
    refused = decide({**REGRESSION_CHAMPION, "rmse": 50.4}, REGRESSION_CHAMPION, strict)
    assert not refused.promoted
    assert "rmse 50.4 vs champion 50.0: worse by 0.008000" in refused.reason
    lenient = regression_params(registry={"margin": 0.01})  # 1% of 50 = 0.5
    assert decide({**REGRESSION_CHAMPION, "rmse": 50.4}, REGRESSION_CHAMPION, lenient).promoted
    assert not decide({**REGRESSION_CHAMPION, "rmse": 50.6}, REGRESSION_CHAMPION, lenient).promoted
    better = decide({**REGRESSION_CHAMPION, "rmse": 45.0}, REGRESSION_CHAMPION, strict)
    assert better.promoted
    assert "rmse improved (+0.100000)" in better.reason


def test_regression_tolerance_is_relative_for_errors_absolute_for_r2(
    regression_params: Callable[..., Params],
) -> None:
    params = regression_params()  # tolerance 0.01
    ok = {"rmse": 49.0, "mae": 40.3, "r2": 0.495}  # mae 0.75% worse, r2 0.005 lower
    assert decide(ok, REGRESSION_CHAMPION, params).promoted
    mae = decide({**ok, "mae": 40.5}, REGRESSION_CHAMPION, params)  # 1.25% worse
    assert not mae.promoted
    assert "mae 40.5 vs champion 40.0: worse than the tolerance 0.01" in mae.reason
    r2 = decide({**ok, "r2": 0.485}, REGRESSION_CHAMPION, params)
    assert not r2.promoted
    assert r2.reason.startswith("r2 ")


@pytest.mark.parametrize(
    ("outcome", "deploy", "level"),
    [
        ("promoted", "true", "notice"),
        ("unchanged", "true", "notice"),
        ("refused", "false", "warning"),
    ],
)
def test_the_outcome_reaches_the_workflow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], outcome: str, deploy: str, level: str
) -> None:
    output, summary = tmp_path / "output", tmp_path / "summary"
    environ = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    publish_release(Release(outcome, "3", "f1_macro tied (+0.000000)"), environ)  # type: ignore[arg-type]
    assert output.read_text().splitlines() == [
        f"deploy={deploy}",
        f"outcome={outcome}",
        "version=3",
    ]
    assert f"## Release: model {outcome}" in summary.read_text()
    assert f"::{level} title=Model {outcome}::" in capsys.readouterr().out


def test_outside_github_the_outcome_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    publish_release(Release("refused", "4", "worse"), {})
    assert capsys.readouterr().out == "release: refused: version 4: worse\n"


def test_the_registered_onnx_model_must_come_from_the_registered_model(
    params: Params, penguins: pd.DataFrame
) -> None:
    """The release logs the compiled model beside the scikit-learn one only if it is the
    compilation of that very model (its recorded source sha256) and its own bytes verify."""
    frame = penguins.dropna(subset=[params.contract.target.name])
    model = train.fit(frame, params)
    sha = "a" * 64
    blob = to_onnx(model, params.contract, sha)
    onnx_path = params.paths.onnx_model
    storage.write_bytes(onnx_path, blob)
    storage.write_text(
        storage.sha256_sidecar(onnx_path), f"{storage.sha256_bytes(blob)}  {onnx_path.name}\n"
    )

    assert served_onnx(params, sha) == blob
    with pytest.raises(PipelineError, match="was compiled from another model"):
        served_onnx(params, "b" * 64)
    storage.write_bytes(onnx_path, blob + b"\0")  # tampered after the sha256 was recorded
    with pytest.raises(PipelineError, match="does not match the recorded"):
        served_onnx(params, sha)

    sklearn = params.model_copy(
        update={"serve": params.serve.model_copy(update={"runtime": "sklearn"})}
    )
    assert served_onnx(sklearn, sha) is None


def test_a_candidate_failing_a_behaviour_check_is_refused_whatever_the_champion(
    params: Params,
) -> None:
    refusal = "behaviour checks failed: invariance changing `sex` moves any output by at most 0.2"
    candidate = {**scores(f1_macro=0.99), "beats_baseline": True, GATE_KEY: refusal}
    decision = decide(candidate, CHAMPION, params)
    assert not decision.promoted
    assert decision.reason == refusal
    assert decide({**candidate, GATE_KEY: None}, CHAMPION, params).promoted


def test_a_loss_within_the_margin_says_so(make_params: Callable[..., Params]) -> None:
    params = make_params(registry={"margin": 0.01})
    decision = decide(scores(f1_macro=0.935), CHAMPION, params)
    assert decision.reason == "f1_macro within the margin (-0.005000)"
    assert decide(scores(f1_macro=0.95), CHAMPION, params).reason == (
        "f1_macro improved (+0.010000)"
    )


BINARY_CHAMPION = {"roc_auc": 0.90, "average_precision": 0.85, "f1": 0.80, "log_loss": 0.40}


def test_a_worse_lower_is_better_headline_metric_refuses_a_better_primary(
    make_params: Callable[..., Params], contract_file: Callable[[str], Path]
) -> None:
    params = make_params(
        data={"contract": str(contract_file("binary"))}, evaluate={"primary_metric": "auto"}
    )
    assert params.primary_metric == "roc_auc"
    overconfident = {**BINARY_CHAMPION, "roc_auc": 0.95, "log_loss": 0.42}
    decision = decide(overconfident, BINARY_CHAMPION, params)
    assert not decision.promoted
    assert decision.reason == "log_loss 0.42 vs champion 0.4: worse than the tolerance 0.01"
    calibrated = {**overconfident, "log_loss": 0.405}  # worse, but within the tolerance
    assert decide(calibrated, BINARY_CHAMPION, params).promoted


def test_the_metrics_are_judged_before_the_behaviour_checks(params: Params) -> None:
    """A candidate with several faults is refused for the first: its baseline, then the
    primary metric, then the headline metrics, then the behaviour checks."""
    refusal = "behaviour checks failed: directional"
    worse = {**scores(f1_macro=0.90), GATE_KEY: refusal, "beats_baseline": True}
    assert decide(worse, CHAMPION, params).reason.startswith("f1_macro 0.9 vs champion 0.94")
    below = {
        **worse,
        "baseline": {"f1_macro": 0.95, "log_loss": 1.0},
        "beats_baseline": False,
    }
    assert decide(below, CHAMPION, params).reason.startswith(
        "does not beat its baseline on f1_macro"
    )
    headline = {**scores(accuracy=0.90), GATE_KEY: refusal, "beats_baseline": True}
    assert decide(headline, CHAMPION, params).reason.startswith("accuracy 0.9 vs champion 0.95")


def test_a_champion_with_no_error_is_compared_by_the_difference(
    regression_params: Callable[..., Params],
) -> None:
    """A share of the champion's error is undefined when the champion's error is 0: the gate
    falls back to the plain difference rather than dividing by zero."""
    perfect = {"rmse": 0.0, "mae": 0.0, "r2": 1.0}
    params = regression_params()
    assert decide(perfect, perfect, params).reason == "rmse tied (+0.000000)"
    decision = decide({**perfect, "rmse": 0.5}, perfect, params)
    assert not decision.promoted
    assert "worse by 0.500000" in decision.reason
