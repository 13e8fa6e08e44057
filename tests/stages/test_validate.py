import pandas as pd
import pytest

from mlops_template import io
from mlops_template.config import Params
from mlops_template.stages import validate


def _write_raw(params: Params, frame: pd.DataFrame) -> None:
    io.write_parquet(params.paths.raw, frame)


def test_good_data_writes_validated_table_and_summary(
    params: Params, penguins: pd.DataFrame
) -> None:
    _write_raw(params, penguins)
    validate.run(params)
    valid = io.read_parquet(params.paths.validated)
    assert "year" not in valid.columns
    report = io.read_json(params.paths.validation_report)
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
        "violations": 0,
    }
    assert not params.paths.validation_failure.exists()


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

    failure = io.read_json(params.paths.validation_failure)
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
