"""Kyverno's admission of a rendered overlay, evaluated offline: the rules of
deploy/kyverno/clusterpolicy.yaml that decide whether the service's pods may run.

Kyverno's CLI (`kyverno apply`, `kyverno test`) cannot be installed here, and a cluster
cannot run here, so this module does what those rules ask, for the constructs the policy
uses, and refuses (UnsupportedPolicyError) any construct it does not model rather than pass it:

- which rules apply: `match.any[].resources` by kind (Pod, and the controllers Kyverno's
  autogen extends a Pod rule to: a Deployment's pod template) and namespace;
- `validate.pattern`: nested maps, a one-element list applied to every element, the
  conditional anchor `=(key)`, and Kyverno's wildcards (`*`, `?`) in strings;
- `verifyImages`: an image matches `imageReferences` as Kyverno writes it (ImageInfo.String():
  registry/path@digest, else registry/path:tag); `verifyDigest` and `mutateDigest` (a tag
  cannot be resolved offline: refused, where Kyverno would resolve it and pin the digest it
  verified); `required`; attestor sets with `count`, whose `keys` entries are verified here
  as cosign verifies a key-pair signature (below) and whose `keyless` entries are not.

Signatures are read as cosign stores them (sigstore/cosign specs/SIGNATURE_SPEC.md): an OCI
image manifest tagged `sha256-<hex>.sig` in the image's repository, each layer a "simple
signing" payload (media type application/vnd.dev.cosign.simplesigning.v1+json) with its
base64 ECDSA P-256 / SHA-256 signature (ASN.1 DER) in the layer annotation
`dev.cosignproject.cosign/signature`. A signature counts when it verifies over the payload
bytes with the attestor's public key, the payload's `critical.type` is "cosign container image
signature" and its `critical.image.docker-manifest-digest` is the image's digest (cosign's
SimpleClaimVerifier; `critical.identity.docker-reference` is ignored, as the spec says). The
registry is an OCI image layout per repository (`<root>/<registry>/<path>/`: oci-layout,
index.json, blobs/sha256/), the layout `skopeo copy docker://IMAGE:sha256-<hex>.sig
oci:DIR:sha256-<hex>.sig` writes; `sign` writes one as `cosign sign --key` would push it.

What this proves: the rendered overlay names only images the policy's patterns allow, pinned
by digest, and with a key-pair attestor, that digest's signature is checked as Kyverno and
cosign check it (a missing signature, another key's, or a signature over another digest all
fail). What only Kyverno in a cluster proves: that the webhook is installed and enforcing,
autogen on the Deployment, the registry lookups, tag resolution and digest mutation, and the
keyless attestor: Fulcio's certificate chain, the certificate's subject (release.yml on
refs/heads/main) and issuer, the SCT and the Rekor entry. Those need Sigstore's services.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

# Kyverno's autogen: a Pod rule also applies to these controllers' pod templates.
CONTROLLERS = {"Deployment", "DaemonSet", "StatefulSet", "Job", "ReplicaSet",
               "ReplicationController"}  # fmt: skip
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
COSIGN_TYPE = "cosign container image signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class UnsupportedPolicyError(Exception):
    """The policy uses a construct this offline check does not model."""


@dataclass(frozen=True)
class Image:
    """An image reference as Kyverno reads it (pkg/utils/image: GetImageInfo)."""

    registry: str
    path: str
    tag: str
    digest: str

    @classmethod
    def parse(cls, reference: str) -> Image:
        name, _, digest = reference.partition("@")
        if digest and not DIGEST.fullmatch(digest):
            raise ValueError(f"{reference}: not a sha256 digest")
        slash, colon = name.rfind("/"), name.rfind(":")
        tag = name[colon + 1 :] if colon > slash else ""
        name = name[:colon] if colon > slash else name
        first, _, rest = name.partition("/")
        if not rest or ("." not in first and ":" not in first and first != "localhost"):
            first, rest = "docker.io", name  # Kyverno's default registry
        return cls(first, rest, tag or ("" if digest else "latest"), digest)

    @property
    def repository(self) -> str:
        return f"{self.registry}/{self.path}"

    def __str__(self) -> str:  # ImageInfo.String(): the digest wins over the tag
        return (
            f"{self.repository}@{self.digest}" if self.digest else f"{self.repository}:{self.tag}"
        )


def wildcard(pattern: str, text: str) -> bool:
    """Kyverno's wildcard match (ext/wildcard): `*` any run of characters, `?` one."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, flags=re.DOTALL) is not None


@dataclass(frozen=True)
class Signature:
    payload: bytes
    b64_signature: str


class SignatureStore:
    """cosign signatures in OCI image layouts under `root`, one per repository."""

    def __init__(self, root: Path):
        self.root = root

    def _layout(self, repository: str) -> Path:
        return self.root / repository

    def _blob(self, layout: Path, descriptor: dict[str, Any]) -> bytes:
        digest = str(descriptor["digest"])
        if not DIGEST.fullmatch(digest):
            raise ValueError(f"{layout}: bad digest {digest!r}")
        data = (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
        if (
            "sha256:" + hashlib.sha256(data).hexdigest() != digest
            or len(data) != descriptor["size"]
        ):
            raise ValueError(f"{layout}: blob {digest} does not match its descriptor")
        return data

    def _index(self, layout: Path) -> dict[str, Any]:
        index = layout / "index.json"
        if not index.is_file():
            return {"schemaVersion": 2, "manifests": []}
        return dict(json.loads(index.read_text()))

    @staticmethod
    def tag(digest: str) -> str:
        """cosign's tag-based discovery: sha256:abc... -> sha256-abc....sig"""
        return digest.replace(":", "-") + ".sig"

    def signatures(self, repository: str, digest: str) -> list[Signature]:
        """Every signature layer of `repository`'s `sha256-<hex>.sig` manifest."""
        layout = self._layout(repository)
        wanted = self.tag(digest)
        found = []
        for descriptor in self._index(layout)["manifests"]:
            if descriptor.get("annotations", {}).get(REF_NAME) != wanted:
                continue
            manifest = json.loads(self._blob(layout, descriptor))
            for layer in manifest["layers"]:
                signature = layer.get("annotations", {}).get(SIGNATURE_ANNOTATION)
                if layer["mediaType"] == SIMPLE_SIGNING and signature:
                    found.append(Signature(self._blob(layout, layer), signature))
        return found

    def _put(self, layout: Path, data: bytes) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        blobs = layout / "blobs" / "sha256"
        blobs.mkdir(parents=True, exist_ok=True)
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    def add(self, repository: str, digest: str, signature: Signature) -> None:
        """Add a signature layer to the digest's signature manifest (cosign appends one per
        `cosign sign`)."""
        layout = self._layout(repository)
        layout.mkdir(parents=True, exist_ok=True)
        (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        index = self._index(layout)
        tag = self.tag(digest)
        kept, layers = [], []
        for descriptor in index["manifests"]:
            if descriptor.get("annotations", {}).get(REF_NAME) == tag:
                layers = json.loads(self._blob(layout, descriptor))["layers"]
            else:
                kept.append(descriptor)
        layers.append({
            "mediaType": SIMPLE_SIGNING, **self._put(layout, signature.payload),
            "annotations": {SIGNATURE_ANNOTATION: signature.b64_signature},
        })  # fmt: skip
        config = {
            "architecture": "", "created": "0001-01-01T00:00:00Z", "os": "", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
        }  # fmt: skip
        manifest = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, **self._put(layout, json.dumps(config).encode())},
            "layers": layers,
        }  # fmt: skip
        descriptor = {
            "mediaType": OCI_MANIFEST, **self._put(layout, json.dumps(manifest).encode()),
            "annotations": {REF_NAME: tag},
        }  # fmt: skip
        index["manifests"] = [*kept, descriptor]
        (layout / "index.json").write_text(json.dumps(index))


def simple_signing_payload(repository: str, digest: str) -> bytes:
    """cosign's payload for `repository@digest`, byte for byte as Go's json.Marshal writes
    sigstore's payload.SimpleContainerImage (no annotations: "optional": null)."""
    document = {
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": COSIGN_TYPE,
        },
        "optional": None,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def new_key() -> ec.EllipticCurvePrivateKey:
    """A key pair as `cosign generate-key-pair` makes one: ECDSA on P-256."""
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def sign(
    store: SignatureStore,
    image: str,
    key: ec.EllipticCurvePrivateKey,
    payload_digest: str | None = None,
) -> None:
    """`cosign sign --key` of `image` (by digest): its payload signed with ECDSA P-256 /
    SHA-256 and stored beside it. `payload_digest` puts another digest in the payload (a
    signature made for another image, replayed)."""
    parsed = Image.parse(image)
    if not parsed.digest:
        raise ValueError(f"{image}: sign an image by digest")
    payload = simple_signing_payload(parsed.repository, payload_digest or parsed.digest)
    signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    store.add(
        parsed.repository, parsed.digest, Signature(payload, base64.b64encode(signature).decode())
    )


def with_key_attestor(policy: dict[str, Any], pem: str) -> dict[str, Any]:
    """The policy with every verifyImages attestor entry replaced by a key-pair entry for
    `pem` (Kyverno's `keys.publicKeys`), without a transparency log: what can be verified
    offline. Everything else (matches, references, digests, patterns) stays the policy's."""
    variant = copy.deepcopy(policy)
    for rule in variant["spec"]["rules"]:
        for verify in rule.get("verifyImages", []):
            for attestor in verify["attestors"]:
                attestor["entries"] = [{
                    "keys": {
                        "publicKeys": pem,
                        "rekor": {"ignoreTlog": True, "url": "https://rekor.sigstore.dev"},
                        "ctlog": {"ignoreSCT": True},
                    }
                }]  # fmt: skip
    return variant


@dataclass
class Verdict:
    """One container's image under the rules that apply to its namespace."""

    namespace: str
    workload: str  # Kind/name
    container: str
    image: str
    failures: list[str] = field(default_factory=list)
    passes: list[str] = field(default_factory=list)

    @property
    def admitted(self) -> bool:
        return not self.failures

    def line(self) -> str:
        verdict = "PASS" if self.admitted else "FAIL"
        why = "; ".join(self.failures or self.passes)
        return f"{verdict} {self.namespace} {self.workload} {self.container} {self.image}: {why}"


def _pod_spec(item: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    """The pod spec a rule on Pods checks in `item` (a Pod, or a controller's template)."""
    if item["kind"] == "Pod":
        return item["spec"], "Pod"
    if item["kind"] in CONTROLLERS:
        return item["spec"]["template"]["spec"], item["kind"]
    if item["kind"] == "CronJob":
        return item["spec"]["jobTemplate"]["spec"]["template"]["spec"], "CronJob"
    return None


def _applies(rule: dict[str, Any], namespace: str) -> bool:
    match = rule["match"]
    if set(match) != {"any"} or "exclude" in rule or "preconditions" in rule:
        raise UnsupportedPolicyError(f"rule {rule['name']}: only match.any is modelled")
    for alternative in match["any"]:
        if set(alternative) != {"resources"}:
            raise UnsupportedPolicyError(f"rule {rule['name']}: only match.any[].resources")
        resources = alternative["resources"]
        if set(resources) - {"kinds", "namespaces"}:
            raise UnsupportedPolicyError(f"rule {rule['name']}: only kinds and namespaces")
        if resources.get("kinds") != ["Pod"]:
            raise UnsupportedPolicyError(f"rule {rule['name']}: only rules on Pods (with autogen)")
        if any(wildcard(pattern, namespace) for pattern in resources.get("namespaces", ["*"])):
            return True
    return False


def pattern_problems(pattern: Any, value: Any, path: str) -> list[str]:
    """Where `value` does not match a Kyverno validate pattern (the subset the policy uses)."""
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return [f"{path}: expected a map"]
        problems = []
        for key, sub in pattern.items():
            anchored = re.fullmatch(r"=\((.+)\)", key)
            if anchored:  # conditional: checked when present
                name = anchored.group(1)
                if name in value:
                    problems += pattern_problems(sub, value[name], f"{path}.{name}")
            elif re.fullmatch(r"[\^<X+]\(.+\)", key):
                raise UnsupportedPolicyError(f"{path}.{key}: anchor not modelled")
            elif key not in value:
                problems.append(f"{path}.{key}: missing")
            else:
                problems += pattern_problems(sub, value[key], f"{path}.{key}")
        return problems
    if isinstance(pattern, list):
        if len(pattern) != 1:
            raise UnsupportedPolicyError(f"{path}: only one-element list patterns are modelled")
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [p for i, item in enumerate(value)
                for p in pattern_problems(pattern[0], item, f"{path}[{i}]")]  # fmt: skip
    if isinstance(pattern, str):
        if re.search(r"[|!<>&]", pattern):
            raise UnsupportedPolicyError(f"{path}: operator in {pattern!r} not modelled")
        if not wildcard(pattern, str(value)):
            return [f"{path}: {value!r} does not match {pattern!r}"]
        return []
    raise UnsupportedPolicyError(f"{path}: pattern {pattern!r} not modelled")


def _verify_key_entry(entry: dict[str, Any], image: Image, store: SignatureStore) -> str | None:
    """None when a signature of `image`'s digest verifies with the entry's key; else why not."""
    keys = entry["keys"]
    if set(keys) - {"publicKeys", "rekor", "ctlog", "signatureAlgorithm"}:
        raise UnsupportedPolicyError(f"keys entry: only publicKeys is modelled, not {sorted(keys)}")
    if keys.get("signatureAlgorithm", "sha256") != "sha256":
        raise UnsupportedPolicyError("keys entry: only sha256 signatures")
    if not keys.get("rekor", {}).get("ignoreTlog", False):
        return "the signature must also be in Rekor (rekor.ignoreTlog false): not checked offline"
    pems = re.findall(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", keys["publicKeys"],
                      flags=re.DOTALL)  # fmt: skip
    if len(pems) != 1:
        raise UnsupportedPolicyError("keys entry: exactly one public key is modelled")
    public = serialization.load_pem_public_key(pems[0].encode())
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        raise UnsupportedPolicyError("keys entry: only ECDSA P-256 keys (cosign's) are modelled")
    signatures = store.signatures(image.repository, image.digest)
    if not signatures:
        return f"no cosign signature for {image.digest} ({store.tag(image.digest)})"
    for signature in signatures:
        try:
            public.verify(base64.b64decode(signature.b64_signature), signature.payload,
                          ec.ECDSA(hashes.SHA256()))  # fmt: skip
        except (InvalidSignature, ValueError):
            continue
        critical = json.loads(signature.payload).get("critical", {})
        if critical.get("type") != COSIGN_TYPE:
            continue
        if critical.get("image", {}).get("docker-manifest-digest") != image.digest:
            return f"the signature that verifies is for another digest ({critical.get('image')})"
        return None
    count = len(signatures)
    return f"none of the {count} signature(s) of {image.digest} verifies with the attestor's key"


def _verify_image(verify: dict[str, Any], image: Image, store: SignatureStore) -> list[str]:
    """verifyImages for one image its references match: the problems (none: verified)."""
    modelled = {"imageReferences", "failureAction", "mutateDigest", "verifyDigest", "required",
                "attestors"}  # fmt: skip
    if set(verify) - modelled:
        raise UnsupportedPolicyError(f"verifyImages: {sorted(set(verify) - modelled)} not modelled")
    if verify.get("failureAction") != "Enforce":
        return ["failureAction is not Enforce: Kyverno would only report it"]
    if not image.digest:
        if verify.get("mutateDigest", True):
            return [f"by tag ({image.tag}), not pinned by digest: Kyverno would resolve the tag"
                    " and pin the digest it verified; offline, and in a reviewed overlay, the"
                    " digest must be there"]  # fmt: skip
        return [f"missing digest for {image}"] if verify.get("verifyDigest", True) else []
    problems = []
    for attestor in verify["attestors"]:
        entries = attestor["entries"]
        needed = attestor.get("count", len(entries))
        reasons = []
        for entry in entries:
            if "keyless" in entry:
                keyless = entry["keyless"]
                reasons.append(
                    f"keyless attestor (subject {keyless.get('subject')}, issuer"
                    f" {keyless.get('issuer')}): Fulcio and Rekor are checked by Kyverno in the"
                    " cluster, not offline"
                )
            elif "keys" in entry:
                reason = _verify_key_entry(entry, image, store)
                if reason is not None:
                    reasons.append(reason)
            else:
                raise UnsupportedPolicyError(f"attestor entry {sorted(entry)} not modelled")
        if len(entries) - len(reasons) < needed:
            problems.append("; ".join(reasons))
    if problems and not verify.get("required", True):
        return []
    return problems


def evaluate(
    policy: dict[str, Any], objects: list[dict[str, Any]], store: SignatureStore
) -> list[Verdict]:
    """Each container image of `objects` (a rendered overlay) under `policy`'s rules."""
    verdicts = []
    for item in objects:
        found = _pod_spec(item)
        if found is None:
            continue
        spec, kind = found
        namespace = item["metadata"].get("namespace", "default")
        rules = [rule for rule in policy["spec"]["rules"] if _applies(rule, namespace)]
        patterns = {rule["name"]: _pattern_problems(rule, spec) for rule in rules}
        for listed in CONTAINER_LISTS:
            for index, container in enumerate(spec.get(listed, [])):
                verdict = Verdict(namespace, f"{kind}/{item['metadata']['name']}",
                                  container["name"], container["image"])  # fmt: skip
                where = f".spec.{listed}[{index}]"
                for rule in rules:
                    _judge(verdict, rule, patterns[rule["name"]], where, store)
                if not rules:
                    verdict.passes.append("no rule of the policy applies to this namespace")
                verdicts.append(verdict)
    return verdicts


def _pattern_problems(rule: dict[str, Any], spec: dict[str, Any]) -> list[str] | None:
    """The rule's validate pattern over the whole pod (None: the rule has none)."""
    if set(rule) - {"name", "match", "validate", "verifyImages"}:
        raise UnsupportedPolicyError(f"rule {rule['name']}: only validate and verifyImages")
    if "validate" not in rule:
        return None
    validate = rule["validate"]
    if set(validate) - {"failureAction", "message", "pattern"}:
        raise UnsupportedPolicyError(f"rule {rule['name']}: only a validate pattern is modelled")
    if validate.get("failureAction") != "Enforce":
        return []  # Audit: Kyverno reports and admits
    return pattern_problems(validate["pattern"], {"spec": spec}, "")


def _belongs(problem: str, where: str) -> bool:
    """Whether a pattern's problem is about the container at `where` (".spec.containers[0]")
    or about the pod as a whole (not about another container)."""
    if problem.startswith((f"{where}.", f"{where}:")):
        return True
    return re.match(r"\.spec\.\w+\[\d+\]", problem) is None


def _judge(
    verdict: Verdict,
    rule: dict[str, Any],
    pattern: list[str] | None,
    where: str,
    store: SignatureStore,
) -> None:
    """One rule's findings for the container at `where` (a pattern's problems elsewhere in
    the pod, such as a missing field, count for every container)."""
    if pattern is not None:
        mine = [problem for problem in pattern if _belongs(problem, where)]
        if mine:
            verdict.failures.append(f"{rule['name']}: {'; '.join(mine)}")
        else:
            verdict.passes.append(f"{rule['name']}: matches")
    image = Image.parse(verdict.image)
    for verify in rule.get("verifyImages", []):
        if not any(wildcard(ref, str(image)) for ref in verify["imageReferences"]):
            verdict.passes.append(f"{rule['name']}: not one of its imageReferences")
            continue
        problems = _verify_image(verify, image, store)
        if problems:
            verdict.failures.append(f"{rule['name']}: {'; '.join(problems)}")
        else:
            verdict.passes.append(f"{rule['name']}: signature verified")


def report(verdicts: list[Verdict]) -> str:
    return "\n".join(verdict.line() for verdict in verdicts)
