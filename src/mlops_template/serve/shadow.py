"""Shadow scoring: a challenger scores the champion's traffic without touching its answers.

The response is built from the champion alone. Its requests are then queued (bounded; when the
challenger falls behind, requests are dropped and counted, never waited for) and a background
thread scores them with the challenger in batches: it collects requests for up to
LINGER_SECONDS (or `max_batch_rows`) and scores them in one model call. A model call costs
about the same for one row as for a hundred, and every call competes with the champion for
the interpreter, so scoring each request as it came doubled the latency at one client in
flight (bench-serve); batched, the challenger costs a call or two per second.
Each challenger prediction is logged with the champion's prediction id and `"role":
"challenger"`, so `mlops monitor drift` compares the two on the same requests. The live comparison
(/metrics) is the share of requests on which the two agree for a classifier, and the mean
absolute difference of their predictions for a regressor (two numbers are rarely equal).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any, cast

from mlops_template.monitoring.records import PredictionRecord
from mlops_template.serve.logsink import PredictionLog
from mlops_template.serve.model import ServedModel
from mlops_template.serve.monitor import Agreement

log = logging.getLogger(__name__)

_STOP = object()
LINGER_SECONDS = 0.5
Item = tuple[str, dict[str, Any], str | float]  # prediction id, features, champion's answer


class ShadowScorer:
    def __init__(
        self,
        model: ServedModel,
        prediction_log: PredictionLog,
        window: int,
        max_batch_rows: int = 256,
        queue_size: int = 10_000,
    ):
        self.model = model
        self.prediction_log = prediction_log
        self.max_batch_rows = max_batch_rows
        self.agreement = Agreement(window, 1.0 if model.is_classifier else 0.0)
        self.dropped = 0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._score_forever, name="shadow", daemon=True)
        self._thread.start()

    def submit(self, items: Sequence[Item]) -> None:
        for item in items:
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                self.dropped += 1

    def close(self, timeout: float = 1.0) -> None:
        """Stop after what is queued, waiting at most `timeout` seconds (a daemon thread: a
        challenger still scoring then is abandoned, and shutdown goes on)."""
        deadline = time.monotonic() + timeout
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.warning("shadow queue full at shutdown; %d not scored", self._queue.qsize())
        self._thread.join(max(0.0, deadline - time.monotonic()))

    def _next_batch(self) -> tuple[list[Item], bool]:
        """Wait for a request, then gather more for LINGER_SECONDS; True once told to stop."""
        batch: list[Item] = []
        item = self._queue.get()
        deadline = time.monotonic() + LINGER_SECONDS
        while item is not _STOP:
            batch.append(cast(Item, item))  # submit() puts only Items; close() puts _STOP
            remaining = deadline - time.monotonic()
            if len(batch) >= self.max_batch_rows or remaining <= 0:
                return batch, False
            try:
                item = self._queue.get(timeout=remaining)
            except queue.Empty:
                return batch, False
        return batch, True

    def _score_forever(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = self._next_batch()
            if not batch:
                continue
            try:
                scores = self.model.score([features for _, features, _ in batch])
            except Exception:  # a broken challenger must never hurt the champion
                log.exception("shadow scoring failed for %d rows", len(batch))
                self.dropped += len(batch)
                continue
            now = time.time()
            for (prediction_id, features, champion), row in zip(batch, scores, strict=True):
                predicted, probabilities = self.model.decode(row)
                self.agreement.add(_compare(predicted, champion))
                self.prediction_log.write(
                    PredictionRecord(
                        now,
                        prediction_id,
                        "challenger",
                        self.model.version,
                        features,
                        predicted,
                        probabilities,
                    )
                )


def _compare(challenger: str | float, champion: str | float) -> float:
    """1.0 or 0.0 (the classes agree or not), or the absolute difference of two numbers."""
    if isinstance(challenger, str) or isinstance(champion, str):
        return float(challenger == champion)
    return abs(float(challenger) - float(champion))
