"""A GitOps ML template: a DVC pipeline, its pull-request report, an MLflow registry, a served
model and the monitoring that proposes the next training run.

The folders follow the data's path (docs/architecture.md draws them): `contract` and
`config` describe the table and the run; `stages` are the pipeline's steps, which `evaluation`
judges; `tuning` searches, `reporting` tells people, `release` ships; `serve` answers
requests and `monitoring` watches them; `io` is where all of them meet files, MLflow and
GitHub; `cli` is the `mlops` command over all of it.

`PipelineError` lives here because every folder raises it and the CLI turns it into a clear
message and a non-zero exit; nothing else is defined at the top.
"""

__version__ = "0.1.0"


class PipelineError(Exception):
    """A problem the user can fix (bad params, bad data, unreachable server).

    The message is shown as-is, so it must name what is wrong and where.
    """
