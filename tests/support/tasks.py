"""Small real models for each task, with their contracts: the tests' penguins (multiclass),
scikit-learn's embedded breast cancer (binary) and diabetes (regression) tables.

The contracts of the two scikit-learn tables come from `init_schema.profile`, as a fork's
would; the models are small random forests (20 trees) trained by the train stage's `fit`,
saved as the train stage saves them: the pipeline (`model_path`, .joblib) and its compilation
to ONNX (`onnx_path`, what the service runs by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mlops_template.config import Params, parse_params
from mlops_template.contract import Contract, contract_dict
from mlops_template.contract.profile import profile
from mlops_template.io import storage
from mlops_template.stages.compile import to_onnx
from mlops_template.stages.train import fit, serialize
from tests.conftest import DEFAULT_CONTRACT, DEFAULT_DATA, repo_params_dict


@dataclass(frozen=True)
class TaskModel:
    contract: Contract
    contract_path: Path
    model_path: Path  # the scikit-learn pipeline (serve.runtime sklearn)
    frame: pd.DataFrame  # the table the model was trained on, target included
    onnx_path: Path  # the same model compiled to ONNX (serve.runtime onnx)

    def record(self, index: int) -> dict[str, Any]:
        """Row `index` of the table as a request record (missing values left out)."""
        row = self.frame.iloc[index]
        return {
            spec.name: (float(row[spec.name]) if spec.kind == "numeric" else str(row[spec.name]))
            for spec in self.contract.features
            if not pd.isna(row[spec.name])
        }


def task_params(contract_path: Path, **evaluate: Any) -> Params:
    """The repository's params with this contract, a 20-tree forest and no tracking."""
    raw = repo_params_dict()
    raw["data"] = {"source": str(DEFAULT_DATA), "contract": str(contract_path)}
    raw["model"] = {"kind": "random_forest", "n_estimators": 20}
    raw["evaluate"] = {**(raw.get("evaluate") or {}), "primary_metric": "auto", **evaluate}
    raw["tracking"] = {**(raw.get("tracking") or {}), "enabled": False}
    return parse_params(raw)


def save_model(pipeline: Any, path: Path) -> Path:
    """The model file and its sha256 record, as the train stage writes them."""
    blob = serialize(pipeline)
    storage.write_bytes(path, blob)
    storage.write_text(storage.sha256_sidecar(path), f"{storage.sha256_bytes(blob)}  {path.name}\n")
    return path


def save_onnx(pipeline: Any, contract: Contract, source: Path) -> Path:
    """The pipeline saved at `source`, compiled to ONNX beside it (`.onnx`), with its sha256
    record, as the train stage writes them."""
    blob = to_onnx(pipeline, contract, storage.read_recorded_sha256(source))
    path = source.with_suffix(".onnx")
    storage.write_bytes(path, blob)
    storage.write_text(storage.sha256_sidecar(path), f"{storage.sha256_bytes(blob)}  {path.name}\n")
    return path


def write_contract(contract: Contract, path: Path) -> Path:
    path.write_text(yaml.safe_dump(contract_dict(contract), sort_keys=False))
    return path


def train_task(directory: Path, frame: pd.DataFrame, contract_path: Path) -> TaskModel:
    params = task_params(contract_path)
    pipeline = fit(frame, params)
    model = save_model(pipeline, directory / f"{params.contract.name}.joblib")
    compiled = save_onnx(pipeline, params.contract, model)
    return TaskModel(params.contract, contract_path, model, frame, compiled)


def penguin_task(directory: Path, penguins: pd.DataFrame) -> TaskModel:
    return train_task(directory, penguins, DEFAULT_CONTRACT)


def breast_cancer() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame["target"] = frame["target"].map({0: "malignant", 1: "benign"})
    return frame


def diabetes() -> pd.DataFrame:
    from sklearn.datasets import load_diabetes

    return load_diabetes(as_frame=True, scaled=False).frame


def profiled_task(directory: Path, frame: pd.DataFrame, name: str, **options: Any) -> TaskModel:
    """A contract profiled from `frame` (target column `target`), and a model trained on it."""
    contract = profile(frame, "target", name=name, **options).contract
    return train_task(directory, frame, write_contract(contract, directory / f"{name}.yaml"))
