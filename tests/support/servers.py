"""Real services on 127.0.0.1 as session fixtures (an MLflow tracking server on SQLite or
PostgreSQL, an S3 API served by moto), and a forge: a bare origin with main's outputs in S3.
Registered for every test by tests/conftest.py."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import VENV_BIN, free_port, start_server, stop, wait_healthy
from tests.support.project import copy_repo, sh


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


def monitoring_secrets() -> dict[str, str]:
    """The key that reads production's prediction logs and feedback (retrain.yml's
    environment `monitoring`), apart from the DVC keys pull requests get."""
    return {"MONITORING_READ_ACCESS_KEY_ID": S3_KEY, "MONITORING_READ_SECRET_ACCESS_KEY": S3_KEY}
