from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from mlops_template import PipelineError, config
from mlops_template.contract import metrics
from tests.conftest import REPO_ROOT, repo_params_dict


def test_repository_params_parse_into_typed_objects() -> None:
    params = config.load_params(REPO_ROOT / "params.yaml")
    assert isinstance(params.model, config.RandomForest)
    assert params.paths.model == Path("models/model.joblib")
    assert 0 < params.split.test_size < 1


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("random_forest", config.RandomForest),
        ("hist_gradient_boosting", config.HistGradientBoosting),
        ("logistic_regression", config.LogisticRegression),
    ],
)
def test_model_kind_selects_its_settings(kind: str, expected: type) -> None:
    raw = repo_params_dict()
    raw["model"] = {"kind": kind}
    assert isinstance(config.parse_params(raw).model, expected)


def _error_for(raw: dict) -> str:
    with pytest.raises(PipelineError) as caught:
        config.parse_params(raw)
    return str(caught.value)


def test_unknown_key_is_named() -> None:
    raw = repo_params_dict()
    raw["split"]["test_sise"] = 0.2
    message = _error_for(raw)
    assert "split.test_sise" in message
    assert "Extra inputs are not permitted" in message


def test_validate_section_is_read_under_its_params_yaml_name() -> None:
    assert config.load_params(REPO_ROOT / "params.yaml").validation.duplicates == "drop"
    raw = repo_params_dict()
    raw["validate"] = {"duplicates": "fail"}
    assert config.parse_params(raw).validation.duplicates == "fail"
    raw["validate"] = {"duplicates": "keep"}
    assert "validate.duplicates: Input should be 'drop' or 'fail'" in _error_for(raw)
    raw.pop("validate")
    raw["validation"] = {"duplicates": "drop"}  # the Python name is not a params.yaml key
    assert "validation: Extra inputs are not permitted" in _error_for(raw)


def test_wrong_type_is_named() -> None:
    raw = repo_params_dict()
    raw["model"]["n_estimators"] = "many"
    assert "model.random_forest.n_estimators" in _error_for(raw)


def test_hyperparameter_of_another_model_kind_is_rejected() -> None:
    raw = repo_params_dict()
    raw["model"] = {"kind": "logistic_regression", "n_estimators": 10}
    assert "model.logistic_regression.n_estimators" in _error_for(raw)


def test_unknown_model_kind_lists_the_choices() -> None:
    raw = repo_params_dict()
    raw["model"] = {"kind": "xgboost"}
    message = _error_for(raw)
    assert "model" in message
    assert "random_forest" in message


def test_out_of_range_value_is_named() -> None:
    raw = repo_params_dict()
    raw["split"]["test_size"] = 1.5
    assert "split.test_size" in _error_for(raw)


def test_missing_required_section_is_named() -> None:
    raw = repo_params_dict()
    del raw["paths"]
    assert "paths: Field required" in _error_for(raw)


def test_every_unknown_key_is_reported_at_once() -> None:
    raw = repo_params_dict()
    raw["bogus"] = 1
    raw["evaluate"]["primary_metric"] = "auc"
    message = _error_for(raw)
    assert "bogus" in message
    assert "evaluate.primary_metric" in message


def test_load_params_reports_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="not found"):
        config.load_params(tmp_path / "params.yaml")


def test_load_params_reports_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("seed: [1,\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        config.load_params(path)


def test_load_params_rejects_non_mapping(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(PipelineError, match="expected a mapping"):
        config.load_params(path)


@pytest.mark.parametrize(
    ("task", "primary"),
    [("binary", "roc_auc"), ("multiclass", "f1_macro"), ("regression", "rmse")],
)
def test_primary_metric_auto_is_the_tasks_default(
    make_params: Callable[..., config.Params],
    contract_file: Callable[[str], Path],
    task: str,
    primary: str,
) -> None:
    params = make_params(
        data={"contract": str(contract_file(task))}, evaluate={"primary_metric": "auto"}
    )
    assert params.contract.task == task
    assert params.primary_metric == primary
    assert primary in config.TASK_METRICS[task]


def test_a_primary_metric_of_another_task_is_a_clear_error(
    make_params: Callable[..., config.Params], contract_file: Callable[[str], Path]
) -> None:
    params = make_params(data={"contract": str(contract_file("regression"))})
    assert params.evaluate.primary_metric == "f1_macro"
    with pytest.raises(
        PipelineError,
        match=r"evaluate.primary_metric: 'f1_macro' is not a regression metric;"
        r" choose auto or one of rmse, mae, r2",
    ):
        _ = params.contract


def test_an_unknown_primary_metric_is_named() -> None:
    raw = repo_params_dict()
    raw["evaluate"]["primary_metric"] = "auc"
    assert "evaluate.primary_metric" in _error_for(raw)


@pytest.mark.parametrize("threshold", [0.0, 1.0, 1.5])
def test_the_threshold_is_a_probability_strictly_inside_zero_and_one(threshold: float) -> None:
    raw = repo_params_dict()
    raw["evaluate"]["threshold"] = threshold
    assert "evaluate.threshold" in _error_for(raw)


def test_a_missing_contract_file_says_how_to_write_one(
    make_params: Callable[..., config.Params], workdir: Path
) -> None:
    params = make_params(data={"contract": "data/none.yaml"})
    with pytest.raises(
        PipelineError, match=r"data/none.yaml: data contract not found.*contract init"
    ):
        _ = params.contract


def test_more_required_features_than_the_contract_has_is_an_error(
    make_params: Callable[..., config.Params], contract_file: Callable[[str], Path]
) -> None:
    params = make_params(
        data={"contract": str(contract_file("binary"))},
        evaluate={"primary_metric": "auto"},
        serve={"min_present_features": 3},
    )
    with pytest.raises(PipelineError, match=r"serve.min_present_features: 3 is more than the 2"):
        _ = params.contract


def test_ridge_settings_parse() -> None:
    raw = repo_params_dict()
    raw["model"] = {"kind": "ridge", "alpha": 0.5}
    assert config.parse_params(raw).model == config.Ridge(kind="ridge", alpha=0.5)


@pytest.mark.parametrize(
    ("metric", "candidate", "reference", "better", "gain"),
    [
        ("f1_macro", 0.9, 0.8, True, 0.1),
        ("log_loss", 0.2, 0.3, True, 0.1),
        ("rmse", 55.0, 50.0, False, -0.1),  # errors in the target's unit: a share
        ("mae", 36.0, 40.0, True, 0.1),
        ("r2", 0.4, 0.5, False, -0.1),
    ],
)
def test_better_and_gain_follow_the_metric(
    metric: str, candidate: float, reference: float, better: bool, gain: float
) -> None:
    assert metrics.better(metric, candidate, reference) is better
    assert metrics.gain(metric, candidate, reference) == pytest.approx(gain)


def test_paths_name_one_plot_file_each(params: config.Params) -> None:
    files = params.paths.plot_files()
    assert len(set(files)) == 7
    assert all(path.parent == params.paths.plots for path in files)


@pytest.mark.parametrize("section", ["metrics", "docs", "explain"])
def test_an_unquoted_off_switches_a_route_off(section: str) -> None:
    """YAML reads `off` as false; the params.yaml comments write it unquoted."""
    raw = repo_params_dict()
    raw["serve"][section] = yaml.safe_load("off")
    assert config.parse_params(raw).serve.model_dump()[section] == "off"
    raw["serve"][section] = yaml.safe_load("on")
    with pytest.raises(PipelineError, match=f"serve.{section}"):
        config.parse_params(raw)
