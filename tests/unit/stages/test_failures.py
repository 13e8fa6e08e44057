"""A failed run is reported, not lost: which stage failed and why reaches the PR report, a
params.yaml typo anywhere stops `make run` before DVC touches anything, and a failure is
forgotten once the next run starts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mlops_template import PipelineError
from mlops_template.cli.app import app
from mlops_template.config import Params
from mlops_template.io import storage
from mlops_template.reporting.inputs import ReportInputs
from mlops_template.reporting.report import render, write_params_failure
from mlops_template.stages import failures


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("typo", "key"),
    [
        ("tracking:\n  enabled: true\n", "tracking:\n  enabeld: true\n"),
        ("monitoring:", "monitorin:"),
        ("n_estimators: 100", "n_estimator: 100"),
    ],
    ids=["untracked section", "unknown top-level key", "a section a stage reads"],
)
def test_preflight_names_a_typo_in_any_section(
    params: Params, workdir: Path, typo: str, key: str
) -> None:
    params_file = workdir / "params.yaml"
    text = params_file.read_text()
    if typo not in text:  # the fixture writes YAML with its own layout
        typo, key = typo.replace("enabled: true", "enabled: false"), key.replace("true", "false")
    assert typo in text
    params_file.write_text(text.replace(typo, key, 1))
    code, output = invoke("stage", "preflight")
    assert code == 1
    wrong = key.strip().replace(":\n  ", ".").split(":")[0]
    assert wrong.split(".")[-1] in output
    assert "Extra inputs are not permitted" in output


def test_preflight_forgets_the_previous_failure(params: Params) -> None:
    failures.record(params.paths.stage_failure, "train", PipelineError("old"))
    storage.write_json(params.paths.validation_failure, {"passed": False})
    code, output = invoke("stage", "preflight")
    assert code == 0, output
    assert not params.paths.stage_failure.exists()
    assert not params.paths.validation_failure.exists()


def test_preflight_records_a_missing_data_source(make_params: Callable[..., Params]) -> None:
    params = make_params(data={"source": "gone.csv"})
    code, output = invoke("stage", "preflight")
    assert code == 1
    assert "data.source: gone.csv not found" in output
    assert failures.read(params.paths.stage_failure) == {
        "stage": "ingest",
        "error": "data.source: gone.csv not found (a file tracked with `dvc add` comes with"
        " `make pull`)",
    }


def test_a_data_source_that_is_not_a_table_file_is_a_params_error(
    make_params: Callable[..., Params],
) -> None:
    with pytest.raises(PipelineError, match=r"data.source: .*'palmerpenguins' is not a path"):
        make_params(data={"source": "palmerpenguins"})


def test_a_failing_stage_records_its_name_and_error(
    make_params: Callable[..., Params], workdir: Path, penguins: pd.DataFrame
) -> None:
    one_chinstrap = pd.concat(
        [penguins[penguins.species != "Chinstrap"], penguins[penguins.species == "Chinstrap"][:1]]
    )
    one_chinstrap.to_csv(workdir / "few.csv", index=False)
    params = make_params(data={"source": str(workdir / "few.csv")})
    for stage in ("ingest", "validate"):
        assert invoke("stage", stage)[0] == 0
    assert invoke("stage", "split")[0] == 1
    record = failures.read(params.paths.stage_failure)
    assert record is not None
    assert record["stage"] == "split"
    assert "['Chinstrap'] have fewer than 2 rows" in record["error"]


def test_a_crash_is_recorded_with_where_it_happened() -> None:
    try:
        {}["missing"]
    except KeyError as error:
        described = failures.describe(error)
    assert described.startswith("KeyError: 'missing' (at ")
    assert "test_failures.py:" in described


def _failed(stage: str, error: str) -> ReportInputs:
    return ReportInputs(
        base="main",
        primary_metric="f1_macro",
        stage_failure={"stage": stage, "error": error},
        images={"ROC": "report_images/roc.png"},
    )


def test_the_report_names_the_failed_stage_and_shows_its_error() -> None:
    text = render(_failed("train", "MemoryError: too big\n`not markup`"))
    assert "❌ **The pipeline failed at stage `train`**" in text
    assert "Stage `train` failed:\n\n    MemoryError: too big\n    `not markup`" in text
    # The metrics and plots on disk belong to the base: not shown as this branch's.
    assert "_Not computed: the pipeline did not get that far on this branch._" in text
    assert "![ROC]" not in text


def test_a_validation_failure_is_shown_as_its_table_not_twice() -> None:
    failure = {"passed": False, "rows": 3, "violations": []}
    inputs = ReportInputs(
        base="main",
        primary_metric="f1_macro",
        validation_failure=failure,
        stage_failure={"stage": "validate", "error": "data validation failed"},
    )
    text = render(inputs)
    assert "❌ **Data validation failed**" in text
    assert "### Pipeline failure" not in text


def test_an_invalid_params_file_still_gets_a_report(tmp_path: Path) -> None:
    out = tmp_path / "pr-report" / "report.md"
    write_params_failure(out, PipelineError("params.yaml: invalid parameters\n  x: bad"))
    text = out.read_text()
    assert "❌ **params.yaml is invalid**: nothing ran" in text
    assert "    params.yaml: invalid parameters\n      x: bad" in text


def test_mlops_report_with_invalid_params_writes_the_report(workdir: Path) -> None:
    (workdir / "params.yaml").write_text("seed: [unclosed\n")
    code, _ = invoke("report", "pr", "--out", "pr-report/report.md")
    assert code == 0
    assert "params.yaml is invalid" in (workdir / "pr-report" / "report.md").read_text()


def test_preflight_records_a_broken_contract_as_a_validate_failure(
    make_params: Callable[..., Params], workdir: Path
) -> None:
    contract = workdir / "contract.yaml"
    contract.write_text(
        "task: binary\n"
        "target: {name: churned, kind: categorical, nullable: false, categories: ['no', 'yes']}\n"
        "features: [{name: age, kind: numeric}]\n"
    )
    params = make_params(data={"contract": str(contract)}, evaluate={"primary_metric": "auto"})
    code, output = invoke("stage", "preflight")
    assert code == 1
    assert f"error: {contract}: a binary task names its `positive` class" in output
    record = failures.read(params.paths.stage_failure)
    assert record is not None
    assert record["stage"] == "validate"
    assert "`positive`" in record["error"]


def test_preflight_names_the_task_and_target(params: Params) -> None:
    code, output = invoke("stage", "preflight")
    assert code == 0, output
    assert "multiclass on 'species'" in output


def test_preflight_names_a_table_swapped_without_its_contract(
    make_params: Callable[..., Params], workdir: Path
) -> None:
    """The docs' step 2 forgotten: the new table, the old contract. Named before any stage
    runs, with the command that writes the right contract."""
    table = workdir / "houses.csv"
    table.write_text("rooms,price\n3,250000\n4,410000\n")
    params = make_params(data={"source": str(table)})
    code, output = invoke("stage", "preflight")
    assert code == 1
    assert f"error: {table} has no column 'species', 'island'," in output
    assert "the table has: rooms, price" in output
    assert f"mlops contract init --data {table} --target COLUMN --force" in output
    assert failures.read(params.paths.stage_failure)["stage"] == "validate"


def test_an_unquoted_yes_or_no_in_the_contract_is_named(
    make_params: Callable[..., Params], workdir: Path
) -> None:
    """YAML reads yes/no as booleans: the contract says to quote them, instead of every row
    failing its category check later."""
    contract = workdir / "contract.yaml"
    contract.write_text(
        "task: binary\npositive: 'yes'\n"
        "target: {name: churned, kind: categorical, nullable: false, categories: [no, yes]}\n"
        "features: [{name: age, kind: numeric}]\n"
    )
    make_params(data={"contract": str(contract)}, evaluate={"primary_metric": "auto"})
    code, output = invoke("stage", "preflight")
    assert code == 1
    assert "target (churned).categories: False is a YAML boolean; quote the category" in output
