from pathlib import Path

import pytest
import yaml

from mlops_template import config
from mlops_template.errors import PipelineError
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
