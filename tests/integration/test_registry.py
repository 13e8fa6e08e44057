"""The registry against a real MLflow server: register with lineage, the champion/challenger
gate, rollback, the model card, and interoperability with plain MLflow loading."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import mlflow
import mlflow.onnx
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from mlops_template.config import load_params
from mlops_template.io import storage
from mlops_template.serve.model import ServedModel
from tests.support.processes import VENV_BIN, free_port, stop
from tests.support.project import copy_repo, sh, use_test_table

pytestmark = pytest.mark.slow

NAME = "mlops-template"
# So regularised that it always answers the majority class: no better than the baseline.
USELESS = {"kind": "logistic_regression", "C": 0.0001, "max_iter": 1000}
WEAK = {"kind": "logistic_regression", "C": 0.001, "max_iter": 1000}
# Weak too, but other bytes: the same model again would reuse its version, not register.
WEAKER = {"kind": "logistic_regression", "C": 0.002, "max_iter": 1000}


def _set_model(root: Path, model: dict) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["model"] = model
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _served_by_mlflow(model_uri: str, env: dict[str, str], rows: pd.DataFrame) -> list[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            str(VENV_BIN / "mlflow"),
            "models",
            "serve",
            "--model-uri",
            model_uri,
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        # `mlflow models serve` starts `uvicorn` from PATH: the venv's.
        env={**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    body = json.dumps({"dataframe_records": rows.to_dict("records")}).encode()
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/invocations",
                    body,
                    {"content-type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=5) as response:
                    return json.loads(response.read())["predictions"]
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
    finally:
        stop(process)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_repo(tmp_path_factory.mktemp("registry"))
    use_test_table(root)
    _set_model(root, WEAK)
    sh(root, "dvc", "repro")
    return root


@pytest.fixture(scope="module")
def repro(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[], None]:
    """`dvc repro` in the project. Both servers' runs train the same four models, and a model's
    pipeline outputs do not depend on the registry's server (tests/integration/test_pipeline_e2e.py:
    a repro is byte-identical): the second run gets the first run's outputs for the same
    params.yaml and contract back (dvc.lock and every output it lists), instead of training
    each model again, and `dvc status` confirms they are exactly the pipeline's outputs."""
    store = tmp_path_factory.mktemp("outputs")
    contract = project / load_params(project / "params.yaml").data.contract
    timing = "reports/train_timing.json"  # written by train, untracked

    def run() -> None:
        key = hashlib.sha256((project / "params.yaml").read_bytes() + contract.read_bytes())
        saved = store / key.hexdigest()
        if not saved.exists():
            sh(project, "dvc", "repro")
            lock = yaml.safe_load((project / "dvc.lock").read_text())
            outs = {o["path"] for stage in lock["stages"].values() for o in stage.get("outs", [])}
            for path in sorted(outs | {"dvc.lock", timing}):
                if (project / path).is_dir():
                    shutil.copytree(project / path, saved / path)
                elif (project / path).exists():
                    (saved / path).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(project / path, saved / path)
            return
        for copy in sorted(saved.rglob("*")):
            if copy.is_file():
                path = project / copy.relative_to(saved)
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(copy, path)
        for top in (p for p in saved.iterdir() if p.is_dir()):  # directory outputs: no extras
            for path in (project / top.name).rglob("*"):
                if path.is_file() and not (saved / path.relative_to(project)).exists():
                    path.unlink()
        status = sh(project, "dvc", "status").stdout
        assert "up to date" in status, status

    return run


@pytest.mark.timeout(1200)  # a sequence of pipeline runs and registry calls
@pytest.mark.parametrize("server", ["mlflow_server", "mlflow_postgres_server"])
def test_register_promote_refuse_rollback(
    project: Path, repro: Callable[[], None], server: str, request: pytest.FixtureRequest
) -> None:
    """Once on SQLite, once on PostgreSQL (the shared-server set-up)."""
    mlflow_server = request.getfixturevalue(server)
    # GITHUB_REPOSITORY: the repository whose release workflow a rollback's image must be
    # signed by (these versions were never pushed: the rollback refuses before that).
    env = {"MLFLOW_TRACKING_URI": mlflow_server, "GITHUB_REPOSITORY": "acme/penguins"}
    client = MlflowClient(tracking_uri=mlflow_server)

    def mlops(*args: str, check: bool = True) -> str:
        result = sh(project, "mlops", *args, env=env, check=check)
        return result.stdout + result.stderr

    # Nothing registered yet: promote says so.
    assert "no registered version to promote" in mlops("model", "promote", check=False)

    # A model no better than always answering the majority class never becomes champion,
    # not even the first one. (The project is shared by both servers' runs: start from it.)
    _set_model(project, USELESS)
    repro()
    assert "registered version 1" in mlops("model", "register")
    assert "does not beat its baseline on f1_macro" in mlops("model", "promote", check=False)
    assert not client.get_registered_model(NAME).aliases

    # A weak first model that beats the baseline but fails a behaviour check of the data
    # contract (most of Dream's penguins misclassified) is refused; without the checks it
    # becomes champion: there is nothing to compare it with.
    _set_model(project, WEAK)
    repro()
    assert "registered version 2" in mlops("model", "register")
    refused = mlops("model", "promote", check=False)
    assert "behaviour checks failed: minimum each `island` slice of 10+ test rows" in refused
    assert not client.get_registered_model(NAME).aliases
    contract_file = project / load_params(project / "params.yaml").data.contract
    declared = contract_file.read_text()
    unchecked = {k: v for k, v in yaml.safe_load(declared).items() if k != "behaviour"}
    contract_file.write_text(yaml.safe_dump(unchecked, sort_keys=False))
    assert "promoted: first model" in mlops("model", "promote")
    contract_file.write_text(declared)  # the forest below passes every check
    assert client.get_model_version_by_alias(NAME, "champion").version == "2"

    # The default forest beats it and takes over.
    default = yaml.safe_load((Path(__file__).parents[2] / "params.yaml").read_text())["model"]
    _set_model(project, default)
    repro()
    assert "registered version 3" in mlops("model", "register")
    assert "promoted: f1_macro improved" in mlops("model", "promote")
    champion = client.get_model_version_by_alias(NAME, "champion")
    assert champion.version == "3"
    assert champion.tags["previous_champion"] == "2"

    # Lineage and the model card.
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    model_md5 = next(
        o["md5"] for o in lock["stages"]["train"]["outs"] if o["path"].endswith("joblib")
    )
    assert champion.tags["dvc_model_md5"] == model_md5
    assert champion.tags["model_sha256"] == storage.read_recorded_sha256(
        project / "models/model.joblib"
    )
    assert champion.tags["git_commit"] == sh(project, "git", "rev-parse", "HEAD").stdout.strip()
    assert json.loads(champion.tags["metrics"]) == storage.read_json(
        project / "reports/metrics.json"
    )
    assert len(champion.tags["params_sha256"]) == 64
    # The compiled model the image serves is in the same run, named by the version.
    served = (project / "models/model.onnx").read_bytes()
    assert champion.tags["onnx_sha256"] == storage.sha256_bytes(served)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_server)
    try:
        logged = mlflow.onnx.load_model(champion.tags["onnx_model_uri"])
    finally:
        mlflow.set_tracking_uri(previous)
    assert logged.SerializeToString() == served
    assert champion.description.startswith("# Model card: mlops-template")
    assert "## Compared with the previous champion" in champion.description
    assert "## Behaviour checks" in champion.description
    assert "| invariance | changing `sex`" in champion.description

    # The same model again (a docs-only merge, or a re-run release) registers nothing new:
    # the release ships the champion unchanged.
    assert "version 3 already holds this model" in mlops("model", "register")
    assert "release: unchanged: version 3" in mlops("model", "release")
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 3

    # Plain MLflow loads the champion and predicts what our service predicts.
    mlflow.set_tracking_uri(mlflow_server)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    features = load_params(project / "params.yaml").data.contract
    names = [spec["name"] for spec in yaml.safe_load((project / features).read_text())["features"]]
    rows = pd.read_parquet(project / "data/test.parquet")[names]
    served = ServedModel.load(project / "models/model.joblib")
    ours = [served.classes[i] for i in served.predict_proba(rows.to_dict("records")).argmax(1)]
    assert list(pyfunc.predict(rows)) == ours

    # ... and so does `mlflow models serve` on the alias: interoperable with the ecosystem.
    if server == "mlflow_server":
        assert _served_by_mlflow(f"models:/{NAME}@champion", env, rows.head(10)) == ours[:10]

    # A worse candidate is refused with the reason; the alias stays; the decision is recorded.
    _set_model(project, WEAKER)
    repro()
    assert "registered version 4" in mlops("model", "register")
    refused = mlops("model", "promote", check=False)
    assert "not promoted: f1_macro" in refused
    assert client.get_model_version_by_alias(NAME, "champion").version == "3"
    decisions = [
        json.loads(v)
        for k, v in client.get_model_version(NAME, "4").tags.items()
        if k.startswith("promotion.")
    ]
    assert decisions[0]["promoted"] is False
    assert decisions[0]["champion_version"] == "3"
    assert {"at", "actor", "commit", "reason", "candidate", "champion"} <= set(decisions[0])

    # Releasing it is not a crash: refused, exit 0, nothing deployable; a re-run is idempotent.
    for _ in range(2):
        assert "release: refused: version 4: f1_macro" in mlops("model", "release")
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 4
    assert client.get_model_version_by_alias(NAME, "champion").version == "3"

    # Rollback moves the champion back to the version it replaced. These versions were never
    # pushed (no release recorded their image): the overlay cannot be prepared, so a plain
    # rollback refuses, and --alias-only moves the alias alone, saying so. (The rollback of a
    # released image: tests/integration/test_rollback.py.)
    refused = mlops("deploy", "rollback", "--no-pr", check=False)
    assert "version 2 records no image" in refused
    assert client.get_model_version_by_alias(NAME, "champion").version == "3"
    rolled = mlops("deploy", "rollback", "--alias-only")
    assert "champion is version 2 (was 3)" in rolled
    assert "the alias alone moved" in rolled
    assert client.get_model_version_by_alias(NAME, "champion").version == "2"


COMMANDS = ("register", "release")


def test_a_tampered_model_is_not_registered(project: Path, mlflow_server: str) -> None:
    model = project / "models" / "model.joblib"
    original = model.read_bytes()
    model.write_bytes(original + b"\0")
    env = {"MLFLOW_TRACKING_URI": mlflow_server}
    try:
        results = [sh(project, "mlops", "model", cmd, env=env, check=False) for cmd in COMMANDS]
    finally:
        model.write_bytes(original)
    for result in results:  # the release refuses it too, before the registry is asked
        assert result.returncode == 1
        assert "models/model.joblib: sha256" in result.stderr
        assert "does not match the recorded" in result.stderr
