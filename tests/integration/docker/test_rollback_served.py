"""A rollback changes the image that serves. Two releases of the real image, pushed to a
local registry with different digests (the second is the first with one more label: a code
change that kept the model), recorded on their registry versions with `mlops deploy record-image`
as release.yml records them, against a real MLflow server. Staging serves the second, run
for real with `podman kube play` (podman.py beside this file); `mlops deploy rollback --env
staging` moves `champion` back and sets the overlay to the first release's digest; played again, the
pod runs the first image, by digest, and answers."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.integration.docker.conftest import Engine
from tests.integration.docker.podman import (
    AUTHORIZATION,
    PlayedPod,
    Podman,
    deploy_bump,
    isolated_podman,
    missing,
    played,
)
from tests.integration.docker.podman import push as push_image
from tests.support.act import STUBS
from tests.support.overlays import read_overlay
from tests.support.project import copy_repo, sh

pytestmark = pytest.mark.docker

ENV = "staging"
REPOSITORY = "acme/penguins"
NAME = "rollback-served"  # a model of its own: the MLflow server may be the session's
OVERLAYS = Path("deploy/k8s/overlays")


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    lacking = missing()
    if lacking:
        pytest.skip(
            f"no podman here: {', '.join(lacking)} not installed "
            "(apt-get install podman catatonit runc slirp4netns; .ci/provision does)"
        )
    with isolated_podman(tmp_path_factory.mktemp("podman-rollback")) as isolated:
        yield isolated


def relabelled(engine: Engine, image: str, folder: Path) -> str:
    """`image` with one more label: the same service and model, another digest."""
    folder.mkdir()
    (folder / "Dockerfile").write_text(
        f'FROM {image}\nLABEL org.opencontainers.image.description="the next release"\n'
    )
    tag = "mlops-template:rollback-next"
    engine.run("build", "--network", "none", "-t", tag, str(folder))
    return tag


def answers(pod: PlayedPod, example: dict) -> str:
    """The model version the pod's prediction names."""
    response = httpx.post(f"{pod.url}/predict", json=example, headers=AUTHORIZATION, timeout=30)
    assert response.status_code == 200, response.text
    return str(response.json()["model_version"])


def test_a_rollback_serves_the_previous_champions_image_again(
    engine: Engine,
    image: str,
    registry: str,
    podman: Podman,
    mlflow_server: str,
    tmp_path: Path,
) -> None:
    project = copy_repo(tmp_path / "project")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["registry"]["model_name"] = NAME
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    example = yaml.safe_load((project / "data" / "contract.yaml").read_text())["example"]
    # The repository names the identity whose signature a rollback requires (release.yml on
    # main); cosign is the Sigstore stand-in (act_stubs/bin/cosign) with a ledger of its own.
    env = {"MLFLOW_TRACKING_URI": mlflow_server, "GITHUB_ACTIONS": "", "GITHUB_TOKEN": "",
           "DEPLOY_PR_TOKEN": "", "GITHUB_REPOSITORY": REPOSITORY,
           "ACT_STUB_SIGSTORE": str(tmp_path / "sigstore"),
           "PATH": f"{STUBS / 'bin'}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip

    first = push_image(engine, image, registry, "release-1")
    second = push_image(engine, relabelled(engine, image, tmp_path / "next"), registry, "release-2")
    assert second.digest != first.digest
    assert second.model_version == first.model_version

    # The registry as two releases leave it: version 2 promoted over version 1, each version
    # naming the image its release pushed.
    client = MlflowClient(tracking_uri=mlflow_server)
    client.create_registered_model(NAME)
    for number in (1, 2):
        run = client.create_run(client.create_experiment(f"{NAME}-{number}")).info.run_id
        client.create_model_version(NAME, source=f"runs:/{run}/model", run_id=run)
    for version, shipped in (("1", first), ("2", second)):
        recorded = sh(project, "mlops", "deploy", "record-image", "--version", version, "--image",
                      shipped.image, "--digest", shipped.digest, "--model-version",
                      shipped.model_version, env=env)  # fmt: skip
        assert (
            f"version {version} is served by {shipped.reference}"
            in recorded.stdout + recorded.stderr
        )
    for shipped in (first, second):  # each signed by main's release, as release.yml does
        sh(project, "cosign", "sign", "--yes", shipped.reference, env={**env,
           "ACT_STUB_RECORD": str(tmp_path), "GITHUB_WORKFLOW_REF":
           f"{REPOSITORY}/.github/workflows/release.yml@refs/heads/main"})  # fmt: skip
    client.set_registered_model_alias(NAME, "champion", "2")
    client.set_model_version_tag(NAME, "2", "previous_champion", "1")

    # Staging serves the second release (its deploy pull request, merged).
    deploy_bump(project, ENV, second)
    with played(podman, project, ENV) as pod:
        assert pod.image_digest == second.digest
        assert answers(pod, example) == second.model_version

    rolled = sh(project, "mlops", "deploy", "rollback", "--env", ENV, "--no-pr", env=env)
    assert "champion is version 1 (was 2)" in rolled.stdout
    assert f"+    digest: {first.digest}" in rolled.stdout
    assert read_overlay(project / OVERLAYS, ENV) == first
    assert client.get_model_version_by_alias(NAME, "champion").version == "1"

    # The rollback's overlay, played: the first release's image runs again, by digest.
    with played(podman, project, ENV) as pod:
        assert pod.image_digest == first.digest
        assert pod.image_digest != second.digest
        assert answers(pod, example) == first.model_version
    shutil.rmtree(tmp_path / "next")
