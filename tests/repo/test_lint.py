"""The suite fails on lint errors too, so `make test` alone keeps the tree clean."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

RUFF = Path(sys.executable).parent / "ruff"


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff(command: list[str]) -> None:
    result = subprocess.run(
        [str(RUFF), *command, "."], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts() -> None:
    """pyproject.toml's [tool.importlinter]: the service imports no stage, no pipeline-only
    library and of monitoring only the neutral modules; the layers hold."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
