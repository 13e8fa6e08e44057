"""The HTTP service: FastAPI routes plus a thin ASGI layer for limits and metrics.

Status codes a client can see: 200; 401 no or wrong API key (when MLOPS_API_KEY is set);
404 a route this port does not serve (`serve.metrics` / `serve.docs`: internal or off); 408
body not received within `serve.body_timeout_seconds` (the connection is closed); 413 body
larger than the route's limit (limits.py); 422 invalid input (the first
`serve.max_validation_errors` problems, naming the field, and their count); 503 overloaded
(too many requests in flight), not ready (loading, draining after SIGTERM, the model failed to
load, the prediction log cannot be written) or timed out. Never a 500 for bad input.

The Guard takes a request's concurrency slot before it reads the body, reads the body within
the route's size and time limits, and validates a predict body (limits.py) before FastAPI
sees it, in a thread when it is large, so no single request holds the event loop for long:
/health/live answers while floods are in flight.
"""

# No `from __future__ import annotations` here: FastAPI reads the route annotations at
# definition time, and the batch request model is built at run time from the settings.
import asyncio
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from mlops_template.config import ServeSettings
from mlops_template.schema import Contract
from mlops_template.serve import docs
from mlops_template.serve.batcher import MicroBatcher
from mlops_template.serve.limits import Problems, RequestChecker, body_limits, cap, is_json
from mlops_template.serve.logsink import PredictionLog
from mlops_template.serve.metrics import ServiceMetrics
from mlops_template.serve.model import ServedModel
from mlops_template.serve.monitor import LiveMonitor
from mlops_template.serve.request import (
    batch_prediction,
    batch_request,
    features_model,
    prediction_model,
)
from mlops_template.serve.shadow import ShadowScorer

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PREDICT_ROUTES = {"/predict", "/predict/batch"}
HEALTH_ROUTES = {"/health/live", "/health/ready"}
DOCS_ROUTES = {"/docs", "/openapi.json"}
ROUTES = PREDICT_ROUTES | HEALTH_ROUTES | DOCS_ROUTES | {"/metrics"}
LARGE_BODY_BYTES = 16_384  # predict bodies larger than this are validated in a thread


@dataclass
class ServiceState:
    """What the health endpoints report; `draining` is set by the SIGTERM handler."""

    model: ServedModel | None = None
    load_error: str | None = None
    shadow: ShadowScorer | None = None
    draining: bool = False
    inflight: int = 0
    loaded: threading.Event = field(default_factory=threading.Event)
    log_health: Callable[[], str | None] = lambda: None  # the prediction log's (logsink.py)

    def not_ready_reason(self) -> str | None:
        if self.load_error is not None:
            return f"model failed to load: {self.load_error}"
        if self.draining:
            return "draining: shutting down"
        if self.model is None:
            return "loading the model"
        return self.log_health()


CLOSE = [(b"connection", b"close")]  # uvicorn closes the connection after this reply


async def _reply(send: Send, status: int, detail: Any, headers: list | None = None) -> None:
    payload = detail if isinstance(detail, dict) else {"detail": detail}
    body = json.dumps(payload, separators=(",", ":")).encode()
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
    """Access, size, time and concurrency limits and request metrics, around the app."""

    def __init__(
        self,
        app: ASGIApp,
        settings: ServeSettings,
        state: ServiceState,
        metrics: ServiceMetrics,
        checker: RequestChecker,
        executor: ThreadPoolExecutor,
        limits: dict[str, int],
        api_key: str | None = None,
    ):
        self.app = app
        self.settings = settings
        self.state = state
        self.metrics = metrics
        self.checker = checker
        self.executor = executor
        self.api_key = api_key.encode() if api_key else None
        self.limits = limits
        self.body_bytes = 0  # of the bodies being received now (serve.max_body_bytes_in_flight)

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
            await self._guarded(scope, route, receive, send_and_record)
        finally:
            labels = (route, str(status["code"]))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)

    def _served_here(self, scope: Scope, route: str) -> bool:
        """Whether this port serves `route`: /metrics and the docs may be internal or off; the
        internal port serves only them and the health routes."""
        server = scope.get("server")
        internal = server is not None and server[1] == self.settings.internal_port
        if route == "/metrics":
            mode = self.settings.metrics
        elif route in DOCS_ROUTES:
            mode = self.settings.docs
        else:
            return not internal or route in HEALTH_ROUTES
        return mode == "public" or (mode == "internal" and internal)

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        if self.api_key is None:
            return True
        scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
        # Constant time: the comparison does not tell how much of a guess was right.
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.api_key)

    async def _guarded(self, scope: Scope, route: str, receive: Receive, send: Send) -> None:
        if not self._served_here(scope, route):
            await _reply(send, 404, "Not Found")
            return
        headers = dict(scope["headers"])
        predict = route in PREDICT_ROUTES
        if predict and not self._authorized(headers):
            await _reply(send, 401, "missing or wrong API key", [(b"www-authenticate", b"Bearer")])
            return
        limit = self.limits.get(route, self.limits[""])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _reply(send, 413, f"request body larger than {limit} bytes", CLOSE)
            return
        # The slot is taken before the body is read: a slow upload holds one.
        if predict and self.state.inflight >= self.settings.max_concurrent_requests:
            await _reply(send, 503, "too many requests in flight", [(b"retry-after", b"1")])
            return
        self.state.inflight += predict
        try:
            await self._read_and_run(scope, route, receive, send, limit, headers)
        finally:
            self.state.inflight -= predict

    def _over_budget(self, more: int) -> bool:
        return self.body_bytes + more > self.settings.max_body_bytes_in_flight

    async def _read_body(self, receive: Receive, limit: int, declared: int) -> bytes | int | None:
        """The whole body; or the status to answer (408, 413, 503: the bodies being received
        hold serve.max_body_bytes_in_flight already); None if the client left. The declared
        length is held from the start, so a flood of large uploads is turned away unread."""
        if self._over_budget(declared):
            return 503
        chunks: list[bytes] = []
        size = 0
        held = declared
        self.body_bytes += held
        more = True
        try:
            async with asyncio.timeout(self.settings.body_timeout_seconds):
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        return 413
                    if size > held:  # no (or a wrong) content-length: count as it comes
                        if self._over_budget(size - held):
                            return 503
                        self.body_bytes += size - held
                        held = size
                    chunks.append(chunk)
                    more = message.get("more_body", False)
        except TimeoutError:
            return 408
        finally:
            self.body_bytes -= held
        return b"".join(chunks)

    async def _read_and_run(
        self,
        scope: Scope,
        route: str,
        receive: Receive,
        send: Send,
        limit: int,
        headers: dict[bytes, bytes],
    ) -> None:
        body = b""
        if scope["method"] in {"POST", "PUT", "PATCH"}:
            declared = headers.get(b"content-length", b"")
            read = await self._read_body(receive, limit, int(declared) if declared.isdigit() else 0)
            if read is None:
                return
            if read == 503:
                busy = [(b"retry-after", b"1"), *CLOSE]
                await _reply(send, 503, "too many request bodies being received", busy)
                return
            if read == 408:
                timeout = self.settings.body_timeout_seconds
                await _reply(send, 408, f"request body not received within {timeout:g} s", CLOSE)
                return
            if read == 413:
                await _reply(send, 413, f"request body larger than {limit} bytes", CLOSE)
                return
            assert isinstance(read, bytes)
            body = read
        if (
            route in PREDICT_ROUTES
            and scope["method"] == "POST"
            and is_json(headers.get(b"content-type"))
        ):
            problems = await self._check(route, body)
            if problems.total:
                await _reply(send, 422, problems.payload())
                return
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

        try:
            await asyncio.wait_for(
                self.app(scope, replay, tracked_send),
                self.settings.request_timeout_seconds,
            )
        except TimeoutError:
            if not started["response"]:
                await _reply(send, 503, "request timed out", [(b"retry-after", b"1")])

    async def _check(self, route: str, body: bytes) -> Problems:
        if len(body) <= LARGE_BODY_BYTES:
            return self.checker.check(route, body)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.checker.check, route, body)


def describe(contract: Contract) -> str:
    """The API's description: what the contract says it predicts, and the answer's shape."""
    target = contract.target
    if contract.task == "regression":
        answer = f"`prediction` is the predicted {target.name}, a number"
    else:
        answer = (
            f"`prediction` is the predicted {target.name}, one of {', '.join(contract.classes)},"
            " with each class's probability"
        )
        if contract.task == "binary":
            answer += (
                f" ({contract.positive} when its probability reaches the threshold chosen at"
                " evaluation, evaluate.threshold)"
            )
    lines = [
        contract.description or f"Predicts {target.name}.",
        f"{answer}. {target.description}".strip(),
        "The request schema is derived from the pipeline's data contract (params.yaml"
        " data.contract).",
    ]
    return "\n\n".join(lines)


def create_app(
    settings: ServeSettings,
    load_model: Callable[[], ServedModel],
    state: ServiceState | None = None,
    *,
    contract: Contract,
    load_challenger: Callable[[], ServedModel] | None = None,
    reference: Mapping[str, Any] | None = None,
    api_key: str | None = None,
) -> Guard:
    """Build the service for `contract` (request and response models, examples, limits and
    drift gauges follow it). The model loads in a background thread after start-up, so the
    liveness probe answers at once and readiness says 503 until the model is there.

    With `load_challenger`, a second model is scored in shadow (shadow.py); `reference` (the
    train stage's profile) adds the reference values and the drift PSI to /metrics. With
    `api_key`, the predict routes need `Authorization: Bearer <api_key>`."""
    state = state or ServiceState()
    metrics = ServiceMetrics(regression=not contract.is_classification)
    prediction_log = PredictionLog(
        settings.prediction_log, settings.prediction_log_max_bytes, settings.prediction_log_backups
    )
    state.log_health = prediction_log.health
    # Large predict bodies are validated here, two at a time, beside the scoring threads.
    validation = ThreadPoolExecutor(max_workers=2, thread_name_prefix="validate")
    monitor = LiveMonitor(settings.monitor_window, contract, reference, metrics)
    batcher = MicroBatcher(
        lambda rows: state.model.score(rows),  # type: ignore[union-attr]
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
        # Every step is bounded: shutdown never waits on a stuck disk or challenger.
        state.draining = True
        await batcher.stop()
        if state.shadow is not None:
            state.shadow.close(timeout=1.0)
        prediction_log.close(timeout=2.0)
        validation.shutdown(wait=False, cancel_futures=True)

    api = FastAPI(
        title=f"{contract.name} prediction service",
        version="1",
        description=describe(contract),
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load their assets from a CDN; ours is self-contained
        redoc_url=None,
    )
    Features = features_model(contract, settings.min_present_features)  # noqa: N806 (a class)
    BatchRequest = batch_request(  # noqa: N806 (a class)
        Features, settings.max_batch_rows, dict(contract.example)
    )
    Prediction = prediction_model(contract)  # noqa: N806 (a class)
    BatchPrediction = batch_prediction(Prediction)  # noqa: N806 (a class)
    checker = RequestChecker(Features, settings.max_batch_rows, settings.max_validation_errors)
    # Documents the scheme in the OpenAPI; the Guard checks the key before reading the body.
    security = [Security(HTTPBearer(auto_error=False))] if api_key else []

    @api.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        """422 naming each bad field. The offending input is not echoed back: it may be NaN
        or infinity, which JSON cannot carry (echoing it was a 500)."""
        return JSONResponse(cap(error.errors(), settings.max_validation_errors), 422)

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
        records: list[dict[str, Any]], scores: Any, model: ServedModel
    ) -> list[dict[str, Any]]:
        predictions = []
        now = time.time()
        for record, row in zip(records, scores, strict=True):
            predicted, probabilities = model.decode(row)
            prediction_id = uuid.uuid4().hex
            metrics.count(predicted)
            monitor.observe(record, predicted)
            answer: dict[str, Any] = {"prediction": predicted}
            if probabilities is not None:  # a classifier's; a regressor returns the number
                answer["probabilities"] = probabilities
            prediction_log.write(
                {
                    "ts": now,
                    "id": prediction_id,
                    "role": "champion",
                    "model_version": model.version,
                    "features": record,
                    **answer,
                }
            )
            # Plain dicts: FastAPI validates them against `Prediction` once, on the way out.
            answer |= {"model_version": model.version, "prediction_id": prediction_id}
            predictions.append(answer)
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
        scores = await batcher.score(records)
        return respond(records, scores, model)

    not_ready = {503: {"description": "Not ready, overloaded or timed out"}}
    too_large = {413: {"description": "Request body too large"}}
    guarded = {
        **not_ready,
        **too_large,
        408: {"description": "Request body not received in time (the connection is closed)"},
        **({401: {"description": "Missing or wrong API key"}} if api_key else {}),
    }

    @api.post("/predict", response_model=Prediction, responses=guarded, dependencies=security)
    async def predict(features: Features) -> Any:  # type: ignore[valid-type]
        """Predict one record."""
        result = await score([features.model_dump()])  # type: ignore[attr-defined]
        return result if isinstance(result, JSONResponse) else result[0]

    @api.post(
        "/predict/batch",
        response_model=BatchPrediction,
        responses=guarded,
        dependencies=security,
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
        """The model is loaded, the prediction log is being written and the service is not
        draining (send traffic)."""
        reason = state.not_ready_reason()
        if reason is not None:
            return JSONResponse({"status": "not ready", "detail": reason}, status_code=503)
        return {"status": "ready", "model_version": state.model.version}  # type: ignore[union-attr]

    @api.get("/metrics", response_class=Response)
    async def prometheus() -> Response:
        """Prometheus metrics."""
        metrics.log_dropped.set(prediction_log.dropped)
        metrics.log_healthy.set(prediction_log.health() is None)
        monitor.export()
        if state.shadow is not None:
            rows, agreement = state.shadow.agreement.snapshot()
            metrics.shadow_window_rows.set(rows)
            if contract.is_classification:
                metrics.shadow_agreement.set(agreement)
            else:
                metrics.shadow_difference.set(agreement)
            metrics.shadow_dropped.set(state.shadow.dropped)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @api.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def offline_docs() -> HTMLResponse:
        """The API described on one self-contained page (no CDN; docs.py)."""
        return HTMLResponse(docs.render(api.openapi()))

    limits = body_limits(settings, contract.features)
    return Guard(api, settings, state, metrics, checker, validation, limits, api_key)
