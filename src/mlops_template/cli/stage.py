"""`mlops stage ...`: one command per dvc.yaml stage, and `preflight`, which checks
params.yaml as a whole before `dvc repro` runs any of them.

Thin on purpose: each command calls its stage's `run` (stages/<stage>.py); a stage that fails
records which and why, for the PR report.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from mlops_template import PipelineError
from mlops_template.cli.runner import ParamsOption, run_with_params
from mlops_template.config import DEFAULT_PARAMS, Params


def run_stage(name: str, stage: Callable[[Params], Any], params_path: Path) -> None:
    """Run a dvc.yaml stage; if it fails, record which stage and why for the PR report."""
    from mlops_template.stages import failures

    def recorded(params: Params) -> None:
        try:
            stage(params)
        except Exception as error:
            failures.record(params.paths.stage_failure, name, error)
            raise

    run_with_params(recorded, params_path)


def _check_columns(params: Params) -> None:
    """The table has every column its contract names: a table swapped without its contract
    (`mlops contract init` forgotten) is named here, before any stage runs."""
    from mlops_template.io import storage

    source, contract = params.data.source, params.contract
    columns = storage.table_columns(source)
    missing = [spec.name for spec in contract.columns if spec.name not in columns]
    if missing:
        shown = ", ".join(columns[:20]) + (f" (and {len(columns) - 20} more)" * (len(columns) > 20))
        raise PipelineError(
            f"{source} has no column {', '.join(map(repr, missing[:20]))}, which the data"
            f" contract {params.data.contract} names; the table has: {shown}. A new table"
            f" needs its contract: mlops contract init --data {source} --target COLUMN --force"
        )


def preflight(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Before `dvc repro`: validate params.yaml as a whole (every section, also those no stage
    tracks), check the data source exists, and forget the previous run's failure records."""
    from mlops_template.stages import failures

    def check(loaded: Params) -> None:
        failures.clear(loaded.paths.stage_failure, loaded.paths.validation_failure)
        try:
            contract = loaded.contract
        except PipelineError as error:
            failures.record(loaded.paths.stage_failure, "validate", error)
            raise
        if not loaded.data.source.is_file():
            missing = PipelineError(
                f"data.source: {loaded.data.source} not found (a file tracked with `dvc add`"
                " comes with `make pull`)"
            )
            failures.record(loaded.paths.stage_failure, "ingest", missing)
            raise missing
        try:
            _check_columns(loaded)
        except PipelineError as error:
            failures.record(loaded.paths.stage_failure, "validate", error)
            raise
        print(
            f"preflight: {params} is valid; data source {loaded.data.source};"
            f" {contract.task} on '{contract.target.name}' ({loaded.data.contract})"
        )

    run_with_params(check, params)


def ingest(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Read the source data (the CSV/Parquet file data.source names) into the raw table."""
    from mlops_template.stages import ingest as stage

    run_stage("ingest", stage.run, params)


def validate(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Check the raw table against the schema; report every violation; exit 1 on bad data."""
    from mlops_template.stages import validate as stage

    run_stage("validate", stage.run, params)


def split(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Stratified, seeded train/test split of the validated table."""
    from mlops_template.stages import split as stage

    run_stage("split", stage.run, params)


def train(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Fit the preprocessing + estimator pipeline; write the model and its sha256."""
    from mlops_template.stages import train as stage

    run_stage("train", stage.run, params)


def evaluate(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Score the model on the test split; write DVC metrics and plot data."""
    from mlops_template.stages import evaluate as stage

    run_stage("evaluate", stage.run, params)


def explain(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """SHAP values on the test split: summary, plot data, image; the service's background."""
    from mlops_template.stages import explain as stage

    run_stage("explain", stage.run, params)


def behaviour(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Run the data contract's behaviour checks on the model; write reports/behaviour.json."""
    from mlops_template.stages import behaviour as stage

    run_stage("behaviour", stage.run, params)


app = typer.Typer(
    help="The pipeline's stages, one command each (dvc.yaml runs them).", no_args_is_help=True
)
app.command("preflight")(preflight)
app.command("ingest")(ingest)
app.command("validate")(validate)
app.command("split")(split)
app.command("train")(train)
app.command("evaluate")(evaluate)
app.command("behaviour")(behaviour)
app.command("explain")(explain)
