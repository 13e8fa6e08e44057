"""Git revisions that arrive from a user or a workflow, checked before git or dvc sees them."""

from __future__ import annotations

from mlops_template import PipelineError


def check_revision(base: str) -> str:
    """A git revision given on the command line, passed on to git and dvc: never an option
    (`--output=...`) nor text with spaces or control characters."""
    if not base or base.startswith("-") or any(ch.isspace() or ord(ch) < 32 for ch in base):
        raise PipelineError(f"--base: {base!r} is not a git revision")
    return base
