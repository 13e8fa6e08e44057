"""`mlops report ...`: what people read. `pr` is the pull-request report, `plots` the
evaluate stage's plots on one offline page, `card` the model card.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mlops_template import PipelineError
from mlops_template.cli.runner import ParamsOption, run_with_params
from mlops_template.config import DEFAULT_PARAMS, load_params


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


def model_card(
    params: ParamsOption = DEFAULT_PARAMS,
    out: Annotated[Path, typer.Option(help="Markdown file to write.")] = Path(
        "models/model_card.md"
    ),
) -> None:
    """Write the model card of the model dvc.lock describes."""
    from mlops_template.reporting.model_card import write_model_card

    run_with_params(lambda loaded: print(f"wrote {write_model_card(loaded, out)}"), params)


app = typer.Typer(
    help="What people read: the PR report, the plots page, the model card.", no_args_is_help=True
)
app.command("pr")(report)
app.command("plots")(plots)
app.command("card")(model_card)
