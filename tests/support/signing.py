"""Real ECDSA key pairs for the signature tests, and a model signed with one."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mlops_template.io import signing, storage


@dataclass(frozen=True)
class KeyPair:
    private: Path  # PEM, unencrypted
    public: Path  # PEM SubjectPublicKeyInfo


def key_pair(directory: Path, name: str = "signer") -> KeyPair:
    """A fresh P-256 key pair written as PEM files in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    private = directory / f"{name}.pem"
    public = directory / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return KeyPair(private, public)


@dataclass(frozen=True)
class SignedModel:
    model: Path  # models/model.onnx (or .joblib), with its .sha256 beside it
    signature: Path  # models/model.sig
    keys: KeyPair


def signed_copy(source: Path, directory: Path) -> SignedModel:
    """`source` and its .sha256 copied into `directory`/models as model<suffix>, signed
    there with a new key pair (the keys outside models/)."""
    models = directory / "models"
    models.mkdir(parents=True)
    model = models / f"model{source.suffix}"
    shutil.copy(source, model)
    storage.write_text(
        storage.sha256_sidecar(model), f"{storage.sha256_file(model)}  {model.name}\n"
    )
    keys = key_pair(directory / "keys")
    signature = models / "model.sig"
    signing.sign_with_key(model, signature, keys.private)
    return SignedModel(model, signature, keys)


def flip_one_byte(path: Path, at: int = 100) -> None:
    """Change one byte of `path` in place, and record the new sha256 beside it (as someone
    who swapped the model would): only the signature can tell."""
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    storage.write_text(storage.sha256_sidecar(path), f"{storage.sha256_file(path)}  {path.name}\n")
