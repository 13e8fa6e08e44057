"""`mlops contract init`: the contract profiled from a table a user brings, for each task."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mlops_template import PipelineError
from mlops_template.cli.app import app
from mlops_template.config import Params
from mlops_template.contract import Contract, load_contract
from mlops_template.contract.profile import ProfileError, profile, run
from tests.conftest import DEFAULT_DATA
from tests.support.tables import diabetes


def breast_cancer(labels: bool = True) -> pd.DataFrame:
    """Binary: 569 tumours, 30 numeric features; `diagnosis` malignant (212) or benign (357),
    or the 0/1 scikit-learn gives (0 is malignant)."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    target = frame.pop("target")
    return frame.assign(diagnosis=target.map({0: "malignant", 1: "benign"}) if labels else target)


def validates_its_table(contract: Contract, frame: pd.DataFrame) -> pd.DataFrame:
    """The contract's schema accepts the table it was profiled from (extra columns dropped)."""
    valid = contract.dataframe_schema().validate(frame, lazy=True)
    assert set(valid.columns) == {spec.name for spec in contract.columns}
    assert len(valid) == len(frame)
    return valid


def test_breast_cancer_is_binary_with_the_rarer_class_positive() -> None:
    frame = breast_cancer()
    result = profile(frame, "diagnosis", name="breast_cancer")
    contract = result.contract
    assert contract.task == "binary"
    assert contract.classes == ("benign", "malignant")
    assert contract.positive == "malignant"
    assert len(contract.features) == 30
    assert contract.numeric_features() == [c for c in frame.columns if c != "diagnosis"]
    assert not contract.target.nullable
    assert contract.ignored == ()
    assert "task inferred from 'diagnosis': binary (pass --task to choose)" in result.notes
    assert "positive class: 'malignant', the rarer one (pass --positive)" in result.notes
    validates_its_table(contract, frame)


def test_a_0_1_target_is_binary_too_and_validates_as_text() -> None:
    frame = breast_cancer(labels=False)
    contract = profile(frame, "diagnosis", name="breast_cancer", positive="0").contract
    assert contract.task == "binary"
    assert contract.classes == ("0", "1")
    assert contract.positive == "0"
    valid = validates_its_table(contract, frame)
    assert set(valid["diagnosis"]) == {"0", "1"}


def test_positive_names_the_class_when_given() -> None:
    result = profile(breast_cancer(), "diagnosis", name="bc", positive="benign")
    assert result.contract.positive == "benign"
    assert not any(note.startswith("positive class") for note in result.notes)


def test_diabetes_is_regression_with_widened_ranges() -> None:
    frame = diabetes()
    result = profile(frame, "progression", name="diabetes")
    contract = result.contract
    assert contract.task == "regression"
    assert contract.classes == ()
    assert contract.positive is None
    assert contract.target.kind == "numeric"
    assert "task inferred from 'progression': regression (pass --task to choose)" in result.notes
    # the observed range (25 to 346), widened by 10% of the span, never below 0
    assert contract.target.minimum == 0.0
    assert contract.target.maximum == pytest.approx(346 + 32.1, abs=0.1)
    assert contract.target.maximum >= frame["progression"].max()
    assert len(contract.features) == 10
    for spec in contract.features:
        values = frame[spec.name]
        assert spec.minimum is not None
        assert spec.maximum is not None
        assert spec.minimum < values.min()
        assert spec.maximum > values.max()
    validates_its_table(contract, frame)


def test_penguins_are_multiclass_with_text_columns_categorical(penguins: pd.DataFrame) -> None:
    contract = profile(penguins, "species", name="penguins", ignore=("year",)).contract
    assert contract.task == "multiclass"
    assert contract.classes == ("Adelie", "Chinstrap", "Gentoo")
    assert contract.categorical_features() == ["island", "sex"]
    assert contract.numeric_features() == [
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
    ]
    island = next(spec for spec in contract.features if spec.name == "island")
    assert island.categories == ("Biscoe", "Dream", "Torgersen")
    assert all(spec.nullable for spec in contract.features)  # the model imputes
    assert contract.ignored == ("year",)
    # the example is the first row with every feature present
    assert contract.example == {
        "island": "Torgersen",
        "bill_length_mm": 39.1,
        "bill_depth_mm": 18.7,
        "flipper_length_mm": 181.0,
        "body_mass_g": 3750.0,
        "sex": "male",
    }
    validates_its_table(contract, penguins)


def test_the_profile_matches_the_tests_reviewed_contract(
    penguins: pd.DataFrame, contract: Contract
) -> None:
    """The tests' contract was written by init-schema, then reviewed (descriptions, ranges)."""
    profiled = profile(penguins, "species", name="penguins", ignore=("year",)).contract
    assert profiled.feature_names() == contract.feature_names()
    assert profiled.classes == contract.classes
    for mine, reviewed in zip(profiled.features, contract.features, strict=True):
        assert (mine.kind, mine.categories) == (reviewed.kind, reviewed.categories)


def test_an_id_and_a_constant_column_are_ignored_with_notes() -> None:
    frame = breast_cancer().assign(
        patient=[f"P{i:04d}" for i in range(569)], clinic="Leeds", empty=np.nan
    )
    result = profile(frame, "diagnosis", name="bc")
    assert result.contract.ignored == ("patient", "clinic", "empty")
    assert "patient" not in result.contract.feature_names()
    assert (
        "column 'patient' left out: every one of its 569 values is distinct (an identifier?)"
        in (result.notes)
    )
    assert "column 'clinic' left out: a single value" in result.notes
    assert "column 'empty' left out: no values" in result.notes
    validates_its_table(result.contract, frame)  # ignored columns are dropped, not errors


def test_a_numeric_id_is_left_out_and_ignore_leaves_out_another_without_a_note() -> None:
    frame = diabetes().assign(row_number=range(100_000, 100_442))  # a counter, not a feature
    found = profile(frame, "progression", name="d")
    assert "row_number" not in found.contract.feature_names()
    assert found.contract.ignored == ("row_number",)
    assert (
        "column 'row_number' left out: 442 distinct whole numbers, nearly consecutive"
        " (an identifier?)"
    ) in found.notes
    result = profile(frame, "progression", name="d", ignore=("sex",))
    assert result.contract.ignored == ("sex", "row_number")
    assert not any("'sex'" in note for note in result.notes)


def test_dates_are_left_out_and_measurements_with_distinct_values_are_kept() -> None:
    frame = diabetes().assign(
        visit=pd.date_range("2020-01-01", periods=442).astype(str),
        weight=np.linspace(50.5, 120.3, 442),  # every value distinct, but a measurement
    )
    result = profile(frame, "progression", name="d")
    assert "visit" in result.contract.ignored
    assert any(note.startswith("column 'visit' left out: dates") for note in result.notes)
    assert "weight" in result.contract.feature_names()


def test_a_wrong_positive_is_an_error_naming_the_classes() -> None:
    with pytest.raises(
        ProfileError, match=r"--positive 'cancer' is not a value of 'diagnosis': \['benign', 'mal"
    ):
        profile(breast_cancer(), "diagnosis", name="bc", positive="cancer")
    with pytest.raises(ProfileError, match="--positive applies to a binary target only"):
        profile(diabetes(), "progression", name="d", positive="100")


def test_an_unknown_target_or_ignored_column_is_an_error_listing_the_columns() -> None:
    with pytest.raises(ProfileError, match=r"no column 'Species'; the table has: species, island"):
        profile(pd.read_csv(DEFAULT_DATA), "Species", name="p")
    with pytest.raises(ProfileError, match="no column 'nope'"):
        profile(diabetes(), "progression", name="d", ignore=("nope",))
    with pytest.raises(ProfileError, match="'progression' is the target; it cannot be ignored"):
        profile(diabetes(), "progression", name="d", ignore=("progression",))


def test_the_task_can_be_chosen_and_is_checked(penguins: pd.DataFrame) -> None:
    frame = diabetes()
    # a 0/1 indicator is binary unless told it is a number
    frame["high"] = (frame["progression"] > 140).astype(int)
    assert profile(frame, "high", name="d", ignore=("progression",)).contract.task == "binary"
    as_number = profile(frame, "high", name="d", task="regression", ignore=("progression",))
    assert as_number.contract.task == "regression"
    with pytest.raises(ProfileError, match="'species' is not numeric; regression needs numbers"):
        profile(penguins, "species", name="p", task="regression")
    with pytest.raises(ProfileError, match="has 3 values; binary needs exactly 2"):
        profile(penguins, "species", name="p", task="binary")
    with pytest.raises(ProfileError, match="has 2 values: use --task binary"):
        profile(penguins, "sex", name="p", task="multiclass")


def test_a_single_class_target_cannot_be_learned(penguins: pd.DataFrame) -> None:
    with pytest.raises(ProfileError, match="1 distinct value"):
        profile(penguins[penguins.species == "Adelie"], "species", name="p")


def test_unlabelled_rows_are_noted_and_rejected_by_the_schema(penguins: pd.DataFrame) -> None:
    """The validate stage drops them first (validate.unlabelled: drop); the schema itself
    requires a target."""
    frame = penguins.astype({"species": object})
    frame.loc[[5, 9], "species"] = None
    result = profile(frame, "species", name="p")
    assert "2 row(s) have no species: validation drops them (validate.unlabelled)" in result.notes
    with pytest.raises(Exception, match="species"):
        result.contract.dataframe_schema().validate(frame, lazy=True)


def test_strict_nulls_requires_the_features_that_are_always_present(
    penguins: pd.DataFrame,
) -> None:
    frame = penguins.drop(columns="year")
    strict = profile(frame, "species", name="p", strict_nulls=True).contract
    nullable = {spec.name: spec.nullable for spec in strict.features}
    assert nullable == {
        "island": False,
        "bill_length_mm": True,
        "bill_depth_mm": True,
        "flipper_length_mm": True,
        "body_mass_g": True,
        "sex": True,
    }


def test_the_margin_widens_ranges_by_a_share_of_the_span() -> None:
    frame = pd.DataFrame(
        {"y": ["a", "b"] * 10, "x": np.linspace(10, 20, 20), "t": np.linspace(-5, 5, 20)}
    )
    contract = profile(frame, "y", name="m", margin=0.5).contract
    x, t = contract.features
    assert (x.minimum, x.maximum) == (5.0, 25.0)
    assert (t.minimum, t.maximum) == (-10.0, 10.0)
    tight = profile(frame, "y", name="m", margin=0.01).contract
    assert (tight.features[0].minimum, tight.features[0].maximum) == (9.9, 20.1)


def test_run_writes_a_contract_that_loads_and_validates_its_table(tmp_path: Path) -> None:
    data = tmp_path / "diabetes.parquet"
    diabetes().to_parquet(data)
    out = tmp_path / "data" / "contract.yaml"
    result = run(data, "progression", out)
    text = out.read_text()
    assert text.startswith("# The data contract, written by `mlops contract init` from ")
    assert "(442 rows)" in text.splitlines()[0]
    loaded = load_contract(out)
    assert loaded == result.contract
    assert loaded.name == "diabetes"
    validates_its_table(loaded, pd.read_parquet(data))


# --- the command --------------------------------------------------------------------------


@pytest.fixture
def table(workdir: Path) -> Path:
    path = workdir / "cancer.csv"
    breast_cancer().to_csv(path, index=False)
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["contract", "init", *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_writes_the_contract_params_yaml_names(
    table: Path, workdir: Path, make_params: Callable[..., Params]
) -> None:
    make_params(data={"contract": "conf/c.yaml"})  # writes params.yaml in the work directory
    code, out, err = invoke("--data", str(table), "--target", "diagnosis")
    assert (code, err) == (0, "")
    assert "note: positive class: 'malignant', the rarer one (pass --positive)" in out
    assert "wrote conf/c.yaml: binary on 'diagnosis', 30 features; review it" in out
    assert load_contract(workdir / "conf" / "c.yaml").positive == "malignant"


def test_cli_refuses_to_overwrite_without_force(table: Path, workdir: Path) -> None:
    out = workdir / "contract.yaml"
    out.write_text("# reviewed by hand\n")
    code, _, err = invoke("--data", str(table), "--target", "diagnosis", "--out", str(out))
    assert code == 1
    assert err == f"error: {out} exists; pass --force to replace it (git keeps the old)\n"
    assert out.read_text() == "# reviewed by hand\n"
    code, stdout, _ = invoke(
        "--data", str(table), "--target", "diagnosis", "--out", str(out), "--force",
        "--positive", "benign", "--ignore", "mean radius", "--ignore", "mean texture",
    )  # fmt: skip
    assert code == 0, stdout
    written = load_contract(out)
    assert written.positive == "benign"
    assert written.ignored == ("mean radius", "mean texture")
    assert len(written.features) == 28


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "Diagnosis"], "error: no column 'Diagnosis'; the table has: mean radius,"),
        (["--target", "diagnosis", "--positive", "yes"], "error: --positive 'yes' is not a value"),
        (["--target", "diagnosis", "--task", "ranking"], "error: --task must be one of binary,"),
    ],
)
def test_cli_errors_are_one_clear_line_and_write_nothing(
    table: Path, workdir: Path, args: list[str], message: str
) -> None:
    out = workdir / "contract.yaml"
    code, stdout, err = invoke("--data", str(table), "--out", str(out), *args)
    assert code == 1
    assert err.startswith(message)
    assert "Traceback" not in err + stdout
    assert not out.exists()


def test_cli_on_a_missing_table_is_a_clear_error(workdir: Path) -> None:
    code, _, err = invoke("--data", "none.csv", "--target", "y", "--out", "c.yaml")
    assert code == 1
    assert err.startswith("error: ")
    assert "none.csv" in err


def test_profile_errors_are_pipeline_errors() -> None:
    assert issubclass(ProfileError, PipelineError)


@pytest.mark.parametrize(("name", "checks"), [("diabetes", 2), ("penguins", 3)])
def test_the_written_contract_shows_the_declarations_it_may_add(
    tmp_path: Path, name: str, checks: int
) -> None:
    """Commented out, naming the table's own features; uncommented, a valid contract."""
    data = tmp_path / f"{name}.parquet"
    frame = diabetes() if name == "diabetes" else pd.read_csv(DEFAULT_DATA)
    frame.to_parquet(data)
    out = tmp_path / "contract.yaml"
    run(data, "progression" if name == "diabetes" else "species", out)
    text = out.read_text()
    assert load_contract(out).behaviour.declared == 0
    assert "# behaviour:\n#   invariance:" in text
    uncommented = out.with_name("uncommented.yaml")
    footer = text[text.index("# What the model is for") :]
    body = text[: text.index("# What the model is for")]
    uncommented.write_text(body + "".join(line[2:] + "\n" for line in footer.splitlines()[2:]))
    contract = load_contract(uncommented)
    assert contract.behaviour.declared == checks  # no categorical feature: no minimum
    # the step is on the feature's own scale: a tenth of its range (diabetes' are about 0.2)
    step = contract.behaviour.directional[0]
    spec = next(spec for spec in contract.features if spec.name == step.feature)
    assert spec.minimum is not None
    assert spec.maximum is not None
    assert step.step == pytest.approx((spec.maximum - spec.minimum) / 10, rel=0.05)
    assert contract.intended_use == ("What the model is for.", "What it must not be used for.")
