"""Bad input through the real CLI: a clear message naming what is wrong, and no output written."""

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mlops_template import PipelineError
from mlops_template.cli.app import app
from mlops_template.config import Params


def _bad_frame(penguins: pd.DataFrame, column: str, value: object) -> pd.DataFrame:
    bad = penguins.copy()
    bad[column] = bad[column].astype(object)
    bad.loc[[4, 9], column] = value
    return bad


def _write_csv(frame: pd.DataFrame) -> Callable[[Path], None]:
    return lambda path: frame.to_csv(path, index=False)


@pytest.fixture
def run_stages(workdir: Path, make_params: Callable[..., Params]) -> Callable[..., tuple[int, str]]:
    """Write the bad source file, run ingest then validate; return exit code and stderr."""

    def run(writer: Callable[[Path], None], name: str = "bad.csv") -> tuple[int, str]:
        source = workdir / name
        writer(source)
        # Unlabelled rows are dropped by default; here a missing target is bad data.
        make_params(data={"source": str(source)}, validate={"unlabelled": "fail"})
        runner = CliRunner()
        for stage in ("ingest", "validate"):
            result = runner.invoke(app, ["stage", stage])
            if result.exit_code != 0:
                assert result.exception is None or isinstance(result.exception, SystemExit)
                return result.exit_code, result.stderr
        return 0, ""

    return run


def _assert_no_validated_output(workdir: Path) -> None:
    assert not (workdir / "data" / "validated.parquet").exists()
    assert not (workdir / "reports" / "validation.json").exists()


@pytest.mark.parametrize(
    ("case", "column", "check"),
    [
        ("missing column", "sex", "column_in_dataframe"),
        ("wrong dtype", "body_mass_g", "coerce_dtype('float64')"),
        ("out-of-range number", "flipper_length_mm", "in_range(150.0, 250.0)"),
        ("unknown category", "island", "isin(['Biscoe', 'Dream', 'Torgersen'])"),
        ("NaN target", "species", "not_nullable"),
    ],
)
def test_bad_values_name_column_and_check(
    run_stages: Callable[..., tuple[int, str]],
    workdir: Path,
    penguins: pd.DataFrame,
    case: str,
    column: str,
    check: str,
) -> None:
    frames = {
        "missing column": penguins.drop(columns=["sex"]),
        "wrong dtype": _bad_frame(penguins, "body_mass_g", "heavy"),
        "out-of-range number": _bad_frame(penguins, "flipper_length_mm", 999.0),
        "unknown category": _bad_frame(penguins, "island", "Atlantis"),
        "NaN target": _bad_frame(penguins, "species", None),
    }
    code, stderr = run_stages(_write_csv(frames[case]))
    assert code == 1
    assert "data validation failed" in stderr
    assert f"column '{column}': check {check} failed" in stderr
    assert "Traceback" not in stderr
    assert "check dtype(" not in stderr  # a failed conversion is reported once, not echoed
    _assert_no_validated_output(workdir)
    assert (workdir / "reports" / "validation_failure.json").exists()


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.csv", b"", "file is empty"),
        ("header.csv", b"species,island,bill_length_mm\n", "has a header but no data rows"),
        ("binary.csv", bytes(range(256)) * 8, "not a readable CSV table"),
        ("text.parquet", b"species,island\nAdelie,Dream\n", "not a readable Parquet table"),
    ],
)
def test_unreadable_sources_fail_at_ingest(
    run_stages: Callable[..., tuple[int, str]],
    workdir: Path,
    name: str,
    content: bytes,
    expected: str,
) -> None:
    code, stderr = run_stages(lambda path: path.write_bytes(content), name)
    assert code == 1
    assert name in stderr
    assert expected in stderr
    assert "Traceback" not in stderr
    assert not (workdir / "data" / "raw.parquet").exists()
    _assert_no_validated_output(workdir)


def test_missing_source_file(run_stages: Callable[..., tuple[int, str]], workdir: Path) -> None:
    code, stderr = run_stages(lambda path: None, "nowhere.csv")
    assert code == 1
    assert "nowhere.csv: data file not found" in stderr


def test_text_that_is_not_the_table_fails_validation_naming_missing_columns(
    run_stages: Callable[..., tuple[int, str]], workdir: Path
) -> None:
    code, stderr = run_stages(lambda path: path.write_text('{"not": "a table"}\n{"x": 1}\n'))
    assert code == 1
    assert "column 'species': check column_in_dataframe" in stderr
    _assert_no_validated_output(workdir)


def test_bad_params_name_the_key(workdir: Path, make_params: Callable[..., Params]) -> None:
    make_params()
    params_file = workdir / "params.yaml"
    params_file.write_text(params_file.read_text().replace("test_size:", "test_sise:"))
    result = CliRunner().invoke(app, ["stage", "split"])
    assert result.exit_code == 1
    assert "split.test_sise: Extra inputs are not permitted" in result.stderr


def test_an_unsupported_file_type_is_refused_with_the_params(
    make_params: Callable[..., Params],
) -> None:
    """Caught when params.yaml is read (`mlops stage preflight`, before DVC runs anything)."""
    with pytest.raises(PipelineError, match=r"data.source: .*table.xlsx' is not a path to a .csv"):
        make_params(data={"source": "table.xlsx"})


def test_text_in_a_regression_target_names_the_column(
    workdir: Path, make_params: Callable[..., Params]
) -> None:
    from sklearn.datasets import load_diabetes

    from mlops_template.contract.profile import run as init_schema

    frame = load_diabetes(as_frame=True, scaled=False).frame
    init_schema(_saved(frame, workdir / "good.csv"), "target", workdir / "contract.yaml")
    bad = frame.astype({"target": object})
    bad.loc[[2, 7], "target"] = "high"
    make_params(
        data={"source": str(_saved(bad, workdir / "bad.csv")), "contract": "contract.yaml"},
        evaluate={"primary_metric": "auto"},
    )
    runner = CliRunner()
    assert runner.invoke(app, ["stage", "ingest"]).exit_code == 0
    result = runner.invoke(app, ["stage", "validate"])
    assert result.exit_code == 1
    assert "column 'target': check coerce_dtype('float64') failed 2 time(s) (e.g. high)" in (
        result.stderr
    )
    _assert_no_validated_output(workdir)


def _saved(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path
