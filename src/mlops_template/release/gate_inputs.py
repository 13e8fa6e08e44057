"""The gate's inputs, computed where no key is: the candidate and the champion scored on the
same holdout by the model that is served, written as JSON that the privileged job checks
against a schema and reads as data.

release.yml's unprivileged `rebuild` job (after rebuild.py) scores the rebuilt served model
(models/model.onnx, or model.joblib with serve.runtime sklearn) and the champion's (its
served file, which the `champion` job downloaded from the registry and checked by the
sha256 recorded on its version) on the rebuilt test split: the task's metrics, the baseline,
and the contract's behaviour checks for the candidate. It also saves the MLflow models to
register (the scikit-learn flavour, serialised with skops, and the ONNX one), so that the job
that holds the registry's credentials uploads files and never unpickles one.

The privileged job (registry.release) reads `gate-inputs.json` only through `GateInputs`:
unknown keys, non-finite numbers, malformed hashes or oversized maps are refused.
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mlops_template import PipelineError
from mlops_template.config import Params
from mlops_template.contract.features import model_input
from mlops_template.evaluation import behaviour
from mlops_template.evaluation.scoring import compute_metrics, with_baseline
from mlops_template.io import git, handoff, storage, tracking
from mlops_template.serve.model import INCOMPATIBLE, LoadError, ServedModel

NAME = "gate-inputs.json"
CHAMPION_NAME = "champion.json"
SKLEARN_DIR = "mlflow-sklearn"  # the MLflow model to register (scikit-learn flavour, skops)
ONNX_DIR = "mlflow-onnx"  # the compiled model's MLflow model, logged beside it
SHA256 = r"^[0-9a-f]{64}$"
MAX_KEYS = 500
MAX_DEPTH = 5


def _check_json(value: Any, where: str, depth: int = 0) -> None:
    """Plain JSON data: finite numbers, bounded size and depth."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{where}: nested deeper than {MAX_DEPTH}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {value} is not a finite number")
    if isinstance(value, dict):
        if len(value) > MAX_KEYS:
            raise ValueError(f"{where}: more than {MAX_KEYS} keys")
        for key, item in value.items():
            _check_json(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list):
        if len(value) > MAX_KEYS:
            raise ValueError(f"{where}: more than {MAX_KEYS} items")
        for index, item in enumerate(value):
            _check_json(item, f"{where}[{index}]", depth + 1)
    elif value is not None and not isinstance(value, str | int | float | bool):
        raise ValueError(f"{where}: not JSON data")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Champion(Strict):
    """The champion as the registry named it when the release started."""

    version: str = Field(pattern=r"^[0-9]{1,9}$")
    model_sha256: str = Field(pattern=SHA256)  # its scikit-learn model file's bytes
    served_sha256: str = Field(pattern=SHA256)  # the file it serves (ONNX, or the same joblib)
    runtime: Literal["onnx", "sklearn"]
    # Its scores on the candidate's holdout; None when it does not fit the current contract
    # (another task, target, classes or features): not comparable.
    metrics: dict[str, Any] | None = None

    @field_validator("metrics")
    @classmethod
    def _plain(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        _check_json(value, "champion.metrics")
        return value


class GateInputs(Strict):
    schema_version: Literal[1] = 1
    commit: str = Field(pattern=r"^[0-9a-f]{40}$")
    runtime: Literal["onnx", "sklearn"]  # what scored both: the served model's runtime
    test_sha256: str = Field(pattern=SHA256)  # the holdout both were scored on
    # The rebuilt model files (repository path -> sha256): the bytes that ship.
    files: dict[str, str] = Field(max_length=16)
    # Every file of the MLflow models to register (path in the hand-over -> sha256).
    mlflow_files: dict[str, str] = Field(max_length=200)
    candidate: dict[str, Any]
    champion: Champion | None  # None: no registry, or no champion yet

    @field_validator("files", "mlflow_files")
    @classmethod
    def _hashes(cls, value: dict[str, str]) -> dict[str, str]:
        for path, digest in value.items():
            if not storage.SAFE_PATH.fullmatch(path) or not re.fullmatch(SHA256, digest):
                raise ValueError(f"{path!r}: not a plain relative path with a sha256")
        return value

    @field_validator("candidate")
    @classmethod
    def _plain(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_json(value, "candidate")
        return value


def read(path: Path) -> GateInputs:
    """The gate's inputs from JSON handed over by another job: refused unless they fit."""
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise PipelineError(f"{path}: cannot be read ({error})") from None
    if len(raw) > 1_000_000:
        raise PipelineError(f"{path}: larger than 1 MB: refused")
    try:
        return GateInputs.model_validate_json(raw)
    except ValidationError as error:
        raise PipelineError(f"{path}: not the gate's inputs: {error}") from None


def read_champion(path: Path) -> Champion | None:
    """champion.json as the `champion` job wrote it ({"champion": null} when there is none)."""
    payload = storage.read_json(path)
    if not isinstance(payload, dict) or set(payload) != {"champion"}:
        raise PipelineError(f"{path}: expected {{'champion': ...}}")
    if payload["champion"] is None:
        return None
    try:
        return Champion.model_validate(payload["champion"])
    except ValidationError as error:
        raise PipelineError(f"{path}: not a champion record: {error}") from None


class _AsEstimator:
    """A served model with the two methods the metrics and behaviour checks call."""

    def __init__(self, served: ServedModel) -> None:
        self.served = served
        self.classes_ = np.array(served.classes)

    def _records(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        plain = frame.astype(object).where(frame.notna(), None)
        return plain.to_dict("records")  # type: ignore[return-value]

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """float32 sums can pass 1 (1.0000009): clipped to [0, 1] and each row scaled to sum
        to 1, as the service never shows a probability outside [0, 1] (model.decode)."""
        proba = np.clip(np.asarray(self.served.predict_proba(self._records(frame)), float), 0, 1)
        totals = proba.sum(axis=1, keepdims=True)
        scaled: np.ndarray = np.divide(proba, totals, out=np.zeros_like(proba), where=totals > 0)
        return scaled

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.served.score(self._records(frame)), dtype=float).reshape(-1)


def served_path(params: Params) -> Path:
    return params.paths.onnx_model if params.serve.runtime == "onnx" else params.paths.model


def score(
    model: Any, params: Params, test: pd.DataFrame, train: pd.DataFrame, checks: bool
) -> dict[str, Any]:
    """The task's metrics of a model (a scikit-learn pipeline, or a served model through
    _AsEstimator) on `test`, its baseline's, and with `checks` the contract's behaviour
    checks (the gate's refusal, if any, under behaviour.GATE_KEY)."""
    threshold = params.evaluate.threshold
    metrics = with_baseline(
        compute_metrics(model, test, params.contract, threshold), train, test, params
    )
    if checks:
        results = behaviour.run_checks(model, test, params.contract, threshold)
        metrics[behaviour.GATE_KEY] = behaviour.gate_refusal(results)
    return metrics


def _score_champion(
    champion: Champion, folder: Path, params: Params, test: pd.DataFrame, train: pd.DataFrame
) -> Champion:
    """The champion's scores on this holdout, by its served file as the registry recorded it;
    None (not comparable) only when it no longer fits the contract (another task, target,
    classes or features). A file that is missing, is not the recorded bytes, or that this
    runtime cannot run at all stops the release: the gate never promotes on a champion it
    failed to read."""
    if champion.runtime == "onnx":
        file = folder / "model.onnx"
        threshold = params.evaluate.threshold
        ServedModel.load(file, champion.served_sha256)  # raises unless it can be run at all
        try:
            served = ServedModel.load(file, champion.served_sha256, params.contract, threshold)
        except LoadError as error:
            if error.code != INCOMPATIBLE:
                raise
            return champion.model_copy(update={"metrics": None})
        metrics = score(_AsEstimator(served), params, test, train, checks=False)
        return champion.model_copy(update={"metrics": metrics})
    import mlflow.sklearn  # the registry's scikit-learn model (skops, MLflow's trusted types)

    model = mlflow.sklearn.load_model(str(folder / "model"))
    try:
        scored: dict[str, Any] | None = score(model, params, test, train, checks=False)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        scored = None  # its features or classes are not the contract's
    return champion.model_copy(update={"metrics": scored})


def _save_mlflow_models(params: Params, out: Path, model_sha: str) -> None:
    """The MLflow models to register, saved here so the registry's job only uploads them."""
    model = storage.load_verified_model(params.paths.model)
    example = model_input(storage.read_parquet(params.paths.test).head(5), params.contract)
    tracking.save_model(model, example, out / SKLEARN_DIR)
    if params.serve.runtime == "onnx":
        blob = storage.read_verified_bytes(params.paths.onnx_model)
        tracking.save_onnx_model(blob, model_sha, out / ONNX_DIR)


def _hashes(folder: Path, root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): storage.sha256_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def compute(params: Params, champion_dir: Path | None, out: Path) -> GateInputs:
    """Score the rebuilt candidate and the champion, save the MLflow models, and write
    `out/gate-inputs.json`."""
    champion = read_champion(champion_dir / CHAMPION_NAME) if champion_dir else None
    test = storage.read_parquet(params.paths.test)
    train = storage.read_parquet(params.paths.train)
    path = served_path(params)
    served = ServedModel.load(path, contract=params.contract, threshold=params.evaluate.threshold)
    candidate = score(_AsEstimator(served), params, test, train, checks=False)
    # The contract's behaviour checks as the behaviour stage runs them, on the rebuilt
    # scikit-learn pipeline: a directional check with tolerance 0 would read float32's last
    # bits in the compiled model's probabilities as movements.
    pipeline = storage.load_verified_model(params.paths.model)
    checks = behaviour.run_checks(pipeline, test, params.contract, params.evaluate.threshold)
    candidate[behaviour.GATE_KEY] = behaviour.gate_refusal(checks)
    if champion is not None and champion_dir is not None:
        champion = _score_champion(champion, champion_dir, params, test, train)
    model_sha = storage.read_recorded_sha256(params.paths.model)
    for folder in (out / SKLEARN_DIR, out / ONNX_DIR):
        shutil.rmtree(folder, ignore_errors=True)
    _save_mlflow_models(params, out, model_sha)
    model_files = [params.paths.model, storage.sha256_sidecar(params.paths.model)]
    if params.serve.runtime == "onnx":
        model_files += [params.paths.onnx_model, storage.sha256_sidecar(params.paths.onnx_model)]
    inputs = GateInputs(
        commit=tracking.git_commit(),
        runtime=params.serve.runtime,
        test_sha256=storage.sha256_file(params.paths.test),
        files={file.as_posix(): storage.sha256_file(file) for file in model_files},
        mlflow_files=_hashes(out / SKLEARN_DIR, out) | _hashes(out / ONNX_DIR, out),
        candidate=candidate,
        champion=champion,
    )
    storage.write_text(out / NAME, inputs.model_dump_json(indent=2))
    return inputs


OUTPUTS_DIR = "outputs"  # in the hand-over: dvc.lock and every output it names, rebuilt


def collect(params: Params, champion_dir: Path | None, out: Path) -> GateInputs:
    """The rebuild job's hand-over to the registry's job: the rebuilt outputs with their
    dvc.lock, the MLflow models to register, and gate-inputs.json."""
    shutil.rmtree(out / OUTPUTS_DIR, ignore_errors=True)
    handoff.collect(out / OUTPUTS_DIR)
    return compute(params, champion_dir, out)


def accept(params: Params, folder: Path, repo: Path = Path()) -> GateInputs:
    """The registry's job takes the hand-over: the rebuilt outputs are staged into this
    checkout only if their dvc.lock is the merged commit's, byte for byte, and `dvc commit`
    hashes them to it; gate-inputs.json must fit its schema, name this commit and the staged
    model files' sha256, and every MLflow model file must be the one it names."""
    committed = (repo / handoff.LOCK).read_bytes()
    handed = folder / OUTPUTS_DIR / handoff.LOCK
    if not handed.is_file() or handed.is_symlink() or handed.read_bytes() != committed:
        raise handoff.HandoffError(
            f"{handed}: not this commit's dvc.lock: the hand-over is not this commit's rebuild"
        )
    handoff.stage(folder / OUTPUTS_DIR, repo)
    handoff.verify_lock(repo)
    inputs = read(folder / NAME)
    head = git.head_commit(repo)
    if inputs.commit != head:
        raise PipelineError(f"the gate's inputs are for commit {inputs.commit}, not {head}")
    expected = {
        storage.sha256_sidecar(params.paths.model).as_posix(),
        params.paths.model.as_posix(),
    }
    if not expected <= set(inputs.files):
        raise PipelineError(f"the gate's inputs do not name {sorted(expected - set(inputs.files))}")
    for path, digest in inputs.files.items():
        if storage.sha256_file(repo / handoff.check_relative(path)) != digest:
            raise PipelineError(f"{path}: sha256 is not the one the gate's inputs name")
    found = {
        file.relative_to(folder).as_posix(): file
        for name in (SKLEARN_DIR, ONNX_DIR)
        for file in sorted((folder / name).rglob("*"))
        if not file.is_dir()
    }
    if set(found) != set(inputs.mlflow_files):
        raise PipelineError(
            "the MLflow models handed over are not the files the gate's inputs name"
            f" (extra: {sorted(set(found) - set(inputs.mlflow_files))},"
            f" missing: {sorted(set(inputs.mlflow_files) - set(found))})"
        )
    for path, file in found.items():
        if file.is_symlink() or storage.sha256_file(file) != inputs.mlflow_files[path]:
            raise PipelineError(f"{path}: not the file the gate's inputs name (sha256)")
    return inputs
