"""The `mlops` command: one subcommand per dvc.yaml stage, and the steps of the workflows.

Each group of subcommands lives in its own module and is added here, in `mlops --help`'s
order: cli/stage.py (preflight, init-schema, the stages, tune, report, plots),
cli/model.py (model-card, the registry, monitoring), cli/ci.py (the workflows'
privileged steps) and cli/deploy.py (release records, deploy pull requests, rollback, history).
"""

from __future__ import annotations

import typer

from mlops_template.cli import ci, deploy, operations, pipeline

app = typer.Typer(
    help="GitOps ML template: the DVC pipeline stages.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

pipeline.add_commands(app)
operations.add_commands(app)
ci.add_commands(app)
deploy.add_commands(app)


if __name__ == "__main__":
    app()
