"""Prometheus metrics of the service, in their own registry (no process-global state).

The prediction metrics follow the task. A classifier counts predictions by class and exports
class shares (live and training) and the shadow challenger's agreement ratio. A regressor's
predictions are numbers, unbounded as label values: it counts predictions without a label and
exports the live mean prediction beside the training target's mean and their standardized
difference (monitor.py says why not a PSI), and the shadow challenger's mean absolute
difference from the champion. A gauge that does not apply is not registered at all, so no
alert compares a meaningless zero."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class ServiceMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    regression: bool = False

    def __post_init__(self) -> None:
        self.requests = Counter(
            "http_requests",
            "HTTP requests by route and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Request latency by route and status.",
            ["route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        if self.regression:
            self.predictions = Counter("predictions", "Predictions made.", registry=self.registry)
        else:
            self.predictions = Counter(
                "predictions", "Predicted classes.", ["predicted_class"], registry=self.registry
            )
        self.batch_rows = Histogram(
            "micro_batch_rows",
            "Rows scored together per model call.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=self.registry,
        )
        self.model_info = Gauge(
            "model_info",
            "The served model (value is always 1).",
            ["version"],
            registry=self.registry,
        )
        self.log_dropped = Gauge(
            "prediction_log_dropped",
            "Prediction log lines dropped because the disk lagged or failed.",
            registry=self.registry,
        )
        self.log_healthy = Gauge(
            "prediction_log_healthy",
            "1 while the prediction log is being written; 0 when it cannot be (readiness 503).",
            registry=self.registry,
        )
        # Live drift signals over the newest serve.monitor_window predictions (monitor.py).
        self.window_rows = Gauge(
            "monitor_window_rows", "Predictions in the monitoring window.", registry=self.registry
        )
        self.missing_ratio = Gauge(
            "input_missing_ratio",
            "Share of requests in the window with this feature missing.",
            ["feature"],
            registry=self.registry,
        )
        self.missing_ratio_reference = Gauge(
            "input_missing_ratio_reference",
            "Share of training rows with this feature missing.",
            ["feature"],
            registry=self.registry,
        )
        if self.regression:
            self.prediction_mean = Gauge(
                "prediction_mean", "Mean prediction in the window.", registry=self.registry
            )
            self.prediction_mean_reference = Gauge(
                "prediction_mean_reference",
                "Mean of the target in the training rows.",
                registry=self.registry,
            )
            self.prediction_mean_shift = Gauge(
                "prediction_mean_shift",
                "(prediction_mean - prediction_mean_reference) in training-target standard"
                " deviations.",
                registry=self.registry,
            )
        else:
            self.class_share = Gauge(
                "prediction_class_share",
                "Share of predictions in the window that are this class.",
                ["predicted_class"],
                registry=self.registry,
            )
            self.class_share_reference = Gauge(
                "prediction_class_share_reference",
                "Share of training rows of this class.",
                ["predicted_class"],
                registry=self.registry,
            )
            self.drift_psi = Gauge(
                "prediction_drift_psi",
                "Population stability index of the window's predicted classes against training.",
                registry=self.registry,
            )
        # Shadow scoring of a challenger (shadow.py).
        self.shadow_model_info = Gauge(
            "shadow_model_info",
            "The challenger scored in shadow (value is always 1).",
            ["version"],
            registry=self.registry,
        )
        self.shadow_window_rows = Gauge(
            "shadow_window_rows",
            "Shadow-scored predictions in the agreement window.",
            registry=self.registry,
        )
        if self.regression:
            self.shadow_difference = Gauge(
                "shadow_mean_abs_difference",
                "Mean absolute difference between the challenger's and the champion's"
                " predictions over the window.",
                registry=self.registry,
            )
        else:
            self.shadow_agreement = Gauge(
                "shadow_agreement_ratio",
                "Share of the window's requests on which the challenger agreed with the champion.",
                registry=self.registry,
            )
        self.shadow_dropped = Gauge(
            "shadow_dropped",
            "Requests not shadow-scored because the challenger fell behind.",
            registry=self.registry,
        )

    def count(self, predicted: str | float) -> None:
        """One prediction made."""
        if self.regression:
            self.predictions.inc()
        else:
            self.predictions.labels(predicted).inc()
