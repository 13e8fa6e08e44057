"""The record of a failed pipeline stage, so the pull-request report can say which stage failed
and why even when nothing downstream ran.

A stage run through the CLI writes it when it raises (`record`); `mlops stage preflight`, the first
step of `make run`, forgets the previous run's record (`clear`), so a failure never outlives
its fix, also when DVC restores a fixed stage's outputs from its cache without running it.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

from mlops_template import PipelineError
from mlops_template.io import storage

MAX_MESSAGE = 4000


def describe(error: BaseException) -> str:
    """The message a user sees: a PipelineError's own words, or the exception and where it was
    raised (a bug in a stage's code: the reviewer needs the file and line)."""
    if isinstance(error, PipelineError):
        return str(error)[:MAX_MESSAGE]
    where = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    place = "".join(f" (at {frame.filename}:{frame.lineno})" for frame in where)
    return f"{type(error).__name__}: {error}{place}"[:MAX_MESSAGE]


def record(path: Path, stage: str, error: BaseException) -> None:
    storage.write_json(path, {"stage": stage, "error": describe(error)})


def read(path: Path) -> dict[str, Any] | None:
    return storage.read_json(path) if path.is_file() else None


def clear(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
