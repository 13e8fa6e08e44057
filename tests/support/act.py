"""Running the workflows with act, on this host, with offline stubs for every `uses:`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.support.processes import VENV_BIN

STUBS = REPO_ROOT / "tests" / "integration" / "act_stubs"
STUB_FOR = {
    "actions/checkout": "checkout",
    "astral-sh/setup-uv": "setup-uv",
    "actions/upload-artifact": "upload-artifact",
    "actions/download-artifact": "download-artifact",
    "docker/login-action": "login-action",
    "actions/attest-build-provenance": "attest-build-provenance",
    "sigstore/cosign-installer": "cosign-installer",
    "actions/upload-pages-artifact": "upload-pages-artifact",
    "actions/deploy-pages": "deploy-pages",
}
PR_NUMBER = 7
ACT_TIMEOUT = 900


def _stub_mappings() -> list[str]:
    """`--local-repository` for every `uses:` in the workflows, refs exactly as written."""
    args: list[str] = []
    for workflow in sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml")):
        for match in re.finditer(r"uses:\s*([\w.-]+/[\w.-]+)@([0-9a-f]{40})", workflow.read_text()):
            action, ref = match.groups()
            assert action in STUB_FOR, f"{workflow.name}: no offline stub for {action}"
            args += ["--local-repository", f"{action}@{ref}={STUBS / STUB_FOR[action]}"]
    return args


def _dotenv(key: str, value: str) -> str:
    """One line of act's secret file: a value with newlines (a PEM key) double-quoted, its
    newlines escaped, as godotenv reads them."""
    if "\n" not in value:
        return f"{key}={value}\n"
    escaped = value.replace("\n", "\\n")
    return f'{key}="{escaped}"\n'


def act(
    workdir: Path,
    event: str,
    workflow: str,
    payload: dict,
    secrets: dict[str, str],
    env: dict[str, str],
    variables: dict[str, str] | None = None,
    runners: tuple[str, ...] = ("ubuntu-latest",),
) -> subprocess.CompletedProcess[str]:
    """Run one workflow with act; the job runs on this host in a copy of `workdir`. `runners`:
    the `runs-on` labels act may run here (a job whose labels name none of them is skipped)."""
    event_file = workdir.parent / f"{workdir.name}-{event}.json"
    event_file.write_text(json.dumps(payload))
    secrets_file = workdir.parent / f"{workdir.name}.secrets"
    secrets_file.write_text("".join(_dotenv(key, value) for key, value in secrets.items()))
    uv = shutil.which("uv") or str(REPO_ROOT / ".tools" / "bin" / "uv")
    job_env = {
        "ACT_STUB_SOURCE": str(workdir),
        # What setup-uv and cosign-installer would put on PATH: our uv, and recording stubs
        # (cml, cosign, trivy). Given here rather than written to GITHUB_PATH by the stubs.
        "PATH": os.pathsep.join([str(Path(uv).parent), str(STUBS / "bin"), os.environ["PATH"]]),
        # Let Python cache bytecode lazily instead of compiling every package up front.
        "UV_SYNC_FLAGS": "",
        "PYTHONDONTWRITEBYTECODE": "",
        # github.repository (act would take it from the clone's origin, a local path): the
        # workflows compare it with the pull request's head repository.
        "GITHUB_REPOSITORY": "acme/penguins",
        **env,
    }
    command = [
        str(VENV_BIN / "act"),
        event,
        "--workflows",
        f".github/workflows/{workflow}",
        *(word for label in runners for word in ("--platform", f"{label}=-self-hosted")),
        "--eventpath",
        str(event_file),
        "--env-file",
        os.devnull,
        "--secret-file",
        str(secrets_file),
        *_stub_mappings(),
    ]
    for key, value in job_env.items():
        command += ["--env", f"{key}={value}"]
    for key, value in (variables or {}).items():
        command += ["--var", f"{key}={value}"]
    return subprocess.run(
        command,
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
        timeout=ACT_TIMEOUT,
        env={**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"},
    )


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "Job succeeded" in output
    return output
