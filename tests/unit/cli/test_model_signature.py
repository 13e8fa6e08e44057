"""`mlops model sign` and `mlops model verify` on a real trained model, as `make sign-model`
and `make verify-model` run them: a bad or missing signature exits non-zero naming the file."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mlops_template.cli.app import app
from mlops_template.io import signing, storage
from tests.conftest import REPO_ROOT
from tests.support import tasks
from tests.support.signing import KeyPair, flip_one_byte, key_pair
from tests.unit.serve.conftest import service_params_file


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, penguins: pd.DataFrame) -> Path:
    return tasks.penguin_task(tmp_path_factory.mktemp("penguins"), penguins).onnx_path


@pytest.fixture
def project(tmp_path: Path, trained: Path) -> Path:
    """A params.yaml serving a copy of the trained model (models/model.onnx, unsigned)."""
    params, _ = service_params_file(tmp_path, trained)
    return params


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    return key_pair(tmp_path / "keys")


def mlops(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_sign_then_verify(project: Path, keys: KeyPair, tmp_path: Path) -> None:
    code, out = mlops("model", "sign", "--private-key", str(keys.private), "--params", str(project))
    assert code == 0, out
    model, signature = tmp_path / "models" / "model.onnx", tmp_path / "models" / "model.sig"
    assert f"signed {model} (sha256 {storage.sha256_file(model)}) into {signature}" in out
    code, out = mlops("model", "verify", "--public-key", str(keys.public), "--params", str(project))
    assert code == 0, out
    assert f"verified {model}" in out


def test_verify_names_the_file_and_what_is_wrong(
    project: Path, keys: KeyPair, tmp_path: Path
) -> None:
    model, signature = tmp_path / "models" / "model.onnx", tmp_path / "models" / "model.sig"
    verify = ("model", "verify", "--public-key", str(keys.public), "--params", str(project))
    code, out = mlops(*verify)
    assert code == 1
    assert f"error: {signature}: missing: {model} is not signed" in out
    assert (
        mlops("model", "sign", "--private-key", str(keys.private), "--params", str(project))[0] == 0
    )
    flip_one_byte(model)
    code, out = mlops(*verify)
    assert code == 1
    assert f"error: {model}: sha256 {storage.sha256_file(model)}, but {signature} signs" in out
    other = key_pair(tmp_path / "other", "other")
    code, out = mlops(
        "model", "verify", "--public-key", str(other.public), "--params", str(project)
    )
    assert code == 1
    assert f"error: {signature}: not a valid signature of {model} by the public key" in out


def test_sign_refuses_a_model_its_record_does_not_describe(
    project: Path, keys: KeyPair, tmp_path: Path
) -> None:
    model = tmp_path / "models" / "model.onnx"
    model.write_bytes(model.read_bytes() + b"\0")
    code, out = mlops("model", "sign", "--private-key", str(keys.private), "--params", str(project))
    assert code == 1
    assert f"error: {model}: sha256" in out
    assert not (tmp_path / "models" / "model.sig").exists()


def test_sign_and_verify_need_one_way(project: Path) -> None:
    code, out = mlops("model", "sign", "--params", str(project))
    assert (code, "give --private-key PEM or --sigstore" in out) == (1, True)
    code, out = mlops("model", "verify", "--params", str(project))
    assert (code, "give --public-key PEM or --identity" in out) == (1, True)


def test_make_targets_sign_with_the_key_from_the_environment(
    project: Path, keys: KeyPair, tmp_path: Path
) -> None:
    """release.yml's way: the private key's PEM in MODEL_SIGNING_KEY, piped to `mlops` (never
    written to disk); then `make verify-model`, and its refusal of another key. The Makefile
    runs in a folder holding the test's params.yaml, with `mlops` from the environment."""
    work = tmp_path / "checkout"
    (work / ".ci").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "Makefile", work / "Makefile")
    shutil.copy(REPO_ROOT / ".ci" / "workflows.mk", work / ".ci" / "workflows.mk")
    shutil.copy(project, work / "params.yaml")
    env = {
        "PATH": f"{REPO_ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "MODEL_SIGNING_KEY": keys.private.read_text(),
    }

    def make(target: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "-s", "-C", str(work), target, "UV=/bin/true", "RUN=", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    signed = make("sign-model")
    assert signed.returncode == 0, signed.stderr
    assert keys.private.read_text() not in signed.stdout + signed.stderr
    signature = tmp_path / "models" / "model.sig"
    described = signing.describe(signature.read_bytes(), signature)
    assert described.signer == f"key:sha256:{signing.key_fingerprint(keys.public.read_bytes())}"
    verified = make("verify-model", f"PUBLIC_KEY={keys.public}")
    assert verified.returncode == 0, verified.stderr
    other = key_pair(tmp_path / "other", "other")
    refused = make("verify-model", f"PUBLIC_KEY={other.public}")
    assert refused.returncode != 0
    assert f"error: {signature}: not a valid signature of {tmp_path / 'models' / 'model.onnx'}" in (
        refused.stderr
    )
    env.pop("MODEL_SIGNING_KEY")
    nothing = make("sign-model")
    assert nothing.returncode == 2
    assert (
        "sign-model: KEY=private.pem, MODEL_SIGNING_KEY (the PEM) or SIGSTORE=1" in nothing.stderr
    )
