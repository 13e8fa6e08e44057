"""Git revisions that arrive from a user or a workflow, checked before git or dvc sees them."""

from __future__ import annotations

import subprocess
from pathlib import Path

from mlops_template import PipelineError


def check_revision(base: str) -> str:
    """A git revision given on the command line, passed on to git and dvc: never an option
    (`--output=...`) nor text with spaces or control characters."""
    if not base or base.startswith("-") or any(ch.isspace() or ord(ch) < 32 for ch in base):
        raise PipelineError(f"--base: {base!r} is not a git revision")
    return base


def head_commit(repo: Path = Path()) -> str:
    """The full hash of the commit checked out at `repo`."""
    result = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise PipelineError(f"{repo.resolve()}: not a git checkout ({result.stderr.strip()})")
    return result.stdout.strip()
