"""A rendered deploy/k8s overlay run for real with `podman kube play`: the overlay's own
Deployment (init container, ConfigMap, probes, security context, resources) on this host.

podman keeps everything in one folder of the test's (`isolated_podman`): storage, run state,
network configuration and a containers.conf of its own, so the host's podman state is never
read or changed. `played` renders an overlay of a repository copy with kustomize, keeps what
podman plays, adapts the least it must (`playable`, every change listed there), plays it and
waits until the service is ready on a loopback port; the pod is removed on the way out. The
pod's network is slirp4netns (a user-mode stack in the pod's own network namespace): no
bridge, firewall rule or DNS server on the host, and the service's port on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlops_template.release.gitops import Release, validate_release
from tests.integration.docker.conftest import Engine
from tests.support.processes import VENV_BIN, free_port

# The kinds podman plays; the overlay's Namespace, ServiceAccount, Service, HPA, PDB and
# NetworkPolicy have no podman counterpart (a cluster's API server and network enforce them).
PLAYED_KINDS = ("ConfigMap", "Deployment")
SERVICE = "service"  # the service's container in deploy/k8s/base/deployment.yaml
# The API key the played pod's Secret holds (in a cluster: created by hand, never committed).
API_KEY = "podman-test-key-" + "0123456789abcdef" * 3
AUTHORIZATION = {"Authorization": f"Bearer {API_KEY}"}
# runc fails to set the default rlimits here ("setting rlimit ... operation not permitted"):
# keep the image's. k8s-file logs in podman's own folder (the default may be journald).
CONTAINERS_CONF = '[containers]\ndefault_ulimits = []\nlog_driver = "k8s-file"\n'
# overlay: measured here, a pod starts in 0.5 s (vfs: 1.1 s, and it copies every layer).
STORAGE_DRIVER = "overlay"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # podman's, and where its helpers are found


def missing() -> list[str]:
    """What `played` needs and this host lacks: podman, catatonit (podman builds the pod's
    pause image from it), runc (crun fails on hybrid cgroups), slirp4netns (the pod's
    network)."""
    tools = ("podman", "catatonit", "runc", "slirp4netns")
    return [tool for tool in tools if shutil.which(tool, path=SYSTEM_PATH) is None]


@dataclass(frozen=True)
class Podman:
    """podman with all its state under `root`, but for its run state in `runroot`: podman
    refuses a runroot longer than 50 characters, and pytest's temporary paths grow with the
    session's number and the fixture's name."""

    root: Path
    runroot: Path

    def command(self, *args: str) -> list[str]:
        return [
            "podman",
            "--root", str(self.root / "storage"),
            "--runroot", str(self.runroot),
            "--tmpdir", str(self.root / "tmp"),
            "--network-config-dir", str(self.root / "networks"),
            "--storage-driver", STORAGE_DRIVER,
            "--runtime", "runc",  # crun fails on this machine's hybrid cgroups
            "--events-backend", "none",  # else an events log in /run/libpod
            *args,
        ]  # fmt: skip

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        result = subprocess.run(
            self.command(*args), env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {result.stdout}\n{result.stderr}")
        return result.stdout.strip()

    def logs(self, container: str) -> str:
        """The container's output, stdout and stderr (`podman logs` keeps them apart)."""
        return subprocess.run(
            self.command("logs", container), env=self.env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, timeout=60,
        ).stdout  # fmt: skip

    @property
    def conf(self) -> Path:
        return self.root / "containers.conf"

    @property
    def env(self) -> dict[str, str]:
        return {
            "PATH": SYSTEM_PATH,
            "CONTAINERS_CONF": str(self.conf),
            "TMPDIR": str(self.root / "tmp"),  # image pulls stage there (else /var/tmp)
        }


@contextmanager
def isolated_podman(root: Path) -> Iterator[Podman]:
    """podman in `root`; the pods, containers and storage removed after."""
    podman = Podman(root, Path(tempfile.mkdtemp(prefix="podrun-", dir="/tmp")))
    assert len(str(podman.runroot)) <= 50, podman.runroot
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    podman.conf.write_text(CONTAINERS_CONF)
    try:
        yield podman
    finally:
        podman.run("pod", "rm", "--all", "--force", "--time", "0", check=False)
        podman.run("container", "rm", "--all", "--force", "--time", "0", check=False)
        # Removing the folder is 7x faster than `podman system reset` (measured: 0.4 s against
        # 3 s for a 130 MB image); the reset only when something is still mounted there.
        mounts = Path("/proc/self/mountinfo").read_text()
        if f" {root}/" in mounts or f" {podman.runroot}/" in mounts:
            podman.run("system", "reset", "--force", check=False, timeout=300)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(podman.runroot, ignore_errors=True)


def push(engine: Engine, image: str, registry: str, tag: str) -> Release:
    """`image` (the Docker engine's) pushed to `registry` as mlops-template:`tag`: the
    repository, the pushed digest and the version of the model the image serves (the first 12
    hex digits of the sha256 it pins), as a release records them."""
    repository = f"{registry}/mlops-template"
    engine.run("tag", image, f"{repository}:{tag}")
    pushed = engine.run("push", f"{repository}:{tag}")
    digest = re.search(r"digest: (sha256:[0-9a-f]{64})", pushed)
    assert digest is not None, pushed
    pin = engine.run(
        "run", "--rm", "--network", "none", "--entrypoint", "cat", image,
        "/etc/mlops-template/model.sha256",
    )  # fmt: skip
    return validate_release(repository, digest.group(1), pin[:12])


def deploy_bump(project: Path, env: str, release: Release) -> None:
    """`mlops deploy bump` in `project` (a copy holding deploy/k8s), as a deploy does it."""
    result = subprocess.run(
        [
            str(VENV_BIN / "mlops"), "deploy", "bump", "--env", env, "--image", release.image,
            "--digest", release.digest, "--model-version", release.model_version,
        ],
        cwd=project, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def render(project: Path, env: str) -> list[dict[str, Any]]:
    """`kubectl kustomize` of the overlay `env` in `project` (a copy holding deploy/k8s)."""
    overlay = project / "deploy" / "k8s" / "overlays" / env
    rendered = subprocess.run(
        [str(VENV_BIN / "kubectl"), "kustomize", str(overlay)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return list(yaml.safe_load_all(rendered))


def playable(
    objects: list[dict[str, Any]], host_port: int, secrets_dir: Path
) -> list[dict[str, Any]]:
    """The rendered objects as podman plays them. The pod spec stays as rendered (security
    contexts, probes, init container, volumes, resources, grace period) except for:

    - `replicas: 1`: in a cluster the HorizontalPodAutoscaler owns the count (the Deployment
      has none); one pod here, whose host port can be bound once.
    - `hostPort` (on 127.0.0.1) for the service's port 8000: no Service or kube-proxy here to
      reach the pod through; loopback only.
    - `restartPolicy: OnFailure` instead of Deployment's implied `Always`: podman 4.3 applies
      the pod's policy to init containers too (containers/podman#16343), restarts the one
      that succeeded and never starts the service. OnFailure still restarts a crashed one.
    - the API key's Secret volume as a read-only host folder holding the same file (API_KEY,
      at the same mount path): podman 4.3 crashes on a Secret volume with `items`
      (VolumeFromSecret: nil pointer). A cluster's Secret is created by hand (docs/deploy.md).
    - `MLOPS_MODEL_SIGNATURE=off` instead of the overlay's `sigstore`: no model here is signed
      keylessly (that needs GitHub's OIDC token and Sigstore's servers); the image's own test
      verifies a signed model at load (test_image.py, test_a_signed_image_verifies_...).
    """
    kept = [dict(item) for item in objects if item["kind"] in PLAYED_KINDS]
    (deployment,) = [item for item in kept if item["kind"] == "Deployment"]
    deployment["spec"] = {**deployment["spec"], "replicas": 1}
    pod = deployment["spec"]["template"]["spec"]
    assert "restartPolicy" not in pod, pod["restartPolicy"]
    pod["restartPolicy"] = "OnFailure"
    (service,) = [item for item in pod["containers"] if item["name"] == SERVICE]
    (port,) = [port for port in service["ports"] if port["name"] == "http"]
    port.update(hostPort=host_port, hostIP="127.0.0.1")
    for volume in pod["volumes"]:
        secret = volume.pop("secret", None)
        if secret is None:
            continue
        (item,) = secret["items"]
        folder = secrets_dir / secret["secretName"]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / item["path"]).write_text(API_KEY)
        (folder / item["path"]).chmod(0o444)
        folder.chmod(0o755)
        volume["hostPath"] = {"path": str(folder), "type": "Directory"}
    (mode,) = [item for item in service["env"] if item["name"] == "MLOPS_MODEL_SIGNATURE"]
    assert mode["value"] == "sigstore", mode
    mode["value"] = "off"
    return kept


@dataclass(frozen=True)
class PlayedPod:
    podman: Podman
    manifest: Path  # what podman played
    pod: str
    container: str  # the service's
    url: str  # http://127.0.0.1:<host port>
    grace_seconds: int  # terminationGracePeriodSeconds
    annotations: dict[str, str]  # the pod template's (mlops-template/model-version)

    def inspect(self) -> dict[str, Any]:
        """`podman inspect` of the service's container."""
        (found,) = json.loads(self.podman.run("container", "inspect", self.container))
        return found

    @property
    def image_digest(self) -> str:
        """The digest of the image the service's container runs (its manifest's, as pulled)."""
        return str(self.inspect()["ImageDigest"])

    @property
    def image(self) -> str:
        return str(self.inspect()["ImageName"])

    def service_spec(self) -> dict[str, Any]:
        """The service's container as played (from the manifest)."""
        deployment = next(
            item for item in yaml.safe_load_all(self.manifest.read_text())
            if item["kind"] == "Deployment"
        )  # fmt: skip
        containers = deployment["spec"]["template"]["spec"]["containers"]
        return next(item for item in containers if item["name"] == SERVICE)

    def logs(self) -> str:
        """The service's output (the init container's is gone: podman removes it once done)."""
        return self.podman.logs(self.container)

    def stop(self) -> None:
        """Stop the service as the kubelet would: SIGTERM, SIGKILL after the grace period
        (podman 4.3 ignores terminationGracePeriodSeconds: its own default is 10 s); the pod
        after it. Not `podman pod stop`: it signals the pod's infra container at the same time,
        whose exit takes the pod's network (and port) away while the service still drains."""
        self.podman.run(
            "stop", "--time", str(self.grace_seconds), self.container,
            timeout=self.grace_seconds + 30,
        )  # fmt: skip
        self.podman.run("pod", "stop", self.pod, timeout=60)


@contextmanager
def played(
    podman: Podman, project: Path, env: str, ready_within: float = 90
) -> Iterator[PlayedPod]:
    """The overlay `env` of `project` played until its service answers /health/ready, then
    removed. Its image is pulled from wherever the overlay names it, over plain HTTP (a local
    registry). One played pod at a time per `podman`."""
    objects = playable(render(project, env), free_port(), podman.root / "secrets")
    manifest = podman.root / f"{env}.yaml"
    manifest.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    (deployment,) = [item for item in objects if item["kind"] == "Deployment"]
    template = deployment["spec"]["template"]
    (service,) = [item for item in template["spec"]["containers"] if item["name"] == SERVICE]
    (port,) = [port for port in service["ports"] if "hostPort" in port]
    try:
        podman.run(
            "kube", "play", "--network", "slirp4netns", "--tls-verify=false", str(manifest),
            timeout=300,
        )  # fmt: skip
        (pod,) = json.loads(podman.run("pod", "ps", "--format", "json"))
        started = PlayedPod(
            podman=podman,
            manifest=manifest,
            pod=pod["Name"],
            container=f"{pod['Name']}-{SERVICE}",  # podman's <pod>-<container>
            url=f"http://127.0.0.1:{port['hostPort']}",
            grace_seconds=template["spec"]["terminationGracePeriodSeconds"],
            annotations=template["metadata"].get("annotations", {}),
        )
        _wait_ready(started, ready_within)
        yield started
    finally:
        podman.run("kube", "down", str(manifest), check=False, timeout=60)


def _wait_ready(pod: PlayedPod, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(f"{pod.url}/health/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        state = pod.inspect()["State"]
        if state["Status"] == "exited" or time.monotonic() > deadline:
            everything = pod.podman.run("ps", "--all", check=False)
            raise AssertionError(f"not ready: {state}\n{everything}\n{pod.logs()}")
        time.sleep(0.3)
