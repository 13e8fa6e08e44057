"""The `mlops` commands of the pipeline: preflight, init-schema, one per dvc.yaml stage,
tune, report and plots; and the runner every command that reads params.yaml shares.

Thin on purpose: parse arguments, load params.yaml once, call the stage's `run`, and turn a
PipelineError into a clear message on stderr and exit code 1 (no traceback for user errors).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from mlops_template import PipelineError
from mlops_template.config import DEFAULT_PARAMS, Params, load_params

ParamsOption = Annotated[
    Path, typer.Option("--params", "-p", help="Parameters file.", dir_okay=False)
]


def run_with_params(stage: Callable[[Params], Any], params_path: Path) -> None:
    """Load the params file and call `stage` with it; a PipelineError becomes `error: ...` on
    stderr and exit code 1, without a traceback."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    try:
        stage(load_params(params_path))
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        raise typer.Exit(code=1) from None


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
    (`mlops init-schema` forgotten) is named here, before any stage runs."""
    from mlops_template.io import storage

    source, contract = params.data.source, params.contract
    columns = storage.table_columns(source)
    missing = [spec.name for spec in contract.columns if spec.name not in columns]
    if missing:
        shown = ", ".join(columns[:20]) + (f" (and {len(columns) - 20} more)" * (len(columns) > 20))
        raise PipelineError(
            f"{source} has no column {', '.join(map(repr, missing[:20]))}, which the data"
            f" contract {params.data.contract} names; the table has: {shown}. A new table"
            f" needs its contract: mlops init-schema --data {source} --target COLUMN --force"
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


def init_schema(
    data: Annotated[Path, typer.Option(help="The table to profile (.csv or .parquet).")],
    target: Annotated[str, typer.Option(help="The column to predict.")],
    task: Annotated[
        str | None, typer.Option(help="binary | multiclass | regression (default: inferred).")
    ] = None,
    positive: Annotated[
        str | None, typer.Option(help="Binary only: the positive class (default: the rarer).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Contract file (default: data.contract in params.yaml).")
    ] = None,
    margin: Annotated[float, typer.Option(help="Widen numeric ranges by this share.")] = 0.1,
    strict_nulls: Annotated[
        bool, typer.Option(help="Features without missing values become required.")
    ] = False,
    ignore: Annotated[
        list[str] | None, typer.Option(help="A column that is not a feature (repeatable).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing contract file.")] = False,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Profile a table and write its data contract (review it, then commit it)."""
    from mlops_template.contract import TASKS
    from mlops_template.contract import profile as module

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if margin < 0:
            raise PipelineError(f"--margin must be 0 or more (a share of each range), got {margin}")
        if task is not None and task not in TASKS:
            raise PipelineError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
        if out is None:
            out = (
                load_params(params).data.contract
                if params.is_file()
                else Path("data/contract.yaml")
            )
        if out.exists() and not force:
            raise PipelineError(f"{out} exists; pass --force to replace it (git keeps the old)")
        result = module.run(
            data, target, out, task=task, positive=positive,
            margin=margin, strict_nulls=strict_nulls, ignore=tuple(ignore or ()),
        )  # fmt: skip
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        raise typer.Exit(code=1) from None
    for note in result.notes:
        print(f"note: {note}")
    contract = result.contract
    print(
        f"wrote {out}: {contract.task} on '{contract.target.name}',"
        f" {len(contract.features)} features; review it, then commit it"
    )


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


def tune(
    params: ParamsOption = DEFAULT_PARAMS,
    apply: Annotated[
        bool, typer.Option("--apply", help="Write the best values into params.yaml's model:.")
    ] = False,
) -> None:
    """Hyperparameter search over params.yaml's tune section, cross-validated on the training
    split only: reports in paths.tune, an MLflow run per trial, DVC experiments tune-<N>."""
    from mlops_template.tuning import search as module

    run_with_params(lambda loaded: module.run(loaded, params, apply=apply), params)


def report(
    params: ParamsOption = DEFAULT_PARAMS,
    base: Annotated[str, typer.Option(help="Git revision to compare with.")] = "main",
    out: Annotated[Path, typer.Option(help="Markdown file to write.")] = Path("report.md"),
) -> None:
    """Write the pull-request report: metrics and params against BASE, plots, data checks.

    It is written whatever failed before it, an invalid params.yaml included: the reviewer
    sees what went wrong, and the check stays red because the pipeline step failed."""
    from mlops_template.reporting import report as module

    try:
        load_params(params).contract  # noqa: B018 (reads and checks the contract file too)
    except PipelineError as error:
        module.write_params_failure(out, error)
        print(f"wrote {out}: {params} is invalid", file=sys.stderr)
        return
    run_with_params(lambda loaded: module.run(loaded, base, out), params)


def plots(
    params: ParamsOption = DEFAULT_PARAMS,
    base: Annotated[
        str | None, typer.Option(help="Git revision whose plots to show beside these.")
    ] = None,
    out: Annotated[Path, typer.Option(help="HTML file to write.")] = Path("dvc_plots/plots.html"),
) -> None:
    """Write the evaluate stage's plots and metrics as one HTML page that works offline."""
    from mlops_template.reporting import plots_page

    run_with_params(
        lambda loaded: print(f"wrote {plots_page.write_page(loaded.paths, out, base)}"), params
    )


def add_commands(app: typer.Typer) -> None:
    """Add the pipeline's commands to the `mlops` app, in `mlops --help`'s order."""
    app.command("preflight")(preflight)
    app.command("init-schema")(init_schema)
    app.command("ingest")(ingest)
    app.command("validate")(validate)
    app.command("split")(split)
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("explain")(explain)
    app.command("behaviour")(behaviour)
    app.command("tune")(tune)
    app.command("report")(report)
    app.command("plots")(plots)
