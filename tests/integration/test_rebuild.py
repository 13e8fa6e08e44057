"""The release ships what main rebuilds, not what a pull request's job wrote: the rebuild from
an empty cache against dvc.lock, the gate's inputs computed without keys, and the registry's
job that takes them (real dvc, a real MLflow server). release.yml runs the same commands under
act in tests/integration/docker/test_lifecycle.py (the attack, step by step)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from mlops_template.io import storage
from tests.support.project import copy_repo, sh

pytestmark = pytest.mark.slow

NAME = "rebuild-test"


@pytest.fixture(scope="module")
def main_branch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """main after an honest merge: the pipeline ran, dvc.lock committed."""
    root = copy_repo(tmp_path_factory.mktemp("rebuild") / "main")
    params = root / "params.yaml"
    raw = yaml.safe_load(params.read_text())
    raw["registry"]["model_name"] = NAME  # its own name on the session's MLflow server
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    sh(root, "dvc", "repro")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-q", "-m", "main's run")
    return root


def clone(main_branch: Path, where: Path) -> Path:
    sh(where.parent, "git", "clone", "-q", str(main_branch), where.name)
    return where


def test_main_rebuilds_to_its_dvc_lock_from_nothing(main_branch: Path, tmp_path: Path) -> None:
    """A fresh clone holds no output and an empty cache: everything is built again, and every
    output is byte for byte the one dvc.lock names."""
    checkout = clone(main_branch, tmp_path / "checkout")
    assert not (checkout / "models/model.onnx").exists()
    result = sh(checkout, "mlops", "model", "rebuild")
    assert "rebuild: `dvc repro --force --no-run-cache` from an empty cache" in result.stdout
    assert "outputs are byte for byte the ones dvc.lock names" in result.stdout
    assert (checkout / "models/model.onnx").is_file()
    assert sh(checkout, "git", "status", "--porcelain", "dvc.lock").stdout == ""
    assert not (checkout / ".dvc/config.local").exists()  # the empty cache was temporary


def test_a_model_the_code_does_not_build_fails_the_rebuild_naming_it(
    main_branch: Path, tmp_path: Path
) -> None:
    """The attack: a pull request's job wrote a crafted model and a dvc.lock that names it
    (as a changed Makefile target would), then the change was reverted. dvc.lock is
    consistent with the files, so only rebuilding shows that the code does not make them."""
    checkout = clone(main_branch, tmp_path / "attacked")
    sh(checkout, "dvc", "repro")  # the PR job's run (a clone has no cache)
    onnx = checkout / "models/model.onnx"
    crafted = onnx.read_bytes() + b"backdoor"
    onnx.write_bytes(crafted)
    storage.sha256_sidecar(onnx).write_text(storage.sha256_bytes(crafted) + "\n")
    sh(checkout, "dvc", "commit", "--force", "train")
    sh(checkout, "git", "commit", "-q", "-am", "bot: dvc.lock")
    lock = (checkout / "dvc.lock").read_text()
    reviewed_md5 = storage.md5_file(onnx)

    result = sh(checkout, "mlops", "model", "rebuild", check=False)
    assert result.returncode == 1
    assert "does not rebuild to the reviewed outputs" in result.stderr
    line = next(x for x in result.stderr.splitlines() if "models/model.onnx (stage train)" in x)
    assert f"dvc.lock says md5 {reviewed_md5}" in line
    rebuilt = storage.md5_file(onnx)
    assert rebuilt != reviewed_md5
    assert f"the rebuild wrote md5 {rebuilt}" in line
    assert "models/model.onnx.sha256 (stage train)" in result.stderr
    assert (checkout / "dvc.lock").read_text() == lock  # the merged lock is left as it was


def _hand_over(checkout: Path, champion: Path, env: dict[str, str]) -> Path:
    sh(checkout, "mlops", "model", "champion", "--out", str(champion), env=env)
    out = champion.parent / f"{champion.name}-inputs"
    sh(checkout, "mlops", "model", "gate-inputs", "--champion", str(champion), "--out", str(out))
    return out


def test_the_registry_job_releases_only_a_checked_hand_over(
    main_branch: Path, tmp_path: Path, mlflow_server: str
) -> None:
    env = {"MLFLOW_TRACKING_URI": mlflow_server}
    client = MlflowClient(tracking_uri=mlflow_server)
    builder = clone(main_branch, tmp_path / "builder")
    sh(builder, "mlops", "model", "rebuild")
    inputs = _hand_over(builder, tmp_path / "champion", env)
    assert json.loads((tmp_path / "champion/champion.json").read_text()) == {"champion": None}
    gate = json.loads((inputs / "gate-inputs.json").read_text())
    assert gate["runtime"] == "onnx"
    assert gate["champion"] is None
    assert gate["candidate"]["beats_baseline"] is True

    def release(folder: Path, check: bool = True) -> str:
        registry_job = clone(main_branch, tmp_path / f"registry-{len(list(tmp_path.iterdir()))}")
        result = sh(
            registry_job, "mlops", "model", "release", "--inputs", str(folder), env=env, check=check
        )
        return result.stdout + result.stderr

    # Tampered hand-overs are refused before the registry is asked.
    bad = tmp_path / "tampered"
    shutil.copytree(inputs, bad)
    (bad / "outputs/models/model.onnx").write_bytes(b"not the rebuilt model")
    assert "do not match their dvc.lock" in release(bad, check=False)
    shutil.rmtree(bad)
    shutil.copytree(inputs, bad)
    payload = json.loads((bad / "gate-inputs.json").read_text())
    payload["candidate"]["f1_macro"] = 1.0
    payload["extra"] = "ignored?"
    (bad / "gate-inputs.json").write_text(json.dumps(payload))
    assert "not the gate's inputs" in release(bad, check=False)
    shutil.rmtree(bad)
    shutil.copytree(inputs, bad)
    (bad / "mlflow-sklearn/model.skops").write_bytes(b"pickled payload")
    assert "mlflow-sklearn/model.skops: not the file the gate's inputs name" in release(
        bad, check=False
    )
    assert not client.search_model_versions(f"name = '{NAME}'")

    # The checked hand-over: the first champion, registered from the saved MLflow models.
    assert "release: promoted: version 1: first model" in release(inputs)
    champion = client.get_model_version_by_alias(NAME, "champion")
    served = (builder / "models/model.onnx").read_bytes()
    assert champion.tags["onnx_sha256"] == storage.sha256_bytes(served)
    mlflow.set_tracking_uri(mlflow_server)
    assert mlflow.onnx.load_model(champion.tags["onnx_model_uri"]).SerializeToString() == served
    assert hasattr(mlflow.sklearn.load_model(f"models:/{NAME}/1"), "predict_proba")

    # The next release scores the champion from the registry: the same model ships unchanged.
    again = _hand_over(builder, tmp_path / "champion-2", env)
    gate = json.loads((again / "gate-inputs.json").read_text())
    assert gate["champion"]["version"] == "1"
    assert gate["champion"]["metrics"]["f1_macro"] == gate["candidate"]["f1_macro"]
    assert "release: unchanged: version 1" in release(again)
    # A hand-over that scored another champion than the registry's now is refused.
    assert "it changed during this release" in release(inputs, check=False)
