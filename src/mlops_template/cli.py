"""The `mlops` command: one subcommand per dvc.yaml stage.

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

from mlops_template.config import DEFAULT_PARAMS, Params, load_params
from mlops_template.errors import PipelineError

app = typer.Typer(
    help="GitOps ML template: the DVC pipeline stages.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ParamsOption = Annotated[
    Path, typer.Option("--params", "-p", help="Parameters file.", dir_okay=False)
]


def _run(stage: Callable[[Params], Any], params_path: Path) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    try:
        stage(load_params(params_path))
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        raise typer.Exit(code=1) from None


def _run_stage(name: str, stage: Callable[[Params], Any], params_path: Path) -> None:
    """Run a dvc.yaml stage; if it fails, record which stage and why for the PR report."""
    from mlops_template import failures

    def recorded(params: Params) -> None:
        try:
            stage(params)
        except Exception as error:
            failures.record(params.paths.stage_failure, name, error)
            raise

    _run(recorded, params_path)


def _check_columns(params: Params) -> None:
    """The table has every column its contract names: a table swapped without its contract
    (`mlops init-schema` forgotten) is named here, before any stage runs."""
    from mlops_template import storage

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


@app.command()
def preflight(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Before `dvc repro`: validate params.yaml as a whole (every section, also those no stage
    tracks), check the data source exists, and forget the previous run's failure records."""
    from mlops_template import failures

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

    _run(check, params)


@app.command("init-schema")
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
    from mlops_template import init_schema as module
    from mlops_template.schema import TASKS

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


@app.command()
def ingest(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Read the source data (the CSV/Parquet file data.source names) into the raw table."""
    from mlops_template.stages import ingest as stage

    _run_stage("ingest", stage.run, params)


@app.command()
def validate(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Check the raw table against the schema; report every violation; exit 1 on bad data."""
    from mlops_template.stages import validate as stage

    _run_stage("validate", stage.run, params)


@app.command()
def split(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Stratified, seeded train/test split of the validated table."""
    from mlops_template.stages import split as stage

    _run_stage("split", stage.run, params)


@app.command()
def train(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Fit the preprocessing + estimator pipeline; write the model and its sha256."""
    from mlops_template.stages import train as stage

    _run_stage("train", stage.run, params)


@app.command()
def evaluate(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Score the model on the test split; write DVC metrics and plot data."""
    from mlops_template.stages import evaluate as stage

    _run_stage("evaluate", stage.run, params)


@app.command()
def explain(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """SHAP values on the test split: summary, plot data, image; the service's background."""
    from mlops_template.stages import explain as stage

    _run_stage("explain", stage.run, params)


@app.command()
def behaviour(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Run the data contract's behaviour checks on the model; write reports/behaviour.json."""
    from mlops_template.stages import behaviour as stage

    _run_stage("behaviour", stage.run, params)


@app.command()
def tune(
    params: ParamsOption = DEFAULT_PARAMS,
    apply: Annotated[
        bool, typer.Option("--apply", help="Write the best values into params.yaml's model:.")
    ] = False,
) -> None:
    """Hyperparameter search over params.yaml's tune section, cross-validated on the training
    split only: reports in paths.tune, an MLflow run per trial, DVC experiments tune-<N>."""
    from mlops_template import tune as module

    _run(lambda loaded: module.run(loaded, params, apply=apply), params)


@app.command()
def report(
    params: ParamsOption = DEFAULT_PARAMS,
    base: Annotated[str, typer.Option(help="Git revision to compare with.")] = "main",
    out: Annotated[Path, typer.Option(help="Markdown file to write.")] = Path("report.md"),
) -> None:
    """Write the pull-request report: metrics and params against BASE, plots, data checks.

    It is written whatever failed before it, an invalid params.yaml included: the reviewer
    sees what went wrong, and the check stays red because the pipeline step failed."""
    from mlops_template import report as module

    try:
        load_params(params).contract  # noqa: B018 (reads and checks the contract file too)
    except PipelineError as error:
        module.write_params_failure(out, error)
        print(f"wrote {out}: {params} is invalid", file=sys.stderr)
        return
    _run(lambda loaded: module.run(loaded, base, out), params)


@app.command()
def plots(
    params: ParamsOption = DEFAULT_PARAMS,
    base: Annotated[
        str | None, typer.Option(help="Git revision whose plots to show beside these.")
    ] = None,
    out: Annotated[Path, typer.Option(help="HTML file to write.")] = Path("dvc_plots/plots.html"),
) -> None:
    """Write the evaluate stage's plots and metrics as one HTML page that works offline."""
    from mlops_template import plots_page

    _run(lambda loaded: print(f"wrote {plots_page.write_page(loaded.paths, out, base)}"), params)


@app.command("model-card")
def model_card(
    params: ParamsOption = DEFAULT_PARAMS,
    out: Annotated[Path, typer.Option(help="Markdown file to write.")] = Path(
        "models/model_card.md"
    ),
) -> None:
    """Write the model card of the model dvc.lock describes."""
    from mlops_template import registry

    _run(lambda loaded: print(f"wrote {registry.write_model_card(loaded, out)}"), params)


@app.command()
def register(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Register the model dvc.lock describes in the MLflow Model Registry, with lineage.

    A model a version already holds (the same sha256) is not registered twice."""
    from mlops_template import registry

    def add(loaded: Params) -> None:
        version, new = registry.register(loaded)
        if new:
            print(f"registered version {version}")
        else:
            print(f"version {version} already holds this model (same sha256): nothing registered")

    _run(add, params)


@app.command()
def promote(
    params: ParamsOption = DEFAULT_PARAMS,
    version: Annotated[str | None, typer.Option(help="Candidate (default: newest).")] = None,
) -> None:
    """The champion/challenger gate: move `champion` to a model no worse; exit 1 if refused."""
    from mlops_template import registry

    def gate(loaded: Params) -> None:
        decision = registry.promote(loaded, version)
        if not decision.promoted:
            raise PipelineError(f"not promoted: {decision.reason}")
        print(f"promoted: {decision.reason}")

    _run(gate, params)


@app.command()
def release(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Release step of a merge to main: register (unless unchanged), then the gate.

    Exits 0 whether the model is promoted, unchanged or refused; the outcome goes to the
    GitHub step outputs (`deploy=true|false`), the job summary and an annotation."""
    from mlops_template import registry

    _run(lambda loaded: registry.publish_release(registry.release(loaded)), params)


@app.command("simulate-traffic")
def simulate_traffic(
    params: ParamsOption = DEFAULT_PARAMS,
    url: Annotated[
        str | None, typer.Option(help="The service (default: serve.host and serve.port).")
    ] = None,
    requests: Annotated[int, typer.Option(help="How many requests to send.")] = 200,
    shift: Annotated[
        list[str] | None,
        typer.Option(help="FEATURE=DELTA (numeric) or FEATURE=CATEGORY (repeatable)."),
    ] = None,
    missing: Annotated[
        list[str] | None, typer.Option(help="FEATURE=RATE: blank this share (repeatable).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Which records are drawn.")] = 0,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 4,
    batch_size: Annotated[
        int, typer.Option(help="Records per /predict/batch request (0: /predict, one each).")
    ] = 0,
    max_seconds: Annotated[float, typer.Option(help="Stop sending after this long.")] = 60.0,
) -> None:
    """Send records drawn from data.source (valid against the contract, optionally shifted)
    to a running service; print status counts and latency. Exit 1 if none got a 2xx."""
    from mlops_template import traffic

    def send(loaded: Params) -> None:
        plan = traffic.TrafficPlan(
            url=url or f"http://{loaded.serve.host}:{loaded.serve.port}",
            requests=requests,
            shifts=traffic.parse_assignments(shift or [], "--shift"),
            missing=traffic.parse_assignments(missing or [], "--missing"),
            seed=seed,
            concurrency=concurrency,
            batch_size=batch_size,
            max_seconds=max_seconds,
        )
        summary = traffic.run(plan, loaded.data.source, loaded.contract)
        if summary.ok == 0:
            raise PipelineError(f"no request to {plan.url} succeeded: is the service running?")

    _run(send, params)


@app.command("fetch-monitoring")
def fetch_monitoring(
    source: Annotated[str, typer.Option(help="Directory or s3://bucket/prefix to copy from.")],
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Mirror production's prediction logs and labelled feedback into monitoring.fetched."""
    from mlops_template.monitoring import fetch as module

    _run(lambda loaded: module.run(loaded, source), params)


@app.command()
def drift(
    params: ParamsOption = DEFAULT_PARAMS,
    fetched: Annotated[
        bool, typer.Option(help="Read what fetch-monitoring mirrored, not the local log.")
    ] = False,
) -> None:
    """Logged traffic against the training split. Exit 0: no drift; 3: drift; 1: an error."""
    from mlops_template.monitoring import drift as module

    def check(loaded: Params) -> None:
        log_path, feedback = loaded.serve.prediction_log, loaded.monitoring.feedback
        if fetched:
            log_path = loaded.monitoring.fetched / log_path.name
            feedback = loaded.monitoring.fetched / feedback.name
        report = module.run(loaded, log_path, feedback)
        skipped = (
            f", {report.skipped_records} skipped (they do not fit the contract)"
            if report.skipped_records
            else ""
        )
        print(
            f"drift: {report.verdict} ({report.window_rows} predictions{skipped});"
            f" see {loaded.paths.drift}"
        )
        if report.drifted:
            raise typer.Exit(code=module.DRIFT_EXIT_CODE)

    _run(check, params)


# check-report, post-report, collect-outputs, publish-outputs, open-pr: the workflows' steps;
# deploy-bump, deploy-pr, release-record, record-image, rollback, history: the deploy's.
from mlops_template.deploy_cli import register as _register_deploy_commands  # noqa: E402
from mlops_template.workflow_cli import register as _register_workflow_commands  # noqa: E402

_register_workflow_commands(app)
_register_deploy_commands(app)


if __name__ == "__main__":
    app()
