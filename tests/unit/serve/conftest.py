"""Small real models on disk (one per task), and the service built around them. The service
runs each model compiled to ONNX (serve.runtime onnx, the default); tests of the scikit-learn
runtime load the pipeline (`TaskModel.model_path`)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from starlette.testclient import TestClient

from mlops_template.config import ExplainSettings, ServeSettings
from mlops_template.io import storage
from mlops_template.serve.app import ServiceState, create_app
from mlops_template.serve.model import ServedModel
from tests.conftest import DEFAULT_CONTRACT, repo_params_dict
from tests.support import tasks
from tests.support.processes import free_port
from tests.support.tasks import TaskModel

# A record of the tests' own penguins table (tests/data/penguins.yaml), not of the project's
# configured data: the unit tests run on it whatever a fork trains on.
GENTOO = {
    "island": "Biscoe",
    "bill_length_mm": 47.5,
    "bill_depth_mm": 14.2,
    "flipper_length_mm": 217.0,
    "body_mass_g": 5000.0,
    "sex": "female",
}
PENGUIN_CLASSES = ("Adelie", "Chinstrap", "Gentoo")


@pytest.fixture(scope="session")
def penguin_task(tmp_path_factory: pytest.TempPathFactory, penguins: pd.DataFrame) -> TaskModel:
    return tasks.penguin_task(tmp_path_factory.mktemp("penguins"), penguins)


@pytest.fixture(scope="session")
def model_path(penguin_task: TaskModel) -> Path:
    """The penguins model as the service runs it: compiled to ONNX."""
    return penguin_task.onnx_path


@pytest.fixture(scope="session")
def binary_task(tmp_path_factory: pytest.TempPathFactory) -> TaskModel:
    directory = tmp_path_factory.mktemp("binary")
    frame = tasks.breast_cancer()
    return tasks.profiled_task(directory, frame, "breast_cancer", positive="malignant")


@pytest.fixture(scope="session")
def regression_task(tmp_path_factory: pytest.TempPathFactory) -> TaskModel:
    return tasks.profiled_task(tmp_path_factory.mktemp("regression"), tasks.diabetes(), "diabetes")


@pytest.fixture
def settings(tmp_path: Path) -> ServeSettings:
    return ServeSettings(prediction_log=tmp_path / "logs" / "predictions.jsonl")


@pytest.fixture
def make_client(
    settings: ServeSettings, penguin_task: TaskModel
) -> Iterator[Callable[..., TestClient]]:
    """Start the app (lifespan included) with optional setting overrides and model loader.
    `task` chooses the contract and model (the penguins by default); `threshold` is the
    binary decision threshold (evaluate.threshold)."""
    clients: list[TestClient] = []

    def build(
        load: Callable[[], Any] | None = None,
        state: ServiceState | None = None,
        *,
        task: TaskModel | None = None,
        threshold: float = 0.5,
        challenger: Callable[[], Any] | None = None,
        reference: dict[str, Any] | None = None,
        api_key: str | None = None,
        background: list[dict[str, Any]] | None = None,
        explain_settings: ExplainSettings | None = None,
        **overrides: Any,
    ) -> TestClient:
        chosen = task or penguin_task

        def load_chosen() -> ServedModel:
            return ServedModel.load(chosen.onnx_path, contract=chosen.contract, threshold=threshold)

        app = create_app(
            settings.model_copy(update=overrides),
            load or load_chosen,
            state,
            contract=chosen.contract,
            load_challenger=challenger,
            reference=reference,
            **({"api_key": api_key} if api_key else {}),
            background=background,
            explain=explain_settings,
        )
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


def wait_ready(client: TestClient) -> None:
    for _ in range(200):
        if client.get("/health/ready").status_code == 200:
            return
        threading.Event().wait(0.02)
    raise AssertionError(client.get("/health/ready").json())


class FakeModel:
    """What the service needs of a model (ServedModel's interface), answering penguin classes
    from `predict_proba`; subclasses decide the probabilities."""

    classes = PENGUIN_CLASSES
    version = "fake00000000"
    runtime = "sklearn"  # scores in float64: decisions without the float32 slack
    is_classifier = True
    positive: str | None = None
    threshold = 0.5
    decode = ServedModel.decode

    def score(self, records: list[dict[str, Any]]) -> np.ndarray:
        return self.predict_proba(records)

    def predict_proba(self, records: list[dict[str, Any]]) -> np.ndarray:
        raise NotImplementedError


class BlockingModel(FakeModel):
    """Scores only when released: for concurrency, timeout and readiness tests."""

    version = "blocking0000"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def predict_proba(self, records: list[dict[str, Any]]) -> np.ndarray:
        self.entered.set()
        self.release.wait(10)
        return np.tile([0.1, 0.2, 0.7], (len(records), 1))


def service_params_file(
    tmp_path: Path, model_path: Path, contract: Path = DEFAULT_CONTRACT, **serve: object
) -> tuple[Path, int]:
    """A params.yaml in `tmp_path` serving a copy of `model_path` (trained for `contract`, the
    tests' penguins by default) on a free port: a .onnx model as models/model.onnx
    (serve.runtime onnx), a .joblib one as models/model.joblib (serve.runtime sklearn)."""
    models = tmp_path / "models"
    models.mkdir()
    served = models / f"model{model_path.suffix}"
    shutil.copy(model_path, served)
    shutil.copy(storage.sha256_sidecar(model_path), storage.sha256_sidecar(served))
    port = free_port()
    raw = repo_params_dict()
    raw["paths"]["model"] = str(models / "model.joblib")
    raw["paths"]["onnx_model"] = str(models / "model.onnx")
    raw["paths"]["model_signature"] = str(models / "model.sig")  # none unless a test signs
    raw["paths"]["reference"] = str(models / "reference.json")  # none: gauges without it
    raw["data"] = {**raw.get("data", {}), "contract": str(contract)}
    raw["serve"] = {
        **raw["serve"],
        "runtime": "onnx" if model_path.suffix == ".onnx" else "sklearn",
        "port": port,
        "prediction_log": str(tmp_path / "predictions.jsonl"),
        **serve,
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, port
