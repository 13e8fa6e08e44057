"""The model is verified against a hash pinned outside the model folder, and the bytes that
were hashed are the bytes deserialized; the challenger needs its own pinned hash."""

from __future__ import annotations

import io as stdio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import onnxruntime
import pytest

from mlops_template import PipelineError
from mlops_template.config import ServeSettings
from mlops_template.io import storage
from mlops_template.serve.__main__ import challenger_of, pinned_sha256
from mlops_template.serve.model import ServedModel
from tests.support.tasks import TaskModel
from tests.unit.serve.conftest import service_params_file


def _tamper(model: Path) -> None:
    """Change the model and rewrite the record beside it to match: it vouches for itself."""
    with model.open("ab") as handle:
        handle.write(b"\0")
    storage.sha256_sidecar(model).write_text(f"{storage.sha256_file(model)}  {model.name}\n")


def test_the_hashed_bytes_are_the_deserialized_bytes(
    model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnxruntime is given the bytes that were hashed, not the file's path."""
    loaded: list[Any] = []
    real_session = onnxruntime.InferenceSession

    def spy(source: Any, *args: Any, **kwargs: Any) -> Any:
        loaded.append(source)
        return real_session(source, *args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", spy)
    expected = storage.read_recorded_sha256(model_path)
    ServedModel.load(model_path, expected)
    (source,) = loaded
    assert isinstance(source, bytes), "onnxruntime opened the file again"
    assert storage.sha256_bytes(source) == expected


def test_the_hashed_bytes_are_the_unpickled_bytes(
    penguin_task: TaskModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scikit-learn runtime: joblib unpickles the bytes that were hashed."""
    loaded: list[Any] = []
    real_load = joblib.load

    def spy(source: Any) -> Any:
        loaded.append(source)
        return real_load(source)

    monkeypatch.setattr(joblib, "load", spy)
    expected = storage.read_recorded_sha256(penguin_task.model_path)
    ServedModel.load(penguin_task.model_path, expected)
    (source,) = loaded
    assert isinstance(source, stdio.BytesIO), "joblib.load opened the file again"
    assert storage.sha256_bytes(source.getvalue()) == expected


def test_a_model_matching_its_own_record_but_not_the_pin_is_refused(
    model_path: Path, tmp_path: Path
) -> None:
    pinned = storage.read_recorded_sha256(model_path)
    copy = tmp_path / model_path.name
    copy.write_bytes(model_path.read_bytes())
    storage.sha256_sidecar(copy).write_text(storage.sha256_sidecar(model_path).read_text())
    _tamper(copy)
    with pytest.raises(PipelineError, match="does not match"):
        ServedModel.load(copy, pinned)


def test_where_the_expected_hash_comes_from(model_path: Path, tmp_path: Path) -> None:
    digest = "ab" * 32
    assert pinned_sha256(model_path, {"MLOPS_MODEL_SHA256": digest}) == (digest, True)
    pin = tmp_path / "model.sha256"
    pin.write_text(f"{digest}  model.joblib\n")
    assert pinned_sha256(model_path, {"MLOPS_MODEL_SHA256_FILE": str(pin)}) == (digest, True)
    recorded = storage.read_recorded_sha256(model_path)
    assert pinned_sha256(model_path, {}) == (recorded, False)  # development only, warned
    with pytest.raises(PipelineError, match="not a sha256"):
        pinned_sha256(model_path, {"MLOPS_MODEL_SHA256": "beef"})


def test_a_challenger_needs_its_own_expected_hash(tmp_path: Path) -> None:
    settings = ServeSettings(prediction_log=tmp_path / "p.jsonl")
    assert challenger_of(settings, {}) is None
    with pytest.raises(PipelineError, match="MLOPS_CHALLENGER_SHA256"):
        challenger_of(settings, {"MLOPS_CHALLENGER_MODEL": "models/other.joblib"})
    digest = "cd" * 32
    environ = {"MLOPS_CHALLENGER_MODEL": "m.joblib", "MLOPS_CHALLENGER_SHA256": digest}
    assert challenger_of(settings, environ) == (Path("m.joblib"), digest)
    configured = settings.model_copy(
        update={"challenger_model": Path("c.joblib"), "challenger_sha256": digest}
    )
    assert challenger_of(configured, {}) == (Path("c.joblib"), digest)


def _start(params: Path, **environ: str) -> subprocess.CompletedProcess[str] | None:
    """Run the service; None if it started (and was stopped after 20 s) instead of refusing."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "mlops_template.serve", "--params", str(params)],
            capture_output=True,
            text=True,
            timeout=20,
            env={**os.environ, **environ},
        )
    except subprocess.TimeoutExpired:
        return None


@pytest.mark.parametrize("how", ["MLOPS_MODEL_SHA256", "MLOPS_MODEL_SHA256_FILE"])
def test_the_service_refuses_a_model_that_vouches_for_itself(
    tmp_path: Path, model_path: Path, how: str
) -> None:
    params, _ = service_params_file(tmp_path, model_path)
    pinned = storage.read_recorded_sha256(model_path)
    _tamper(tmp_path / "models" / "model.onnx")
    pin = tmp_path / "pinned.sha256"  # e.g. baked into the image, outside models/
    pin.write_text(f"{pinned}  model.onnx\n")
    result = _start(params, **{how: pinned if how == "MLOPS_MODEL_SHA256" else str(pin)})
    assert result is not None, "the service started on a model that does not match the pin"
    assert result.returncode == 1
    assert f"does not match the expected {pinned}" in result.stderr


def test_the_service_refuses_a_challenger_without_its_hash(
    tmp_path: Path, model_path: Path
) -> None:
    params, _ = service_params_file(tmp_path, model_path)
    result = _start(params, MLOPS_CHALLENGER_MODEL=str(tmp_path / "models" / "model.onnx"))
    assert result is not None, "the service started with an unpinned challenger"
    assert result.returncode == 1
    assert "MLOPS_CHALLENGER_SHA256" in result.stderr
