"""The service behind the routes: the model and its challenger, loading and readiness, scoring,
and what every answer leaves behind (metrics, the prediction log, the live monitor).

Routes (routes.py, v2.py) only translate between HTTP and these methods, so our routes and the
Open Inference Protocol's score, log and count the same way.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from prometheus_client import generate_latest

from mlops_template.config import ExplainSettings, ServeSettings
from mlops_template.contract import Contract
from mlops_template.monitoring.records import PredictionRecord
from mlops_template.serve.batcher import MicroBatcher
from mlops_template.serve.explain import Explainer
from mlops_template.serve.logsink import PredictionLog
from mlops_template.serve.metrics import ServiceMetrics
from mlops_template.serve.model import LoadError, ServedModel
from mlops_template.serve.monitor import LiveMonitor
from mlops_template.serve.shadow import ShadowScorer

log = logging.getLogger(__name__)

T = TypeVar("T")
# An ONNX model scores up to this many rows on the event loop (batcher.py says why): well
# under a millisecond, less than the hop to a thread and back.
IN_LOOP_MAX_ROWS = 64
Record = dict[str, Any]
Answer = dict[str, Any]  # prediction, probabilities (classification), model_version, prediction_id


# Why the service is not ready, as readiness and the 503s report it: a code, never an
# exception's text (that names files and internals; it goes to the log). The model's own
# codes are serve/model.py's LoadError codes (model_not_found, model_hash_mismatch,
# model_signature_*, model_incompatible); docs/serving.md lists them all.
LOADING = "loading"  # the model is being verified and loaded
DRAINING = "draining"  # SIGTERM: shutting down
LOAD_FAILED = "model_load_failed"  # any other failure to load the model
LOG_FAILED = "prediction_log_failed"  # the prediction log cannot be written (logsink.py)


@dataclass
class ServiceState:
    """What the health endpoints report; `draining` is set by the SIGTERM handler."""

    model: ServedModel | None = None
    load_error: str | None = None  # the reason code of a failed load
    shadow: ShadowScorer | None = None
    draining: bool = False
    inflight: int = 0
    loaded: threading.Event = field(default_factory=threading.Event)
    log_health: Callable[[], str | None] = lambda: None  # the prediction log's (logsink.py)

    def not_ready_reason(self) -> str | None:
        """The reason code (None: ready)."""
        if self.load_error is not None:
            return self.load_error
        if self.draining:
            return DRAINING
        if self.model is None:
            return LOADING
        return None if self.log_health() is None else LOG_FAILED


class NotReadyError(Exception):
    """No model to score with (loading, or it failed to load): the routes answer 503."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class UnscorableError(Exception):
    """The model's answer for a record is not a finite number (inputs at the edge of what it
    computes in): the client's record, answered 422 (400 under /v2), never a 500."""


def _unscorable(scores: Any, rows: int) -> list[int]:
    """The records whose scores are not all finite."""
    values = np.asarray(scores, dtype=float).reshape(rows, -1)
    return np.flatnonzero(~np.isfinite(values).all(axis=1)).tolist()


class Service:
    """One model served for one contract. The model loads in a background thread after
    start-up (start), so the liveness probe answers at once and readiness says why not until
    the model is there."""

    def __init__(
        self,
        settings: ServeSettings,
        contract: Contract,
        load_model: Callable[[], ServedModel],
        state: ServiceState | None = None,
        load_challenger: Callable[[], ServedModel] | None = None,
        reference: Mapping[str, Any] | None = None,
        background: list[Record] | None = None,
        explain: ExplainSettings | None = None,
    ):
        self.settings = settings
        self.contract = contract
        self.state = state or ServiceState()
        self.metrics = ServiceMetrics(regression=not contract.is_classification)
        self.prediction_log = PredictionLog(
            settings.prediction_log,
            settings.prediction_log_max_bytes,
            settings.prediction_log_backups,
        )
        self.state.log_health = self.prediction_log.health
        # Large bodies are validated here, two at a time, beside the scoring threads.
        self.validation = ThreadPoolExecutor(max_workers=2, thread_name_prefix="validate")
        self.monitor = LiveMonitor(settings.monitor_window, contract, reference, self.metrics)
        self.batcher = MicroBatcher(
            # predict() admits records only once a model is loaded, and none is unloaded.
            lambda rows: self.state.model.score(rows),  # type: ignore[union-attr]
            settings.micro_batch_max_rows,
            on_batch=self.metrics.batch_rows.observe,
            in_loop=self._fast,
        )
        self._load_model = load_model
        self._load_challenger = load_challenger
        # /explain: its own threads and cap, never the micro-batcher (serve/explain.py).
        self.explainer = Explainer(
            background, explain or ExplainSettings(), settings.max_concurrent_explanations
        )

    def _fast(self, rows: int) -> bool:
        """Whether scoring `rows` is quick enough for the event loop: only the ONNX runtime's
        small batches (a scikit-learn call has a fixed cost far above ONNX's, `make bench-serve`;
        a stub model may block)."""
        runtime = getattr(self.state.model, "runtime", None)
        return runtime == "onnx" and rows <= IN_LOOP_MAX_ROWS

    # Life cycle

    async def start(self) -> None:
        self.batcher.start()
        threading.Thread(target=self.load, name="load-model", daemon=True).start()

    async def stop(self) -> None:
        """Every step is bounded: shutdown never waits on a stuck disk or challenger."""
        self.state.draining = True
        await self.batcher.stop()
        if self.state.shadow is not None:
            self.state.shadow.close(timeout=1.0)
        self.prediction_log.close(timeout=2.0)
        self.validation.shutdown(wait=False, cancel_futures=True)
        self.explainer.close()

    def load(self) -> None:
        """Load the champion, then the challenger; a failure is reported by readiness."""
        try:
            model = self._load_model()
        except Exception as error:  # its code to /health/ready, its text to the log
            self.state.load_error = error.code if isinstance(error, LoadError) else LOAD_FAILED
            log.error("model failed to load (%s): %s", self.state.load_error, error)
        else:
            self.state.model = model
            self.metrics.model_info.labels(model.version).set(1)
            log.info("model %s loaded; ready", model.version)
        finally:
            self.state.loaded.set()
        if self._load_challenger is not None and self.state.model is not None:
            self._load_shadow(self._load_challenger)

    def _load_shadow(self, load_challenger: Callable[[], ServedModel]) -> None:
        """The champion is already serving; a challenger that fails to load is logged and
        skipped, never a reason to stop serving."""
        try:
            challenger = load_challenger()
        except Exception as error:
            log.error("challenger failed to load; no shadow scoring: %s", error)
            return
        self.state.shadow = ShadowScorer(
            challenger,
            self.prediction_log,
            self.settings.monitor_window,
            self.settings.micro_batch_max_rows,
        )
        self.metrics.shadow_model_info.labels(challenger.version).set(1)
        log.info("challenger %s loaded; scoring in shadow", challenger.version)

    # Answers

    def not_ready_reason(self) -> str | None:
        """Why the service should get no traffic now (None: ready)."""
        return self.state.not_ready_reason()

    async def in_thread(self, work: Callable[..., T], *args: Any) -> T:
        """`work(*args)` on the validation threads: a large body is parsed and validated
        there, so the event loop keeps answering."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.validation, work, *args)

    async def predict(self, records: list[Record]) -> list[Answer]:
        """Score validated records (request.features_model): one answer per record, logged,
        counted and shadow-scored. Raises NotReadyError while there is no model (draining still
        serves)."""
        model = self.state.model
        if model is None:
            raise NotReadyError(self.state.not_ready_reason() or LOADING)
        scores = await self.batcher.score(records)
        if bad := _unscorable(scores, len(records)):
            raise UnscorableError(
                f"the model's answer for record {bad[0]} is not a finite number ({len(bad)}"
                " record(s) in all): its values are too extreme for the model"
            )
        return self._answers(records, scores, model)

    async def explain(self, record: Record, wanted: str | None = None) -> Answer:
        """Shapley values of one validated record (serve/explain.py); raises BusyError at the
        cap or without background rows, NotReadyError while there is no model."""
        model = self.state.model
        if model is None:
            raise NotReadyError(self.state.not_ready_reason() or LOADING)
        answer = await self.explainer.explain(model, record, wanted)
        numbers = [answer["base_value"], *(c["contribution"] for c in answer["contributions"])]
        if not np.isfinite(numbers).all():
            raise UnscorableError("the model's answer for the record is not a finite number")
        return answer | {"model_version": model.version}

    def _answers(self, records: list[Record], scores: Any, model: ServedModel) -> list[Answer]:
        answers = []
        now = time.time()
        for record, row in zip(records, scores, strict=True):
            predicted, probabilities = model.decode(row)
            prediction_id = uuid.uuid4().hex
            self.metrics.count(predicted)
            self.monitor.observe(record, predicted)
            answer: Answer = {"prediction": predicted}
            if probabilities is not None:  # a classifier's; a regressor returns the number
                answer["probabilities"] = probabilities
            self.prediction_log.write(
                PredictionRecord(
                    now, prediction_id, "champion", model.version, record, predicted, probabilities
                )
            )
            answer |= {"model_version": model.version, "prediction_id": prediction_id}
            answers.append(answer)
        if self.state.shadow is not None:
            self.state.shadow.submit(
                [
                    (answer["prediction_id"], record, answer["prediction"])
                    for record, answer in zip(records, answers, strict=True)
                ]
            )
        return answers

    def metrics_text(self) -> bytes:
        """/metrics: the gauges that are read rather than counted are set first."""
        metrics = self.metrics
        metrics.log_dropped.set(self.prediction_log.dropped)
        metrics.log_healthy.set(self.prediction_log.health() is None)
        self.monitor.export()
        shadow = self.state.shadow
        if shadow is not None:
            rows, agreement = shadow.agreement.snapshot()
            metrics.shadow_window_rows.set(rows)
            if self.contract.is_classification:
                metrics.shadow_agreement.set(agreement)
            else:
                metrics.shadow_difference.set(agreement)
            metrics.shadow_dropped.set(shadow.dropped)
        return generate_latest(metrics.registry)
