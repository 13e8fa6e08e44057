"""Our own HTTP routes: /predict, /predict/batch, /explain, the health probes, /metrics and
/docs.

Each route only translates between HTTP and the service (service.py); the request and
response models come from the data contract (request.py), so the OpenAPI and /docs describe
this contract's fields, ranges and answers.
"""

# No `from __future__ import annotations` here: FastAPI reads the route annotations at
# definition time, and the request models are built at run time from the contract.
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any

from fastapi import FastAPI, Query, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from mlops_template.config import ServeSettings
from mlops_template.contract import Contract
from mlops_template.serve import docs
from mlops_template.serve.explain import BusyError, ClassError, Explanation
from mlops_template.serve.guard import error_payload, route_of
from mlops_template.serve.limits import cap
from mlops_template.serve.request import (
    batch_prediction,
    batch_request,
    features_model,
    prediction_model,
)
from mlops_template.serve.service import NotReadyError, Service, UnscorableError

Responses = dict[int | str, dict[str, Any]]  # FastAPI's `responses=`: status -> OpenAPI
NOT_READY: Responses = {503: {"description": "Not ready, overloaded or timed out"}}


@dataclass(frozen=True)
class Schemas:
    """The contract's request and response models (request.py)."""

    features: type[BaseModel]
    batch_request: type[BaseModel]
    prediction: type[BaseModel]
    batch_prediction: type[BaseModel]


def schemas(contract: Contract, settings: ServeSettings) -> Schemas:
    features = features_model(contract, settings.min_present_features)
    prediction = prediction_model(contract)
    return Schemas(
        features,
        batch_request(features, settings.max_batch_rows, dict(contract.example)),
        prediction,
        batch_prediction(prediction),
    )


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


def create_api(service: Service, models: Schemas, api_key: str | None) -> FastAPI:
    """The FastAPI app with our routes; the service starts and stops with it."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        yield
        await service.stop()

    api = FastAPI(
        title=f"{service.contract.name} prediction service",
        version="1",
        description=describe(service.contract),
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load their assets from a CDN; ours is self-contained
        redoc_url=None,
    )
    _add_error_handlers(api, service.settings)
    _add_predict_routes(api, service, models, api_key)
    _add_service_routes(api, service)
    return api


def _add_error_handlers(api: FastAPI, settings: ServeSettings) -> None:
    @api.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        """422 naming each bad field. The offending input is not echoed back: it may be NaN
        or infinity, which JSON cannot carry (echoing it was a 500)."""
        return JSONResponse(cap(error.errors(), settings.max_validation_errors), 422)

    @api.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        """FastAPI answers 400 for a body it cannot decode (not UTF-8); like any other body
        that is not JSON, that is a 422 here. Under /v2, errors take the protocol's shape."""
        if request.url.path.startswith("/v2"):
            payload = {"error": str(error.detail)}
            return JSONResponse(payload, error.status_code, headers=error.headers)
        if error.status_code == 400:
            problem = {
                "loc": ["body"],
                "msg": "body is not valid UTF-8 JSON",
                "type": "json_invalid",
            }
            return JSONResponse(cap([problem], settings.max_validation_errors), 422)
        return JSONResponse({"detail": error.detail}, error.status_code, headers=error.headers)

    @api.exception_handler(UnscorableError)
    async def unscorable(request: Request, error: UnscorableError) -> JSONResponse:
        """A record the model cannot give a finite answer for: the record's fault, a 4xx."""
        if request.url.path.startswith("/v2"):
            return JSONResponse({"error": str(error)}, status_code=400)
        problem = {"loc": ["body"], "msg": str(error), "type": "unscorable"}
        return JSONResponse(cap([problem], settings.max_validation_errors), 422)

    @api.exception_handler(ClassError)
    async def unknown_class(_: Request, error: ClassError) -> JSONResponse:
        problem = {"loc": ["query", "class"], "msg": str(error), "type": "value_error"}
        return JSONResponse(cap([problem], settings.max_validation_errors), 422)

    @api.exception_handler(BusyError)
    async def busy(_: Request, error: BusyError) -> JSONResponse:
        """503 at once: the explanations' cap is reached (or there is no background)."""
        return JSONResponse({"detail": str(error)}, status_code=503, headers={"retry-after": "1"})

    @api.exception_handler(NotReadyError)
    async def not_ready(request: Request, error: NotReadyError) -> JSONResponse:
        """503 while there is no model to score with (loading, or it failed to load): the
        reason code, as /health/ready gives it."""
        payload = error_payload(route_of(request.url.path), f"not ready: {error.reason}")
        return JSONResponse(payload, status_code=503, headers={"retry-after": "1"})


def _add_predict_routes(
    api: FastAPI, service: Service, models: Schemas, api_key: str | None
) -> None:
    Features = models.features  # noqa: N806 (a class)
    BatchRequest = models.batch_request  # noqa: N806 (a class)
    # Documents the scheme in the OpenAPI; the Guard checks the key before reading the body.
    security = [Security(HTTPBearer(auto_error=False))] if api_key else []
    guarded: Responses = {
        **NOT_READY,
        400: {"description": "Content-Type, Content-Length or Authorization given twice"},
        413: {"description": "Request body too large"},
        415: {"description": "Request body not sent as Content-Type: application/json"},
        408: {"description": "Request body not received in time (the connection is closed)"},
        **({401: {"description": "Missing or wrong API key"}} if api_key else {}),
    }

    @api.post(
        "/predict", response_model=models.prediction, responses=guarded, dependencies=security
    )
    # Features and BatchRequest are built from the contract at run time (request.py), which
    # FastAPI reads from the annotations; mypy cannot take a variable as a type.
    async def predict(features: Features) -> Any:  # type: ignore[valid-type]
        """Predict one record."""
        answers = await service.predict([features.model_dump()])  # type: ignore[attr-defined]
        return answers[0]  # FastAPI validates it against `Prediction` once, on the way out

    @api.post(
        "/predict/batch",
        response_model=models.batch_prediction,
        responses=guarded,
        dependencies=security,
    )
    async def predict_batch(batch: BatchRequest) -> Any:  # type: ignore[valid-type]
        """Predict up to `serve.max_batch_rows` records in one call."""
        records = [item.model_dump() for item in batch.records]  # type: ignore[attr-defined]
        return {"predictions": await service.predict(records)}

    _add_explain_route(api, service, Features, guarded, security)


def _add_explain_route(
    api: FastAPI, service: Service, features_model: Any, guarded: Responses, security: list[Any]
) -> None:
    """POST /explain. A classifier's `class` query parameter is one of its classes in the
    OpenAPI (any other value is a 422 before the handler); a regressor declares none."""
    doc = """Explain one record: its prediction, the base value (the mean output over the
        training background) and the features' largest Shapley contributions to the
        predicted class's probability (or `class`'s; a regressor's prediction). Base value
        plus all contributions is the output. Off the predict path: at most
        `serve.max_concurrent_explanations` at once, beyond that 503."""

    async def answer(request: Request, features: Any, wanted: str | None) -> Any:
        given = request.query_params.getlist("class")
        if given and not service.contract.classes:
            raise ClassError("the model is a regressor: there is no class to choose")
        if len(given) > 1:
            raise ClassError(f"give one class to explain, not {len(given)}: {given}")
        return await service.explain(features.model_dump(), wanted)

    Features = features_model  # noqa: N806 (a class, built from the contract)

    route = api.post(
        "/explain", response_model=Explanation, responses=guarded, dependencies=security
    )
    if service.contract.classes:
        classes = service.contract.classes
        # A class per contract: mypy cannot know its members, FastAPI documents them.
        ClassName: Any = Enum("ClassName", [(name, name) for name in classes], type=str)  # type: ignore[misc]  # noqa: N806

        async def explain_class(
            request: Request,
            features: Features,  # type: ignore[valid-type]
            wanted: ClassName | None = Query(  # noqa: B008
                None, alias="class", description="The class to explain (default: the predicted one)"
            ),
        ) -> Any:
            return await answer(request, features, None if wanted is None else wanted.value)

        explain_class.__doc__ = doc
        route(explain_class)
        return

    async def explain(request: Request, features: Features) -> Any:  # type: ignore[valid-type]
        return await answer(request, features, None)

    explain.__doc__ = doc
    route(explain)


def _add_service_routes(api: FastAPI, service: Service) -> None:
    @api.get("/health/live")
    async def live() -> dict[str, str]:
        """The process is up (restart it if this fails)."""
        return {"status": "alive"}

    @api.get("/health/ready", responses=NOT_READY)
    async def ready() -> Any:
        """The model is verified and loaded, the prediction log is being written and the
        service is not draining (send traffic). Otherwise 503 and why, as a reason code
        (loading, draining, model_signature_invalid, ...: docs/serving.md); the details are in
        the service's log."""
        reason = service.not_ready_reason()
        if reason is not None:
            return JSONResponse(
                {"status": "not ready", "ready": False, "reason": reason}, status_code=503
            )
        # not_ready_reason() is None only once the model is loaded (service.ServiceState).
        model = service.state.model.version  # type: ignore[union-attr]
        return {"status": "ready", "ready": True, "model_version": model}

    @api.get("/metrics", response_class=Response)
    async def prometheus() -> Response:
        """Prometheus metrics."""
        return Response(service.metrics_text(), media_type=CONTENT_TYPE_LATEST)

    @api.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def offline_docs() -> HTMLResponse:
        """The API described on one self-contained page (no CDN; docs.py)."""
        return HTMLResponse(docs.render(api.openapi()))
