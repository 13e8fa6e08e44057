"""Copies of the repository to run the pipeline, git and make in, and what they print."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.support.processes import VENV_BIN

STAGES = ("ingest", "validate", "split", "train", "evaluate", "behaviour", "explain")


def sh(
    cwd: Path, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command with the venv on PATH and a git identity; fail with its output."""
    inherited = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    full_env = {
        **inherited,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
        **(env or {}),
    }
    result = subprocess.run(
        args, cwd=cwd, env=full_env, capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result


def copy_repo(destination: Path) -> Path:
    """Copy the files git knows about (committed or not, minus ignored) and commit them."""
    listed = sh(REPO_ROOT, "git", "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    for name in filter(None, listed.stdout.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    sh(destination, "git", "init", "-q", "-b", "main")
    sh(destination, "git", "add", "-A")
    sh(destination, "git", "commit", "-q", "-m", "template")
    return destination


TEST_DATA = "tests/data/penguins.csv"
TEST_CONTRACT = "tests/data/penguins.yaml"


def use_test_table(root: Path) -> None:
    """Point a repository copy's params.yaml at the tests' own table and contract (and its
    primary metric), so tests of the pipeline's mechanics pass whatever data a fork
    configures. Tests of the project's own data run on the copy as it is."""
    import yaml

    params_file = root / "params.yaml"
    raw = yaml.safe_load(params_file.read_text())
    lines = params_file.read_text().splitlines(keepends=True)
    replaced = {
        "  source:": f"  source: {TEST_DATA}\n",
        "  contract:": f"  contract: {TEST_CONTRACT}\n",
        "  primary_metric:": "  primary_metric: f1_macro\n",
    }
    out = []
    for line in lines:
        key = next((k for k in replaced if line.startswith(k)), None)
        out.append(replaced[key] if key else line)
    params_file.write_text("".join(out))
    assert yaml.safe_load(params_file.read_text())["data"]["source"] == TEST_DATA, raw["data"]
    sh(root, "git", "commit", "-q", "-am", "tests' own table")


DEFAULT_FOREST = (
    "model:\n  kind: random_forest\n  n_estimators: 100\n  max_depth: null\n"
    "  min_samples_leaf: 1\n  max_samples: null\n  n_jobs: -1\n"
)


def adopt_test_project(root: Path) -> None:
    """Make a repository copy the template as shipped: the tests' penguins table and contract
    in data/ (where the image takes its contract from), the default forest and macro F1. For
    the long sequences (the lifecycle) written for that table, whatever a fork configured."""
    shutil.copy2(root / TEST_DATA, root / "data" / "penguins.csv")
    shutil.copy2(root / TEST_CONTRACT, root / "data" / "contract.yaml")
    params_file = root / "params.yaml"
    text = params_file.read_text()
    start, end = text.index("\nmodel:\n"), text.index("\nevaluate:\n")
    text = text[: start + 1] + DEFAULT_FOREST + text[end:]
    replaced = {
        "  source:": "  source: data/penguins.csv\n",
        "  contract:": "  contract: data/contract.yaml\n",
        "  primary_metric:": "  primary_metric: f1_macro\n",
    }
    lines = [
        next((new for key, new in replaced.items() if line.startswith(key)), line)
        for line in text.splitlines(keepends=True)
    ]
    params_file.write_text("".join(lines))
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-q", "-m", "the template's penguins", check=False)


def ran_stages(output: str) -> list[str]:
    return [stage for stage in STAGES if f"Running stage '{stage}'" in output]
