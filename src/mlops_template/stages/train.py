"""Stage `train`: fit a scikit-learn Pipeline (preprocessing + the estimator chosen in params).

Writes the model with joblib and its sha256 beside it (`model.joblib.sha256`, `sha256sum`
format): a model file is code, so anything that loads it later checks that hash first.
Also writes the training reference (`paths.reference`): the missing rate of each feature and
the target's class shares (or, for regression, its mean, spread and deciles) in the training
split. The service ships it beside the model and compares its
live traffic with it (the drift gauges on /metrics).
With `serve.runtime: onnx` (the default) it also compiles the model to ONNX
(`paths.onnx_model`, with its sha256 beside it; compile.py), what the service runs, and fails
unless the compiled model agrees with scikit-learn on the test split (`paths.parity`).
Wall-clock training time is not reproducible, so it goes to MLflow and to an untracked side
file (`paths.train_timing`), never into a DVC output.
"""

from __future__ import annotations

import io
import logging
import time

import joblib
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlops_template import PipelineError, config
from mlops_template.config import Params
from mlops_template.contract import MISSING_CATEGORY, Contract
from mlops_template.contract.features import model_input
from mlops_template.io import storage, tracking
from mlops_template.stages.compile import Parity, check_parity, to_onnx

log = logging.getLogger(__name__)


def build_estimator(settings: config.ModelSettings, seed: int, regression: bool) -> object:
    """The estimator `model.kind` names, a classifier or a regressor as the task needs."""
    options = settings.model_dump(exclude={"kind"})
    match settings:
        case config.RandomForest():
            forest = RandomForestRegressor if regression else RandomForestClassifier
            return forest(random_state=seed, **options)
        case config.HistGradientBoosting():
            boosting = (
                HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier
            )
            return boosting(random_state=seed, **options)
        case config.LogisticRegression() if not regression:
            return LogisticRegression(random_state=seed, **options)
        case config.Ridge() if regression:
            return Ridge(random_state=seed, **options)
    task = "regression" if regression else "classification"
    raise PipelineError(
        f"model.kind: {settings.kind} does not do {task}; choose random_forest,"
        f" hist_gradient_boosting or {'ridge' if regression else 'logistic_regression'}"
    )


def build_pipeline(settings: config.ModelSettings, contract: Contract, seed: int) -> Pipeline:
    """Impute and encode the contract's features, then the estimator. Only the linear models
    need scaled inputs; trees are scale-invariant, so they skip that work."""
    numeric_steps: list[object] = [SimpleImputer(strategy="median")]
    if isinstance(settings, config.LogisticRegression | config.Ridge):
        numeric_steps.append(StandardScaler())
    preprocess = ColumnTransformer(
        [
            ("numeric", make_pipeline(*numeric_steps), contract.numeric_features()),
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(missing_values=MISSING_CATEGORY, strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ),
                contract.categorical_features(),
            ),
        ],
        verbose_feature_names_out=False,
    )
    estimator = build_estimator(settings, seed, regression=not contract.is_classification)
    return Pipeline([("preprocess", preprocess), ("model", estimator)])


def fit(train: pd.DataFrame, params: Params) -> Pipeline:
    contract = params.contract
    pipeline = build_pipeline(params.model, contract, params.seed)
    target = train[contract.target.name]
    pipeline.fit(
        model_input(train, contract), target.astype(str if contract.is_classification else float)
    )
    return pipeline


QUANTILES = [i / 10 for i in range(11)]


def reference_profile(train: pd.DataFrame, contract: Contract) -> dict[str, object]:
    """What live traffic is compared with: per-feature missing rates, and the target's class
    shares (classification) or its mean, spread and deciles (regression)."""
    target = train[contract.target.name]
    profile: dict[str, object] = {
        "rows": len(train),
        "task": contract.task,
        "missing_rate": {
            name: round(float(train[name].isna().mean()), 6) for name in contract.feature_names()
        },
    }
    if contract.is_classification:
        shares = target.astype(str).value_counts(normalize=True)
        profile["class_shares"] = {
            name: round(float(shares.get(name, 0.0)), 6) for name in contract.classes
        }
    else:
        values = target.astype(float)
        profile["target_mean"] = round(float(values.mean()), 6)
        profile["target_std"] = round(float(values.std(ddof=0)), 6)
        profile["target_quantiles"] = [round(float(q), 6) for q in values.quantile(QUANTILES)]
    return profile


def serialize(model: Pipeline) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def compile_served(model: Pipeline, sha256: str, params: Params) -> tuple[bytes, Parity]:
    """The model the service runs: compiled to ONNX and checked on the test split; with
    serve.runtime sklearn, nothing (a zero-byte file keeps the stage's outputs whole)."""
    if params.serve.runtime == "sklearn":
        return b"", Parity(runtime="sklearn", compiled=False)
    blob = to_onnx(model, params.contract, sha256)
    test = storage.read_parquet(params.paths.test)
    tolerance, threshold = params.serve.parity_tolerance, params.evaluate.threshold
    return blob, check_parity(model, blob, test, params.contract, tolerance, threshold)


def run(params: Params) -> Pipeline:
    train = storage.read_parquet(params.paths.train)
    with tracking.tracker(params.tracking, run_name="train") as tracker:
        started = time.perf_counter()
        model = fit(train, params)
        seconds = time.perf_counter() - started
        blob = serialize(model)
        sha256 = storage.sha256_bytes(blob)
        log.info("trained %s on %d rows in %.2f s", params.model.kind, len(train), seconds)
        onnx_blob, parity = compile_served(model, sha256, params)
        if parity.compiled:
            log.info(
                "compiled to ONNX (%d bytes); parity on %d test rows: max difference %.2g",
                len(onnx_blob),
                parity.rows,
                parity.max_abs_diff,
            )

        tracker.set_tags({tracking.MODEL_SHA_TAG: sha256, "model_kind": params.model.kind})
        tracker.log_params(
            {
                "seed": params.seed,
                "data.source": str(params.data.source),
                "split.test_size": params.split.test_size,
                **{f"model.{key}": value for key, value in params.model.model_dump().items()},
            }
        )
        tracker.log_metrics(
            {"train_seconds": seconds, "train_rows": len(train), "model_bytes": len(blob)}
        )
        tracker.log_model(model, model_input(train.head(5), params.contract))

        for path, data in ((params.paths.model, blob), (params.paths.onnx_model, onnx_blob)):
            storage.write_bytes(path, data)
            storage.write_text(
                storage.sha256_sidecar(path), f"{storage.sha256_bytes(data)}  {path.name}\n"
            )
        storage.write_json(params.paths.parity, parity.as_dict())
        storage.write_json(params.paths.reference, reference_profile(train, params.contract))
        storage.write_json(
            params.paths.train_timing,
            {
                "train_seconds": round(seconds, 3),
                "train_rows": len(train),
                "model_bytes": len(blob),
            },
        )
    return model
