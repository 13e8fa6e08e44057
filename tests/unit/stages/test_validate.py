from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from mlops_template.config import Params
from mlops_template.contract import Behaviour, data_dict, parse_contract
from mlops_template.io import storage
from mlops_template.stages import validate


def _write_raw(params: Params, frame: pd.DataFrame) -> None:
    storage.write_parquet(params.paths.raw, frame)


def test_good_data_writes_validated_table_and_summary(
    params: Params, penguins: pd.DataFrame
) -> None:
    _write_raw(params, penguins)
    validate.run(params)
    valid = storage.read_parquet(params.paths.validated)
    assert "year" not in valid.columns
    report = storage.read_json(params.paths.validation_report)
    assert report == {
        "passed": True,
        "rows": 344,
        "columns": 7,
        "missing": {
            "species": 0,
            "island": 0,
            "bill_length_mm": 2,
            "bill_depth_mm": 2,
            "flipper_length_mm": 2,
            "body_mass_g": 2,
            "sex": 11,
        },
        "duplicates": {"policy": "drop", "rows": 0, "dropped": 0, "conflicting_labels": 0},
        "unlabelled": {"policy": "drop", "dropped": 0},
        "violations": 0,
    }
    assert not params.paths.validation_failure.exists()


def test_unlabelled_rows_are_dropped_and_counted_or_fail_by_policy(
    make_params: Callable[..., Params], penguins: pd.DataFrame
) -> None:
    """Labels that have not arrived yet: dropped (counted) by default, a violation on request."""
    holes = penguins.astype({"species": object})
    holes.loc[[3, 7], "species"] = None
    params = make_params()
    _write_raw(params, holes)
    validate.run(params)
    report = storage.read_json(params.paths.validation_report)
    assert report["rows"] == 342
    assert report["unlabelled"] == {"policy": "drop", "dropped": 2}
    strict = make_params(validate={"unlabelled": "fail"})
    with pytest.raises(validate.DataValidationError) as caught:
        validate.run(strict)
    assert [(v.column, v.check) for v in caught.value.violations] == [("species", "not_nullable")]


def test_a_binary_target_read_as_floats_keeps_its_text_categories(
    make_params: Callable[..., Params], workdir: Path
) -> None:
    """A 0/1 target with a gap is read as 0.0/1.0; its categories are still `0` and `1`."""
    contract = workdir / "c.yaml"
    contract.write_text(
        "task: binary\npositive: 1\nmin_rows: 4\n"
        "target: {name: y, kind: categorical, nullable: false, categories: [0, 1]}\n"
        "features: [{name: paid, kind: categorical, categories: ['False', 'True']},"
        " {name: x, kind: numeric}]\n"
    )
    frame = pd.DataFrame(
        {
            "y": [0.0, 1.0, None, 1.0, 0.0],
            "paid": [True, False, True, None, False],
            "x": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    params = make_params(data={"contract": str(contract)}, evaluate={"primary_metric": "auto"})
    _write_raw(params, frame)
    valid = validate.run(params)
    assert valid["y"].tolist() == ["0", "1", "1", "0"]
    assert valid["paid"].tolist()[:2] == ["True", "False"]


def test_every_violation_is_collected(params: Params, penguins: pd.DataFrame) -> None:
    bad = penguins.astype({"island": object, "body_mass_g": object})
    bad.loc[[0, 1, 2], "island"] = "Atlantis"
    bad.loc[5, "body_mass_g"] = 1.0
    _write_raw(params, bad)
    with pytest.raises(validate.DataValidationError) as caught:
        validate.run(params)
    found = {(v.column, v.check.split("(")[0]): v for v in caught.value.violations}
    assert found["island", "isin"].count == 3
    assert found["island", "isin"].failing_values == ["Atlantis"]
    assert found["body_mass_g", "in_range"].failing_values == ["1.0"]

    failure = storage.read_json(params.paths.validation_failure)
    assert failure["passed"] is False
    assert {v["column"] for v in failure["violations"]} == {"island", "body_mass_g"}
    message = str(caught.value)
    assert "column 'island': check isin" in message
    assert "column 'body_mass_g': check in_range" in message


def test_failure_removes_stale_outputs_of_an_earlier_good_run(
    params: Params, penguins: pd.DataFrame
) -> None:
    _write_raw(params, penguins)
    validate.run(params)
    _write_raw(params, penguins.drop(columns=["sex"]))
    with pytest.raises(validate.DataValidationError, match="column 'sex'"):
        validate.run(params)
    assert not params.paths.validated.exists()
    assert not params.paths.validation_report.exists()
    assert not params.paths.validated_contract.exists()


def _with_copies(penguins: pd.DataFrame, rows: list[int]) -> pd.DataFrame:
    """The table with exact copies of `rows` appended (row 3 has every feature missing)."""
    return pd.concat([penguins, penguins.loc[rows]], ignore_index=True)


def test_exact_duplicates_are_counted_and_dropped_by_default(
    params: Params, penguins: pd.DataFrame
) -> None:
    assert params.validation.duplicates == "drop"
    _write_raw(params, _with_copies(penguins, [0, 3, 3, 10]))
    validate.run(params)
    report = storage.read_json(params.paths.validation_report)
    assert report["rows"] == 344
    assert report["duplicates"] == {
        "policy": "drop",
        "rows": 4,
        "dropped": 4,
        "conflicting_labels": 0,
    }
    valid = storage.read_parquet(params.paths.validated)
    expected = validate.check(penguins, params.contract)
    pd.testing.assert_frame_equal(valid, expected.reset_index(drop=True))


def test_fail_policy_lists_duplicates_with_the_other_violations(
    make_params: Callable[..., Params], penguins: pd.DataFrame
) -> None:
    params = make_params(validate={"duplicates": "fail"})
    bad = _with_copies(penguins, [0, 3, 3, 10]).astype({"island": object})
    bad.loc[5, "island"] = "Atlantis"
    _write_raw(params, bad)
    with pytest.raises(validate.DataValidationError) as caught:
        validate.run(params)
    found = {(v.column, v.check.split("(")[0]): v for v in caught.value.violations}
    assert set(found) == {("island", "isin"), ("(table)", "no_duplicate_rows")}
    duplicates = found["(table)", "no_duplicate_rows"]
    assert duplicates.count == 4
    assert duplicates.failing_values == [
        "row 344 = row 0",
        "row 345 = row 3",
        "row 346 = row 3",
        "row 347 = row 10",
    ]
    assert "column '(table)': check no_duplicate_rows failed 4 time(s)" in str(caught.value)
    failure = storage.read_json(params.paths.validation_failure)
    assert {
        "column": "(table)",
        "check": "no_duplicate_rows",
        "count": 4,
        "failing_values": duplicates.failing_values,
    } in failure["violations"]
    assert not params.paths.validated.exists()


def test_fail_policy_passes_a_table_without_duplicates(
    make_params: Callable[..., Params], penguins: pd.DataFrame
) -> None:
    params = make_params(validate={"duplicates": "fail"})
    _write_raw(params, penguins)
    validate.run(params)
    report = storage.read_json(params.paths.validation_report)
    assert report["duplicates"] == {
        "policy": "fail",
        "rows": 0,
        "dropped": 0,
        "conflicting_labels": 0,
    }


def test_conflicting_labels_are_counted(params: Params, penguins: pd.DataFrame) -> None:
    relabelled = penguins.loc[[0, 1]].assign(species="Gentoo")  # Adelie features, Gentoo label
    # An exact copy of a conflicting row is a duplicate, not one more conflict.
    _write_raw(params, pd.concat([penguins, relabelled, relabelled.head(1)], ignore_index=True))
    validate.run(params)
    report = storage.read_json(params.paths.validation_report)
    assert report["rows"] == 346
    assert report["duplicates"] == {
        "policy": "drop",
        "rows": 1,
        "dropped": 1,
        "conflicting_labels": 4,
    }


def test_a_missing_target_value_is_a_violation_under_the_fail_policy(
    make_params: Callable[..., Params], penguins: pd.DataFrame
) -> None:
    params = make_params(validate={"unlabelled": "fail"})
    unlabelled = penguins.astype({"species": object})
    unlabelled.loc[7, "species"] = None
    _write_raw(params, unlabelled)
    with pytest.raises(validate.DataValidationError, match="column 'species'"):
        validate.run(params)


def test_it_writes_the_contract_without_its_declarations(
    params: Params, penguins: pd.DataFrame
) -> None:
    """What the stages after validate depend on: everything but behaviour, intended_use and
    limitations, so a declaration edit leaves the file (and the trained model) as it was."""
    _write_raw(params, penguins)
    validate.run(params)
    written = storage.read_json(params.paths.validated_contract)
    assert params.contract.behaviour.declared  # the tests' contract declares some
    assert written == data_dict(params.contract)
    assert {"behaviour", "intended_use", "limitations"}.isdisjoint(written)
    assert {"task", "target", "features", "example", "min_rows"} <= set(written)
    # everything else the stages read is there: it parses back to the contract without
    # its declarations (a new contract field left out of data_dict would fail here)
    bare = replace(params.contract, behaviour=Behaviour(), intended_use=(), limitations=())
    assert parse_contract(written, params.data.contract) == bare
