"""`mlops model ...`: the model after training. `tune` searches its hyperparameters;
`register`, `promote` and `release` are the MLflow registry and its champion/challenger gate.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
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


def rebuild(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Rebuild the pipeline of this commit from nothing (an empty DVC cache, no run cache) and
    fail unless every output is byte for byte the one dvc.lock names (release.yml's check)."""
    from mlops_template.release import rebuild as module

    run_with_params(lambda _: module.rebuild(), params)


def champion(
    out: Annotated[Path, typer.Option(help="Folder for champion.json and its served model.")],
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Fetch the registry's champion (its version and served file, checked by its recorded
    sha256) for the gate's inputs; {"champion": null} without a registry or champion."""
    from mlops_template.release import registry

    def fetch(loaded: Params) -> None:
        found = registry.export_champion(loaded, out)
        print(f"champion: version {found.version}" if found else "champion: none")

    run_with_params(fetch, params)


def gate_inputs(
    out: Annotated[Path, typer.Option(help="The hand-over folder to write.")],
    champion_dir: Annotated[
        Path | None, typer.Option("--champion", help="What `mlops model champion` wrote.")
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Score the rebuilt model and the champion on the same holdout with the served runtime,
    save the MLflow models to register, and hand them over with the outputs (release.yml)."""
    from mlops_template.release import gate_inputs as module

    def write(loaded: Params) -> None:
        inputs = module.collect(loaded, champion_dir, out)
        primary = loaded.primary_metric
        against = (
            f", champion version {inputs.champion.version}: {primary}"
            f" {(inputs.champion.metrics or {}).get(primary, 'not comparable')}"
            if inputs.champion
            else ", no champion"
        )
        print(f"gate-inputs: candidate {primary} {inputs.candidate[primary]}{against}")

    run_with_params(write, params)


def accept(
    inputs: Annotated[
        Path, typer.Option(help="The hand-over of `mlops model gate-inputs` (release.yml).")
    ],
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Stage the rebuilt outputs of the hand-over into this checkout, checked: their dvc.lock
    must be this commit's and hash to their files; the gate's inputs must fit their schema."""
    from mlops_template.release import gate_inputs as module

    def take(loaded: Params) -> None:
        checked = module.accept(loaded, inputs)
        print(f"accept: the rebuilt outputs of {checked.commit[:12]} are staged and checked")

    run_with_params(take, params)


def release(
    inputs: Annotated[
        Path | None,
        typer.Option(
            help="The hand-over of `mlops model gate-inputs` (release.yml). Without it, the"
            " whole step on this machine: the champion, the scores, then the gate."
        ),
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Release step of a merge to main: take the rebuilt outputs and the gate's inputs
    (checked), register (unless unchanged), then the gate. Loads no model given --inputs.

    Exits 0 whether the model is promoted, unchanged or refused; the outcome goes to the
    GitHub step outputs (`deploy=true|false`), the job summary and an annotation."""
    from mlops_template.release import gate_inputs as module
    from mlops_template.release import registry

    def decide(loaded: Params, folder: Path) -> None:
        checked = module.accept(loaded, folder)
        registry.publish_release(registry.release(loaded, checked, folder))

    def here(loaded: Params) -> None:
        with tempfile.TemporaryDirectory(prefix="release-") as scratch:
            champion_dir = Path(scratch) / "champion"
            registry.export_champion(loaded, champion_dir)
            module.collect(loaded, champion_dir, Path(scratch) / "inputs")
            decide(loaded, Path(scratch) / "inputs")

    run_with_params(lambda loaded: decide(loaded, inputs) if inputs else here(loaded), params)


app = typer.Typer(
    help="The model after training: tune, register, promote; the release's rebuild and gate.",
    no_args_is_help=True,
)
app.command("tune")(tune)
app.command("register")(register_model)
app.command("promote")(promote)
app.command("rebuild")(rebuild)
app.command("champion")(champion)
app.command("gate-inputs")(gate_inputs)
app.command("accept")(accept)
app.command("release")(release)
