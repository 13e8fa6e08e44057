"""What an image must prove before a deploy is proposed (release/trust.py): the registry
recorded it (repository, digest and model version, on a version no rollback withdrew), and
`cosign verify` finds its signature by main's release workflow. The registry is the
MlflowClient stand-in of test_releases.py; cosign is the stand-in of the act tests
(act_stubs/bin/cosign), which verifies only what its `cosign sign` put in its ledger."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from mlops_template.release import gitops, registry, releases, trust
from tests.repo import test_k8s
from tests.support.act import STUBS
from tests.unit.release.test_gitops import DIGEST, IMAGE, OTHER_DIGEST, OTHER_VERSION, VERSION
from tests.unit.release.test_releases import NAME, A, B, Registry, Version, released

MAIN = "https://github.com/acme/penguins/.github/workflows/release.yml@refs/heads/main"


def test_the_identity_is_this_repositorys_release_workflow_on_main(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/penguins")
    monkeypatch.delenv("GITHUB_SERVER_URL", raising=False)
    assert trust.signing_identity() == MAIN
    ghes = trust.signing_identity("acme/penguins", "https://git.example.com/")
    assert (
        ghes
        == "https://git.example.com/acme/penguins/.github/workflows/release.yml@refs/heads/main"
    )
    for repository in ("", "acme", "acme/penguins\n", "../x/y"):
        with pytest.raises(trust.TrustError, match="GITHUB_REPOSITORY is not set"):
            trust.signing_identity(repository)


# --- the registry's record ---------------------------------------------------------------------


def test_a_recorded_image_is_found_with_its_version() -> None:
    found = trust.check_recorded(released(), NAME, B)
    assert (found.version, found.image, found.current) == ("2", B, True)


def test_an_image_a_newer_one_replaced_is_still_recorded_in_the_audit() -> None:
    """Version 2 shipped B, then B2 (same model, new code): rolling back to B stays possible."""
    registry_ = released()
    newer = gitops.Release(IMAGE, "sha256:" + "ef" * 32, OTHER_VERSION)
    releases.record_image(registry_, NAME, "2", newer)
    assert trust.check_recorded(registry_, NAME, newer).current is True
    found = trust.check_recorded(registry_, NAME, B)
    assert (found.version, found.current) == ("2", False)


@pytest.mark.parametrize(
    ("wanted", "message"),
    [
        (
            gitops.Release(IMAGE, "sha256:" + "ef" * 32, VERSION),
            f"digest sha256:{'ef' * 32} ({IMAGE}) is recorded on no version of the registered"
            f" model {NAME} (2 version(s) read)",
        ),
        (
            gitops.Release(IMAGE, DIGEST, OTHER_VERSION),
            f"digest {DIGEST} is recorded on registry version 1 of {NAME} with model version"
            f" {VERSION}, not {OTHER_VERSION}",
        ),
        (
            gitops.Release("ghcr.io/eve/penguins", OTHER_DIGEST, OTHER_VERSION),
            f"digest {OTHER_DIGEST} is recorded on registry version 2 of {NAME} with repository"
            f" {IMAGE}, not ghcr.io/eve/penguins",
        ),
    ],
    ids=["foreign", "other-model-version", "other-repository"],
)
def test_an_image_the_registry_did_not_record_is_refused(
    wanted: gitops.Release, message: str
) -> None:
    with pytest.raises(trust.TrustError) as refused:
        trust.check_recorded(released(), NAME, wanted)
    assert str(refused.value).startswith(message)
    assert str(refused.value).endswith("nothing was proposed")


def test_a_withdrawn_versions_image_is_refused() -> None:
    registry_ = released()
    registry_.versions["2"].tags[registry.WITHDRAWN_TAG] = '{"by_rollback_to": "1"}'
    with pytest.raises(trust.TrustError, match="which a rollback withdrew"):
        trust.check_recorded(registry_, NAME, B)
    assert trust.check_recorded(registry_, NAME, A).version == "1"


def test_a_hostile_recorded_value_is_refused_not_matched() -> None:
    registry_ = Registry({"1": Version("1", {"image.20260101T000000.000000Z": "[1]"})})
    with pytest.raises(trust.TrustError, match="is not a JSON object"):
        trust.check_recorded(registry_, NAME, A)
    hostile = json.dumps({"image": IMAGE, "digest": DIGEST + "\n- x", "model_version": VERSION})
    registry_ = Registry({"1": Version("1", {"image": hostile})})
    with pytest.raises(gitops.DeployError, match="the recorded image is refused: digest"):
        trust.check_recorded(registry_, NAME, A)


# --- the signature -----------------------------------------------------------------------------


@pytest.fixture
def sigstore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The cosign stand-in first on PATH, with an empty ledger."""
    monkeypatch.setenv("PATH", f"{STUBS / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ACT_STUB_SIGSTORE", str(tmp_path))
    monkeypatch.setenv("ACT_STUB_RECORD", str(tmp_path))
    return tmp_path


def sign(release: gitops.Release, ref: str = "refs/heads/main") -> None:
    """release.yml's `cosign sign`, run by the workflow on `ref`."""
    workflow_ref = f"acme/penguins/.github/workflows/release.yml@{ref}"
    subprocess.run(["cosign", "sign", "--yes", release.reference], check=True,
                   env={**os.environ, "GITHUB_WORKFLOW_REF": workflow_ref})  # fmt: skip


def test_an_image_signed_by_mains_release_is_verified(sigstore: Path) -> None:
    sign(A)
    trust.verify_signature(A, MAIN)
    assert trust.verify(released(), NAME, A, MAIN).version == "1"


def test_an_image_signed_by_a_branch_or_not_at_all_is_refused(sigstore: Path) -> None:
    sign(B, ref="refs/heads/feature")  # the same workflow file, run on a branch
    for release in (A, B):
        with pytest.raises(trust.TrustError) as refused:
            trust.verify_signature(release, MAIN)
        assert str(refused.value).startswith(
            f"{release.reference} has no signature by {MAIN} (issuer"
            " https://token.actions.githubusercontent.com): cosign verify refused (Error: no"
            " matching signatures"
        )


def test_the_registry_is_asked_before_cosign(sigstore: Path) -> None:
    """An unrecorded image is refused by the registry check, signed or not."""
    foreign = gitops.Release(IMAGE, "sha256:" + "ef" * 32, VERSION)
    sign(foreign)
    with pytest.raises(trust.TrustError, match="is recorded on no version"):
        trust.verify(released(), NAME, foreign, MAIN)


def test_without_cosign_nothing_is_verified(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(trust.TrustError, match="cosign is not installed"):
        trust.verify_signature(A, MAIN)


def test_a_cosign_answer_that_names_another_digest_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Success is cosign's JSON naming the digest, not its exit status alone."""
    fake = tmp_path / "cosign"
    answer = [{"critical": {"image": {"docker-manifest-digest": OTHER_DIGEST}}}]
    fake.write_text(f"#!/bin/sh\necho '{json.dumps(answer)}'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(trust.TrustError, match="answer names no signature of"):
        trust.verify_signature(A, MAIN)


def test_a_rollback_to_an_unsigned_image_moves_nothing(tmp_path: Path) -> None:
    """releases.rollback asks `verify` about the target's image before anything is written."""
    k8s = tmp_path / "k8s"
    shutil.copytree(test_k8s.K8S, k8s)
    registry_ = released()
    before = {path: path.read_bytes() for path in sorted(k8s.rglob("*")) if path.is_file()}

    def unsigned(image: gitops.Release) -> None:
        raise trust.TrustError(f"{image.reference}: no signature")

    with pytest.raises(trust.TrustError, match="no signature"):
        releases.rollback(registry_, NAME, "production", k8s / "overlays", verify=unsigned)
    assert registry_.aliases["champion"] == "2"
    assert registry_.records("1", "rollback") == registry_.records("2", "rollback") == []
    assert {path: path.read_bytes() for path in sorted(k8s.rglob("*")) if path.is_file()} == before
