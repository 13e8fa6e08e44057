"""The Open Inference Protocol (KServe V2 REST, also Seldon MLServer's and Triton's) beside our
routes, so the image fits the platforms teams on Kubernetes already run:

    GET  /v2                            server metadata
    GET  /v2/health/live, /ready        {"live": true}, {"ready": true} (503 when not ready)
    GET  /v2/models/{name}              model metadata: one input tensor per contract feature
    GET  /v2/models/{name}/ready        {"name": ..., "ready": true} (503 when not ready)
    POST /v2/models/{name}/infer        tensors in, tensors out (tensors.py)

The model's name is `registry.model_name`; another name is a 404. Errors take the protocol's
shape, `{"error": "..."}`: 400 for a request the model cannot take (or a Content-Type,
Content-Length or Authorization header given twice), 404 for an unknown model, 415 for an
inference request whose Content-Type is not application/json.
An inference goes through the same guard (API key, body limit, concurrency slot, timeout), the
same validation (the contract's request model) and the same scoring, log and metrics as
/predict (service.py). Versioned paths (/versions/{v}) are not served: one model is served.
"""

# No `from __future__ import annotations` here: FastAPI reads the route annotations.
import uuid
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from mlops_template.serve import tensors
from mlops_template.serve.guard import LARGE_BODY_BYTES
from mlops_template.serve.limits import RequestChecker
from mlops_template.serve.service import Service
from mlops_template.serve.tensors import TensorError

PLATFORMS = {"onnx": "onnxruntime_onnx", "sklearn": "sklearn"}  # serve.runtime -> platform
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": 'A request the model cannot take: `{"error": ...}`'},
    404: {"description": "No model of that name"},
    503: {"description": "Not ready, overloaded or timed out"},
}
INFER_ERRORS = {**ERRORS, 415: {"description": "Request body not sent as application/json"}}
# The inference request's shape as the protocol defines it (tensors.py checks it and the
# feature each input names): documented, so clients and fuzzers send JSON.
_OBJECT = {"type": "object"}
INFER_REQUEST = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["inputs"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string"},
                    "parameters": _OBJECT,
                    "inputs": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["name", "shape", "datatype", "data"],
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string"},
                                "shape": {"type": "array", "items": {"type": "integer"}},
                                "datatype": {"type": "string"},
                                "parameters": _OBJECT,
                                "data": {"type": "array"},
                            },
                        },
                    },
                    "outputs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "additionalProperties": False,
                            "properties": {"name": {"type": "string"}, "parameters": _OBJECT},
                        },
                    },
                },
            }
        }
    },
}


def server_version() -> str:
    try:
        return version("mlops-template")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "0"


def add_v2_routes(api: FastAPI, service: Service, checker: RequestChecker, model_name: str) -> None:
    """Add the protocol's routes to `api`, serving the model as `model_name`."""
    _add_metadata_routes(api, service, model_name)
    _add_infer_route(api, service, checker, model_name)


def _unknown(name: str, model_name: str) -> JSONResponse:
    message = f"unknown model {name[:64]!r}; this server serves {model_name!r}"
    return JSONResponse({"error": message}, status_code=404)


def _readiness(service: Service, body: dict[str, Any]) -> JSONResponse:
    """Ready as /health/ready says (model loaded, log writable, not draining), or 503 and why
    not (the reason code, as `error`): Kubernetes probes and load balancers read the status."""
    reason = service.not_ready_reason()
    if reason is None:
        return JSONResponse({**body, "ready": True})
    return JSONResponse({**body, "ready": False, "error": reason}, status_code=503)


def _add_metadata_routes(api: FastAPI, service: Service, model_name: str) -> None:
    @api.get("/v2/health/live")
    async def v2_live() -> dict[str, bool]:
        """Open Inference Protocol: the server is live."""
        return {"live": True}

    @api.get("/v2/health/ready", responses=ERRORS)
    async def v2_ready() -> JSONResponse:
        """Open Inference Protocol: the server is ready (503 and why not, when it is not)."""
        return _readiness(service, {})

    @api.get("/v2")
    async def v2_server() -> dict[str, Any]:
        """Open Inference Protocol: server metadata."""
        return {"name": "mlops-template", "version": server_version(), "extensions": []}

    @api.get("/v2/models/{name}", responses=ERRORS)
    async def v2_model(name: str) -> JSONResponse:
        """Open Inference Protocol: model metadata, from the data contract."""
        if name != model_name:
            return _unknown(name, model_name)
        model = service.state.model
        runtime = getattr(model, "runtime", service.settings.runtime)
        metadata: dict[str, Any] = {"name": model_name}
        if model is not None:
            metadata["versions"] = [model.version]
        metadata |= {
            "platform": PLATFORMS.get(runtime, runtime),
            "inputs": tensors.input_metadata(service.contract),
            "outputs": tensors.output_metadata(service.contract),
        }
        return JSONResponse(metadata)

    @api.get("/v2/models/{name}/ready", responses=ERRORS)
    async def v2_model_ready(name: str) -> JSONResponse:
        """Open Inference Protocol: the model is ready (503 and why not, when it is not)."""
        if name != model_name:
            return _unknown(name, model_name)
        return _readiness(service, {"name": model_name})


def _add_infer_route(
    api: FastAPI, service: Service, checker: RequestChecker, model_name: str
) -> None:
    @api.post(
        "/v2/models/{name}/infer",
        responses=INFER_ERRORS,
        openapi_extra={"requestBody": INFER_REQUEST},
    )
    async def v2_infer(name: str, request: Request) -> JSONResponse:
        """Open Inference Protocol: one tensor per feature in; `label` and `probabilities`
        (classification) or `prediction` (regression), and `prediction_id`, out."""
        if name != model_name:
            return _unknown(name, model_name)
        body = await request.body()  # read whole, within its limit, by the Guard
        try:
            if len(body) <= LARGE_BODY_BYTES:
                asked, records = _decode(body, service, checker)
            else:
                asked, records = await service.in_thread(_decode, body, service, checker)
        except TensorError as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        answers = await service.predict(records)
        return JSONResponse(
            {
                "model_name": model_name,
                "model_version": answers[0]["model_version"],
                "id": asked.id if asked.id is not None else uuid.uuid4().hex,
                "outputs": tensors.encode(answers, service.contract, asked.outputs),
            }
        )


def _decode(
    body: bytes, service: Service, checker: RequestChecker
) -> tuple[tensors.InferRequest, list[dict[str, Any]]]:
    """The request and its validated records (TensorError: a 400)."""
    asked = tensors.parse(body, service.contract, service.settings.max_batch_rows)
    return asked, tensors.validate(asked, checker)
