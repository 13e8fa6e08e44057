"""The `mlops` command: one group of subcommands per concern, each in its own module.

    mlops stage     the pipeline's stages (dvc.yaml runs them) and preflight   stage.py
    mlops contract  profile a table into its data contract                       contract.py
    mlops report    the PR report, the plots page, the model card               report.py
    mlops model     tune, register, promote, release                            model.py
    mlops monitor   synthetic traffic, fetched logs, drift                      monitor.py
    mlops deploy    release records, deploy pull requests, rollback, history    deploy.py
    mlops ci        the workflows' privileged steps                             ci.py

Every command is thin: it parses its options, reads params.yaml once (runner.py) and calls
the module that does the work. Nothing imports this package; `mlops` is `app` below.
"""

from __future__ import annotations

import typer

from mlops_template.cli import ci, contract, deploy, model, monitor, report, stage

app = typer.Typer(
    help="GitOps ML template: the pipeline, its reports, the registry, monitoring and deploys.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(stage.app, name="stage")
app.add_typer(contract.app, name="contract")
app.add_typer(report.app, name="report")
app.add_typer(model.app, name="model")
app.add_typer(monitor.app, name="monitor")
app.add_typer(deploy.app, name="deploy")
app.add_typer(ci.app, name="ci")


if __name__ == "__main__":
    app()
