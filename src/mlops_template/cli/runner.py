"""How every `mlops` command runs: read params.yaml once, call the code, and turn a
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
from mlops_template.config import Params, load_params

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


def guarded(action: Callable[[], None]) -> None:
    """Run a command that reads no params.yaml; a PipelineError becomes `error: ...` and exit 1."""
    try:
        action()
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        raise typer.Exit(code=1) from None
