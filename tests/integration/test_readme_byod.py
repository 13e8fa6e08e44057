"""The docs' "Bring your own data" page, run as written on a table the project has never seen.

The page's ```sh blocks (not ```bash: tests/repo/test_readme.py runs those in one copy, and a
data swap there would break the serving example after it) run in order, in a fresh copy of
the repository, with scikit-learn's breast cancer table as `data/cancer.csv`, the file the
page names. Afterwards the pipeline has binary metrics, the fast suite passed and the
work tree is clean: the commit the page shows took every file the steps touched.
About 3 minutes, most of it `make test-fast` inside the copy.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from sklearn.datasets import load_breast_cancer

from tests.conftest import REPO_ROOT
from tests.support.processes import VENV_BIN
from tests.support.project import copy_repo, sh

pytestmark = pytest.mark.slow

PAGE = REPO_ROOT / "docs" / "bring-your-own-data.md"


def offline_env() -> dict[str, str]:
    """The pinned uv on PATH (or the one `make` put in .tools/), installing from its cache."""
    found = shutil.which("uv")
    uv_dir = str(Path(found).parent) if found else str(REPO_ROOT / ".tools" / "bin")
    return {
        "PATH": os.pathsep.join([uv_dir, str(VENV_BIN), os.environ["PATH"]]),
        "UV_OFFLINE": "1",  # everything comes from uv's cache, which this checkout filled
        "UV_SYNC_FLAGS": "",  # compile bytecode lazily
        "UV_PYTHON": getattr(sys, "_base_executable", sys.executable),
        "VIRTUAL_ENV": "",
    }


def breast_cancer_csv(path: Path) -> Path:
    """A binary table the template has never seen (shipped inside scikit-learn)."""
    frame = load_breast_cancer(as_frame=True).frame
    frame["diagnosis"] = frame.pop("target").map({0: "malignant", 1: "benign"})
    frame.columns = [str(column).replace(" ", "_") for column in frame.columns]
    frame.to_csv(path, index=False)
    return path


def section_blocks(markdown: str) -> list[str]:
    """The ```sh blocks of the page (list items indent them), dedented."""
    found = re.findall(r"^( *)```sh\n(.*?)^\1```", markdown, flags=re.DOTALL | re.MULTILINE)
    return [textwrap.dedent(block) for _, block in found]


def test_the_page_shows_every_step() -> None:
    page = PAGE.read_text()
    assert len(re.findall(r"^ *```sh$", page, flags=re.MULTILINE)) == len(section_blocks(page))
    commands = "\n".join(section_blocks(page))
    for step in ("make init-schema", "source: data/cancer.csv", "make run", "make test-fast"):
        assert step in commands


def test_bring_your_own_data_as_written(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    breast_cancer_csv(repo / "data" / "cancer.csv")
    transcript = []
    for block in section_blocks(PAGE.read_text()):
        result = sh(repo, "bash", "-euo", "pipefail", "-c", block, env=offline_env())
        transcript.append(f"$ {block}\n{result.stdout}\n{result.stderr}")
    output = "\n".join(transcript)

    contract = yaml.safe_load((repo / "data" / "contract.yaml").read_text())
    assert (contract["task"], contract["positive"]) == ("binary", "malignant")
    assert yaml.safe_load((repo / "params.yaml").read_text())["data"]["source"] == "data/cancer.csv"
    metrics = yaml.safe_load((repo / "reports" / "metrics.json").read_text())
    for name in ("roc_auc", "average_precision", "f1", "log_loss", "baseline"):
        assert name in metrics, sorted(metrics)
    assert metrics["roc_auc"] > metrics["baseline"]["roc_auc"]
    assert re.search(r"\d+ passed", output), output[-4000:]
    assert sh(repo, "git", "status", "--porcelain").stdout == "", "files the page forgot"
    assert "Breast cancer diagnosis" in sh(repo, "git", "log", "-1", "--format=%s").stdout
