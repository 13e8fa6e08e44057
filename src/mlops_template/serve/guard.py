"""The ASGI layer in front of the routes: access, size, time and concurrency limits, and the
request metrics.

The Guard takes a scoring request's concurrency slot before it reads the body, reads the body
within the route's size and time limits, and validates a /predict body (limits.py) before
FastAPI sees it, in a thread when it is large, so no single request holds the event loop for
long: /health/live answers while floods are in flight. It answers in the shape of the route's
protocol: `{"detail": ...}` on our routes, `{"error": ...}` on the Open Inference Protocol's
(/v2, v2.py).

Before any of that, the request's headers must mean one thing: a Content-Type, Content-Length
or Authorization given twice is a 400 naming it (the guard and FastAPI could each read a
different one: with `application/json` then `text/plain`, the guard skipped its cheap check
while FastAPI parsed the body as JSON). A body posted to a route that takes JSON (records,
tensors) must say `Content-Type: application/json`, else 415 naming it, unread.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_template import PipelineError
from mlops_template.config import ServeSettings
from mlops_template.serve.limits import Problems, RequestChecker, is_json
from mlops_template.serve.metrics import ServiceMetrics

if TYPE_CHECKING:
    from mlops_template.serve.service import ServiceState

Scope = MutableMapping[str, Any]  # as starlette.types has them
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

# The route tables. A v2 model route is named by its template, so the metrics' route label
# and the body limits do not depend on the model name a client typed.
V2_MODEL = "/v2/models/{name}"
V2_READY = "/v2/models/{name}/ready"
V2_INFER = "/v2/models/{name}/infer"
PREDICT_ROUTES = {"/predict", "/predict/batch"}  # JSON records, validated here (limits.py)
EXPLAIN = "/explain"  # one record's Shapley values (explain.py): serve.explain may hide it
RECORD_ROUTES = PREDICT_ROUTES | {EXPLAIN}  # bodies of records, checked here (limits.py)
SCORING_ROUTES = PREDICT_ROUTES | {V2_INFER, EXPLAIN}  # need the API key and a concurrency slot
HEALTH_ROUTES = {"/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready"}
DOCS_ROUTES = {"/docs", "/openapi.json"}
V2_ROUTES = {"/v2", "/v2/health/live", "/v2/health/ready", V2_MODEL, V2_READY, V2_INFER}
ROUTES = PREDICT_ROUTES | HEALTH_ROUTES | DOCS_ROUTES | V2_ROUTES | {"/metrics", EXPLAIN}
JSON_ROUTES = RECORD_ROUTES | {V2_INFER}  # POST bodies parsed as JSON: application/json only
LARGE_BODY_BYTES = 16_384  # predict bodies larger than this are validated in a thread
CLOSE = [(b"connection", b"close")]  # uvicorn closes the connection after this reply
# Headers a request may give once: a second one could be read instead of the first by a
# part of the stack that reads headers its own way (a proxy, the guard, FastAPI).
SINGLE_HEADERS = {
    b"content-type": "Content-Type",
    b"content-length": "Content-Length",
    b"authorization": "Authorization",
}

MIN_REQUIRED_KEY_CHARS = 32  # a required key this short is refused (`openssl rand -hex 32`: 64)
TRUE, FALSE = {"1", "true", "yes"}, {"", "0", "false", "no"}


def api_key_from(environ: Mapping[str, str]) -> str | None:
    """The API key the scoring routes require, or None (open). MLOPS_API_KEY_FILE names a file
    holding it (a mounted Kubernetes Secret), MLOPS_API_KEY gives it; either is stripped of
    surrounding whitespace (a key file usually ends in a newline). With MLOPS_REQUIRE_API_KEY
    true, no key (or an empty one, or one under MIN_REQUIRED_KEY_CHARS characters) is an error:
    the service refuses to start rather than serve unauthenticated."""
    required = environ.get("MLOPS_REQUIRE_API_KEY", "").strip().lower()
    if required not in TRUE | FALSE:
        raise PipelineError("MLOPS_REQUIRE_API_KEY: true or false")
    key_file = environ.get("MLOPS_API_KEY_FILE")
    if key_file and environ.get("MLOPS_API_KEY"):
        raise PipelineError("MLOPS_API_KEY and MLOPS_API_KEY_FILE are both set: set one")
    if key_file:
        try:
            key = Path(key_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise PipelineError(f"MLOPS_API_KEY_FILE {key_file}: {error}") from None
    else:
        key = environ.get("MLOPS_API_KEY", "").strip()
    if required in TRUE and len(key) < MIN_REQUIRED_KEY_CHARS:
        given = "empty" if not key else f"{len(key)} characters"
        raise PipelineError(
            f"MLOPS_REQUIRE_API_KEY is set but the API key (MLOPS_API_KEY_FILE or MLOPS_API_KEY)"
            f" is {given}, not at least {MIN_REQUIRED_KEY_CHARS}; refusing to start unauthenticated"
        )
    return key or None


def route_of(path: str) -> str:
    """The route table's name for `path` ("other" for a path no route serves)."""
    if path in ROUTES:
        return path
    name, _, tail = path.removeprefix("/v2/models/").partition("/")
    if path.startswith("/v2/models/") and name:
        return {"": V2_MODEL, "ready": V2_READY, "infer": V2_INFER}.get(tail, "other")
    return "other"


async def reply(
    send: Send, status: int, payload: dict[str, Any], headers: Headers | None = None
) -> None:
    """A JSON answer sent straight to the client, without the app."""
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


def repeated_header(headers: Headers) -> str | None:
    """The name of the first of SINGLE_HEADERS given more than once, if any."""
    seen: set[bytes] = set()
    for name, _ in headers:
        key = name.lower()
        if key in SINGLE_HEADERS:
            if key in seen:
                return SINGLE_HEADERS[key]
            seen.add(key)
    return None


def error_payload(route: str, detail: Any) -> dict[str, Any]:
    """An error in the route's protocol: the Open Inference Protocol's `{"error": text}` on
    /v2, FastAPI's `{"detail": ...}` elsewhere."""
    return {"error": str(detail)} if route in V2_ROUTES else {"detail": detail}


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
        route = route_of(scope["path"])
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
        """Whether this port serves `route`: /metrics, the docs and /explain may be internal or
        off; the internal port serves only them and the health routes."""
        server = scope.get("server")
        internal = server is not None and server[1] == self.settings.internal_port
        if route == "/metrics":
            mode = self.settings.metrics
        elif route in DOCS_ROUTES:
            mode = self.settings.docs
        elif route == EXPLAIN:
            mode = self.settings.explain
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
            await reply(send, 404, error_payload(route, "Not Found"))
            return
        repeated = repeated_header(scope["headers"])
        if repeated is not None:
            twice = f"the {repeated} header is given more than once; send it once"
            await reply(send, 400, error_payload(route, twice), CLOSE)
            return
        headers = dict(scope["headers"])  # one value per name, now that none of ours repeats
        scoring = route in SCORING_ROUTES
        if scoring and not self._authorized(headers):
            unauthorized = [(b"www-authenticate", b"Bearer")]
            await reply(send, 401, error_payload(route, "missing or wrong API key"), unauthorized)
            return
        if (
            route in JSON_ROUTES
            and scope["method"] == "POST"
            and not is_json(headers.get(b"content-type"))
        ):
            given = headers.get(b"content-type", b"").decode("latin-1")[:100] or "none"
            wrong = f"Content-Type must be application/json (given: {given})"
            await reply(send, 415, error_payload(route, wrong), CLOSE)
            return
        limit = self.limits.get(route, self.limits[""])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await reply(
                send, 413, error_payload(route, f"request body larger than {limit} bytes"), CLOSE
            )
            return
        # The slot is taken before the body is read: a slow upload holds one.
        if scoring and self.state.inflight >= self.settings.max_concurrent_requests:
            busy = [(b"retry-after", b"1")]
            await reply(send, 503, error_payload(route, "too many requests in flight"), busy)
            return
        self.state.inflight += scoring
        try:
            await self._read_and_run(scope, route, receive, send, limit, headers)
        finally:
            self.state.inflight -= scoring

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

    async def _refuse_unread(self, send: Send, route: str, status: int, limit: int) -> None:
        """The answer to a body that was not read whole (_read_body's status)."""
        if status == 503:
            busy = [(b"retry-after", b"1"), *CLOSE]
            await reply(
                send, 503, error_payload(route, "too many request bodies being received"), busy
            )
        elif status == 408:
            timeout = self.settings.body_timeout_seconds
            late = f"request body not received within {timeout:g} s"
            await reply(send, 408, error_payload(route, late), CLOSE)
        else:
            too_large = f"request body larger than {limit} bytes"
            await reply(send, 413, error_payload(route, too_large), CLOSE)

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
            if not isinstance(read, bytes):
                await self._refuse_unread(send, route, read, limit)
                return
            body = read
        if route in RECORD_ROUTES and scope["method"] == "POST":  # application/json (above)
            problems = await self._check(route, body)
            if problems.total:
                await reply(send, 422, problems.payload())
                return
        await self._run(scope, route, receive, send, body)

    async def _run(
        self, scope: Scope, route: str, receive: Receive, send: Send, body: bytes
    ) -> None:
        """The app, given the body already read, within serve.request_timeout_seconds."""
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
                timed_out = error_payload(route, "request timed out")
                await reply(send, 503, timed_out, [(b"retry-after", b"1")])

    async def _check(self, route: str, body: bytes) -> Problems:
        if len(body) <= LARGE_BODY_BYTES:
            return self.checker.check(route, body)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.checker.check, route, body)
