"""The docs site builds offline with --strict (a broken link or anchor, or a page left out of
the nav, fails), and its generated Reference describes the code: every top-level key of
params.yaml, every `mlops` command and every module. What the pages must name is read from
the code here, independently of docs/gen_reference.py."""

from __future__ import annotations

import html
import importlib
import os
import re
import subprocess
from pathlib import Path

import pytest
import typer
import typer.main

from mlops_template.config import Params
from tests.conftest import REPO_ROOT
from tests.support.processes import VENV_BIN

SRC = REPO_ROOT / "src" / "mlops_template"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [VENV_BIN / "mkdocs", "build", "--strict", "--site-dir", out],
        cwd=REPO_ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return out


def page_text(site: Path, page: str) -> str:
    """A built page's text, tags dropped."""
    raw = (site / page / "index.html").read_text()
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


def mlops_commands() -> list[str]:
    """Every command path of the `mlops` app, groups walked recursively: "mlops stage train"."""
    root = typer.main.get_command(importlib.import_module("mlops_template.cli.app").app)
    found: list[str] = []

    def walk(command: object, path: str) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            if not sub.hidden:
                found.append(f"{path} {name}")
                walk(sub, f"{path} {name}")

    walk(root, "mlops")
    return found


def test_the_params_page_names_every_top_level_key(site: Path) -> None:
    text = page_text(site, "reference/params")
    keys = [field.alias or name for name, field in Params.model_fields.items()]
    assert len(keys) > 5
    for key in keys:
        assert re.search(rf"(^|\W){re.escape(key)}(\W|$)", text), f"params.yaml key {key}"
    assert "model.n_estimators" in text  # a nested model's keys, walked


def test_the_cli_page_names_every_command(site: Path) -> None:
    text = page_text(site, "reference/cli")
    commands = mlops_commands()
    assert len(commands) > 10
    for command in commands:
        assert command in text, command


def test_every_module_has_an_api_page(site: Path) -> None:
    """Every module but a `__main__` (an entry point, no API of its own)."""
    for path in SRC.rglob("*.py"):
        if path.name == "__main__.py":
            continue
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        page = site / "reference" / "api" / Path(*parts) / "index.html"
        assert page.is_file(), f"no API page for {'.'.join(parts)}"


def test_every_page_is_offline(site: Path) -> None:
    """No web fonts, analytics or CDN: the site works without the internet."""
    for page in site.rglob("*.html"):
        text = page.read_text()
        for host in ("fonts.googleapis.com", "fonts.gstatic.com", "googletagmanager.com"):
            assert host not in text, f"{page.relative_to(site)} fetches from {host}"
