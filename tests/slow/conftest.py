"""Helpers and fixtures for the slow tests: repository copies, and real services on 127.0.0.1
(an MLflow tracking server, an S3 API served by moto)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

VENV_BIN = Path(sys.executable).parent
STARTUP_SECONDS = 90
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll `url` until it answers 200; fail with the server's log if it dies or never does."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: server exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    raise RuntimeError(f"{url}: not healthy after {STARTUP_SECONDS}s:\n{log.read_text()}")


def start_server(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server's whole process group (it forks workers)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _mlflow_server(root: Path, backend_uri: str) -> Iterator[str]:
    port = free_port()
    process = start_server(
        [
            str(VENV_BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            backend_uri,
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        root / "server.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(f"{url}/health", process, root / "server.log")
        yield url
    finally:
        stop(process)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` (SQLite backend, local artifact store) on a free loopback port."""
    root = tmp_path_factory.mktemp("mlflow-server")
    yield from _mlflow_server(root, f"sqlite:///{root / 'mlflow.db'}")


# Debian's (15 on bookworm) or Ubuntu's (16 on GitHub's runners): the newest installed.
PG_BIN = max(
    Path("/usr/lib/postgresql").glob("*/bin"),
    key=lambda bin_dir: float(bin_dir.parent.name),
    default=Path("/usr/lib/postgresql/15/bin"),
)


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """Debian's PostgreSQL 15, a throwaway cluster on a free loopback port; yields its URI."""
    if not (PG_BIN / "postgres").exists() or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL server not installed (apt-get install postgresql; make ci does)")
    # Outside pytest's private (0700) temp tree, so the postgres user can reach it.
    root = Path(tempfile.mkdtemp(prefix="mlops-postgres-"))
    data = root / "data"
    shutil.chown(root, "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_postgres, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    process = start_server(
        [
            *as_postgres,
            str(PG_BIN / "postgres"),
            "-D",
            str(data),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-k",
            str(root),
        ],
        root / "postgres.log",
    )
    try:
        deadline = time.monotonic() + 60
        while (
            subprocess.run(
                ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c", "select 1"],
                capture_output=True,
            ).returncode
            != 0
        ):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((root / "postgres.log").read_text()[-3000:])
            time.sleep(0.2)
        subprocess.run(
            ["createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow"],
            check=True,
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        stop(process)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_postgres_server(
    tmp_path_factory: pytest.TempPathFactory, postgres: str
) -> Iterator[str]:
    """A real `mlflow server` on a PostgreSQL backend: the shared-server set-up."""
    yield from _mlflow_server(tmp_path_factory.mktemp("mlflow-postgres"), postgres)


S3_BUCKET = "dvc-test"
S3_KEY = "testing"  # moto accepts any credentials


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3 API (moto server) on a free loopback port, with an empty bucket."""
    import boto3

    root = tmp_path_factory.mktemp("moto")
    port = free_port()
    process = start_server(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], root / "moto.log"
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(f"{url}/moto-api/", process, root / "moto.log")
        boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_KEY,
            region_name="us-east-1",
        ).create_bucket(Bucket=S3_BUCKET)
        yield url
    finally:
        stop(process)


def use_s3_remote(repo: Path, endpoint: str, prefix: str) -> None:
    """Point the committed `storage` remote at the moto bucket (local, uncommitted config)."""
    sh(repo, "dvc", "remote", "modify", "--local", "storage", "url", f"s3://{S3_BUCKET}/{prefix}")
    sh(repo, "dvc", "remote", "modify", "--local", "storage", "endpointurl", endpoint)


def s3_env() -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_KEY}


@dataclass(frozen=True)
class Forge:
    """A bare `origin` whose main holds the template, with main's outputs in the S3 remote."""

    root: Path
    origin: Path
    endpoint: str


@pytest.fixture(scope="module")
def forge(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Forge:
    root = tmp_path_factory.mktemp("forge")
    origin = root / "origin.git"
    sh(root, "git", "init", "-q", "--bare", "-b", "main", str(origin))
    template = copy_repo(root / "template")
    use_s3_remote(template, s3_endpoint, "store")
    sh(template, "dvc", "repro")
    sh(template, "dvc", "push", env=s3_env())
    sh(template, "git", "add", "-A")
    sh(template, "git", "commit", "-q", "-m", "main's run", check=False)
    sh(template, "git", "remote", "add", "origin", str(origin))
    sh(template, "git", "push", "-q", "origin", "main")
    return Forge(root, origin, s3_endpoint)


def dvc_remote_secrets() -> dict[str, str]:
    """The secrets the workflows map to the S3 credentials: the write key (publishing jobs)
    and the read-only key (jobs that run pull-request code or read production's logs). moto
    takes any key; the tests that check which job holds which read the workflows."""
    return {
        "DVC_REMOTE_ACCESS_KEY_ID": S3_KEY,
        "DVC_REMOTE_SECRET_ACCESS_KEY": S3_KEY,
        "DVC_REMOTE_READ_ACCESS_KEY_ID": S3_KEY,
        "DVC_REMOTE_READ_SECRET_ACCESS_KEY": S3_KEY,
    }


# --- running the workflows with act ---------------------------------------------------

STUBS = Path(__file__).parent / "act_stubs"
STUB_FOR = {
    "actions/checkout": "checkout",
    "astral-sh/setup-uv": "setup-uv",
    "actions/upload-artifact": "upload-artifact",
    "actions/download-artifact": "download-artifact",
    "docker/login-action": "login-action",
    "actions/attest-build-provenance": "attest-build-provenance",
    "sigstore/cosign-installer": "cosign-installer",
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
    secrets_file.write_text("".join(f"{key}={value}\n" for key, value in secrets.items()))
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
