"""The sections for what happens after training: tracking, serve, monitoring, registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from mlops_template.config.base import Section


class TrackingSettings(Section):
    """MLflow tracking. The URI itself comes from MLFLOW_TRACKING_URI (see tracking.py)."""

    enabled: bool = True
    experiment: str = "mlops-template"
    on_unreachable: Literal["fail", "skip"] = "fail"
    timeout_seconds: Annotated[float, Field(gt=0.0)] = 5.0


class ServeSettings(Section):
    """The prediction service (src/mlops_template/serve). Limits protect it under load."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    max_body_bytes: Annotated[int, Field(ge=1024)] = 1_048_576
    max_batch_rows: Annotated[int, Field(ge=1)] = 1000
    max_concurrent_requests: Annotated[int, Field(ge=1)] = 256
    request_timeout_seconds: Annotated[float, Field(gt=0)] = 5.0
    micro_batch_max_rows: Annotated[int, Field(ge=1)] = 256
    drain_seconds: Annotated[float, Field(ge=0)] = 5.0
    prediction_log: Path = Path("logs/predictions.jsonl")
    prediction_log_max_bytes: Annotated[int, Field(ge=1024)] = 50_000_000
    prediction_log_backups: Annotated[int, Field(ge=1)] = 5
    monitor_window: Annotated[int, Field(ge=10)] = 1000
    challenger_model: Path | None = None
    challenger_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    # Hostile clients (README "Serving", docs/serving.md "Hostile clients").
    body_timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    header_timeout_seconds: Annotated[float, Field(gt=0)] = 5.0
    keep_alive_seconds: Annotated[float, Field(gt=0)] = 5.0
    max_connections: Annotated[int, Field(ge=1)] = 1000
    max_body_bytes_in_flight: Annotated[int, Field(ge=1024)] = 67_108_864
    max_validation_errors: Annotated[int, Field(ge=1)] = 10
    min_present_features: Annotated[int, Field(ge=0)] = 1
    metrics: Literal["public", "internal", "off"] = "public"
    docs: Literal["public", "internal", "off"] = "public"
    explain: Literal["public", "internal", "off"] = "public"  # POST /explain (serve/explain.py)
    max_concurrent_explanations: Annotated[int, Field(ge=1)] = 2  # beyond: 503 at once
    internal_host: str = "127.0.0.1"
    internal_port: Annotated[int, Field(ge=1, le=65535)] = 9000
    # onnx: the train stage compiles the model (paths.onnx_model) and the service runs it in
    # onnxruntime, without scikit-learn or pandas. sklearn: no compilation; the service loads
    # paths.model (install the `sklearn` extra), for a model skl2onnx cannot convert.
    runtime: Literal["onnx", "sklearn"] = "onnx"
    # The served model's signature (paths.model_signature, io/signing.py), checked at load
    # before the model is deserialized: off (a development checkout), key (by the private key
    # of signature_public_key) or sigstore (keyless, by signature_identity from
    # signature_issuer). Each has an MLOPS_* variable (serve/__main__.py); docs/serving.md.
    model_signature: Literal["off", "key", "sigstore"] = "off"
    signature_public_key: Path | None = None
    signature_identity: str | None = None
    signature_issuer: str = "https://token.actions.githubusercontent.com"
    signature_trust_config: Path | None = None  # sigstore: a client trust config (JSON)

    @field_validator("metrics", "docs", "explain", "model_signature", mode="before")
    @classmethod
    def _unquoted_off(cls, value: object) -> object:
        """YAML reads an unquoted `off` as false: it means "off" here, as written."""
        return "off" if value is False else value

    # The compiled model must agree with scikit-learn on the test split: probabilities (or
    # regression predictions, relative to max(1, |prediction|)) within this, same labels.
    parity_tolerance: Annotated[float, Field(gt=0.0, le=0.01)] = 1e-4


class MonitoringSettings(Section):
    """`mlops monitor drift`: logged production traffic against the training reference.

    A distribution test flags drift only when the shift is both significant (p below `alpha`,
    split over all the tests) and material (PSI at least `psi_threshold`): significance alone
    flags trivial shifts in big windows, effect size alone is noise in small ones."""

    window_rows: Annotated[int, Field(ge=10)] = 5000
    min_rows: Annotated[int, Field(ge=10)] = 100
    alpha: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.01
    psi_threshold: Annotated[float, Field(gt=0.0)] = 0.2
    psi_bins: Annotated[int, Field(ge=2, le=50)] = 10
    max_missing_rate_increase: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    max_accuracy_drop: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05
    # Regression feedback: drift when the MAE rises by more than this share of the test MAE.
    max_error_increase: Annotated[float, Field(gt=0.0)] = 0.2
    min_labelled_rows: Annotated[int, Field(ge=1)] = 30
    feedback: Path = Path("logs/feedback.jsonl")
    fetched: Path = Path("logs/production")


class RegistrySettings(Section):
    """The MLflow Model Registry and the champion/challenger gate (registry.py)."""

    model_name: str = "mlops-template"
    # A candidate replaces the champion only if it beats it on evaluate.primary_metric by at
    # least `margin`, and is not worse than `tolerance` on every other headline metric.
    margin: Annotated[float, Field(ge=0.0)] = 0.0
    tolerance: Annotated[float, Field(ge=0.0)] = 0.01
