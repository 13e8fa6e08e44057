"""`mlops report plots`: one HTML page of plots and metrics, with nothing loaded from elsewhere."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

from typer.testing import CliRunner

from mlops_template.cli.app import app
from mlops_template.config import Params
from mlops_template.io import storage
from mlops_template.reporting.plots_page import flatten, write_page

PNG = b"\x89PNG\r\n\x1a\n"


def write_plot_data(params: Params, accuracy: float) -> None:
    """Plot data as the evaluate stage writes it (two classes, a few points), and metrics."""
    paths = params.paths
    storage.write_text(paths.confusion, "actual,predicted\nno,no\nno,yes\nyes,yes\n")
    curve = [
        {"class": "yes", "fpr": 0.0, "tpr": 0.0},
        {"class": "yes", "fpr": 0.5, "tpr": 1.0},
        {"class": "yes", "fpr": 1.0, "tpr": 1.0},
    ]
    storage.write_json(paths.roc, {"roc": curve})
    importance = [{"feature": "x", "importance": 0.3, "std": 0.01}]
    storage.write_json(paths.feature_importance, {"importance": importance})
    storage.write_json(paths.metrics, {"accuracy": accuracy, "per_class": {"yes": {"f1": 0.5}}})


def git(cwd: Path, *args: str) -> None:
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", *identity, *args], cwd=cwd, check=True, capture_output=True)


def images(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r"data:image/png;base64,([^\"]+)", page)]


def test_page_embeds_every_plot_and_loads_nothing(params: Params, workdir: Path) -> None:
    write_plot_data(params, accuracy=0.75)
    page = write_page(params.paths, workdir / "out" / "plots.html").read_text()
    assert len(images(page)) == 3  # confusion, ROC, importance
    assert all(blob.startswith(PNG) for blob in images(page))
    assert not re.search(r"(src|href)=\"(?!data:)", page)  # no file, URL or CDN reference
    assert "http" not in page
    assert "<td>accuracy</td><td>0.75</td>" in page
    assert "<td>per_class.yes.f1</td><td>0.5</td>" in page


def test_base_revision_beside_the_work_tree(params: Params, workdir: Path) -> None:
    write_plot_data(params, accuracy=0.5)
    git(workdir, "init", "-q")
    git(workdir, "add", "-A")
    git(workdir, "commit", "-q", "-m", "base")
    write_plot_data(params, accuracy=0.875)

    page = write_page(params.paths, workdir / "plots.html", base="HEAD").read_text()
    assert "<th>HEAD</th><th>workspace</th>" in page
    assert "<td>accuracy</td><td>0.5</td><td>0.875</td>" in page
    assert len(images(page)) == 6


def test_base_without_outputs_and_no_data_yet(params: Params, workdir: Path) -> None:
    git(workdir, "init", "-q")
    git(workdir, "commit", "-q", "--allow-empty", "-m", "empty")
    page = write_page(params.paths, workdir / "plots.html", base="HEAD").read_text()
    assert "No plot data" in page
    assert "No metrics" in page


def test_cli_writes_the_page(params: Params, workdir: Path) -> None:
    write_plot_data(params, accuracy=1.0)
    result = CliRunner().invoke(app, ["report", "plots", "--out", "page.html"])
    assert result.exit_code == 0, result.output
    assert "wrote page.html" in result.output
    assert len(images((workdir / "page.html").read_text())) == 3


def test_flatten_keeps_numbers_only() -> None:
    assert flatten({"a": 1, "b": {"c": 2.5, "d": "x"}, "e": True}) == {"a": 1.0, "b.c": 2.5}
