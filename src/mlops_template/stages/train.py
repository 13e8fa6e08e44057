"""Stage `train`: fit a scikit-learn Pipeline (preprocessing + the estimator chosen in params).

Writes the model with joblib and its sha256 beside it (`model.joblib.sha256`, `sha256sum`
format): a model file is code, so anything that loads it later checks that hash first.
Also writes the training reference (`paths.reference`): the class shares and the missing rate
of each feature in the training split. The service ships it beside the model and compares its
live traffic with it (the drift gauges on /metrics).
Wall-clock training time is not reproducible, so it goes to MLflow and to an untracked side
file (`paths.train_timing`), never into a DVC output.
"""

from __future__ import annotations

import io as stdio
import logging
import time

import joblib
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlops_template import config, io, tracking
from mlops_template.config import Params
from mlops_template.schema import TARGET, categorical_features, feature_names, numeric_features

log = logging.getLogger(__name__)


def build_estimator(settings: config.ModelSettings, seed: int) -> object:
    options = settings.model_dump(exclude={"kind"})
    match settings:
        case config.RandomForest():
            return RandomForestClassifier(random_state=seed, **options)
        case config.HistGradientBoosting():
            return HistGradientBoostingClassifier(random_state=seed, **options)
        case config.LogisticRegression():
            return LogisticRegression(random_state=seed, **options)
    raise AssertionError(f"unhandled model kind {settings.kind}")


def build_pipeline(settings: config.ModelSettings, seed: int) -> Pipeline:
    """Impute and encode the schema's features, then the estimator. Only the linear model
    needs scaled inputs; trees are scale-invariant, so they skip that work."""
    numeric_steps: list[object] = [SimpleImputer(strategy="median")]
    if isinstance(settings, config.LogisticRegression):
        numeric_steps.append(StandardScaler())
    preprocess = ColumnTransformer(
        [
            ("numeric", make_pipeline(*numeric_steps), numeric_features()),
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ),
                categorical_features(),
            ),
        ],
        verbose_feature_names_out=False,
    )
    return Pipeline([("preprocess", preprocess), ("model", build_estimator(settings, seed))])


def fit(train: pd.DataFrame, params: Params) -> Pipeline:
    pipeline = build_pipeline(params.model, params.seed)
    pipeline.fit(train[feature_names()], train[TARGET.name])
    return pipeline


def reference_profile(train: pd.DataFrame) -> dict[str, object]:
    """What live traffic is compared with: class shares and per-feature missing rates."""
    shares = train[TARGET.name].value_counts(normalize=True)
    return {
        "rows": len(train),
        "class_shares": {
            name: round(float(shares.get(name, 0.0)), 6) for name in TARGET.categories
        },
        "missing_rate": {
            name: round(float(train[name].isna().mean()), 6) for name in feature_names()
        },
    }


def serialize(model: Pipeline) -> bytes:
    buffer = stdio.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def run(params: Params) -> Pipeline:
    train = io.read_parquet(params.paths.train)
    with tracking.tracker(params.tracking, run_name="train") as tracker:
        started = time.perf_counter()
        model = fit(train, params)
        seconds = time.perf_counter() - started
        blob = serialize(model)
        sha256 = io.sha256_bytes(blob)
        log.info("trained %s on %d rows in %.2f s", params.model.kind, len(train), seconds)

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
        tracker.log_model(model, train[feature_names()].head(5))

        io.write_bytes(params.paths.model, blob)
        io.write_text(
            io.sha256_sidecar(params.paths.model), f"{sha256}  {params.paths.model.name}\n"
        )
        io.write_json(params.paths.reference, reference_profile(train))
        io.write_json(
            params.paths.train_timing,
            {
                "train_seconds": round(seconds, 3),
                "train_rows": len(train),
                "model_bytes": len(blob),
            },
        )
    return model
