"""The HTTP service: FastAPI routes plus a thin ASGI layer for limits and metrics.

Status codes a client can see: 200; 413 body too large; 422 invalid input (naming the
field); 503 overloaded (too many requests in flight), not ready (loading, draining after
SIGTERM, or the model failed to load) or timed out. Never a 500 for bad input.
"""

# No `from __future__ import annotations` here: FastAPI reads the route annotations at
# definition time, and the batch request model is built at run time from the settings.
import asyncio
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from mlops_template.config import ServeSettings
from mlops_template.schema import TARGET, feature_names
from mlops_template.serve.batcher import MicroBatcher
from mlops_template.serve.logsink import PredictionLog
from mlops_template.serve.metrics import ServiceMetrics
from mlops_template.serve.model import ServedModel, decode
from mlops_template.serve.monitor import LiveMonitor
from mlops_template.serve.request import (
    BatchPrediction,
    Features,
    Prediction,
    batch_request,
)
from mlops_template.serve.shadow import ShadowScorer

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ROUTES = {"/predict", "/predict/batch", "/health/live", "/health/ready", "/metrics"}


@dataclass
class ServiceState:
    """What the health endpoints report; `draining` is set by the SIGTERM handler."""

    model: ServedModel | None = None
    load_error: str | None = None
    shadow: ShadowScorer | None = None
    draining: bool = False
    inflight: int = 0
    loaded: threading.Event = field(default_factory=threading.Event)

    def not_ready_reason(self) -> str | None:
        if self.load_error is not None:
            return f"model failed to load: {self.load_error}"
        if self.draining:
            return "draining: shutting down"
        if self.model is None:
            return "loading the model"
        return None


async def _reply(send: Send, status: int, detail: str, headers: list | None = None) -> None:
    body = ('{"detail":"' + detail.replace('"', "'") + '"}').encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Body size limit, concurrency limit, timeout and request metrics, around the app."""

    def __init__(
        self, app: ASGIApp, settings: ServeSettings, state: ServiceState, metrics: ServiceMetrics
    ):
        self.app = app
        self.settings = settings
        self.state = state
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in ROUTES else "other"
        started = time.perf_counter()
        status = {"code": 500}

        async def send_and_record(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self._guarded(scope, receive, send_and_record)
        finally:
            labels = (route, str(status["code"]))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.settings.max_body_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _reply(send, 413, f"request body larger than {limit} bytes")
            return
        if self.state.inflight >= self.settings.max_concurrent_requests:
            await _reply(send, 503, "too many requests in flight", [(b"retry-after", b"1")])
            return
        # Read the body here, bounded, so the limit also holds without a content-length
        # (chunked uploads); the app then gets it in one piece.
        body = b""
        more = scope["method"] in {"POST", "PUT", "PATCH"}
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                await _reply(send, 413, f"request body larger than {limit} bytes")
                return
            more = message.get("more_body", False)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        started = {"response": False}

        async def tracked_send(message: Message) -> None:
            started["response"] = True
            await send(message)

        self.state.inflight += 1
        try:
            await asyncio.wait_for(
                self.app(scope, replay, tracked_send),
                self.settings.request_timeout_seconds,
            )
        except TimeoutError:
            if not started["response"]:
                await _reply(send, 503, "request timed out", [(b"retry-after", b"1")])
        finally:
            self.state.inflight -= 1


def create_app(
    settings: ServeSettings,
    load_model: Callable[[], ServedModel],
    state: ServiceState | None = None,
    *,
    load_challenger: Callable[[], ServedModel] | None = None,
    reference: Mapping[str, Any] | None = None,
) -> Guard:
    """Build the service. The model loads in a background thread after start-up, so the
    liveness probe answers at once and readiness says 503 until the model is there.

    With `load_challenger`, a second model is scored in shadow (shadow.py); `reference` (the
    train stage's profile) adds the reference values and the drift PSI to /metrics."""
    state = state or ServiceState()
    metrics = ServiceMetrics()
    prediction_log = PredictionLog(
        settings.prediction_log, settings.prediction_log_max_bytes, settings.prediction_log_backups
    )
    monitor = LiveMonitor(
        settings.monitor_window, feature_names(), TARGET.categories, reference, metrics
    )
    batcher = MicroBatcher(
        lambda rows: state.model.predict_proba(rows),  # type: ignore[union-attr]
        settings.micro_batch_max_rows,
        on_batch=metrics.batch_rows.observe,
    )

    def load() -> None:
        try:
            model = load_model()
        except Exception as error:  # reported by /health/ready and the log
            state.load_error = str(error)
            log.error("model failed to load: %s", error)
        else:
            state.model = model
            metrics.model_info.labels(model.version).set(1)
            log.info("model %s loaded; ready", model.version)
        finally:
            state.loaded.set()
        if load_challenger is not None and state.model is not None:
            load_shadow(load_challenger)

    def load_shadow(load_challenger: Callable[[], ServedModel]) -> None:
        """The champion is already serving; a challenger that fails to load is logged and
        skipped, never a reason to stop serving."""
        try:
            challenger = load_challenger()
        except Exception as error:
            log.error("challenger failed to load; no shadow scoring: %s", error)
            return
        state.shadow = ShadowScorer(
            challenger, prediction_log, settings.monitor_window, settings.micro_batch_max_rows
        )
        metrics.shadow_model_info.labels(challenger.version).set(1)
        log.info("challenger %s loaded; scoring in shadow", challenger.version)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        threading.Thread(target=load, name="load-model", daemon=True).start()
        yield
        state.draining = True
        await batcher.stop()
        if state.shadow is not None:
            state.shadow.close()
        prediction_log.close()

    api = FastAPI(
        title="mlops-template prediction service",
        version="1",
        description="Predicts the penguin species from body measurements. The request schema"
        " is derived from the pipeline's data contract (src/mlops_template/schema.py).",
        lifespan=lifespan,
    )
    BatchRequest = batch_request(settings.max_batch_rows)  # noqa: N806 (a class)

    @api.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        """422 naming each bad field. The offending input is not echoed back: it may be NaN
        or infinity, which JSON cannot carry (echoing it was a 500)."""
        problems = [
            {"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]}
            for item in error.errors()
        ]
        return JSONResponse({"detail": problems}, status_code=422)

    @api.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        """FastAPI answers 400 for a body it cannot decode (not UTF-8); like any other body
        that is not JSON, that is a 422 here."""
        if error.status_code == 400:
            problem = {
                "loc": ["body"],
                "msg": "body is not valid UTF-8 JSON",
                "type": "json_invalid",
            }
            return JSONResponse({"detail": [problem]}, status_code=422)
        return JSONResponse({"detail": error.detail}, error.status_code, headers=error.headers)

    def respond(
        records: list[dict[str, Any]], proba: Any, model: ServedModel
    ) -> list[dict[str, Any]]:
        predictions = []
        now = time.time()
        for record, row in zip(records, proba, strict=True):
            predicted, probabilities = decode(model.classes, row)
            prediction_id = uuid.uuid4().hex
            metrics.predictions.labels(predicted).inc()
            monitor.observe(record, predicted)
            prediction_log.write(
                {
                    "ts": now,
                    "id": prediction_id,
                    "role": "champion",
                    "model_version": model.version,
                    "features": record,
                    "prediction": predicted,
                    "probabilities": probabilities,
                }
            )
            # Plain dicts: FastAPI validates them against `Prediction` once, on the way out.
            predictions.append(
                {
                    "prediction": predicted,
                    "probabilities": probabilities,
                    "model_version": model.version,
                    "prediction_id": prediction_id,
                }
            )
        if state.shadow is not None:
            state.shadow.submit(
                [
                    (answer["prediction_id"], record, answer["prediction"])
                    for record, answer in zip(records, predictions, strict=True)
                ]
            )
        return predictions

    async def score(records: list[dict[str, Any]]) -> list[dict[str, Any]] | JSONResponse:
        model = state.model
        if model is None:  # still loading, or failed to (draining still serves)
            reason = state.not_ready_reason()
            return JSONResponse({"detail": reason}, status_code=503, headers={"retry-after": "1"})
        proba = await batcher.score(records)
        return respond(records, proba, model)

    not_ready = {503: {"description": "Not ready, overloaded or timed out"}}
    too_large = {413: {"description": "Request body too large"}}

    @api.post("/predict", response_model=Prediction, responses={**not_ready, **too_large})
    async def predict(features: Features) -> Any:  # type: ignore[valid-type]
        """Predict one record."""
        result = await score([features.model_dump()])  # type: ignore[attr-defined]
        return result if isinstance(result, JSONResponse) else result[0]

    @api.post(
        "/predict/batch", response_model=BatchPrediction, responses={**not_ready, **too_large}
    )
    async def predict_batch(batch: BatchRequest) -> Any:  # type: ignore[valid-type]
        """Predict up to `serve.max_batch_rows` records in one call."""
        records = [item.model_dump() for item in batch.records]  # type: ignore[attr-defined]
        result = await score(records)
        return result if isinstance(result, JSONResponse) else {"predictions": result}

    @api.get("/health/live")
    async def live() -> dict[str, str]:
        """The process is up (restart it if this fails)."""
        return {"status": "alive"}

    @api.get("/health/ready", responses=not_ready)
    async def ready() -> Any:
        """The model is loaded and the service is not draining (send traffic)."""
        reason = state.not_ready_reason()
        if reason is not None:
            return JSONResponse({"status": "not ready", "detail": reason}, status_code=503)
        return {"status": "ready", "model_version": state.model.version}  # type: ignore[union-attr]

    @api.get("/metrics", response_class=Response)
    async def prometheus() -> Response:
        """Prometheus metrics."""
        metrics.log_dropped.set(prediction_log.dropped)
        monitor.export()
        if state.shadow is not None:
            rows, agreement = state.shadow.agreement.snapshot()
            metrics.shadow_window_rows.set(rows)
            metrics.shadow_agreement.set(agreement)
            metrics.shadow_dropped.set(state.shadow.dropped)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Guard(api, settings, state, metrics)
