"""The HTTP service, assembled: the service object (service.py) behind our routes (routes.py)
and the Open Inference Protocol's (v2.py), all behind the Guard (guard.py).

Status codes a client can see: 200; 400 a Content-Type, Content-Length or Authorization header
given twice, or a tensor request the model cannot take (/v2); 401 no or wrong API key (when
an API key is set: guard.api_key_from); 404 a route this port does not serve
(`serve.metrics` / `serve.docs` / `serve.explain`: internal or off), or an unknown model
name (/v2); 408 body not received within `serve.body_timeout_seconds` (the connection is
closed); 413 body larger than the route's limit (limits.py); 415 a body posted to a route
that takes JSON without `Content-Type: application/json`; 422 invalid input (the first
`serve.max_validation_errors` problems, naming the field, and their count); 503 overloaded
(too many requests in flight, or `serve.max_concurrent_explanations` explanations running),
not ready (loading, draining after SIGTERM, the model failed to load, the prediction log
cannot be written) or timed out. Never a 500 for bad input. Under /v2 every error body is
`{"error": "..."}`, as the protocol says.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mlops_template.config import ExplainSettings, RegistrySettings, ServeSettings
from mlops_template.contract import Contract
from mlops_template.serve.guard import Guard
from mlops_template.serve.limits import RequestChecker, body_limits
from mlops_template.serve.model import ServedModel
from mlops_template.serve.routes import create_api, schemas
from mlops_template.serve.service import Service, ServiceState
from mlops_template.serve.v2 import add_v2_routes

__all__ = ["Guard", "ServiceState", "create_app"]

DEFAULT_MODEL_NAME = RegistrySettings().model_name


def create_app(
    settings: ServeSettings,
    load_model: Callable[[], ServedModel],
    state: ServiceState | None = None,
    *,
    contract: Contract,
    load_challenger: Callable[[], ServedModel] | None = None,
    reference: Mapping[str, Any] | None = None,
    api_key: str | None = None,
    model_name: str = DEFAULT_MODEL_NAME,
    background: list[dict[str, Any]] | None = None,
    explain: ExplainSettings | None = None,
) -> Guard:
    """Build the service for `contract` (request and response models, examples, limits and
    drift gauges follow it). The model loads in a background thread after start-up, so the
    liveness probe answers at once and readiness says 503 until the model is there.

    With `load_challenger`, a second model is scored in shadow (shadow.py); `reference` (the
    train stage's profile) adds the reference values and the drift PSI to /metrics. With
    `api_key`, the scoring routes need `Authorization: Bearer <api_key>`. `model_name`
    (registry.model_name) is the model's name on the Open Inference Protocol's routes.
    `background` (the explain stage's training rows) and `explain` (params.yaml explain:)
    serve /explain; without background rows it answers 503."""
    service = Service(
        settings, contract, load_model, state, load_challenger, reference, background, explain
    )
    models = schemas(contract, settings)
    checker = RequestChecker(
        models.features, settings.max_batch_rows, settings.max_validation_errors
    )
    api = create_api(service, models, api_key)
    add_v2_routes(api, service, checker, model_name)
    limits = body_limits(settings, contract.features)
    return Guard(
        api,
        settings,
        service.state,
        service.metrics,
        checker,
        service.validation,
        limits,
        api_key,
    )
