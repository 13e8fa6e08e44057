"""`mlops contract init`: profile a table and write its data contract (contract/profile.py)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from mlops_template import PipelineError
from mlops_template.cli.runner import ParamsOption
from mlops_template.config import DEFAULT_PARAMS, load_params


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


app = typer.Typer(help="The data contract: profile a table into one.", no_args_is_help=True)
app.command("init")(init_schema)
