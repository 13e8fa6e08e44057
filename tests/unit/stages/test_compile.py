"""The compiled (ONNX) model against scikit-learn: every model kind of every task compiles and
agrees on rows with missing values and unseen categories; a model that disagrees, or that
cannot be compiled, fails the train stage with the rows or the reason named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.pipeline import Pipeline

from mlops_template import PipelineError
from mlops_template.config import Params
from mlops_template.contract import MISSING_CATEGORY, Contract, profile
from mlops_template.contract.features import model_input
from mlops_template.io import storage
from mlops_template.stages import ingest, split, train, validate
from mlops_template.stages.compile import check_parity, onnx_feed, to_onnx
from tests.conftest import DEFAULT_CONTRACT, DEFAULT_DATA
from tests.support.tables import breast_cancer, diabetes

KINDS = {
    "multiclass": ["random_forest", "hist_gradient_boosting", "logistic_regression"],
    "binary": ["random_forest", "hist_gradient_boosting", "logistic_regression"],
    "regression": ["random_forest", "hist_gradient_boosting", "ridge"],
}
SMALL = {"random_forest": {"n_estimators": 15, "n_jobs": 1}, "hist_gradient_boosting": {}}
SMALL |= {"hist_gradient_boosting": {"max_iter": 30}}


def _table(task: str, workdir: Path) -> tuple[Path, Path]:
    """The task's table and its contract: the tests' penguins (multiclass, with categories and
    gaps), breast cancer (binary), diabetes (regression)."""
    if task == "multiclass":
        return DEFAULT_DATA, DEFAULT_CONTRACT
    frame, target = (
        (breast_cancer(), "diagnosis") if task == "binary" else (diabetes(), "progression")
    )
    data, contract = workdir / f"{task}.csv", workdir / f"{task}.yaml"
    frame.to_csv(data, index=False)
    profile.run(data, target, contract)
    return data, contract


@pytest.fixture
def prepared(workdir: Path, make_params: Callable[..., Params]) -> Callable[..., Params]:
    """Params for the task's table with the split written, ready to train."""

    def build(task: str, kind: str = "random_forest", **serve: Any) -> Params:
        data, contract = _table(task, workdir)
        params = make_params(
            data={"source": str(data), "contract": str(contract)},
            model={"kind": kind, **SMALL.get(kind, {})},
            evaluate={"primary_metric": "auto"},
            serve=serve,
        )
        ingest.run(params)
        validate.run(params)
        split.run(params)
        return params

    return build


def _hostile_rows(frame: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """Test rows with a gap in every feature in turn and, for categories, a value the model
    never saw in training."""
    rows = frame.head(len(contract.feature_names()) + 1).copy()
    for position, name in enumerate(contract.feature_names()):
        rows.iloc[position, rows.columns.get_loc(name)] = None
    for name in contract.categorical_features():
        rows.loc[rows.index[-1], name] = "never-seen"
    return rows


@pytest.mark.parametrize(
    ("task", "kind"), [(task, kind) for task, kinds in KINDS.items() for kind in kinds]
)
def test_every_model_kind_compiles_and_agrees_with_scikit_learn(
    prepared: Callable[..., Params], task: str, kind: str
) -> None:
    params = prepared(task, kind)
    model = train.run(params)
    contract = params.contract

    parity = storage.read_json(params.paths.parity)
    assert parity["compiled"] is True
    assert parity["rows"] == len(storage.read_parquet(params.paths.test))
    assert parity["max_abs_diff"] <= 1e-4
    assert parity["labels_identical"] is True

    blob = params.paths.onnx_model.read_bytes()
    assert storage.read_recorded_sha256(params.paths.onnx_model) == storage.sha256_bytes(blob)
    session = onnxruntime.InferenceSession(blob, providers=["CPUExecutionProvider"])
    inputs = [entry.name for entry in session.get_inputs()]
    assert len(inputs) == len(contract.feature_names())
    metadata = session.get_modelmeta().custom_metadata_map
    assert metadata["task"] == task
    assert json.loads(metadata["features"]) == [
        [name, "numeric" if name in contract.numeric_features() else "categorical"]
        for name in contract.feature_names()
    ]
    assert metadata["source_sha256"] == storage.read_recorded_sha256(params.paths.model)
    assert json.loads(metadata["classes"]) == [str(c) for c in getattr(model, "classes_", [])]

    rows = _hostile_rows(storage.read_parquet(params.paths.test), contract)
    outputs = session.run(None, onnx_feed(rows, contract, inputs))
    if contract.is_classification:
        expected = model.predict_proba(model_input(rows, contract))
        np.testing.assert_allclose(outputs[1], expected, atol=1e-4)
        assert list(outputs[0]) == list(model.predict(model_input(rows, contract)))
    else:
        expected = model.predict(model_input(rows, contract))
        np.testing.assert_allclose(outputs[0].ravel(), expected, rtol=1e-4, atol=1e-4)


def test_categories_reach_the_model_as_text_with_an_empty_string_for_a_gap(
    contract: Contract,
) -> None:
    frame = pd.DataFrame(
        {name: [None, None] for name in contract.feature_names()}
        | {contract.categorical_features()[0]: ["Biscoe", np.nan]}
    )
    features = model_input(frame, contract)
    column = features[contract.categorical_features()[0]]
    assert list(column) == ["Biscoe", MISSING_CATEGORY]
    assert features[contract.numeric_features()[0]].dtype == "float64"
    assert features[contract.numeric_features()[0]].isna().all()


def test_a_compiled_model_that_disagrees_fails_naming_the_rows(
    prepared: Callable[..., Params],
) -> None:
    params = prepared("multiclass")
    train_rows = storage.read_parquet(params.paths.train)
    test_rows = storage.read_parquet(params.paths.test)
    model = train.fit(train_rows, params)
    other = train.fit(train_rows.sample(frac=0.3, random_state=1), params)
    blob = to_onnx(other, params.contract, "0" * 64)  # another model's compilation

    with pytest.raises(PipelineError, match=r"disagrees with scikit-learn on \d+ of") as error:
        check_parity(model, blob, test_rows, params.contract, 1e-4)
    assert "row " in str(error.value)
    assert "serve.runtime: sklearn" in str(error.value)


class _Unknown(ClassifierMixin, BaseEstimator):
    """An estimator skl2onnx has no converter for (a team's own model, say)."""

    def fit(self, features: Any, target: Any) -> _Unknown:
        self.classes_ = np.unique(target)
        return self

    def predict(self, features: Any) -> Any:
        return np.repeat(self.classes_[0], len(features))


def test_a_model_that_cannot_be_compiled_fails_clearly(
    prepared: Callable[..., Params],
) -> None:
    params = prepared("multiclass")
    fitted = train.fit(storage.read_parquet(params.paths.train), params)
    unknown = Pipeline([("preprocess", fitted.named_steps["preprocess"]), ("model", _Unknown())])
    with pytest.raises(PipelineError, match=r"cannot be compiled to ONNX.*serve.runtime: sklearn"):
        to_onnx(unknown, params.contract, "0" * 64)


def test_the_sklearn_runtime_compiles_nothing_and_says_so(
    prepared: Callable[..., Params],
) -> None:
    params = prepared("multiclass", runtime="sklearn")
    train.run(params)
    assert params.paths.onnx_model.read_bytes() == b""
    assert storage.read_json(params.paths.parity) == {
        "runtime": "sklearn",
        "compiled": False,
        "rows": 0,
        "max_abs_diff": 0.0,
        "labels_identical": True,
        "tolerance": 0.0,
    }
    assert params.paths.model.stat().st_size > 0


def test_the_same_pipeline_compiles_to_the_same_bytes_whatever_the_hash_seed(
    prepared: Callable[..., Params], workdir: Path
) -> None:
    """dvc.lock records the compiled model's hash: a fresh run must reproduce it."""
    params = prepared("multiclass")
    model = train.fit(storage.read_parquet(params.paths.train), params)
    saved = workdir / "model.joblib"
    storage.write_bytes(saved, train.serialize(model))
    code = "\n".join(
        [
            "import hashlib, joblib",
            "from pathlib import Path",
            "from mlops_template.stages.compile import to_onnx",
            "from mlops_template.contract import load_contract",
            f"model = joblib.load({str(saved)!r})",
            f"contract = load_contract(Path({str(DEFAULT_CONTRACT)!r}))",
            "print(hashlib.sha256(to_onnx(model, contract, '0' * 64)).hexdigest())",
        ]
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2", "3", "4", "5", "6")
    }
    assert len(digests) == 1
