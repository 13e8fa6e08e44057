"""What an image must prove before a deploy pull request proposes it (deploy pr, rollback).

Two facts, each from a party the proposer cannot write to:

- **The registry recorded it.** release.yml records the image it pushed on the registry
  version the gate let through (releases.record_image: the `image` tag, and an audit record
  `image.<time>` for every image it ever recorded there). The image to deploy must be one of
  them, with the same repository and model version, on a version no rollback withdrew. Any
  writer of the repository can push an image to its package from a branch's workflow; only the
  release job, behind the `production` environment, records one.
- **Its signature is main's release workflow's.** release.yml signs the pushed digest
  keylessly (Sigstore: a certificate for the workflow's OIDC identity). `cosign verify` must
  find a signature whose certificate names this repository's release workflow on main and
  GitHub's OIDC issuer: a branch's workflow signs as itself, not as main's.

The registry is read with a client (MlflowClient, or a stand-in with the same methods); the
signature with the `cosign` on PATH (keyless verification needs Sigstore's public services,
so tests put a stand-in on PATH: tests/integration/act_stubs/bin/cosign).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mlops_template.io.github import REPOSITORY_NAME, dig
from mlops_template.release import gitops, registry, releases

RELEASE_WORKFLOW = ".github/workflows/release.yml"
RELEASE_REF = "refs/heads/main"
OIDC_ISSUER = "https://token.actions.githubusercontent.com"
COSIGN_TIMEOUT = 300.0


class TrustError(gitops.DeployError):
    """The image is not one the release recorded, or not signed by main's release."""


@dataclass(frozen=True)
class Record:
    """An image recorded on a registry version: the current `image` tag, or an audit record."""

    version: str
    image: gitops.Release
    current: bool


def signing_identity(repository: str | None = None, server: str | None = None) -> str:
    """The certificate identity of this repository's release workflow on main, e.g.
    https://github.com/acme/penguins/.github/workflows/release.yml@refs/heads/main."""
    repository = os.environ.get("GITHUB_REPOSITORY", "") if repository is None else repository
    if not REPOSITORY_NAME.fullmatch(repository):
        raise TrustError(
            "GITHUB_REPOSITORY is not set (or not owner/name): export it (e.g. acme/penguins)"
            " to name the repository whose release workflow must have signed the image"
        )
    server = (server or os.environ.get("GITHUB_SERVER_URL") or "https://github.com").rstrip("/")
    return f"{server}/{repository}/{RELEASE_WORKFLOW}@{RELEASE_REF}"


def _records(version: Any) -> Iterator[Record]:
    """Every image a version records; a recorded value that fails its checks raises."""
    number = str(version.version)
    where = f"registry version {number}"
    for key, raw in sorted(version.tags.items()):
        if key == releases.IMAGE_TAG:
            yield Record(number, releases.parse_image(raw, where), current=True)
        elif key.startswith(f"{releases.IMAGE_EVENT}."):
            try:
                audit = json.loads(raw)
            except ValueError:
                audit = None
            if not isinstance(audit, dict):
                raise TrustError(f"{where}: the audit record {key} is not a JSON object")
            fields = {name: audit.get(name) for name in ("image", "digest", "model_version")}
            yield Record(number, releases.parse_image(json.dumps(fields), f"{where} ({key})"),
                         current=False)  # fmt: skip


def check_recorded(client: Any, name: str, wanted: gitops.Release) -> Record:
    """The registry's record of `wanted`: recorded on a version, with the same repository and
    model version, the version not withdrawn. TrustError naming what differs otherwise."""
    versions = list(client.search_model_versions(f"name = '{name}'"))
    same_digest = [
        (record, version)
        for version in versions
        for record in _records(version)
        if record.image.digest == wanted.digest
    ]
    if not same_digest:
        raise TrustError(
            f"digest {wanted.digest} ({wanted.image}) is recorded on no version of the"
            f" registered model {name} ({len(versions)} version(s) read): only an image that"
            " release.yml pushed and recorded on the version it released can be deployed;"
            " nothing was proposed"
        )
    matches = [(record, version) for record, version in same_digest if record.image == wanted]
    if not matches:
        record = same_digest[0][0]
        differs = (
            f"model version {record.image.model_version}, not {wanted.model_version}"
            if record.image.model_version != wanted.model_version
            else f"repository {record.image.image}, not {wanted.image}"
        )
        raise TrustError(
            f"digest {wanted.digest} is recorded on registry version {record.version} of"
            f" {name} with {differs}: the values to deploy must be the recorded ones; nothing"
            " was proposed"
        )
    record, version = max(matches, key=lambda pair: (pair[0].current, int(pair[0].version)))
    withdrawn = version.tags.get(registry.WITHDRAWN_TAG)
    if withdrawn:
        raise TrustError(
            f"digest {wanted.digest} serves registry version {record.version} of {name}, which"
            f" a rollback withdrew ({withdrawn[:200]}): deploy the champion's image, or delete"
            f" the version's tag `{registry.WITHDRAWN_TAG}` to allow it again; nothing was"
            " proposed"
        )
    return record


def verify_signature(wanted: gitops.Release, identity: str) -> None:
    """`cosign verify` of IMAGE@DIGEST against `identity` and GitHub's OIDC issuer; its
    answer must name the digest. TrustError with cosign's reason otherwise."""
    cosign = shutil.which("cosign")
    if cosign is None:
        raise TrustError(
            "cosign is not installed: it verifies the image's signature before a deploy is"
            " proposed (https://docs.sigstore.dev/cosign/system_config/installation/; in"
            " deploy.yml, sigstore/cosign-installer); nothing was proposed"
        )
    command = [
        cosign, "verify", "--certificate-identity", identity,
        "--certificate-oidc-issuer", OIDC_ISSUER, "--output", "json", wanted.reference,
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=COSIGN_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise TrustError(
            f"cosign verify {wanted.reference}: no answer in {COSIGN_TIMEOUT:.0f} s; nothing"
            " was proposed"
        ) from None
    if done.returncode != 0:
        reason = " ".join((done.stderr or done.stdout).split())[-600:]
        raise TrustError(
            f"{wanted.reference} has no signature by {identity} (issuer {OIDC_ISSUER}):"
            f" cosign verify refused ({reason}); nothing was proposed"
        )
    if wanted.digest not in _signed_digests(done.stdout):
        raise TrustError(
            f"cosign verify {wanted.reference} succeeded but its answer names no signature"
            f" of {wanted.digest}; nothing was proposed"
        )


def _signed_digests(output: str) -> set[str]:
    """The digests cosign's JSON answer vouches for (critical.image.docker-manifest-digest)."""
    try:
        entries = json.loads(output)
    except ValueError:
        return set()
    if not isinstance(entries, list):
        return set()
    found = (dig(entry, "critical", "image", "docker-manifest-digest") for entry in entries)
    return {digest for digest in found if isinstance(digest, str)}


def verify(client: Any, name: str, wanted: gitops.Release, identity: str) -> Record:
    """Both checks, the registry's first; the record that vouches for `wanted`."""
    record = check_recorded(client, name, wanted)
    verify_signature(wanted, identity)
    return record
