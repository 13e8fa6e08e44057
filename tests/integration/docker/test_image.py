"""The real image: build, run, call it, check it runs as non-root, push and pull by digest."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from mlops_template.config import load_params
from mlops_template.contract import Contract, load_contract
from tests.conftest import REPO_ROOT
from tests.integration.docker.conftest import DOCKER, Engine, build_image
from tests.support.processes import free_port

pytestmark = pytest.mark.docker


def project_contract() -> Contract:
    """The project's data contract (params.yaml data.contract), which the image carries."""
    params = load_params(REPO_ROOT / "params.yaml")
    return load_contract(REPO_ROOT / params.data.contract)


def invalid(contract: Contract) -> dict[str, object]:
    """The contract's example with its first feature outside the contract."""
    spec = contract.features[0]
    if spec.kind == "categorical":
        wrong: object = "not one of the categories"
    else:
        wrong = (spec.maximum * 10 + 1) if spec.maximum is not None else "a string"
    return {**contract.example, spec.name: wrong}


# Measured 238 MB on the local Debian base (124 MB): the ONNX runtime without scikit-learn,
# SciPy or pandas (410 MB with them). 271 MB with model-signing's verifier (issue 27: +32 MB,
# sigstore, cryptography, rfc3161-client, tuf, securesystemslib, requests; the two Rust
# extensions alone are 18 MB), once the Dockerfile drops what it never imports (rich, pygments,
# dnspython: 17 MB more).
MAX_IMAGE_MB = 275
PIPELINE_ONLY = ("sklearn", "scipy", "pandas", "joblib", "mlflow", "dvc", "pandera", "pyarrow")
PIPELINE_ONLY += ("shap", "numba", "llvmlite")  # the explain stage's; /explain does without


# The files of a hand-made build context besides src/, the contract and models/ (uv itself is
# installed from its hashed requirement).
IMAGE_FILES = (
    "pyproject.toml",
    "uv.lock",
    "README.md",
    "params.yaml",
    "Dockerfile",
    ".ci/uv-requirements.txt",
)


@contextmanager
def running(engine: Engine, image: str) -> Iterator[tuple[str, str]]:
    """`image` started as production runs it (read-only, no capabilities, no new privileges,
    a tmpfs for the log) until it is ready; its container name and URL. Removed after."""
    port = free_port()
    name = f"mlops-template-test-{port}"
    engine.run(
        "run", "--detach", "--name", name, "--network", "host",
        "--env", "MLOPS_SERVE_HOST=127.0.0.1", "--env", f"MLOPS_SERVE_PORT={port}",
        "--read-only", "--tmpfs", "/app/logs:uid=10001,gid=10001",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges", image,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(engine.run("logs", name, check=False))
            time.sleep(0.2)
        yield name, url
    finally:
        engine.run("rm", "--force", name, check=False)


@pytest.fixture(scope="module")
def container(engine: Engine, image: str) -> Iterator[tuple[str, str]]:
    with running(engine, image) as started:
        yield started


def test_container_serves_predictions_health_and_metrics(container: tuple[str, str]) -> None:
    _, url = container
    contract = project_contract()
    with httpx.Client(base_url=url, timeout=5) as client:
        assert client.get("/health/live").status_code == 200
        response = client.post("/predict", json=dict(contract.example))
        assert response.status_code == 200
        prediction = response.json()["prediction"]
        if contract.is_classification:
            assert prediction in contract.classes
        else:
            assert isinstance(prediction, float)
        assert client.post("/predict", json=invalid(contract)).status_code == 422
        metrics = client.get("/metrics").text
        assert 'http_requests_total{route="/predict",status="200"} 1.0' in metrics
        assert "model_info{version=" in metrics
        # The training reference is in the image: the drift gauges have values to compare with.
        if contract.is_classification:
            assert (
                f'prediction_class_share_reference{{predicted_class="{contract.classes[0]}"}}'
                in metrics
            )
            assert "prediction_drift_psi NaN" not in metrics
        else:
            assert "prediction_mean_reference " in metrics
        # The explain stage's background rows are in the image: /explain answers, without shap.
        explained = client.post("/explain", json=dict(contract.example), timeout=30)
        assert explained.status_code == 200, explained.text
        assert explained.json()["prediction"] == prediction
        assert explained.json()["contributions"]


def test_the_image_prints_its_contract_example(container: tuple[str, str], engine: Engine) -> None:
    name, _ = container
    printed = engine.run("exec", name, "python3", "-m", "mlops_template.serve", "--example")
    assert json.loads(printed) == dict(project_contract().example)


def test_the_release_smoke_test_passes(engine: Engine, image: str) -> None:
    """.ci/smoke-test, as the release runs it: its request comes from the image's contract."""
    result = subprocess.run(
        [str(REPO_ROOT / ".ci" / "smoke-test"), image, str(free_port())],
        env={**engine.env, "DOCKER": str(DOCKER)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ready, predicted, exported metrics, runs as uid 10001" in result.stdout


def test_container_runs_as_a_numeric_non_root_user(
    engine: Engine, image: str, container: tuple[str, str]
) -> None:
    name, _ = container
    assert engine.run("image", "inspect", "--format", "{{.Config.User}}", image) == "10001:10001"
    assert engine.run("exec", name, "id", "-u") == "10001"


def test_healthcheck_reports_healthy(engine: Engine, container: tuple[str, str]) -> None:
    name, _ = container
    deadline = time.monotonic() + 90
    status = ""
    while time.monotonic() < deadline:
        status = engine.run("inspect", "--format", "{{.State.Health.Status}}", name)
        if status == "healthy":
            return
        time.sleep(1)
    raise AssertionError(f"health status {status!r}")


def test_image_holds_runtime_dependencies_only(engine: Engine, image: str) -> None:
    absent = (*PIPELINE_ONLY, "pytest", "pip")
    code = f"import importlib.util as u; print([m for m in {absent!r} if u.find_spec(m)])"
    assert engine.run("run", "--rm", "--network", "none", image, "python3", "-c", code) == "[]"
    card = engine.run(
        "run", "--rm", "--network", "none", image, "head", "-1", "models/model_card.md"
    )
    assert card.startswith("# Model card")
    size_mb = int(engine.run("image", "inspect", "--format", "{{.Size}}", image)) / 1e6
    assert size_mb < MAX_IMAGE_MB, f"{size_mb:.0f} MB"


def test_push_and_pull_back_by_digest(engine: Engine, image: str, registry: str) -> None:
    remote = f"{registry}/mlops-template"
    engine.run("tag", image, f"{remote}:test")
    pushed = engine.run("push", f"{remote}:test")
    digest = re.search(r"digest: (sha256:[0-9a-f]{64})", pushed)
    assert digest is not None, pushed
    local_id = engine.run("image", "inspect", "--format", "{{.Id}}", image)
    engine.run("rmi", f"{remote}:test")
    engine.run("pull", f"{remote}@{digest.group(1)}")
    pulled = json.loads(engine.run("image", "inspect", f"{remote}@{digest.group(1)}"))[0]
    assert pulled["Id"] == local_id
    assert f"{remote}@{digest.group(1)}" in pulled["RepoDigests"]


def test_the_image_refuses_a_model_that_vouches_for_itself(
    engine: Engine, image: str, tmp_path: Path
) -> None:
    """The expected hash is baked into the image at build time, outside models/: a volume
    over models/ with another model and a matching .sha256 beside it is refused."""
    pin = engine.run(
        "run",
        "--rm",
        "--network",
        "none",
        image,
        "stat",
        "-c",
        "%U %a %n",
        "/etc/mlops-template/model.sha256",
    )
    assert pin == "root 444 /etc/mlops-template/model.sha256"
    models = tmp_path / "models"
    models.mkdir()
    fake = b"not the reviewed model"
    (models / "model.onnx").write_bytes(fake)
    (models / "model.onnx.sha256").write_text(f"{hashlib.sha256(fake).hexdigest()}  model.onnx\n")
    models.chmod(0o755)
    for path in models.iterdir():
        path.chmod(0o644)
    result = subprocess.run(
        [
            str(DOCKER),
            "run",
            "--rm",
            "--network",
            "none",
            "--volume",
            f"{models}:/app/models:ro",
            image,
        ],
        env=engine.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "does not match the expected" in result.stderr


def _predict_in(engine: Engine, image: str) -> dict[str, object]:
    """Start `image`, wait until ready, post the contract's example; its answer."""
    with running(engine, image) as (_, url):
        response = httpx.post(f"{url}/predict", json=dict(project_contract().example), timeout=5)
        assert response.status_code == 200, response.text
        return response.json()


def test_the_sklearn_runtime_image_serves_the_pipeline(
    engine: Engine, image: str, image_context: Path
) -> None:
    """--build-arg RUNTIME=sklearn: the extra `sklearn` installed, model.joblib served (and
    pinned), the same answer as the ONNX image's."""
    sklearn_image = build_image(engine, image_context, "mlops-template:sklearn", "RUNTIME=sklearn")
    code = "import sklearn, pandas, joblib; print('ok')"
    assert engine.run("run", "--rm", "--network", "none", sklearn_image, "python3", "-c", code)
    pin = engine.run(
        "run", "--rm", "--network", "none", sklearn_image, "cat", "/etc/mlops-template/model.sha256"
    )
    assert pin.endswith("  models/model.joblib")
    ours, theirs = _predict_in(engine, image), _predict_in(engine, sklearn_image)
    assert ours["prediction"] == theirs["prediction"]
    assert ours["model_version"] != theirs["model_version"]  # model.onnx vs model.joblib


def test_an_uncompiled_model_fails_the_build_naming_the_runtime(
    engine: Engine, image_context: Path, tmp_path: Path
) -> None:
    """A model trained with serve.runtime: sklearn leaves model.onnx empty: the default build
    refuses it and says to build with RUNTIME=sklearn."""
    context = tmp_path / "context"
    (context / "data").mkdir(parents=True)
    for name in IMAGE_FILES:
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(image_context / name, context / name)
    shutil.copy(image_context / ".dockerignore", context / ".dockerignore")
    shutil.copytree(image_context / "src", context / "src")
    shutil.copy(image_context / "data" / "contract.yaml", context / "data" / "contract.yaml")
    shutil.copytree(image_context / "models", context / "models")
    empty = context / "models" / "model.onnx"
    empty.write_bytes(b"")
    (context / "models" / "model.onnx.sha256").write_text(
        f"{hashlib.sha256(b'').hexdigest()}  model.onnx\n"
    )
    with pytest.raises(AssertionError, match="RUNTIME=sklearn") as failure:
        build_image(engine, context, "mlops-template:uncompiled")
    assert "models/model.onnx is empty" in str(failure.value)


def _readiness(engine: Engine, image: str, *options: str) -> tuple[int, dict[str, object], str]:
    """Start `image` with `options` until it is ready or says why not (any reason but
    `loading`); the status, the body and the container's log."""
    port = free_port()
    name = f"mlops-template-signed-{port}"
    engine.run(
        "run", "--detach", "--name", name, "--network", "host",
        "--env", "MLOPS_SERVE_HOST=127.0.0.1", "--env", f"MLOPS_SERVE_PORT={port}",
        "--read-only", "--tmpfs", "/app/logs:uid=10001,gid=10001",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges", *options, image,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1)
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            if response.json().get("reason") != "loading":
                logs = subprocess.run(  # the service logs to stderr
                    [str(DOCKER), "logs", name], env=engine.env, capture_output=True, text=True
                )
                return response.status_code, response.json(), logs.stdout + logs.stderr
            time.sleep(0.2)
        raise AssertionError(engine.run("logs", name, check=False))
    finally:
        engine.run("rm", "--force", name, check=False)


def test_a_signed_image_verifies_its_model_at_load(
    engine: Engine, image_context: Path, tmp_path: Path
) -> None:
    """`make sign-model` before `make image`: the image carries models/model.sig and
    model-signing's verifier; with the signer's public key it serves, with another key it is
    not ready and says why; keyless (Sigstore) checks run offline on the trust root it bakes."""
    from mlops_template.io import signing
    from tests.support.signing import key_pair

    context = tmp_path / "context"
    for name in IMAGE_FILES:
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(image_context / name, context / name)
    shutil.copy(image_context / ".dockerignore", context / ".dockerignore")
    for folder in ("src", "models"):
        shutil.copytree(
            image_context / folder, context / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    (context / "data").mkdir()
    shutil.copy(image_context / "data" / "contract.yaml", context / "data" / "contract.yaml")
    keys = key_pair(tmp_path / "keys")
    key_pair(tmp_path / "keys", "other")
    for path in (tmp_path / "keys", *(tmp_path / "keys").iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    signing.sign_with_key(
        context / "models" / "model.onnx", context / "models" / "model.sig", keys.private
    )
    signed = build_image(engine, context, "mlops-template:signed")
    listing = engine.run("run", "--rm", "--network", "none", signed, "ls", "models")
    assert "model.sig" in listing.split()
    mount = ("--volume", f"{tmp_path / 'keys'}:/keys:ro", "--env", "MLOPS_MODEL_SIGNATURE=key")
    status, body, _ = _readiness(
        engine, signed, *mount, "--env", "MLOPS_SIGNATURE_PUBLIC_KEY=/keys/signer.pub"
    )
    assert (status, body["ready"]) == (200, True), body
    status, body, log = _readiness(
        engine, signed, *mount, "--env", "MLOPS_SIGNATURE_PUBLIC_KEY=/keys/other.pub"
    )
    assert (status, body["reason"]) == (503, "model_signature_untrusted"), body
    assert "models/model.sig: not a valid signature of models/model.onnx" in log
    identity = "https://github.com/acme/penguins/.github/workflows/release.yml@refs/heads/main"
    status, body, log = _readiness(
        engine, signed, "--env", "MLOPS_MODEL_SIGNATURE=sigstore",
        "--env", f"MLOPS_SIGNATURE_IDENTITY={identity}",
    )  # fmt: skip
    # A key's signature is no Sigstore identity's: refused, after reading the baked trust root.
    assert (status, body["reason"]) == (503, "model_signature_untrusted"), log
    assert identity in log
