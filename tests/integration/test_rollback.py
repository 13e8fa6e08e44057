"""A rollback changes what is served, against a real MLflow server, through the CLI: release
v1 (image digest A), release v2 (B), the same model again with new code (B2), each recorded
on its registry version (`mlops deploy record-image`, as release.yml runs it) and deployed to
production (`mlops deploy bump` and a commit, as a merged deploy pull request); then
`mlops deploy rollback` sets production's overlay back to A and `champion` back to v1, recorded on
both versions, and `mlops deploy history` lists A, B2, B, A with the registry's versions; the next
release refuses the withdrawn version 2, and a second rollback goes no further back. A hostile
value in a recorded tag is refused with nothing changed, and so is an image main's release
workflow did not sign (the cosign stand-in on PATH verifies only what it signed for that
identity: act_stubs/bin/cosign)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from mlops_template.release import gitops
from tests.integration.test_registry import WEAK, _set_model
from tests.support.act import STUBS
from tests.support.overlays import read_overlay
from tests.support.project import copy_repo, sh, use_test_table

pytestmark = pytest.mark.slow

NAME = "rollback-test"  # not test_registry.py's model: the server is shared by the session
IMAGE = "ghcr.io/acme/penguins"
A, B, B2 = ("sha256:" + digits * 32 for digits in ("a1", "b2", "b3"))
OVERLAYS = Path("deploy/k8s/overlays")
REPOSITORY = "acme/penguins"
IDENTITY = f"https://github.com/{REPOSITORY}/.github/workflows/release.yml@refs/heads/main"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_repo(tmp_path_factory.mktemp("rollback"))
    use_test_table(root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["registry"]["model_name"] = NAME
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # Rollbacks, not behaviour: the weak first release fails the contract's behaviour checks
    # (test_registry covers that refusal), so this contract declares none.
    contract_path = root / params["data"]["contract"]
    contract = yaml.safe_load(contract_path.read_text())
    contract.pop("behaviour", None)
    contract_path.write_text(yaml.safe_dump(contract, sort_keys=False))
    return root


class Project:
    def __init__(self, root: Path, server: str) -> None:
        self.root = root
        # No GitHub: not in Actions, no token (the rollback prepares the overlay only). The
        # repository names the identity that must have signed; cosign is the stand-in.
        self.env = {"MLFLOW_TRACKING_URI": server, "GITHUB_ACTIONS": "", "GITHUB_TOKEN": "",
                    "DEPLOY_PR_TOKEN": "", "GITHUB_REPOSITORY": REPOSITORY,
                    "ACT_STUB_SIGSTORE": str(root.parent / "sigstore"),
                    "PATH": f"{STUBS / 'bin'}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip

    def sign(self, shipped: gitops.Release) -> None:
        """release.yml's keyless signature of the pushed digest (main's release workflow)."""
        sh(self.root, "cosign", "sign", "--yes", shipped.reference, env={**self.env,
           "ACT_STUB_RECORD": str(self.root.parent), "GITHUB_WORKFLOW_REF":
           IDENTITY.removeprefix("https://github.com/")})  # fmt: skip

    def mlops(self, *args: str, check: bool = True) -> str:
        result = sh(self.root, "mlops", *args, env=self.env, check=check)
        return result.stdout + result.stderr

    def release(self, digest: str, signed: bool = True) -> tuple[str, gitops.Release]:
        """release.yml's publish job: the gate, the push (digest), its signature, the
        registry's record."""
        outcome = re.search(
            r"release: (promoted|unchanged): version (\d+)", self.mlops("model", "release")
        )
        assert outcome is not None
        version = outcome.group(2)
        served = (self.root / "models" / "model.onnx.sha256").read_text()[:12]
        shipped = gitops.Release(IMAGE, digest, served)
        recorded = self.mlops("deploy", "record-image", "--version", version, "--image", IMAGE,
                              "--digest", digest, "--model-version", served)  # fmt: skip
        assert f"version {version} is served by {shipped.reference}" in recorded
        if signed:
            self.sign(shipped)
        return version, shipped

    def deploy(self, shipped: gitops.Release, number: int) -> None:
        """The production deploy pull request, merged."""
        self.mlops("deploy", "bump", "--env", "production", "--image", shipped.image, "--digest",
                   shipped.digest, "--model-version", shipped.model_version)  # fmt: skip
        sh(self.root, "git", "add", "-A")
        sh(self.root, "git", "commit", "-qm", f"Merge pull request #{number}")

    def production(self) -> gitops.Release:
        return read_overlay(self.root / OVERLAYS, "production")


def records(client: MlflowClient, version: str, event: str) -> list[dict]:
    tags = client.get_model_version(NAME, version).tags
    return [json.loads(value) for key, value in sorted(tags.items())
            if key.startswith(f"{event}.")]  # fmt: skip


def test_a_rollback_puts_the_previous_champions_image_back(
    project: Path, mlflow_server: str
) -> None:
    client = MlflowClient(tracking_uri=mlflow_server)
    site = Project(project, mlflow_server)

    _set_model(project, WEAK)
    sh(project, "dvc", "repro")
    v1, first = site.release(A, signed=False)  # signed below, after a refused rollback
    site.deploy(first, 1)
    default = yaml.safe_load((Path(__file__).parents[2] / "params.yaml").read_text())["model"]
    _set_model(project, default)
    sh(project, "dvc", "repro")
    v2, second = site.release(B)
    assert (v1, v2) == ("1", "2")
    assert second.model_version != first.model_version
    site.deploy(second, 2)
    # The same model with new code: the gate says unchanged, and version 2 now records the
    # newer image (the audit both); a re-run release records nothing twice.
    v2_again, newer = site.release(B2)
    assert v2_again == "2"
    assert "already records" in site.mlops(
        "deploy", "record-image", "--version", "2", "--image", IMAGE, "--digest", B2,
        "--model-version", newer.model_version,
    )  # fmt: skip
    assert [record["digest"] for record in records(client, "2", "image")] == [B, B2]
    assert json.loads(client.get_model_version(NAME, "2").tags["image"])["digest"] == B2
    site.deploy(newer, 3)
    assert site.production().digest == B2

    # A hostile recorded value is refused: nothing moves, nothing is written.
    good = client.get_model_version(NAME, "1").tags["image"]
    hostile = json.dumps({"image": IMAGE, "digest": A + "\n  - name: evil",
                          "model_version": first.model_version})  # fmt: skip
    client.set_model_version_tag(NAME, "1", "image", hostile)
    refused = site.mlops("deploy", "rollback", "--no-pr", check=False)
    assert "registry version 1: the recorded image is refused: digest" in refused
    assert client.get_model_version_by_alias(NAME, "champion").version == "2"
    assert sh(project, "git", "status", "--porcelain", str(OVERLAYS)).stdout == ""
    client.set_model_version_tag(NAME, "1", "image", good)

    # Version 1's recorded image carries no signature by main's release: refused, nothing
    # moves. (Once release.yml's signature is there, the same rollback goes through.)
    refused = site.mlops("deploy", "rollback", "--no-pr", check=False)
    assert f"error: {IMAGE}@{A} has no signature by {IDENTITY}" in refused
    assert client.get_model_version_by_alias(NAME, "champion").version == "2"
    assert sh(project, "git", "status", "--porcelain", str(OVERLAYS)).stdout == ""
    assert records(client, "1", "rollback") == []
    site.sign(first)

    # The rollback: the alias back to v1, production's overlay back to A (the diff shown).
    output = site.mlops("deploy", "rollback", "--no-pr")
    assert f"rollback: {IMAGE}@{A} is signed by {IDENTITY} (verified)" in output
    assert "champion is version 1 (was 2)" in output
    assert f"production: {IMAGE}@{B2} (model {newer.model_version}) -> {IMAGE}@{A}" in output
    assert f"+    digest: {A}" in output
    assert "make deploy-pr ENV=production" in output
    assert site.production() == first
    assert read_overlay(project / OVERLAYS, "staging").digest == gitops.PLACEHOLDER_DIGEST
    assert client.get_model_version_by_alias(NAME, "champion").version == "1"
    for version in ("1", "2"):
        (record,) = records(client, version, "rollback")
        assert {key: record[key] for key in ("from", "to", "env", "image")} == {
            "from": "2", "to": "1", "env": "production", "image": first.reference}  # fmt: skip
    site.deploy(first, 4)  # its pull request, merged (deploy-bump: nothing left to change)

    # What was in production when: A, B, B2, then A again, each with its registry version.
    data = json.loads(site.mlops("deploy", "history", "--env", "production", "--format", "json"))
    rows = data["environments"]["production"]
    assert [row["digest"] for row in rows] == [A, B2, B, A, gitops.PLACEHOLDER_DIGEST]
    assert [row["registry_version"] for row in rows] == ["1", "2", "2", "1", None]
    assert rows[0]["note"].startswith("back to the release deployed ")
    assert rows[-1]["state"] == "placeholder"
    assert data["sources"]["registry"] == f"MLflow, model {NAME}: recorded images and promotions"

    # main still holds version 2's model: the next merge's release must not promote it back.
    refused = site.mlops("model", "release")
    assert "release: refused: version 2: version 2 was withdrawn by a rollback" in refused
    assert client.get_model_version_by_alias(NAME, "champion").version == "1"

    # One rollback is one step: again, the champion stays and production already serves it.
    again = site.mlops("deploy", "rollback", "--no-pr")
    assert "champion stays version 1" in again
    assert "production already serves" in again
    assert site.production() == first
