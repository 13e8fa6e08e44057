"""io/signing.py on real signatures: a key pair made here signs, model-signing verifies. Keyless
Sigstore signing needs GitHub's OIDC token and Sigstore's servers, which no test here reaches:
its verifier is checked for the identity and issuer it is given, offline."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID, ObjectIdentifier

from mlops_template import PipelineError
from mlops_template.io import signing, storage
from tests.support.signing import KeyPair, flip_one_byte, key_pair

IDENTITY = "https://github.com/acme/penguins/.github/workflows/release.yml@refs/heads/main"


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    return key_pair(tmp_path / "keys")


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "models" / "model.onnx"
    path.parent.mkdir()
    path.write_bytes(bytes(range(256)) * 40)
    storage.write_text(storage.sha256_sidecar(path), f"{storage.sha256_file(path)}  model.onnx\n")
    return path


@pytest.fixture
def signature(model: Path, keys: KeyPair) -> Path:
    path = model.parent / "model.sig"
    signing.sign_with_key(model, path, keys.private)
    return path


def test_a_signature_by_the_key_verifies_and_says_what_it_signs(
    model: Path, signature: Path, keys: KeyPair
) -> None:
    signed = signing.verify(model, signature, signing.KeyTrust(keys.public))
    assert signed.name == "model.onnx"
    assert signed.sha256 == storage.sha256_file(model) == storage.read_recorded_sha256(model)
    assert signed.signer == f"key:sha256:{signing.key_fingerprint(keys.public.read_bytes())}"
    assert signed.signature_sha256 == storage.sha256_file(signature)
    signing.check_sidecar(model, signed)
    # Nothing is left beside the signature (it is written to a temporary sibling first).
    assert sorted(path.name for path in model.parent.iterdir()) == [
        "model.onnx",
        "model.onnx.sha256",
        "model.sig",
    ]


def test_one_byte_changed_after_signing_is_invalid(
    model: Path, signature: Path, keys: KeyPair
) -> None:
    signed_sha = storage.sha256_file(model)
    flip_one_byte(model)
    with pytest.raises(signing.SignatureError) as caught:
        signing.verify(model, signature, signing.KeyTrust(keys.public))
    assert caught.value.code == signing.INVALID
    message = str(caught.value)
    assert str(model) in message
    assert storage.sha256_file(model) in message
    assert signed_sha in message
    assert "changed after it was signed" in message


def test_another_key_is_untrusted(model: Path, signature: Path, tmp_path: Path) -> None:
    other = key_pair(tmp_path / "other", "other")
    with pytest.raises(signing.SignatureError) as caught:
        signing.verify(model, signature, signing.KeyTrust(other.public))
    assert caught.value.code == signing.UNTRUSTED
    assert str(signature) in str(caught.value)
    assert str(other.public) in str(caught.value)


def test_an_altered_signature_is_untrusted(model: Path, signature: Path, keys: KeyPair) -> None:
    bundle = json.loads(signature.read_text())
    raw = bytearray(base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"]))
    raw[-1] ^= 0x01
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    signature.write_text(json.dumps(bundle))
    with pytest.raises(signing.SignatureError) as caught:
        signing.verify(model, signature, signing.KeyTrust(keys.public))
    assert caught.value.code == signing.UNTRUSTED


def test_a_missing_signature(model: Path, keys: KeyPair) -> None:
    missing = model.parent / "model.sig"
    with pytest.raises(signing.SignatureError) as caught:
        signing.verify(model, missing, signing.KeyTrust(keys.public))
    assert caught.value.code == signing.MISSING
    assert str(missing) in str(caught.value)
    assert str(model) in str(caught.value)


@pytest.mark.parametrize(
    "content", [b"", b"not json", b"{}", b'{"dsseEnvelope": {"payload": "!"}}']
)
def test_a_file_that_is_no_signature_is_invalid(model: Path, keys: KeyPair, content: bytes) -> None:
    path = model.parent / "model.sig"
    path.write_bytes(content)
    with pytest.raises(signing.SignatureError, match="not a model-signing signature") as caught:
        signing.verify(model, path, signing.KeyTrust(keys.public))
    assert caught.value.code == signing.INVALID


def test_a_folder_signature_is_refused(model: Path, keys: KeyPair, tmp_path: Path) -> None:
    path = tmp_path / "folder.sig"
    from model_signing import signing as library

    library.Config().use_elliptic_key_signer(private_key=keys.private).sign(model.parent, path)
    with pytest.raises(signing.SignatureError, match="signs a folder, not one file"):
        signing.verify(model, path, signing.KeyTrust(keys.public))


def test_an_unreadable_public_key_is_unverifiable(model: Path, signature: Path) -> None:
    with pytest.raises(signing.SignatureError) as caught:
        signing.verify(model, signature, signing.KeyTrust(model.parent / "absent.pub"))
    assert caught.value.code == signing.UNVERIFIABLE
    assert "absent.pub" in str(caught.value)


def test_only_an_ecdsa_key_signs(model: Path, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "rsa.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(PipelineError, match=r"rsa\.pem: not an unencrypted ECDSA private key"):
        signing.sign_with_key(model, tmp_path / "model.sig", pem)
    assert not (tmp_path / "model.sig").exists()


def test_a_sidecar_that_disagrees_with_the_signature_is_named(
    model: Path, signature: Path, keys: KeyPair
) -> None:
    signed = signing.verify(model, signature, signing.KeyTrust(keys.public))
    sidecar = storage.sha256_sidecar(model)
    sidecar.write_text(f"{'0' * 64}  model.onnx\n")
    with pytest.raises(signing.SignatureError, match=f"{sidecar}: records sha256 0{{64}}"):
        signing.check_sidecar(model, signed)


def test_the_sigstore_verifier_checks_the_identity_and_issuer_given(tmp_path: Path) -> None:
    """Offline: the trust root the image bakes (the one sigstore-python ships), and the policy
    model-signing builds from the identity and issuer."""
    trust_config = tmp_path / "trust.json"
    trust_config.write_text(signing.embedded_trust_config())
    trust = signing.SigstoreTrust(IDENTITY, "https://issuer.example", trust_config)
    config = signing.verifier(trust)
    policy = config._verifier._policy  # type: ignore[attr-defined]
    assert policy._identity == IDENTITY
    assert policy._issuer._value == "https://issuer.example"
    assert config._uses_sigstore  # type: ignore[attr-defined]
    document = json.loads(trust_config.read_text())
    assert document["trustedRoot"]["certificateAuthorities"], "no Fulcio CA in the trust root"


def test_a_key_signature_is_not_a_sigstore_identitys(
    model: Path, signature: Path, tmp_path: Path
) -> None:
    trust_config = tmp_path / "trust.json"
    trust_config.write_text(signing.embedded_trust_config())
    with pytest.raises(signing.SignatureError) as caught:
        signing.verify(model, signature, signing.SigstoreTrust(IDENTITY, trust_config=trust_config))
    assert caught.value.code == signing.UNTRUSTED
    assert IDENTITY in str(caught.value)


def _fulcio_like_certificate(identity: str, issuer: str) -> bytes:
    """A self-signed certificate shaped as Fulcio's: the identity as a URI subject alternative
    name, the issuer in extension 1.3.6.1.4.1.57264.1.8 (a DER UTF8String)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sigstore.dev")])
    now = datetime.datetime.now(datetime.UTC)
    encoded = issuer.encode()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(minutes=10))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), False
        )
        .add_extension(
            x509.UnrecognizedExtension(
                ObjectIdentifier("1.3.6.1.4.1.57264.1.8"), bytes([12, len(encoded)]) + encoded
            ),
            False,
        )
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


def test_a_keyless_signature_names_its_certificates_identity(
    signature: Path, tmp_path: Path
) -> None:
    """What release/signatures.py records for a keyless signature: the bundle's certificate's
    identity and issuer (a certificate made here; the bundle otherwise model-signing's)."""
    bundle = json.loads(signature.read_text())
    der = _fulcio_like_certificate(IDENTITY, signing.GITHUB_ISSUER)
    bundle["verificationMaterial"] = {"certificate": {"rawBytes": base64.b64encode(der).decode()}}
    raw = json.dumps(bundle).encode()
    signed = signing.describe(raw, tmp_path / "keyless.sig")
    assert signed.signer == f"{IDENTITY} ({signing.GITHUB_ISSUER})"
    assert signed.signature_sha256 == storage.sha256_bytes(raw)
