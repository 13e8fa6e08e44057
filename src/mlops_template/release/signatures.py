"""The served model's signature, recorded with its registry version.

The release signs the model file the image serves (`mlops model sign`, io/signing.py) and
records on the registry version what the signature says, as the tag `model_signature`: one
JSON value (the signed file's name and sha256, the signature file's sha256, and the signer:
the public key's fingerprint, or the Sigstore certificate's identity and issuer), plus an
audit record `model_signature.<time>` (registry._record). Whoever later finds a model file
and a signature can tell from the registry whether that is the signature the release made.

A signature is recorded only on the version whose model it signs: its signed sha256 must be
the version's `model_sha256` (the scikit-learn model) or `onnx_sha256` (its compilation, what
the image serves).
"""

from __future__ import annotations

import json
from typing import Any

from mlops_template import PipelineError
from mlops_template.io import signing, tracking
from mlops_template.release import registry, releases

SIGNATURE_TAG = "model_signature"
SIGNATURE_EVENT = "model_signature"  # the audit records: model_signature.<time>


def signature_value(signed: signing.Signed) -> str:
    """The `model_signature` tag's value."""
    return json.dumps(
        {
            "file": signed.name,
            "sha256": signed.sha256,
            "signature_sha256": signed.signature_sha256,
            "signer": signed.signer,
        },
        sort_keys=True,
    )


def record_signature(client: Any, name: str, version: str, signed: signing.Signed) -> bool:
    """Tag registry version `version` with the signature of its model and record the event;
    False (nothing written) when it already records exactly this signature (a re-run)."""
    releases.validate_version(version)
    target = client.get_model_version(name, version)
    held = {
        tag: target.tags[tag]
        for tag in (tracking.MODEL_SHA_TAG, tracking.ONNX_SHA_TAG)
        if target.tags.get(tag)
    }
    if signed.sha256 not in held.values():
        recorded = ", ".join(f"{tag} {value}" for tag, value in held.items()) or "no sha256"
        raise PipelineError(
            f"the signature signs {signed.name} with sha256 {signed.sha256}; registry version"
            f" {version} of {name} holds {recorded}: not its model, nothing recorded"
        )
    value = signature_value(signed)
    if target.tags.get(SIGNATURE_TAG) == value:
        return False
    # The audit record first: if the tag then fails, a re-run records it again.
    registry._record(client, name, version, SIGNATURE_EVENT, json.loads(value))
    client.set_model_version_tag(name, version, SIGNATURE_TAG, value)
    return True
