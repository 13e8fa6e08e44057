import copy
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa
import pytest
import yaml

from mlops_template import PipelineError
from mlops_template.contract import (
    Contract,
    ContractError,
    contract_dict,
    load_contract,
    parse_contract,
)
from tests.conftest import DEFAULT_CONTRACT

SOURCE = Path("data/mine.yaml")


def test_penguins_pass_and_extra_columns_are_dropped(
    penguins: pd.DataFrame, contract: Contract
) -> None:
    valid = contract.dataframe_schema().validate(penguins, lazy=True)
    assert list(valid.columns) == [spec.name for spec in contract.columns]
    assert "year" in penguins.columns
    assert len(valid) == len(penguins) == 344


def test_features_split_by_kind_and_exclude_the_target(contract: Contract) -> None:
    assert contract.task == "multiclass"
    assert contract.target.name == "species"
    assert contract.target.name not in contract.feature_names()
    assert set(contract.numeric_features()) | set(contract.categorical_features()) == set(
        contract.feature_names()
    )
    assert "island" in contract.categorical_features()
    assert "body_mass_g" in contract.numeric_features()
    assert contract.classes == ("Adelie", "Chinstrap", "Gentoo")
    assert contract.positive is None
    assert contract.ignored == ("year",)


def test_the_example_is_a_valid_record(contract: Contract, penguins: pd.DataFrame) -> None:
    assert set(contract.example) == set(contract.feature_names())
    row = pd.DataFrame([{**contract.example, contract.target.name: contract.classes[0]}])
    padded = pd.concat([row] * contract.min_rows, ignore_index=True)
    contract.dataframe_schema().validate(padded, lazy=True)


def test_every_spec_is_consistent(contract: Contract) -> None:
    for spec in contract.columns:
        if spec.kind == "categorical":
            assert spec.categories, spec.name
            assert spec.minimum is None
            assert spec.maximum is None
        else:
            assert not spec.categories
            assert spec.minimum is not None
            assert spec.maximum is not None
            assert spec.minimum < spec.maximum


@pytest.mark.parametrize(
    ("column", "value", "check"),
    [
        ("body_mass_g", 99_999.0, "in_range"),
        ("island", "Atlantis", "isin"),
        ("sex", "unknown", "isin"),
        ("species", None, "not_nullable"),
    ],
)
def test_schema_rejects_bad_values(
    penguins: pd.DataFrame, contract: Contract, column: str, value: object, check: str
) -> None:
    bad = penguins.copy()
    bad[column] = bad[column].astype(object)
    bad.loc[3, column] = value
    with pytest.raises(pa.errors.SchemaErrors) as caught:
        contract.dataframe_schema().validate(bad, lazy=True)
    cases = caught.value.failure_cases
    assert ((cases["column"] == column) & cases["check"].str.startswith(check)).any()


def test_nullable_features_accept_missing_values(
    penguins: pd.DataFrame, contract: Contract
) -> None:
    holes = penguins.copy()
    holes.loc[:20, ["bill_length_mm", "sex"]] = None
    contract.dataframe_schema().validate(holes, lazy=True)


def test_too_few_rows_fail(penguins: pd.DataFrame, contract: Contract) -> None:
    with pytest.raises(pa.errors.SchemaErrors, match="at_least_10_rows"):
        contract.dataframe_schema().validate(penguins.head(3), lazy=True)


def test_the_schema_is_named_after_the_contract(contract: Contract) -> None:
    assert contract.dataframe_schema().name == "penguins"


# --- the contract file: every error names the file and the key -------------------------------


def _raw(task: str = "binary") -> dict[str, Any]:
    """A minimal valid contract of `task`."""
    target: dict[str, Any] = {"name": "churned", "kind": "categorical", "nullable": False}
    raw: dict[str, Any] = {
        "name": "mine",
        "task": task,
        "target": target,
        "features": [
            {"name": "age", "kind": "numeric", "minimum": 18, "maximum": 99},
            {"name": "plan", "kind": "categorical", "categories": ["basic", "pro"]},
        ],
        "example": {"age": 40, "plan": "pro"},
    }
    if task == "binary":
        target["categories"] = ["no", "yes"]
        raw["positive"] = "yes"
    elif task == "multiclass":
        target["categories"] = ["low", "mid", "high"]
    else:
        del target["kind"]
        target.update(kind="numeric", minimum=0.0, maximum=1000.0)
    return raw


def _edited(task: str, edit: Any) -> dict[str, Any]:
    raw = copy.deepcopy(_raw(task))
    edit(raw)
    return raw


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_a_valid_contract_of_each_task_parses(task: str) -> None:
    contract = parse_contract(_raw(task), SOURCE)
    assert contract.task == task
    assert contract.feature_names() == ["age", "plan"]
    assert contract.example == {"age": 40.0, "plan": "pro"}
    assert contract.positive == ("yes" if task == "binary" else None)
    assert (
        contract.classes
        == {
            "binary": ("no", "yes"),
            "multiclass": ("low", "mid", "high"),
            "regression": (),
        }[task]
    )


BROKEN = {
    "unknown top-level key": (
        "binary",
        lambda raw: raw.update(tagret="churned"),
        r"unknown keys \['tagret'\]",
    ),
    "unknown column key": (
        "binary",
        lambda raw: raw["features"][0].update(maximun=5),
        r"features\[0\] \(age\): unknown keys \['maximun'\]",
    ),
    "binary without positive": (
        "binary",
        lambda raw: raw.pop("positive"),
        r"binary task names its `positive` class, one of \['no', 'yes'\]; got None",
    ),
    "binary positive not a class": (
        "binary",
        lambda raw: raw.update(positive="maybe"),
        r"`positive` class.*got 'maybe'",
    ),
    "binary with 3 categories": (
        "binary",
        lambda raw: raw["target"]["categories"].append("maybe"),
        r"binary target has exactly 2 categories; churned has 3",
    ),
    "multiclass with 2 categories": (
        "multiclass",
        lambda raw: raw["target"].update(categories=["low", "high"]),
        r"multiclass target has at least 3 categories; with 2, use binary",
    ),
    "positive on multiclass": (
        "multiclass",
        lambda raw: raw.update(positive="low"),
        r"`positive` applies to a binary task only",
    ),
    "regression with a categorical target": (
        "regression",
        lambda raw: raw.update(
            target={
                "name": "churned",
                "kind": "categorical",
                "nullable": False,
                "categories": ["no", "yes"],
            }
        ),
        r"regression target must be numeric \(churned\)",
    ),
    "classification with a numeric target": (
        "binary",
        lambda raw: raw.update(target={"name": "churned", "kind": "numeric", "nullable": False}),
        r"binary target must be categorical \(churned\).*task: regression",
    ),
    "unknown task": (
        "binary",
        lambda raw: raw.update(task="ranking"),
        r"`task` must be one of \['binary', 'multiclass', 'regression'\], got 'ranking'",
    ),
    "example outside range": (
        "binary",
        lambda raw: raw["example"].update(age=150),
        r"`example.age` = 150 is outside its range",
    ),
    "example with an unknown category": (
        "binary",
        lambda raw: raw["example"].update(plan="gold"),
        r"`example.plan` = 'gold' is not one of its categories",
    ),
    "example names a non-feature": (
        "binary",
        lambda raw: raw["example"].update(churned="yes"),
        r"`example` names columns that are not features: \['churned'\]",
    ),
    "duplicate columns": (
        "binary",
        lambda raw: raw["features"].append({"name": "age", "kind": "numeric"}),
        r"columns named more than once: \['age'\]",
    ),
    "feature named like the target": (
        "binary",
        lambda raw: raw["features"].append({"name": "churned", "kind": "numeric"}),
        r"columns named more than once: \['churned'\]",
    ),
    "nullable target": (
        "binary",
        lambda raw: raw["target"].update(nullable=True),
        r"the target \(churned\) must not be nullable",
    ),
    "target nullable by default": (
        "binary",
        lambda raw: raw["target"].pop("nullable"),
        r"the target \(churned\) must not be nullable",
    ),
    "minimum above maximum": (
        "binary",
        lambda raw: raw["features"][0].update(minimum=100),
        r"features\[0\] \(age\): minimum 100.0 is above maximum 99.0",
    ),
    "categorical without categories": (
        "binary",
        lambda raw: raw["features"][1].pop("categories"),
        r"features\[1\] \(plan\): a categorical column needs `categories`",
    ),
    "range on a categorical": (
        "binary",
        lambda raw: raw["features"][1].update(minimum=0),
        r"features\[1\] \(plan\): a categorical column has no minimum or maximum",
    ),
    "a number given as text": (
        "binary",
        lambda raw: raw["features"][0].update(maximum="99"),
        r"features\[0\] \(age\)\.maximum: expected a number, got '99'",
    ),
    "unknown kind": (
        "binary",
        lambda raw: raw["features"][0].update(kind="date"),
        r"features\[0\] \(age\): `kind` must be one of \['numeric', 'categorical'\]",
    ),
    "no features": (
        "binary",
        lambda raw: raw.update(features=[]),
        r"`features` must be a non-empty list",
    ),
    "min_rows below 2": (
        "binary",
        lambda raw: raw.update(min_rows=1),
        r"`min_rows` must be an integer of at least 2",
    ),
}


@pytest.mark.parametrize(("task", "edit", "message"), BROKEN.values(), ids=list(BROKEN))
def test_contract_errors_name_the_file_and_the_key(task: str, edit: Any, message: str) -> None:
    with pytest.raises(ContractError, match=message) as caught:
        parse_contract(_edited(task, edit), SOURCE)
    assert str(caught.value).startswith(f"{SOURCE}: ")
    assert isinstance(caught.value, PipelineError)  # the CLI prints it without a traceback


def test_a_contract_that_is_not_a_mapping_is_an_error() -> None:
    with pytest.raises(ContractError, match=r"data/mine.yaml: expected a mapping"):
        parse_contract(["task: binary"], SOURCE)


def test_load_contract_names_a_missing_file_and_how_to_write_one(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ContractError, match=r"nope.yaml: data contract not found.*contract init"):
        load_contract(missing)


def test_load_contract_names_a_file_that_is_not_yaml(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("task: [binary\n")
    with pytest.raises(ContractError, match=r"broken.yaml: not valid YAML"):
        load_contract(broken)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_contract_dict_round_trips(task: str, tmp_path: Path) -> None:
    contract = parse_contract({**_raw(task), "ignored": ["customer_id"]}, SOURCE)
    assert parse_contract(contract_dict(contract), SOURCE) == contract
    written = tmp_path / "contract.yaml"
    written.write_text(yaml.safe_dump(contract_dict(contract), sort_keys=False))
    assert load_contract(written) == contract


def test_the_tests_own_contract_round_trips(contract: Contract) -> None:
    assert parse_contract(contract_dict(contract), DEFAULT_CONTRACT) == contract


def test_json_booleans_and_numbers_name_their_text_categories() -> None:
    """A True/False or 0/1 column is read as text (`True`, `1`); a client sends JSON `true`
    or `1` and means the same category. Anything else is still refused."""
    from pydantic import ValidationError

    from mlops_template.contract import as_category
    from mlops_template.serve.request import features_model

    assert as_category(True, ("False", "True")) == "True"
    assert as_category(1, ("0", "1")) == "1"
    assert as_category("1", ("0", "1")) == "1"
    assert as_category(2, ("0", "1")) is None
    assert as_category("true", ("False", "True")) is None
    assert as_category(None, ("False", "True")) is None
    contract = parse_contract(
        {
            "task": "regression",
            "target": {"name": "y", "kind": "numeric", "nullable": False},
            "features": [
                {"name": "paperless", "kind": "categorical", "categories": ["False", "True"]},
                {"name": "plan", "kind": "categorical", "categories": ["1", "2"]},
            ],
        },
        Path("c.yaml"),
    )
    request = features_model(contract, 1)
    record = request.model_validate_json('{"paperless": false, "plan": 2}')
    assert record.model_dump() == {"paperless": "False", "plan": "2"}
    with pytest.raises(ValidationError, match="paperless"):
        request.model_validate_json('{"paperless": 3}')
