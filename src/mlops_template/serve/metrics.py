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
        self._add_serving_metrics()
        self._add_monitoring_metrics()
        self._add_shadow_metrics()

    def _gauge(self, name: str, documentation: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, documentation, labels, registry=self.registry)

    def _add_serving_metrics(self) -> None:
        """Requests, latency, predictions, micro-batches, the served model, the log's health."""
        by_route = ("route", "status")
        self.requests = Counter(
            "http_requests", "HTTP requests by route and status.", by_route, registry=self.registry
        )
        self.latency = Histogram(
            "http_request_duration_seconds", "Request latency by route and status.", by_route,
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        if self.regression:
            self.predictions = Counter("predictions", "Predictions made.", registry=self.registry)
        else:
            self.predictions = Counter(
                "predictions", "Predicted classes.", ["predicted_class"], registry=self.registry
            )
        self.batch_rows = Histogram(
            "micro_batch_rows", "Rows scored together per model call.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=self.registry,
        )  # fmt: skip
        self.model_info = self._gauge(
            "model_info", "The served model (value is always 1).", ("version",)
        )
        self.log_dropped = self._gauge(
            "prediction_log_dropped",
            "Prediction log lines dropped because the disk lagged or failed.",
        )
        self.log_healthy = self._gauge(
            "prediction_log_healthy",
            "1 while the prediction log is being written; 0 when it cannot be (readiness 503).",
        )

    def _add_monitoring_metrics(self) -> None:
        """Live drift signals over the newest serve.monitor_window predictions (monitor.py)."""
        gauge = self._gauge
        self.window_rows = gauge("monitor_window_rows", "Predictions in the monitoring window.")
        self.missing_ratio = gauge(
            "input_missing_ratio",
            "Share of requests in the window with this feature missing.",
            ("feature",),
        )
        self.missing_ratio_reference = gauge(
            "input_missing_ratio_reference",
            "Share of training rows with this feature missing.",
            ("feature",),
        )
        if self.regression:
            self.prediction_mean = gauge("prediction_mean", "Mean prediction in the window.")
            self.prediction_mean_reference = gauge(
                "prediction_mean_reference", "Mean of the target in the training rows."
            )
            self.prediction_mean_shift = gauge(
                "prediction_mean_shift",
                "(prediction_mean - prediction_mean_reference) in training-target standard"
                " deviations.",
            )
        else:
            self.class_share = gauge(
                "prediction_class_share",
                "Share of predictions in the window that are this class.",
                ("predicted_class",),
            )
            self.class_share_reference = gauge(
                "prediction_class_share_reference",
                "Share of training rows of this class.",
                ("predicted_class",),
            )
            self.drift_psi = gauge(
                "prediction_drift_psi",
                "Population stability index of the window's predicted classes against training.",
            )

    def _add_shadow_metrics(self) -> None:
        """Shadow scoring of a challenger (shadow.py)."""
        gauge = self._gauge
        self.shadow_model_info = gauge(
            "shadow_model_info",
            "The challenger scored in shadow (value is always 1).",
            ("version",),
        )
        self.shadow_window_rows = gauge(
            "shadow_window_rows", "Shadow-scored predictions in the agreement window."
        )
        if self.regression:
            self.shadow_difference = gauge(
                "shadow_mean_abs_difference",
                "Mean absolute difference between the challenger's and the champion's"
                " predictions over the window.",
            )
        else:
            self.shadow_agreement = gauge(
                "shadow_agreement_ratio",
                "Share of the window's requests on which the challenger agreed with the champion.",
            )
        self.shadow_dropped = gauge(
            "shadow_dropped", "Requests not shadow-scored because the challenger fell behind."
        )

    def count(self, predicted: str | float) -> None:
        """One prediction made."""
        if self.regression:
            self.predictions.inc()
        else:
            self.predictions.labels(predicted).inc()
