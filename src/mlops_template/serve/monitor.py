"""Live drift signals for /metrics, over a sliding window of the newest predictions.

The window holds, for each of the last `serve.monitor_window` predictions, which features were
missing and which class was predicted; counts are kept up to date as rows enter and leave, so
a prediction costs a few integer updates and a scrape a few divisions. With the training
reference (`paths.reference`, written by the train stage) the service also exports the
reference values and the PSI of the predicted-class shares, which the Prometheus alert rules
(deploy/prometheus/alerts.yml) compare with thresholds.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from typing import Any

from mlops_template.drift import psi
from mlops_template.serve.metrics import ServiceMetrics


class LiveMonitor:
    def __init__(
        self,
        window: int,
        features: Sequence[str],
        classes: Sequence[str],
        reference: Mapping[str, Any] | None,
        metrics: ServiceMetrics,
    ):
        self.features = tuple(features)
        self.classes = tuple(classes)
        self.metrics = metrics
        self.expected: list[float] | None = None
        if reference is not None:  # constant: set once, not at every scrape
            self.expected = [reference["class_shares"].get(name, 0.0) for name in self.classes]
            for name, share in zip(self.classes, self.expected, strict=True):
                metrics.class_share_reference.labels(name).set(share)
            for name in self.features:
                metrics.missing_ratio_reference.labels(name).set(
                    reference["missing_rate"].get(name, 0.0)
                )
        self._rows: deque[tuple[tuple[str, ...], str]] = deque(maxlen=window)
        self._missing: Counter[str] = Counter()
        self._predicted: Counter[str] = Counter()

    def observe(self, record: Mapping[str, Any], predicted: str) -> None:
        if len(self._rows) == self._rows.maxlen:
            old_missing, old_predicted = self._rows[0]
            self._missing.subtract(old_missing)
            self._predicted[old_predicted] -= 1
        missing = tuple(name for name in self.features if record.get(name) is None)
        self._rows.append((missing, predicted))
        self._missing.update(missing)
        self._predicted[predicted] += 1

    def export(self) -> None:
        """Bring the window's gauges up to date (at each scrape)."""
        metrics = self.metrics
        rows = len(self._rows)
        metrics.window_rows.set(rows)
        for name in self.features:
            metrics.missing_ratio.labels(name).set(self._missing[name] / rows if rows else 0.0)
        shares = [self._predicted[name] / rows if rows else 0.0 for name in self.classes]
        for name, share in zip(self.classes, shares, strict=True):
            metrics.class_share.labels(name).set(share)
        if self.expected is None:  # unknown, not zero: no alert can fire on it
            metrics.drift_psi.set(float("nan"))
        else:
            metrics.drift_psi.set(psi(self.expected, shares) if rows else 0.0)


class Agreement:
    """Share of the newest shadow-scored predictions on which the challenger agreed."""

    def __init__(self, window: int):
        self._window: deque[bool] = deque(maxlen=window)
        self._agreed = 0
        self._lock = threading.Lock()

    def add(self, agreed: bool) -> None:
        with self._lock:
            if len(self._window) == self._window.maxlen:
                self._agreed -= self._window[0]
            self._window.append(agreed)
            self._agreed += agreed

    def snapshot(self) -> tuple[int, float]:
        with self._lock:
            rows = len(self._window)
            return rows, (self._agreed / rows if rows else 1.0)
