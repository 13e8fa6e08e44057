"""`mlops model ...`: the model after training. `tune` searches its hyperparameters;
`register`, `promote` and `release` are the MLflow registry and its champion/challenger gate.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mlops_template import PipelineError
from mlops_template.cli.runner import ParamsOption, run_with_params
from mlops_template.config import DEFAULT_PARAMS, Params


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


def register_model(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Register the model dvc.lock describes in the MLflow Model Registry, with lineage.

    A model a version already holds (the same sha256) is not registered twice."""
    from mlops_template.release import registry

    def add(loaded: Params) -> None:
        version, new = registry.register(loaded)
        if new:
            print(f"registered version {version}")
        else:
            print(f"version {version} already holds this model (same sha256): nothing registered")

    run_with_params(add, params)


def promote(
    params: ParamsOption = DEFAULT_PARAMS,
    version: Annotated[str | None, typer.Option(help="Candidate (default: newest).")] = None,
) -> None:
    """The champion/challenger gate: move `champion` to a model no worse; exit 1 if refused."""
    from mlops_template.release import registry

    def gate(loaded: Params) -> None:
        decision = registry.promote(loaded, version)
        if not decision.promoted:
            raise PipelineError(f"not promoted: {decision.reason}")
        print(f"promoted: {decision.reason}")

    run_with_params(gate, params)


def release(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Release step of a merge to main: register (unless unchanged), then the gate.

    Exits 0 whether the model is promoted, unchanged or refused; the outcome goes to the
    GitHub step outputs (`deploy=true|false`), the job summary and an annotation."""
    from mlops_template.release import registry

    run_with_params(lambda loaded: registry.publish_release(registry.release(loaded)), params)


app = typer.Typer(
    help="The model after training: tune, register, promote, release.", no_args_is_help=True
)
app.command("tune")(tune)
app.command("register")(register_model)
app.command("promote")(promote)
app.command("release")(release)
