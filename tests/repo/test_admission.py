"""deploy/kyverno: the admission policy that lets the overlays' pods run only the release's
image, by digest, signed by release.yml on main. It validates against Kyverno's own schema
(vendored, strict: .ci/schemas), covers each overlay's image and namespace, and, evaluated
offline on the rendered production overlay (tests/support/admission.py, a stand-in for
`kyverno apply`), admits a digest signed by the attestor's key and refuses an unsigned
digest, another key's signature, a signature made for another digest, another repository and
an image by tag. The signatures are key-pair ones (a variant of the policy whose attestor is
that key): the keyless attestor needs Sigstore's services, which only a cluster reaches.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_template.release.gitops import bump, validate_release
from tests.conftest import REPO_ROOT
from tests.support import admission
from tests.support.admission import SignatureStore, UnsupportedPolicyError

VENV_BIN = Path(sys.executable).parent
K8S = REPO_ROOT / "deploy" / "k8s"
POLICY_DIR = REPO_ROOT / "deploy" / "kyverno"
SCHEMA = REPO_ROOT / ".ci" / "schemas" / "kyverno.io_clusterpolicy_v1.json"
OVERLAYS = sorted(path.name for path in (K8S / "overlays").iterdir() if path.is_dir())
DIGEST = "sha256:" + "5e" * 32  # the release under test
OTHER_DIGEST = "sha256:" + "a1" * 32
ISSUER = "https://token.actions.githubusercontent.com"


def kustomize(path: Path) -> str:
    return subprocess.run(
        [str(VENV_BIN / "kubectl"), "kustomize", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def policy() -> dict[str, Any]:
    (document,) = yaml.safe_load_all(kustomize(POLICY_DIR))
    return dict(document)


def schema_errors(document: dict[str, Any], tmp_path: Path) -> str:
    """check-jsonschema's complaints about `document` ("" when it is valid)."""
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(document))
    result = subprocess.run(
        [str(VENV_BIN / "check-jsonschema"), "--schemafile", str(SCHEMA), str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    return "" if result.returncode == 0 else result.stdout + result.stderr


def overlay_image(env: str) -> str:
    """The repository an overlay's kustomization.yaml names (`images: newName`)."""
    kustomization = yaml.safe_load((K8S / "overlays" / env / "kustomization.yaml").read_text())
    (image,) = kustomization["images"]
    return str(image["newName"])


def rules_for(env: str) -> dict[str, dict[str, Any]]:
    """The policy's rules matching the overlay's namespace, by kind (validate, verifyImages)."""
    found = {}
    for rule in policy()["spec"]["rules"]:
        (match,) = rule["match"]["any"]
        if f"mlops-{env}" in match["resources"]["namespaces"]:
            kind = "validate" if "validate" in rule else "verifyImages"
            assert kind not in found, f"two {kind} rules for {env}"
            found[kind] = rule
    return found


def test_the_policy_validates_against_kyvernos_schema(tmp_path: Path) -> None:
    """Strictly: a misspelt field is an error, not a field Kyverno would silently drop."""
    document = policy()
    assert schema_errors(document, tmp_path) == ""
    key = admission.public_pem(admission.new_key())
    assert schema_errors(admission.with_key_attestor(document, key), tmp_path) == ""
    misspelt = json.loads(json.dumps(document).replace('"mutateDigest"', '"mutateDigests"'))
    assert "'mutateDigests' was unexpected" in schema_errors(misspelt, tmp_path)
    schema = json.loads(SCHEMA.read_text())
    assert "kyverno/kyverno/blob/v1.19.0/" in schema["$comment"]
    licence = (SCHEMA.parent / "kyverno-LICENSE").read_text()
    assert "Apache License" in licence[:200]
    assert "Version 2.0" in licence[:200]


@pytest.mark.parametrize("env", OVERLAYS)
def test_each_overlay_has_its_rules_for_its_image(env: str) -> None:
    """Per overlay: its namespace's validate rule allows only its repository by digest, and
    its verifyImages rule, enforced, wants that repository signed keyless by release.yml on
    main of the repository the image is named after (ghcr.io/OWNER/REPO: OWNER/REPO)."""
    repository = overlay_image(env)
    rules = rules_for(env)
    assert set(rules) == {"validate", "verifyImages"}
    validate = rules["validate"]["validate"]
    assert validate["failureAction"] == "Enforce"
    allowed = f"{repository}@sha256:*"
    spec = validate["pattern"]["spec"]
    assert spec == {f"{key}": [{"image": allowed}] for key in
                    ("=(initContainers)", "containers", "=(ephemeralContainers)")}  # fmt: skip
    (verify,) = rules["verifyImages"]["verifyImages"]
    assert verify["imageReferences"] == [f"{repository}@*", f"{repository}:*"]
    assert verify["failureAction"] == "Enforce"
    assert verify["mutateDigest"] is verify["verifyDigest"] is verify["required"] is True
    (attestor,) = verify["attestors"]
    assert attestor["count"] == 1
    (entry,) = attestor["entries"]
    owner_repo = repository.removeprefix("ghcr.io/")
    assert entry["keyless"] == {
        "subject": f"https://github.com/{owner_repo}/.github/workflows/release.yml@refs/heads/main",
        "issuer": ISSUER,
        "rekor": {"url": "https://rekor.sigstore.dev"},
    }
    assert policy()["spec"]["webhookConfiguration"]["failurePolicy"] == "Fail"


def test_the_policy_is_applied_apart_from_the_overlays() -> None:
    """Argo CD and Flux deploy the overlays only: a deploy pull request cannot change the
    policy its image must pass (and the AppProject allows no cluster-scoped policy)."""
    for env in OVERLAYS:
        kinds = {item["kind"] for item in yaml.safe_load_all(kustomize(K8S / "overlays" / env))}
        assert "ClusterPolicy" not in kinds
    project = yaml.safe_load((REPO_ROOT / "deploy" / "argocd" / "project.yaml").read_text())
    assert project["spec"]["clusterResourceWhitelist"] == [{"group": "", "kind": "Namespace"}]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """deploy/k8s copied, production set to the release DIGEST (as a deploy pull request)."""
    shutil.copytree(K8S, tmp_path / "k8s")
    release = validate_release(overlay_image("production"), DIGEST, "5e5e5e5e5e5e")
    bump(tmp_path / "k8s" / "overlays", "production", release)
    return tmp_path / "k8s"


def rendered(project: Path) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(kustomize(project / "overlays" / "production")))


def judged(project: Path, store: SignatureStore, pem: str) -> list[admission.Verdict]:
    verdicts = admission.evaluate(
        admission.with_key_attestor(policy(), pem), rendered(project), store
    )
    print(admission.report(verdicts))
    assert [verdict.container for verdict in verdicts] == ["params", "service"]
    return verdicts


def test_a_signed_digest_is_admitted(project: Path, tmp_path: Path) -> None:
    key = admission.new_key()
    store = SignatureStore(tmp_path / "registry")
    admission.sign(store, f"{overlay_image('production')}@{DIGEST}", key)
    verdicts = judged(project, store, admission.public_pem(key))
    for verdict in verdicts:
        assert verdict.admitted, verdict.line()
        assert verdict.namespace == "mlops-production"
        assert verdict.image == f"{overlay_image('production')}@{DIGEST}"
        assert "production-images-are-signed-by-release-yml: signature verified" in verdict.passes
        assert "production-images-are-the-release: matches" in verdict.passes


def refused(verdicts: list[admission.Verdict], reason: str) -> None:
    for verdict in verdicts:
        assert not verdict.admitted, verdict.line()
        assert any(re.search(reason, failure) for failure in verdict.failures), verdict.line()


def test_an_unsigned_digest_is_refused(project: Path, tmp_path: Path) -> None:
    store = SignatureStore(tmp_path / "registry")
    key = admission.new_key()
    admission.sign(store, f"{overlay_image('production')}@{OTHER_DIGEST}", key)  # not this one
    refused(judged(project, store, admission.public_pem(key)), f"no cosign signature for {DIGEST}")


def test_a_digest_signed_by_another_key_is_refused(project: Path, tmp_path: Path) -> None:
    store = SignatureStore(tmp_path / "registry")
    admission.sign(store, f"{overlay_image('production')}@{DIGEST}", admission.new_key())
    attestor = admission.public_pem(admission.new_key())
    refused(judged(project, store, attestor), "verifies with the attestor's key")


def test_a_signature_made_for_another_digest_is_refused(project: Path, tmp_path: Path) -> None:
    """The attestor's genuine signature of another image, copied to this digest's tag."""
    key = admission.new_key()
    store = SignatureStore(tmp_path / "registry")
    admission.sign(
        store, f"{overlay_image('production')}@{DIGEST}", key, payload_digest=OTHER_DIGEST
    )
    refused(judged(project, store, admission.public_pem(key)), "for another digest")


def test_an_image_by_tag_is_refused(project: Path, tmp_path: Path) -> None:
    kustomization = project / "overlays" / "production" / "kustomization.yaml"
    text = kustomization.read_text()
    assert f"digest: {DIGEST}" in text
    kustomization.write_text(text.replace(f"digest: {DIGEST}", "newTag: model-5e5e5e5e5e5e"))
    key = admission.new_key()
    store = SignatureStore(tmp_path / "registry")
    admission.sign(store, f"{overlay_image('production')}@{DIGEST}", key)
    verdicts = judged(project, store, admission.public_pem(key))
    refused(verdicts, "not pinned by digest")
    refused(verdicts, r"does not match '.*@sha256:\*'")


def test_another_repository_is_refused_even_signed(project: Path, tmp_path: Path) -> None:
    """verifyImages checks only the images its references match; the validate rule refuses
    the rest (here a look-alike repository, signed with the attestor's key)."""
    look_alike = overlay_image("production") + "-tools"
    kustomization = project / "overlays" / "production" / "kustomization.yaml"
    text = kustomization.read_text()
    kustomization.write_text(text.replace(f"newName: {overlay_image('production')}\n",
                                          f"newName: {look_alike}\n"))  # fmt: skip
    key = admission.new_key()
    store = SignatureStore(tmp_path / "registry")
    admission.sign(store, f"{look_alike}@{DIGEST}", key)
    verdicts = judged(project, store, admission.public_pem(key))
    refused(verdicts, "production-images-are-the-release: .*does not match")
    for verdict in verdicts:
        assert "production-images-are-signed-by-release-yml: not one of its imageReferences" in (
            verdict.passes
        )


def test_the_keyless_policy_itself_is_not_verified_offline(project: Path, tmp_path: Path) -> None:
    """The committed policy on the rendered overlay: its patterns pass (the release's
    repository, by digest); its keyless signature is not claimed verified here."""
    verdicts = admission.evaluate(policy(), rendered(project), SignatureStore(tmp_path / "none"))
    for verdict in verdicts:
        assert "production-images-are-the-release: matches" in verdict.passes
        refused([verdict], "keyless attestor .*release.yml@refs/heads/main.*not offline")


def test_the_payload_is_cosigns_simple_signing_format() -> None:
    """Byte for byte what cosign signs (sigstore/sigstore pkg/signature/payload, marshalled by
    Go's encoding/json: fields in declaration order, no spaces, no annotations: null)."""
    payload = admission.simple_signing_payload("ghcr.io/acme/penguins", DIGEST)
    assert payload == (
        b'{"critical":{"identity":{"docker-reference":"ghcr.io/acme/penguins"},'
        b'"image":{"docker-manifest-digest":"' + DIGEST.encode() + b'"},'
        b'"type":"cosign container image signature"},"optional":null}'
    )
    assert SignatureStore.tag(DIGEST) == "sha256-" + "5e" * 32 + ".sig"


def test_signatures_are_stored_as_cosign_lays_them_out(tmp_path: Path) -> None:
    """One OCI manifest per signed digest, one layer per signature (a second `cosign sign`
    appends), the payload blob content-addressed, the signature in the layer's annotation;
    a blob changed on disk is refused."""
    store = SignatureStore(tmp_path)
    image = f"ghcr.io/acme/penguins@{DIGEST}"
    admission.sign(store, image, admission.new_key())
    admission.sign(store, image, admission.new_key())
    layout = tmp_path / "ghcr.io" / "acme" / "penguins"
    index = json.loads((layout / "index.json").read_text())
    (descriptor,) = index["manifests"]
    assert descriptor["annotations"]["org.opencontainers.image.ref.name"] == store.tag(DIGEST)
    manifest_blob = layout / "blobs" / "sha256" / descriptor["digest"].removeprefix("sha256:")
    manifest = json.loads(manifest_blob.read_text())
    assert [layer["mediaType"] for layer in manifest["layers"]] == [admission.SIMPLE_SIGNING] * 2
    assert all(
        admission.SIGNATURE_ANNOTATION in layer["annotations"] for layer in manifest["layers"]
    )
    assert len(store.signatures("ghcr.io/acme/penguins", DIGEST)) == 2
    payload = layout / "blobs" / "sha256" / manifest["layers"][0]["digest"].removeprefix("sha256:")
    payload.write_bytes(payload.read_bytes().replace(b"penguins", b"pangolin"))
    with pytest.raises(ValueError, match="does not match its descriptor"):
        store.signatures("ghcr.io/acme/penguins", DIGEST)


def test_a_construct_the_check_does_not_model_is_refused_not_passed(
    project: Path, tmp_path: Path
) -> None:
    changed = policy()
    changed["spec"]["rules"][0]["exclude"] = {"any": [{"resources": {"names": ["debug-*"]}}]}
    with pytest.raises(UnsupportedPolicyError, match=r"only match\.any"):
        admission.evaluate(changed, rendered(project), SignatureStore(tmp_path))


def test_kyverno_image_strings() -> None:
    """How Kyverno writes an image before matching imageReferences (ImageInfo.String())."""
    assert str(admission.Image.parse("nginx")) == "docker.io/nginx:latest"
    assert str(admission.Image.parse("localhost:5000/a/b:v1")) == "localhost:5000/a/b:v1"
    tagged_and_pinned = admission.Image.parse(f"ghcr.io/acme/p:v1@{DIGEST}")
    assert str(tagged_and_pinned) == f"ghcr.io/acme/p@{DIGEST}"
    assert admission.wildcard("ghcr.io/acme/p@*", str(tagged_and_pinned))
    assert not admission.wildcard("ghcr.io/acme/p@*", "ghcr.io/acme/p-tools@" + DIGEST)
