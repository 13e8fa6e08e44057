import pandas as pd
import pandera.pandas as pa
import pytest

from mlops_template import schema


def test_penguins_pass_and_extra_columns_are_dropped(penguins: pd.DataFrame) -> None:
    valid = schema.dataframe_schema().validate(penguins, lazy=True)
    assert list(valid.columns) == [spec.name for spec in schema.COLUMNS]
    assert "year" in penguins.columns
    assert len(valid) == len(penguins) == 344


def test_features_split_by_kind_and_exclude_the_target() -> None:
    assert schema.TARGET.name not in schema.feature_names()
    assert set(schema.numeric_features()) | set(schema.categorical_features()) == set(
        schema.feature_names()
    )
    assert "island" in schema.categorical_features()
    assert "body_mass_g" in schema.numeric_features()


def test_every_spec_is_consistent() -> None:
    for spec in schema.COLUMNS:
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
    penguins: pd.DataFrame, column: str, value: object, check: str
) -> None:
    bad = penguins.copy()
    bad[column] = bad[column].astype(object)
    bad.loc[3, column] = value
    with pytest.raises(pa.errors.SchemaErrors) as caught:
        schema.dataframe_schema().validate(bad, lazy=True)
    cases = caught.value.failure_cases
    assert ((cases["column"] == column) & cases["check"].str.startswith(check)).any()


def test_nullable_features_accept_missing_values(penguins: pd.DataFrame) -> None:
    holes = penguins.copy()
    holes.loc[:20, ["bill_length_mm", "sex"]] = None
    schema.dataframe_schema().validate(holes, lazy=True)


def test_too_few_rows_fail(penguins: pd.DataFrame) -> None:
    with pytest.raises(pa.errors.SchemaErrors, match="at_least_10_rows"):
        schema.dataframe_schema().validate(penguins.head(3), lazy=True)
