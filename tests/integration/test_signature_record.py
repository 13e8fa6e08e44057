"""release/signatures.py against a real MLflow server: the signature of a version's model is
recorded on that version (tag and audit record), once; a signature of another model is not.
Also `mlops model record-signature`, as `make record-signature` runs it in release.yml."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from mlops_template import PipelineError
from mlops_template.io import signing, storage
from mlops_template.release import signatures
from tests.conftest import REPO_ROOT, repo_params_dict
from tests.support.processes import VENV_BIN
from tests.support.signing import key_pair

pytestmark = pytest.mark.slow


def _version(client: MlflowClient, name: str, tags: dict[str, str]) -> str:
    """A registered version holding these sha256 tags (as `mlops model register` sets them)."""
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    experiment = client.get_experiment_by_name("signatures")
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment("signatures")
    )
    run = client.create_run(experiment_id)
    client.set_terminated(run.info.run_id)
    source = f"{run.info.artifact_uri}/model"
    return str(client.create_model_version(name, source, run.info.run_id, tags=tags).version)


def test_the_signature_is_recorded_on_its_models_version(
    mlflow_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("GITHUB_ACTOR", "release-bot")
    client = MlflowClient(tracking_uri=mlflow_server)
    model = tmp_path / "model.onnx"
    model.write_bytes(b"a compiled model" * 100)
    keys = key_pair(tmp_path / "keys")
    signed = signing.sign_with_key(model, tmp_path / "model.sig", keys.private)
    name = "signed-model"
    version = _version(
        client, name, {"model_sha256": "1" * 64, "onnx_sha256": storage.sha256_file(model)}
    )

    assert signatures.record_signature(client, name, version, signed)
    tags = client.get_model_version(name, version).tags
    recorded = json.loads(tags[signatures.SIGNATURE_TAG])
    assert recorded == {
        "file": "model.onnx",
        "sha256": storage.sha256_file(model),
        "signature_sha256": storage.sha256_file(tmp_path / "model.sig"),
        "signer": f"key:sha256:{signing.key_fingerprint(keys.public.read_bytes())}",
    }
    (audit,) = [key for key in tags if key.startswith("model_signature.")]
    assert json.loads(tags[audit])["actor"] == "release-bot"
    assert json.loads(tags[audit])["signer"] == recorded["signer"]
    # A re-run release records nothing new.
    assert not signatures.record_signature(client, name, version, signed)
    tags = client.get_model_version(name, version).tags
    assert len([key for key in tags if key.startswith("model_signature.")]) == 1

    # The signature of a model this version does not hold is refused, naming both.
    other = _version(client, name, {"model_sha256": "2" * 64, "onnx_sha256": "3" * 64})
    with pytest.raises(PipelineError, match=f"registry version {other} of {name} holds") as caught:
        signatures.record_signature(client, name, other, signed)
    assert signed.sha256 in str(caught.value)
    assert signatures.SIGNATURE_TAG not in client.get_model_version(name, other).tags

    # The command release.yml's `make record-signature` runs (its own model name here: the
    # server is shared with the other registry tests).
    raw = repo_params_dict()
    raw["registry"]["model_name"] = "signed-model-cli"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    third = _version(client, "signed-model-cli", {"model_sha256": storage.sha256_file(model)})
    command = [str(VENV_BIN / "mlops"), "model", "record-signature", "--version", third]
    options = ["--signature", str(tmp_path / "model.sig"), "--params", str(params)]
    result = subprocess.run(
        [*command, *options],
        cwd=REPO_ROOT,
        env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_server},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"registry version {third} of signed-model-cli: signature" in result.stdout
    tags = client.get_model_version("signed-model-cli", third).tags
    assert json.loads(tags[signatures.SIGNATURE_TAG])["signer"] == recorded["signer"]
