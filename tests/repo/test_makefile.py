"""`make help` lists every target, grouped by purpose; the steps only workflows call live in
.ci/workflows.mk, and every `make` a workflow runs exists."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import REPO_ROOT

MAKEFILES = (REPO_ROOT / "Makefile", REPO_ROOT / ".ci" / "workflows.mk")
WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))
TARGET = re.compile(r"^([a-z][a-z0-9-]*):(?!=)", re.MULTILINE)


def targets(path: str | None = None) -> set[str]:
    files = [p for p in MAKEFILES if path is None or p.name == path]
    return {name for p in files for name in TARGET.findall(p.read_text())}


def make_help() -> str:
    done = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO_ROOT), "help"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout


def called_by_workflows() -> set[str]:
    lines = (line for path in WORKFLOWS for line in path.read_text().splitlines())
    text = "\n".join(line for line in lines if not line.strip().startswith("#"))
    return set(re.findall(r"\bmake (?:[A-Z_]+=\S+ )*([a-z][a-z0-9-]*)", text))


def test_make_help_lists_every_target_under_a_heading() -> None:
    listed: dict[str, str] = {}
    heading = ""
    for line in make_help().splitlines():
        if line and not line.startswith(" "):
            heading = line
        elif match := re.match(r"  make (\S+)", line):
            assert heading, f"{match[1]} is listed before any heading"
            listed[match[1]] = heading
    assert set(listed) == targets()
    assert len(set(listed.values())) >= 6  # grouped by purpose, not one long list


def test_the_included_file_holds_only_steps_that_workflows_run() -> None:
    only_workflows = targets("workflows.mk")
    assert only_workflows, "the Makefile includes .ci/workflows.mk"
    assert only_workflows <= called_by_workflows()
    assert not only_workflows & targets("Makefile")


def test_every_make_in_a_workflow_is_a_target() -> None:
    assert called_by_workflows() <= targets()
