"""The project's own data, as params.yaml configures it: these tests follow whatever table and
contract a fork brings (the other unit tests run on the tests' own penguins). They check what
would otherwise fail late: in `dvc repro`, in the release smoke test or at the first request."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from pydantic import ValidationError

from mlops_template.config import Params, load_params
from mlops_template.contract import Contract
from mlops_template.serve.request import features_model
from mlops_template.stages import validate
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def project() -> Params:
    params = load_params(REPO_ROOT / "params.yaml")
    # Paths in params.yaml are relative to the repository root.
    data = params.data.model_copy(
        update={
            "source": REPO_ROOT / params.data.source,
            "contract": REPO_ROOT / params.data.contract,
        }
    )
    return params.model_copy(update={"data": data})


@pytest.fixture(scope="module")
def contract(project: Params) -> Contract:
    return project.contract


@pytest.fixture(scope="module")
def table(project: Params) -> pd.DataFrame:
    from mlops_template.io import storage

    return storage.read_table(project.data.source)


def test_the_contract_fits_params(project: Params, contract: Contract) -> None:
    """Primary metric of the task, a model kind that does the task, a feasible minimum."""
    assert project.primary_metric
    assert contract.features


def test_the_data_source_passes_its_contract(contract: Contract, table: pd.DataFrame) -> None:
    valid = validate.check(table, contract, "drop")
    assert len(valid) >= contract.min_rows
    if contract.is_classification:
        counts = valid[contract.target.name].value_counts()
        assert set(counts.index) <= set(contract.classes)
        assert (counts >= 2).all(), f"classes with one row cannot be split: {counts.to_dict()}"


def test_the_contracts_example_is_a_valid_request(contract: Contract) -> None:
    request = features_model(contract, min_present=1)
    record = request.model_validate_json(json.dumps(dict(contract.example)))
    assert record.model_dump(exclude_none=True) == dict(contract.example)
    frame = pd.DataFrame([contract.example]).assign(**{contract.target.name: _any_target(contract)})
    # The table check wants min_rows rows: the example, repeated.
    contract.dataframe_schema().validate(pd.concat([frame] * contract.min_rows), lazy=True)


def test_the_request_model_rejects_what_the_contract_rejects(contract: Contract) -> None:
    request = features_model(contract, min_present=1)
    spec = contract.features[0]
    wrong: object = "not-a-category" if spec.kind == "categorical" else "a string"
    with pytest.raises(ValidationError, match=spec.name):
        request.model_validate({**contract.example, spec.name: wrong})
    with pytest.raises(ValidationError):
        request.model_validate({**contract.example, "no_such_feature": 1})


def test_committed_reference_matches_the_contract(project: Params, contract: Contract) -> None:
    """models/reference.json (the live drift gauges' reference) was written for this task."""
    reference_path = REPO_ROOT / project.paths.reference
    assert reference_path.is_file(), f"{project.paths.reference}: run `make run` and commit it"
    reference = json.loads(reference_path.read_text())
    assert reference["task"] == contract.task
    assert set(reference["missing_rate"]) == set(contract.feature_names())
    if contract.is_classification:
        assert set(reference["class_shares"]) == set(contract.classes)


def _any_target(contract: Contract) -> object:
    if contract.is_classification:
        return contract.classes[0]
    low, high = contract.target.minimum, contract.target.maximum
    return (low + high) / 2 if low is not None and high is not None else 0.0
