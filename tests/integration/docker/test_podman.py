"""The staging overlay run for real: `podman kube play` of the rendered Deployment, its image
pushed to a local registry and set with `mlops deploy bump` (podman.py beside this file).
The pod becomes ready, serves the model the overlay names with the ConfigMap's serve settings, runs
restricted, and drains on stop. One pod for the module: the drain test, last, stops it.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from mlops_template.config import load_params
from mlops_template.contract import Contract, load_contract
from mlops_template.release.gitops import ANNOTATION, Release
from tests.conftest import REPO_ROOT
from tests.integration.docker.conftest import Engine
from tests.integration.docker.podman import (
    AUTHORIZATION,
    PlayedPod,
    Podman,
    deploy_bump,
    isolated_podman,
    missing,
    played,
    push,
)

pytestmark = pytest.mark.docker

ENV = "staging"
BATCH_ROWS = 3  # serve.max_batch_rows in the copy's ConfigMap; the image's params.yaml: 1000


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    lacking = missing()
    if lacking:
        pytest.skip(
            f"no podman here: {', '.join(lacking)} not installed "
            "(apt-get install podman catatonit runc slirp4netns; .ci/provision does)"
        )
    with isolated_podman(tmp_path_factory.mktemp("podman")) as isolated:
        yield isolated


@pytest.fixture(scope="module")
def release(engine: Engine, image: str, registry: str) -> Release:
    return push(engine, image, registry, "podman")


@pytest.fixture(scope="module")
def pod(
    podman: Podman, release: Release, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PlayedPod]:
    """deploy/k8s copied, one serve setting changed in its ConfigMap source, the staging
    overlay bumped to the pushed image and played."""
    project = tmp_path_factory.mktemp("overlay")
    shutil.copytree(REPO_ROOT / "deploy" / "k8s", project / "deploy" / "k8s")
    serve = project / "deploy" / "k8s" / "base" / "serve.yaml"
    text, count = re.subn(r"(?m)^(  max_batch_rows: )\d+", rf"\g<1>{BATCH_ROWS}", serve.read_text())
    assert count == 1, text
    serve.write_text(text)
    deploy_bump(project, ENV, release)
    with played(podman, project, ENV) as started:
        yield started


def project_contract() -> Contract:
    """The project's data contract, which the image carries."""
    return load_contract(REPO_ROOT / load_params(REPO_ROOT / "params.yaml").data.contract)


def test_the_pod_serves_the_model_and_image_its_overlay_names(
    pod: PlayedPod, release: Release
) -> None:
    assert pod.image_digest == release.digest
    assert pod.image == release.reference
    assert pod.annotations[ANNOTATION] == release.model_version
    example = dict(project_contract().example)
    with httpx.Client(base_url=pod.url, timeout=5, headers=AUTHORIZATION) as client:
        assert client.get("/health/ready").json()["model_version"] == release.model_version
        answer = client.post("/predict", json=example)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == release.model_version
    if project_contract().is_classification:
        assert answer.json()["prediction"] in project_contract().classes


def test_the_configmaps_serve_section_reached_the_service(pod: PlayedPod) -> None:
    """The init container merged the ConfigMap's serve section into the image's params."""
    assert load_params(REPO_ROOT / "params.yaml").serve.max_batch_rows > BATCH_ROWS + 1
    record = dict(project_contract().example)
    with httpx.Client(base_url=pod.url, timeout=5, headers=AUTHORIZATION) as client:
        fits = client.post("/predict/batch", json={"records": [record] * BATCH_ROWS})
        too_many = client.post("/predict/batch", json={"records": [record] * (BATCH_ROWS + 1)})
    assert fits.status_code == 200, fits.text
    assert too_many.status_code == 422, too_many.text


def quantity(value: str) -> float:
    """A Kubernetes quantity as a number: 512Mi, 1, 250m."""
    for suffix, factor in (("Ki", 2**10), ("Mi", 2**20), ("Gi", 2**30), ("m", 1e-3)):
        if value.endswith(suffix):
            return float(value.removesuffix(suffix)) * factor
    return float(value)


def status_fields(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def test_the_running_container_is_restricted(pod: PlayedPod) -> None:
    """What the pod's securityContext and resources asked for, as podman set it up and as the
    kernel applies it to the running service process."""
    inspected = pod.inspect()
    host = inspected["HostConfig"]
    assert inspected["Config"]["User"] == "10001:10001"
    assert host["ReadonlyRootfs"] is True
    assert host["Privileged"] is False
    assert host["CapAdd"] == []
    assert "no-new-privileges" in host["SecurityOpt"]
    assert not any(option.startswith("seccomp=unconfined") for option in host["SecurityOpt"])
    limits = pod.service_spec()["resources"]["limits"]
    assert host["Memory"] == quantity(limits["memory"])
    assert host["NanoCpus"] == quantity(limits["cpu"]) * 1e9
    process = status_fields(inspected["State"]["Pid"])
    assert process["Uid"].split() == ["10001"] * 4
    assert process["Gid"].split() == ["10001"] * 4
    for capabilities in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(process[capabilities], 16) == 0, capabilities
    assert process["NoNewPrivs"] == "1"
    assert process["Seccomp"] == "2"  # a filter (RuntimeDefault), not disabled
    mounts = Path(f"/proc/{inspected['State']['Pid']}/mountinfo").read_text().splitlines()
    (root,) = [line.split() for line in mounts if line.split()[4] == "/"]
    assert "ro" in root[5].split(","), root


def send_head_and_half(url: str, body: bytes) -> socket.socket:
    """A /predict request whose headers and first half of body are sent: in flight."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        f"Authorization: {AUTHORIZATION['Authorization']}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body[: len(body) // 2])
    return sock


def watch_drain(url: str, body: bytes, within: float) -> tuple[list[int], list[int]]:
    """Fresh requests until the service stops accepting: (/health/ready statuses, /predict
    statuses)."""
    ready: list[int] = []
    predicted: list[int] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            ready.append(httpx.get(f"{url}/health/ready", timeout=2).status_code)
            headers = {"Content-Type": "application/json", **AUTHORIZATION}
            predicted.append(
                httpx.post(f"{url}/predict", content=body, headers=headers, timeout=5).status_code
            )
        except httpx.TransportError:
            if 503 in ready:  # drained: the listener is closed
                return ready, predicted
        time.sleep(0.05)
    raise AssertionError(f"still accepting after {within} s: {ready[-5:]} {predicted[-5:]}")


def test_it_drains_on_stop(pod: PlayedPod) -> None:
    """Last (it stops the module's pod). A request begun before the stop, its body held back
    until the service closes its listener, still gets its answer; meanwhile the service is not
    ready but answers every prediction (no 5xx), and it exits by itself (status 0) within
    terminationGracePeriodSeconds."""
    body = json.dumps(dict(project_contract().example)).encode()
    in_flight = send_head_and_half(pod.url, body)
    stopped: dict[str, Any] = {}

    def stop() -> None:
        began = time.monotonic()
        try:
            pod.stop()
        except BaseException as error:  # reported below, in the test's thread
            stopped["error"] = error
        stopped["seconds"] = time.monotonic() - began

    stopper = threading.Thread(target=stop)
    stopper.start()
    try:
        ready, predicted = watch_drain(pod.url, body, within=pod.grace_seconds)
        in_flight.sendall(body[len(body) // 2 :])
        response = http.client.HTTPResponse(in_flight)
        response.begin()
        answer = response.read()
    finally:
        in_flight.close()
        stopper.join(timeout=pod.grace_seconds + 40)
    assert not stopper.is_alive()
    assert response.status == 200, answer
    assert "prediction" in json.loads(answer)
    assert 503 in ready, ready  # draining (not ready), and still serving:
    assert set(predicted) == {200}, predicted
    assert "error" not in stopped, stopped
    assert stopped["seconds"] < pod.grace_seconds, stopped
    state = pod.inspect()["State"]
    logs = pod.logs()
    assert (state["Status"], state["ExitCode"]) == ("exited", 0), logs
    assert "not ready; shutting down in" in logs
    assert "Application shutdown complete" in logs
    assert "shutdown not finished" not in logs  # the watchdog had nothing to do
