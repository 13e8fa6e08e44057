"""A small real model on disk, and the service built around it."""

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

from mlops_template import config, io
from mlops_template.config import ServeSettings
from mlops_template.schema import feature_names
from mlops_template.serve.app import ServiceState, create_app
from mlops_template.serve.model import ServedModel
from mlops_template.stages.train import build_pipeline, serialize
from tests.conftest import repo_params_dict
from tests.slow.conftest import free_port

GENTOO = {
    "island": "Biscoe",
    "bill_length_mm": 47.5,
    "bill_depth_mm": 14.2,
    "flipper_length_mm": 217.0,
    "body_mass_g": 5000.0,
    "sex": "female",
}


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory, penguins: pd.DataFrame) -> Path:
    pipeline = build_pipeline(config.RandomForest(kind="random_forest", n_estimators=20), 0)
    pipeline.fit(penguins[feature_names()], penguins["species"])
    path = tmp_path_factory.mktemp("model") / "model.joblib"
    blob = serialize(pipeline)
    io.write_bytes(path, blob)
    io.write_text(io.sha256_sidecar(path), f"{io.sha256_bytes(blob)}  model.joblib\n")
    return path


@pytest.fixture
def settings(tmp_path: Path) -> ServeSettings:
    return ServeSettings(prediction_log=tmp_path / "logs" / "predictions.jsonl")


@pytest.fixture
def make_client(settings: ServeSettings, model_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Start the app (lifespan included) with optional setting overrides and model loader."""
    clients: list[TestClient] = []

    def build(
        load: Callable[[], Any] | None = None,
        state: ServiceState | None = None,
        *,
        challenger: Callable[[], Any] | None = None,
        reference: dict[str, Any] | None = None,
        api_key: str | None = None,
        **overrides: Any,
    ) -> TestClient:
        app = create_app(
            settings.model_copy(update=overrides),
            load or (lambda: ServedModel.load(model_path)),
            state,
            load_challenger=challenger,
            reference=reference,
            **({"api_key": api_key} if api_key else {}),
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


class BlockingModel:
    """Scores only when released: for concurrency, timeout and readiness tests."""

    classes = ("Adelie", "Chinstrap", "Gentoo")
    version = "blocking0000"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def predict_proba(self, records: list[dict[str, Any]]) -> np.ndarray:
        self.entered.set()
        self.release.wait(10)
        return np.tile([0.1, 0.2, 0.7], (len(records), 1))


def service_params_file(tmp_path: Path, model_path: Path, **serve: object) -> tuple[Path, int]:
    """A params.yaml in `tmp_path` serving a copy of `model_path` on a free port."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(model_path, models / "model.joblib")
    shutil.copy(io.sha256_sidecar(model_path), models / "model.joblib.sha256")
    port = free_port()
    raw = repo_params_dict()
    raw["paths"]["model"] = str(models / "model.joblib")
    raw["serve"] = {
        **raw["serve"],
        "port": port,
        "prediction_log": str(tmp_path / "predictions.jsonl"),
        **serve,
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, port
