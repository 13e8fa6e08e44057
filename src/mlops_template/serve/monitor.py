"""Live drift signals for /metrics, over a sliding window of the newest predictions.

The window holds, for each of the last `serve.monitor_window` predictions, which features were
missing and what was predicted; counts are kept up to date as rows enter and leave, so a
prediction costs a few integer updates and a scrape a few divisions. With the training
reference (`paths.reference`, written by the train stage) the service also exports the
reference values and a drift signal, which the Prometheus alert rules
(deploy/prometheus/alerts.yml) compare with thresholds:

- classification: `prediction_drift_psi`, the PSI of the predicted-class shares against the
  training class shares;
- regression: `prediction_mean` beside `prediction_mean_reference` (the training target's
  mean), and `prediction_mean_shift`, their difference in training-target standard
  deviations. Not a PSI against the target's distribution: a regressor's predictions are
  narrower than the target it learned (they shrink towards the mean), so that PSI read about
  1.0 on undrifted diabetes traffic; the mean is what an unbiased model preserves.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from collections.abc import Mapping
from typing import Any

from mlops_template.contract import Contract
from mlops_template.monitoring.psi import psi
from mlops_template.serve.metrics import ServiceMetrics

log = logging.getLogger(__name__)


def usable_reference(
    reference: Mapping[str, Any] | None, contract: Contract
) -> Mapping[str, Any] | None:
    """The training profile if it describes this contract's task; otherwise None, said once."""
    if reference is None:
        return None
    wanted = ["class_shares"] if contract.is_classification else ["target_mean", "target_std"]
    missing = [key for key in ("missing_rate", *wanted) if key not in reference]
    task = reference.get("task", contract.task)
    if missing or task != contract.task:
        log.warning(
            "training reference is for task %s (lacks %s); drift gauges without reference",
            task,
            ", ".join(missing) or "nothing",
        )
        return None
    return reference


class LiveMonitor:
    def __init__(
        self,
        window: int,
        contract: Contract,
        reference: Mapping[str, Any] | None,
        metrics: ServiceMetrics,
    ):
        self.features = tuple(contract.feature_names())
        self.classes = contract.classes
        self.regression = not contract.is_classification
        self.metrics = metrics
        self.expected: list[float] | None = None  # class shares (classification)
        self.target: tuple[float, float] | None = None  # mean and std (regression)
        reference = usable_reference(reference, contract)
        if reference is not None:  # constant: set once, not at every scrape
            for name in self.features:
                metrics.missing_ratio_reference.labels(name).set(
                    reference["missing_rate"].get(name, 0.0)
                )
            if self.regression:
                self.target = (float(reference["target_mean"]), float(reference["target_std"]))
                metrics.prediction_mean_reference.set(self.target[0])
            else:
                shares = reference["class_shares"]
                self.expected = [float(shares.get(name, 0.0)) for name in self.classes]
                for name, share in zip(self.classes, self.expected, strict=True):
                    metrics.class_share_reference.labels(name).set(share)
        # Per row: the missing features and the prediction (a class, or a number).
        self._rows: deque[tuple[tuple[str, ...], str | float]] = deque(maxlen=window)
        self._missing: Counter[str] = Counter()
        self._predicted: Counter[str] = Counter()

    def observe(self, record: Mapping[str, Any], predicted: str | float) -> None:
        if len(self._rows) == self._rows.maxlen:
            old_missing, old_predicted = self._rows[0]
            self._missing.subtract(old_missing)
            if not self.regression:
                self._predicted[str(old_predicted)] -= 1
        missing = tuple(name for name in self.features if record.get(name) is None)
        self._rows.append((missing, predicted))
        self._missing.update(missing)
        if not self.regression:
            self._predicted[str(predicted)] += 1

    def export(self) -> None:
        """Bring the window's gauges up to date (at each scrape)."""
        metrics = self.metrics
        rows = len(self._rows)
        metrics.window_rows.set(rows)
        for name in self.features:
            metrics.missing_ratio.labels(name).set(self._missing[name] / rows if rows else 0.0)
        if self.regression:
            self._export_mean(rows)
            return
        shares = [self._predicted[name] / rows if rows else 0.0 for name in self.classes]
        for name, share in zip(self.classes, shares, strict=True):
            metrics.class_share.labels(name).set(share)
        if self.expected is None:  # unknown, not zero: no alert can fire on it
            metrics.drift_psi.set(float("nan"))
        else:
            metrics.drift_psi.set(psi(self.expected, shares) if rows else 0.0)

    def _export_mean(self, rows: int) -> None:
        """The window's mean prediction (summed at each scrape: a running float total would
        carry the rounding of every evicted row) and its shift from the training mean."""
        mean = sum(float(value) for _, value in self._rows) / rows if rows else float("nan")
        self.metrics.prediction_mean.set(mean)
        shift = float("nan")  # unknown without a reference: no alert can fire on it
        if self.target is not None and rows:
            reference, spread = self.target
            shift = (mean - reference) / spread if spread > 0 else 0.0
        self.metrics.prediction_mean_shift.set(shift)


class Agreement:
    """How the challenger compares with the champion over the newest shadow-scored requests:
    the share on which it agreed (classification, `add(1.0 or 0.0)`), or the mean absolute
    difference of the two predictions (regression). An empty window reads `empty`."""

    def __init__(self, window: int, empty: float = 1.0):
        self._window: deque[float] = deque(maxlen=window)
        self._empty = empty
        self._lock = threading.Lock()

    def add(self, value: float) -> None:
        with self._lock:
            self._window.append(value)

    def snapshot(self) -> tuple[int, float]:
        with self._lock:
            rows = len(self._window)
            # Summed at each scrape (a few thousand additions): a running float total would
            # carry the rounding of every evicted row.
            return rows, (sum(self._window) / rows if rows else self._empty)
