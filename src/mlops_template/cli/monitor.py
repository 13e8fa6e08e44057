"""`mlops monitor ...`: production watched. `traffic` sends records to a running service,
`fetch` mirrors production's prediction logs and feedback, `drift` compares them with training.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mlops_template import PipelineError
from mlops_template.cli.runner import ParamsOption, run_with_params
from mlops_template.config import DEFAULT_PARAMS, Params


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
    from mlops_template.monitoring import traffic

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

    run_with_params(send, params)


def fetch_monitoring(
    source: Annotated[str, typer.Option(help="Directory or s3://bucket/prefix to copy from.")],
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Mirror production's prediction logs and labelled feedback into monitoring.fetched."""
    from mlops_template.monitoring import fetch as module

    run_with_params(lambda loaded: module.run(loaded, source), params)


def drift(
    params: ParamsOption = DEFAULT_PARAMS,
    fetched: Annotated[
        bool, typer.Option(help="Read what `mlops monitor fetch` mirrored, not the local log.")
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

    run_with_params(check, params)


app = typer.Typer(
    help="Production watched: synthetic traffic, fetched logs, drift.", no_args_is_help=True
)
app.command("traffic")(simulate_traffic)
app.command("fetch")(fetch_monitoring)
app.command("drift")(drift)
