"""A real Docker engine, base image and registry, started by the tests on this host.

Public registries are unreachable here, so the base image is built with debootstrap from
the configured Debian mirror (cached under ~/.cache/mlops-template) and imported. dockerd
gets its own socket, data root and no bridge network: every container and the build use
the host network, and all traffic stays on 127.0.0.1. Without the engine's packages the
tests skip with the reason; .ci/run installs them, so CI skips nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.support.processes import free_port, start_server, stop, wait_healthy
from tests.support.project import copy_repo, sh
from tests.support.servers import s3_env

DOCKER = Path("/usr/bin/docker")  # Debian's client: BuildKit (the one in /usr/local lacks it)
CACHE = Path.home() / ".cache" / "mlops-template"
BASE_REPO, BASE_TAG = "local/python", "3.11-bookworm"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True)
class Engine:
    env: dict[str, str]

    def ready(self) -> bool:
        probe = subprocess.run(
            [str(DOCKER), "version"], env=self.env, capture_output=True, timeout=10
        )
        return probe.returncode == 0

    def run(self, *args: str, check: bool = True, timeout: float = 600) -> str:
        result = subprocess.run(
            [str(DOCKER), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {result.stdout}\n{result.stderr}")
        return result.stdout.strip()


def _debian_mirror() -> str:
    """The Debian archive apt already uses here (the machine's mirror), for debootstrap."""
    for source in sorted(Path("/etc/apt").glob("sources.list*")) + sorted(
        Path("/etc/apt/sources.list.d").glob("*.sources")
    ):
        if not source.is_file():
            continue
        for line in source.read_text().splitlines():
            words = line.split()
            uri = words[1] if len(words) > 1 and words[0] in {"URIs:", "deb"} else ""
            if uri.rstrip("/").endswith("/debian"):
                return uri
    return "http://deb.debian.org/debian"


def _base_rootfs_tar() -> Path:
    """A minimal Debian bookworm with python3, as a tarball (built once, then cached)."""
    tarball = CACHE / "bookworm-python3.tar"
    if tarball.is_file():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    rootfs = CACHE / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates",
            "bookworm",
            str(rootfs),
            _debian_mirror(),
        ],
        check=True,
        capture_output=True,
        timeout=900,
    )
    partial = tarball.with_suffix(".partial")
    excluded = ["usr/share/doc", "usr/share/man", "usr/share/locale", "var/cache/apt"]
    subprocess.run(
        [
            "tar",
            "-C",
            str(rootfs),
            *(f"--exclude=./{path}" for path in excluded),
            "--exclude=./var/lib/apt/lists",
            "-cf",
            str(partial),
            ".",
        ],
        check=True,
    )
    partial.rename(tarball)
    shutil.rmtree(rootfs, ignore_errors=True)
    return tarball


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    missing = [
        tool for tool in ("dockerd", "debootstrap", "docker-registry") if shutil.which(tool) is None
    ] + ([] if DOCKER.exists() else [str(DOCKER)])
    if missing:
        pytest.skip(
            f"no Docker engine here: {', '.join(missing)} not installed "
            "(apt-get install docker.io debootstrap docker-registry; .ci/run does)"
        )
    root = Path(os.environ.get("MLOPS_DOCKER_ROOT", tmp_path_factory.mktemp("docker")))
    socket = root / "docker.sock"
    process = subprocess.Popen(
        [
            "dockerd",
            "--data-root",
            str(root / "data"),
            "--exec-root",
            str(root / "exec"),
            "--host",
            f"unix://{socket}",
            "--pidfile",
            str(root / "docker.pid"),
            "--bridge",
            "none",
            "--iptables=false",
        ],
        stdout=(root / "dockerd.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    env = {**os.environ, "DOCKER_HOST": f"unix://{socket}", "DOCKER_BUILDKIT": "1"}
    engine = Engine(env)
    try:
        deadline = time.monotonic() + 60
        while not engine.ready():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((root / "dockerd.log").read_text()[-3000:])
            time.sleep(0.3)
        with _base_rootfs_tar().open("rb") as tar:
            subprocess.run(
                [str(DOCKER), "import", "-c", 'CMD ["/bin/bash"]', "-", f"{BASE_REPO}:{BASE_TAG}"],
                stdin=tar,
                env=env,
                check=True,
                capture_output=True,
                timeout=300,
            )
        yield engine
    finally:
        stop(process)


@pytest.fixture(scope="session")
def image_context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository where `dvc repro` made the model (model.joblib, and
    model.onnx compiled from it) and its card."""
    project = copy_repo(tmp_path_factory.mktemp("image-context"))
    sh(project, "dvc", "repro", "train")
    sh(project, "mlops", "report", "card")
    return project


def build_image(engine: Engine, context: Path, tag: str, *build_args: str) -> str:
    """The repository's Dockerfile built for real in `context`, on the local base image;
    `build_args` as NAME=value."""
    secret = ["--secret", f"id=ca_bundle,src={CA_BUNDLE}"] if CA_BUNDLE.is_file() else []
    arguments = [f"BASE_REPO={BASE_REPO}", f"BASE_TAG={BASE_TAG}", *build_args]
    engine.run(
        "build",
        "--network",
        "host",
        *secret,
        *(word for argument in arguments for word in ("--build-arg", argument)),
        "-t",
        tag,
        str(context),
        timeout=1200,
    )
    return tag


@pytest.fixture(scope="session")
def image(engine: Engine, image_context: Path) -> str:
    """The image as released: the model compiled to ONNX, no scikit-learn."""
    return build_image(engine, image_context, "mlops-template:test")


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory, engine: Engine) -> Iterator[str]:
    """Distribution's registry on 127.0.0.1:5000 (another free port if 5000 is taken)."""
    root = tmp_path_factory.mktemp("registry")
    port = 5000 if _port_free(5000) else free_port()
    config = root / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    process = start_server(["docker-registry", "serve", str(config)], root / "registry.log")
    try:
        wait_healthy(f"http://127.0.0.1:{port}/v2/", process, root / "registry.log")
        yield f"127.0.0.1:{port}"
    finally:
        stop(process)


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="session")
def remote_env(s3_endpoint: str) -> dict[str, str]:
    """The committed remote (.dvc/config) itself, served by moto: its bucket is created there
    and botocore is pointed at moto by AWS_ENDPOINT_URL_S3, so no local config is needed
    (act's own checkout would not copy an untracked .dvc/config.local)."""
    import re

    import boto3

    config = (REPO_ROOT / ".dvc" / "config").read_text()
    bucket = re.search(r"url = s3://([^/\s]+)", config)
    assert bucket is not None, config
    env = {**s3_env(), "AWS_ENDPOINT_URL_S3": s3_endpoint}
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    ).create_bucket(Bucket=bucket.group(1))
    return env
