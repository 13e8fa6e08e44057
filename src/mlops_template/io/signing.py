"""Sign the served model file and verify it, with OpenSSF model-signing (`model_signing`).

What is signed is one file: the model the service runs (paths.onnx_model, or paths.model with
serve.runtime sklearn), into one signature file (paths.model_signature). Not the models/
folder: it holds both runtimes' files, the training profile, and files written after signing
(`make image` writes model_card.md), and the image carries only some of them, so a folder's
signature would not verify where it matters. The signature's manifest records the file's
sha256, which is what the `.sha256` file beside it says: verification checks that the signed
sha256 is the recorded (or pinned) one, so the sidecar is covered too.

Two ways to sign, one way each to verify:

- a key pair (`KeyTrust`): an ECDSA private key in PEM signs (P-256, P-384 or P-521); its
  public key verifies. For the tests, and for teams without Sigstore.
- keyless Sigstore (`SigstoreTrust`): in GitHub Actions, with the workflow's OIDC token
  (`id-token: write`); verified against the certificate's identity (the workflow, e.g.
  `https://github.com/OWNER/REPO/.github/workflows/release.yml@refs/heads/main`) and its OIDC
  issuer (`https://token.actions.githubusercontent.com`). Without a trust config file,
  Sigstore's trusted root comes from its TUF repository (network); `embedded_trust_config`
  writes the one this sigstore release ships, so a verifier without network (the image)
  needs none.

`verify` reads the signature once and checks exactly those bytes, and returns the sha256 the
signature covers: the loader then deserializes only bytes of that sha256 (io/storage.py), so
the bytes verified and the bytes loaded cannot differ. A failure is a SignatureError whose
`code` says which kind (the service's readiness reports it): the signature is missing, does
not cover this file as it is (invalid), is not by the trusted key or identity (untrusted), or
could not be checked at all (unverifiable).

model_signing is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_template import PipelineError
from mlops_template.io import storage

if TYPE_CHECKING:
    from model_signing import verifying

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
# The reason codes of SignatureError (and of the service's readiness).
MISSING = "model_signature_missing"
INVALID = "model_signature_invalid"
UNTRUSTED = "model_signature_untrusted"
UNVERIFIABLE = "model_signature_unverifiable"
_STATEMENT = "https://in-toto.io/Statement/v1"
_PREDICATE = "https://model_signing/signature/v1.0"
# Fulcio's certificate extensions: the OIDC issuer (v2, DER UTF8String; v1, raw text).
_ISSUER_V2 = "1.3.6.1.4.1.57264.1.8"
_ISSUER_V1 = "1.3.6.1.4.1.57264.1.1"
_TRUST_CONFIG_TYPE = "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json"


class SignatureError(PipelineError):
    """The model's signature does not hold; `code` is one of the reason codes above."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class KeyTrust:
    """Signatures by the private key whose public key (PEM) is this file."""

    public_key: Path


@dataclass(frozen=True)
class SigstoreTrust:
    """Keyless Sigstore signatures by this certificate identity, from this OIDC issuer.
    `trust_config`: a Sigstore client trust config (JSON); None: Sigstore's production TUF
    repository (network)."""

    identity: str
    issuer: str = GITHUB_ISSUER
    trust_config: Path | None = None


Trust = KeyTrust | SigstoreTrust


@dataclass(frozen=True)
class Signed:
    """What a signature says: the file it signs, that file's sha256, and who signed it."""

    name: str  # the signed file's name
    sha256: str  # the signed file's sha256 (what its .sha256 file records)
    signer: str  # key mode: `key:sha256:<fingerprint of the public key>`; Sigstore: identity
    signature_sha256: str  # the signature file's own sha256


def key_fingerprint(public_key_pem: bytes) -> str:
    """A public key's fingerprint as model-signing records it in a signature (`hint`): the
    sha256 of its PEM SubjectPublicKeyInfo."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_public_key(public_key_pem)
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(pem).hexdigest()


def sign_with_key(model: Path, signature: Path, private_key: Path) -> Signed:
    """Sign `model` (one file) with an ECDSA private key (PEM, unencrypted) into `signature`."""
    from model_signing import signing

    _check_model(model)
    try:
        config = signing.Config().use_elliptic_key_signer(  # type: ignore[no-untyped-call]
            private_key=private_key
        )
    except (OSError, ValueError, TypeError, AttributeError) as error:  # an RSA key: no .curve
        raise PipelineError(
            f"{private_key}: not an unencrypted ECDSA private key in PEM (P-256, P-384 or"
            f" P-521): {error}"
        ) from None
    return _sign(config, model, signature)


def sign_with_sigstore(model: Path, signature: Path) -> Signed:
    """Sign `model` keylessly with Sigstore's public instance, with the ambient OIDC token (a
    GitHub Actions job with `id-token: write`); elsewhere Sigstore's own sign-in flow."""
    from model_signing import signing

    _check_model(model)
    # (model_signing's Config() is unannotated: the ignores below)
    config = signing.Config().use_sigstore_signer(  # type: ignore[no-untyped-call]
        use_ambient_credentials=True
    )
    return _sign(config, model, signature)


def _sign(config: Any, model: Path, signature: Path) -> Signed:
    signature.parent.mkdir(parents=True, exist_ok=True)
    # model_signing writes the file itself: to a temporary sibling, moved into place whole.
    with storage.atomic_path(signature) as tmp:
        config.sign(model, tmp)
        raw = tmp.read_bytes()
    return describe(raw, signature)


def _check_model(model: Path) -> None:
    if not model.is_file():
        raise PipelineError(f"{model}: no model file to sign (run `make run`, or `make pull`)")


def verifier(trust: Trust) -> verifying.Config:
    """model_signing's verification configured for `trust`: UNVERIFIABLE if the public key
    or the trust config cannot be read."""
    from model_signing import verifying

    try:
        if isinstance(trust, KeyTrust):
            return verifying.Config().use_elliptic_key_verifier(  # type: ignore[no-untyped-call]
                public_key=trust.public_key
            )
        return verifying.Config().use_sigstore_verifier(  # type: ignore[no-untyped-call]
            identity=trust.identity, oidc_issuer=trust.issuer, trust_config=trust.trust_config
        )
    except Exception as error:  # a key or trust root that cannot be read, a network failure
        source = trust.public_key if isinstance(trust, KeyTrust) else "Sigstore's trust root"
        raise SignatureError(
            UNVERIFIABLE, f"cannot verify signatures with {source}: {error}"
        ) from None


def verify(model: Path, signature: Path, trust: Trust) -> Signed:
    """Check that `signature` signs `model` as it is, by `trust`'s key or identity; return
    what it signs. SignatureError (with its code) otherwise."""
    try:
        raw = signature.read_bytes()
    except FileNotFoundError:
        raise SignatureError(
            MISSING, f"{signature}: missing: {model} is not signed (`make sign-model`)"
        ) from None
    except OSError as error:
        raise SignatureError(MISSING, f"{signature}: cannot be read: {error}") from None
    signed = describe(raw, signature)
    config = verifier(trust)
    with _readable(raw, signature) as path:
        try:
            config.verify(model, path)
        except Exception as error:
            raise _classified(error, model, signature, signed, trust) from None
    return signed


def _classified(
    error: Exception, model: Path, signature: Path, signed: Signed, trust: Trust
) -> SignatureError:
    """model_signing's exception as a SignatureError naming the file and what is wrong."""
    text = str(error)
    if isinstance(error, FileNotFoundError) or not model.is_file():
        return SignatureError(INVALID, f"{model}: missing: {signature} signs {signed.name}")
    if text.startswith("Signature mismatch"):
        actual = storage.sha256_file(model)
        return SignatureError(
            INVALID,
            f"{model}: sha256 {actual}, but {signature} signs {signed.name} with sha256"
            f" {signed.sha256}: the file changed after it was signed, or it is another file",
        )
    by = (
        f"the public key {trust.public_key}"
        if isinstance(trust, KeyTrust)
        else f"identity {trust.identity} (issuer {trust.issuer})"
    )
    return SignatureError(
        UNTRUSTED,
        f"{signature}: not a valid signature of {model} by {by}: signed by"
        f" {signed.signer}, or altered ({type(error).__name__}: {text or 'no detail'})",
    )


@contextlib.contextmanager
def _readable(raw: bytes, signature: Path) -> Iterator[Path]:
    """A path whose content is `raw`, for model_signing (which reads a path): an anonymous
    in-memory file where the system has them (Linux; no writable disk needed), so the bytes
    checked are the bytes described; elsewhere the signature file itself."""
    create = getattr(os, "memfd_create", None)
    if create is None or not Path("/proc/self/fd").is_dir():
        yield signature
        return
    descriptor = create("model-signature")
    try:
        os.write(descriptor, raw)
        yield Path(f"/proc/self/fd/{descriptor}")
    finally:
        os.close(descriptor)


def describe(raw: bytes, where: Path) -> Signed:
    """What a model-signing signature (a Sigstore bundle) says it signs, and by whom, read
    without verifying it: INVALID if it is not a signature of one file."""
    try:
        bundle = json.loads(raw)
        envelope = bundle["dsseEnvelope"]
        statement = json.loads(base64.b64decode(envelope["payload"], validate=True))
        if statement["_type"] != _STATEMENT or statement["predicateType"] != _PREDICATE:
            raise ValueError(f"not a model-signing statement ({statement['predicateType']})")
        (subject,) = statement["subject"]
        resources = statement["predicate"]["resources"]
        if [resource["name"] for resource in resources] != ["."]:
            raise ValueError("it signs a folder, not one file")
        (resource,) = resources
        if resource["algorithm"] != "sha256":
            raise ValueError(f"the file's digest is {resource['algorithm']}, not sha256")
        name, digest = str(subject["name"]), str(resource["digest"])
        signer = _signer(bundle["verificationMaterial"])
    except (ValueError, KeyError, TypeError, IndexError, binascii.Error) as error:
        raise SignatureError(
            INVALID, f"{where}: not a model-signing signature of one file: {error}"
        ) from None
    return Signed(name, digest, signer, storage.sha256_bytes(raw))


def _signer(material: dict[str, Any]) -> str:
    """Who signed: the public key's fingerprint, or the Sigstore certificate's identity."""
    if "publicKey" in material:
        return f"key:sha256:{material['publicKey'].get('hint') or 'unknown'}"
    if "certificate" in material:
        der = material["certificate"]["rawBytes"]
    else:
        der = material["x509CertificateChain"]["certificates"][0]["rawBytes"]
    return certificate_identity(base64.b64decode(der))


def certificate_identity(der: bytes) -> str:
    """A Fulcio certificate's identity (its subject alternative name) and OIDC issuer, as
    `identity (issuer)`."""
    from cryptography import x509

    certificate = x509.load_der_x509_certificate(der)
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        raise ValueError("the signing certificate has no subject alternative name") from None
    values = [
        str(value) for value in names.value.get_values_for_type(x509.UniformResourceIdentifier)
    ]
    values += names.value.get_values_for_type(x509.RFC822Name)
    if not values:
        raise ValueError("the signing certificate names no URI or email identity")
    issuer = None
    for extension in certificate.extensions:
        if extension.oid.dotted_string in (_ISSUER_V2, _ISSUER_V1):
            value = extension.value.value  # an UnrecognizedExtension: its DER bytes
            issuer = _issuer_text(value, v2=extension.oid.dotted_string == _ISSUER_V2)
            break
    return f"{values[0]} ({issuer or 'unknown issuer'})"


def _issuer_text(value: bytes, *, v2: bool) -> str:
    """The issuer extension's text: v2 is a DER UTF8String (tag 12, short length)."""
    if v2 and len(value) >= 2 and value[0] == 12 and value[1] == len(value) - 2:
        value = value[2:]
    return value.decode("utf-8", errors="replace")


def embedded_trust_config() -> str:
    """A Sigstore client trust config (JSON) built from the production trusted root and
    signing config that this release of sigstore-python ships: keyless verification without
    network. It is as fresh as the installed sigstore package (a Fulcio or Rekor key rotation
    needs a newer one: Dependabot's)."""
    from sigstore._internal.tuf import DEFAULT_TUF_URL
    from sigstore._utils import read_embedded

    config = {
        "mediaType": _TRUST_CONFIG_TYPE,
        "trustedRoot": json.loads(read_embedded("trusted_root.json", DEFAULT_TUF_URL)),
        "signingConfig": json.loads(read_embedded("signing_config.v0.2.json", DEFAULT_TUF_URL)),
    }
    return json.dumps(config, sort_keys=True) + "\n"


def check_sidecar(model: Path, signed: Signed) -> None:
    """The sha256 recorded beside `model`, where there is one, must be the signed one."""
    sidecar = storage.sha256_sidecar(model)
    if not sidecar.is_file():
        return
    recorded = storage.read_recorded_sha256(model)
    if recorded != signed.sha256:
        raise SignatureError(
            INVALID,
            f"{sidecar}: records sha256 {recorded}, but the signature signs {signed.sha256}",
        )
