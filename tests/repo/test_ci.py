"""One CI: `.ci/run` and ci.yml run `make ci`; uv is the same pinned version everywhere; the
real-service run starts its longest units first; the retraining workflow's note on a run
started by hand."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.conftest import LONGEST_FIRST, REPO_ROOT, longest_first

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))


def uv_version() -> str:
    match = re.search(r"^UV_VERSION := (\S+)$", (REPO_ROOT / "Makefile").read_text(), re.M)
    assert match, "Makefile: no UV_VERSION"
    return match.group(1)


UV_REQUIREMENTS = REPO_ROOT / ".ci" / "uv-requirements.txt"


def test_pyproject_and_the_hashed_requirement_pin_the_makefiles_uv() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["uv"]["required-version"] == f"=={uv_version()}"
    text = UV_REQUIREMENTS.read_text()
    requirements = [line for line in text.splitlines() if not line.startswith("#")]
    assert requirements[0] == f"uv=={uv_version()} \\"
    hashes = [line.strip().rstrip(" \\") for line in requirements[1:]]
    assert hashes, "no --hash lines"
    for line in hashes:
        assert re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", line), line
    # One wheel per platform we run on: glibc Linux x86_64 and aarch64, macOS x86_64 and arm64.
    listed = re.findall(r"^#   (uv-\S+\.whl)$", text, re.M)
    assert len(listed) == len(hashes)
    assert all(name.startswith(f"uv-{uv_version()}-") for name in listed)
    for platform in ("manylinux_2_17_x86_64", "aarch64", "macosx_10_12_x86_64", "arm64"):
        assert any(platform in name for name in listed), platform


@pytest.mark.parametrize(
    "path", ["Makefile", "Dockerfile", "deploy/compose/images/tools.Dockerfile"]
)
def test_uv_is_installed_with_hashes_everywhere(path: str) -> None:
    """Every pip install (pip installs uv, uv the rest) reads the hashed requirement with
    --require-hashes (and no source build); nothing names a bare uv==VERSION."""
    text = (REPO_ROOT / path).read_text()
    installs = re.findall(r"(?:/pip|-m pip) install(?:[^\n\\]|\\\n)*", text)
    assert installs, f"{path}: no pip install"
    for install in installs:
        assert "--require-hashes" in install, install
        assert "--only-binary :all:" in install, install
        assert "uv-requirements.txt" in install, install
    assert "uv==" not in text
    assert "UV_VERSION=" not in text or path == "Makefile"


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda path: path.name)
def test_every_setup_uv_step_pins_the_makefiles_uv(workflow: Path) -> None:
    jobs = yaml.safe_load(workflow.read_text())["jobs"]
    for job in jobs.values():
        for step in job.get("steps", []):
            if str(step.get("uses", "")).startswith("astral-sh/setup-uv@"):
                assert str(step.get("with", {}).get("version")) == uv_version(), step


def test_ci_run_and_ci_workflow_run_make_ci() -> None:
    run = (REPO_ROOT / ".ci" / "run").read_text()
    commands = [line for line in run.splitlines() if line and not line.startswith("#")]
    assert commands[-1] == "exec make ci"
    ci = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "ci.yml").read_text())
    runs = [step["run"] for step in ci["jobs"]["test"]["steps"] if "run" in step]
    assert runs == ["make ci"]
    readme = (REPO_ROOT / "README.md").read_text()
    two_commands = readme.split("## Two commands", 1)[1].split("```bash\n", 1)[1].split("```")[0]
    assert [line.split("#")[0].strip() for line in two_commands.splitlines()] == [
        "make run",
        "make ci",
    ]


def schedule_note(tmp_path: Path, event: str) -> str:
    summary = tmp_path / "summary.md"
    subprocess.run(
        [REPO_ROOT / ".ci" / "schedule-note"],
        env={**os.environ, "GITHUB_EVENT_NAME": event, "GITHUB_STEP_SUMMARY": str(summary)},
        check=True,
        capture_output=True,
    )
    return summary.read_text() if summary.exists() else ""


def test_a_retraining_run_started_by_hand_notes_the_60_day_rule(tmp_path: Path) -> None:
    note = schedule_note(tmp_path, "workflow_dispatch")
    assert "started by hand" in note
    assert "60 days" in note
    assert "gh workflow enable retrain.yml" in note
    assert schedule_note(tmp_path / "x", "schedule") == ""


def test_retrain_workflow_writes_the_note() -> None:
    retrain = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "retrain.yml").read_text())
    runs = [step.get("run") for step in retrain["jobs"]["retrain"]["steps"]]
    assert "make schedule-note" in runs


def test_the_longest_real_service_units_start_first() -> None:
    """Each unit LONGEST_FIRST names still exists (a renamed module would silently go back to
    xdist's order; a copier copy has no test_copier.py, copier.yml leaves it out); listed ones
    go first, longest first, the others after, in their order."""
    gone = {scope for scope in LONGEST_FIRST if not (REPO_ROOT / scope).exists()}
    assert gone <= {"tests/integration/test_copier.py"}, f"LONGEST_FIRST names {gone}: gone"
    a, b = "tests/integration/test_a.py", "tests/integration/test_b.py"
    copier = "tests/integration/test_copier.py"
    byod = "tests/integration/test_readme_byod.py"
    docker = "tests/integration/docker/"
    assert longest_first([a, copier, b, byod, docker]) == [docker, copier, byod, a, b]


def test_the_dvc_remote_rehashes_what_it_pulls() -> None:
    """`verify = true` on the default remote: every file pulled or fetched is hashed again and
    a blob that does not match its name is refused as corrupted (cost on the default data:
    none measurable, `make pull` about 0.7 s either way)."""
    config = configparser.ConfigParser()
    config.read_string((REPO_ROOT / ".dvc" / "config").read_text())
    default = config["core"]["remote"]
    assert config[f"'remote \"{default}\"'"]["verify"] == "true"
