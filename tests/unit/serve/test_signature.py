"""The served model's signature, verified at load before the model is deserialized: a real
model trained by the train stage's code, signed with a key pair made here, served in-process.
A model that is not what was signed never becomes ready, and readiness says why as a code."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from mlops_template import PipelineError
from mlops_template.config import ServeSettings, load_params
from mlops_template.io import signing, storage
from mlops_template.serve.__main__ import main, signature_check
from mlops_template.serve.app import ServiceState
from mlops_template.serve.model import LoadError, ServedModel, SignatureCheck
from tests.support.signing import SignedModel, flip_one_byte, key_pair, signed_copy
from tests.support.tasks import TaskModel
from tests.unit.serve.conftest import GENTOO, service_params_file, wait_ready

Client = Callable[..., TestClient]


@pytest.fixture
def signed(tmp_path: Path, penguin_task: TaskModel) -> SignedModel:
    return signed_copy(penguin_task.onnx_path, tmp_path)


def _client(
    make_client: Client, task: TaskModel, model: Path, check: SignatureCheck
) -> tuple[TestClient, ServiceState]:
    state = ServiceState()
    client = make_client(
        load=lambda: ServedModel.load(
            model, storage.read_recorded_sha256(model), task.contract, signature=check
        ),
        state=state,
    )
    return client, state


def _not_ready(client: TestClient, state: ServiceState) -> str:
    assert state.loaded.wait(10)
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert client.post("/predict", json=GENTOO).status_code == 503
    body = response.json()
    assert body["ready"] is False
    return str(body["reason"])


def test_signed_by_the_trusted_key_is_ready(
    make_client: Client, penguin_task: TaskModel, signed: SignedModel
) -> None:
    check = SignatureCheck(signed.signature, signing.KeyTrust(signed.keys.public))
    client, _ = _client(make_client, penguin_task, signed.model, check)
    wait_ready(client)
    assert client.post("/predict", json=GENTOO).json()["prediction"] == "Gentoo"


def test_a_byte_changed_after_signing_is_not_ready(
    make_client: Client,
    penguin_task: TaskModel,
    signed: SignedModel,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The model and its .sha256 swapped together pass the hash check; not the signature."""
    flip_one_byte(signed.model)
    check = SignatureCheck(signed.signature, signing.KeyTrust(signed.keys.public))
    client, state = _client(make_client, penguin_task, signed.model, check)
    assert _not_ready(client, state) == "model_signature_invalid"
    response = client.get("/health/ready").text
    assert str(signed.model) not in response  # the details go to the log, not to clients
    assert f"{signed.model}: sha256 {storage.sha256_file(signed.model)}" in caplog.text
    assert "changed after it was signed" in caplog.text


def test_a_signature_by_another_key_is_not_ready(
    make_client: Client, penguin_task: TaskModel, signed: SignedModel, tmp_path: Path
) -> None:
    other = key_pair(tmp_path / "other", "other")
    check = SignatureCheck(signed.signature, signing.KeyTrust(other.public))
    client, state = _client(make_client, penguin_task, signed.model, check)
    assert _not_ready(client, state) == "model_signature_untrusted"


def test_a_missing_signature_is_not_ready(
    make_client: Client, penguin_task: TaskModel, signed: SignedModel
) -> None:
    signed.signature.unlink()
    check = SignatureCheck(signed.signature, signing.KeyTrust(signed.keys.public))
    client, state = _client(make_client, penguin_task, signed.model, check)
    assert _not_ready(client, state) == "model_signature_missing"


def test_an_unreadable_public_key_is_not_ready(
    make_client: Client, penguin_task: TaskModel, signed: SignedModel
) -> None:
    signed.keys.public.write_text("not a key")
    check = SignatureCheck(signed.signature, signing.KeyTrust(signed.keys.public))
    client, state = _client(make_client, penguin_task, signed.model, check)
    assert _not_ready(client, state) == "model_signature_unverifiable"


def test_a_signed_model_other_than_the_pinned_one_is_refused(
    signed: SignedModel, penguin_task: TaskModel
) -> None:
    """A valid signature of another model: the service serves only the pinned sha256."""
    check = SignatureCheck(signed.signature, signing.KeyTrust(signed.keys.public))
    with pytest.raises(LoadError, match=r"must have the expected sha256 0{64}") as caught:
        ServedModel.load(signed.model, "0" * 64, penguin_task.contract, signature=check)
    assert caught.value.code == "model_signature_invalid"


class _Marker:
    """A pickle that runs code when loaded: creates `path`."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"open({str(self.path)!r}, 'w').close()",))


def test_a_crafted_pickle_signed_by_another_key_is_never_unpickled(tmp_path: Path) -> None:
    """Verified before deserialized: a joblib file that runs code when loaded, with a valid
    .sha256 record and a signature by a key the service does not trust, is never loaded."""
    marker = tmp_path / "pwned"
    crafted = tmp_path / "crafted.joblib"
    crafted.write_bytes(pickle.dumps(_Marker(marker)))
    attacker = signed_copy(crafted, tmp_path / "attacker")
    trusted = key_pair(tmp_path / "trusted")
    check = SignatureCheck(attacker.signature, signing.KeyTrust(trusted.public))
    with pytest.raises(LoadError) as caught:
        ServedModel.load(attacker.model, signature=check)
    assert caught.value.code == "model_signature_untrusted"
    assert not marker.exists()
    attacker.signature.unlink()
    with pytest.raises(LoadError, match="missing"):
        ServedModel.load(attacker.model, signature=check)
    assert not marker.exists()


def test_the_process_verifies_with_the_key_its_settings_name(
    tmp_path: Path, penguin_task: TaskModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve.model_signature key and the public key from the environment, as an image's
    operator sets them; a mode without what it needs refuses to start, naming the setting."""
    params_file, _ = service_params_file(tmp_path, penguin_task.onnx_path)
    params = load_params(params_file)
    model = params.paths.onnx_model
    keys = key_pair(tmp_path / "keys")
    signing.sign_with_key(model, params.paths.model_signature, keys.private)
    settings = params.serve.model_copy(
        update={"model_signature": "key", "signature_public_key": keys.public}
    )
    check = signature_check(params, settings)
    assert check == SignatureCheck(params.paths.model_signature, signing.KeyTrust(keys.public))
    ServedModel.load(model, signature=check)
    with pytest.raises(PipelineError, match=r"set serve\.signature_public_key"):
        signature_check(params, params.serve.model_copy(update={"model_signature": "key"}))
    with pytest.raises(PipelineError, match=r"set serve\.signature_identity"):
        signature_check(params, params.serve.model_copy(update={"model_signature": "sigstore"}))
    # The environment's settings, and a refusal to start over a bad one.
    monkeypatch.setenv("MLOPS_MODEL_SIGNATURE", "key")
    monkeypatch.setenv("MLOPS_SIGNATURE_PUBLIC_KEY", str(tmp_path / "absent.pub"))
    assert main(["--params", str(params_file)]) == 1
    monkeypatch.setenv("MLOPS_MODEL_SIGNATURE", "sometimes")
    assert main(["--params", str(params_file)]) == 1


def test_sigstore_settings_reach_the_verifier(tmp_path: Path, penguin_task: TaskModel) -> None:
    """Keyless verification cannot run offline (no Sigstore-signed model here): the identity,
    issuer and trust root the settings give are the ones the verifier checks against."""
    params_file, _ = service_params_file(tmp_path, penguin_task.onnx_path)
    params = load_params(params_file)
    trust_config = tmp_path / "trust.json"
    trust_config.write_text(signing.embedded_trust_config())
    identity = "https://github.com/acme/penguins/.github/workflows/release.yml@refs/heads/main"
    settings: ServeSettings = params.serve.model_copy(
        update={
            "model_signature": "sigstore",
            "signature_identity": identity,
            "signature_trust_config": trust_config,
        }
    )
    check = signature_check(params, settings)
    assert check is not None
    assert check.trust == signing.SigstoreTrust(identity, signing.GITHUB_ISSUER, trust_config)
    policy = signing.verifier(check.trust)._verifier._policy  # type: ignore[attr-defined]
    assert (policy._identity, policy._issuer._value) == (identity, signing.GITHUB_ISSUER)
    assert params.paths.model_signature.parent == tmp_path / "models"
    with pytest.raises(LoadError) as caught:
        ServedModel.load(params.paths.onnx_model, signature=check)
    assert caught.value.code == "model_signature_missing"
