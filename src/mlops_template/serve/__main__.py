"""Run the service: `python -m mlops_template.serve [--params params.yaml] [--host] [--port]`.
Host and port may also come from MLOPS_SERVE_HOST / MLOPS_SERVE_PORT, and serve.runtime from
MLOPS_SERVE_RUNTIME (the image sets them).
The request and response models follow the data contract that params.yaml's data.contract
names (the image carries it). `--example` prints the contract's example record as JSON and
exits: the release smoke test sends it, so it works for any project's data.

One uvicorn process on purpose: scoring runs in a worker thread beside the event loop, which
uses both cores of a small machine, and `--workers N` would lose TCP_NODELAY on the shared
socket (about 40 ms added to every keep-alive request, uvicorn#3149).

On SIGTERM (Kubernetes, `docker stop`) the service first stops being ready while still
serving, for `serve.drain_seconds`, so load balancers take it out of rotation; then uvicorn
shuts down gracefully, finishing the requests in flight (at most `request_timeout_seconds`
+ 1 s), and the log and shadow threads get a bounded time to finish. A watchdog ends the
process if all that has not happened WATCHDOG_SLACK_SECONDS later.

The served file follows `serve.runtime`: paths.onnx_model (onnx, the default: the model
compiled by the train stage, run by onnxruntime) or paths.model (sklearn: the scikit-learn
pipeline, which needs the optional extra `sklearn`). The model is verified against a hash
that comes from the reviewed commit, not from a file beside the model: MLOPS_MODEL_SHA256
(the digest), or MLOPS_MODEL_SHA256_FILE (a file in `sha256sum` format; the image bakes one
at build time from the committed models/model.onnx.sha256, or models/model.joblib.sha256,
outside models/). Without either (a development checkout,
`make serve`), the record beside the model is used and a warning says the model is not
pinned. A challenger (MLOPS_CHALLENGER_MODEL / serve.challenger_model) needs its digest
given explicitly: MLOPS_CHALLENGER_SHA256 / serve.challenger_sha256; its file's suffix
(.onnx or .joblib) picks its runtime.

The model's signature (paths.model_signature, io/signing.py) is verified at load, before the
model is deserialized, as serve.model_signature says (MLOPS_MODEL_SIGNATURE): `off` (the
default: a development checkout, `make serve`; a warning says so), `key` (by the private key
whose PEM public key is serve.signature_public_key / MLOPS_SIGNATURE_PUBLIC_KEY) or
`sigstore` (keyless: the certificate identity serve.signature_identity /
MLOPS_SIGNATURE_IDENTITY from serve.signature_issuer / MLOPS_SIGNATURE_ISSUER, with the trust
root serve.signature_trust_config / MLOPS_SIGNATURE_TRUST_CONFIG, which the image bakes).
Until it holds the service is not ready, readiness giving the reason code
(model_signature_missing, _invalid, _untrusted, _unverifiable) and the log the details. The
Kubernetes manifests set `sigstore` (deploy/k8s/base/deployment.yaml).

MLOPS_API_KEY (or the file MLOPS_API_KEY_FILE names, such as a mounted Secret), when set and
not empty, is required on the predict routes and /explain as `Authorization: Bearer <key>`;
with MLOPS_REQUIRE_API_KEY=true the service refuses to start without one (guard.api_key_from:
the Kubernetes manifests set it). `serve.metrics` / `serve.docs` / `serve.explain` set to
`internal` move /metrics, /docs and /explain to a second listener on
serve.internal_host:internal_port (MLOPS_INTERNAL_HOST / MLOPS_INTERNAL_PORT override them).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mlops_template import PipelineError
from mlops_template.config import DEFAULT_PARAMS, Params, ServeSettings, load_params
from mlops_template.contract import Contract
from mlops_template.io import signing, storage
from mlops_template.serve.app import ServiceState, create_app
from mlops_template.serve.explain import load_background
from mlops_template.serve.guard import Guard, api_key_from
from mlops_template.serve.model import ServedModel, SignatureCheck

log = logging.getLogger("mlops_template.serve")

SHA256 = re.compile(r"[0-9a-f]{64}")
RUNTIMES = ("onnx", "sklearn")  # serve.runtime
SIGNATURE_MODES = ("off", "key", "sigstore")  # serve.model_signature
# serve.model_signature's settings, each overridden by its variable when that is set.
SIGNATURE_VARIABLES = {
    "signature_public_key": "MLOPS_SIGNATURE_PUBLIC_KEY",
    "signature_identity": "MLOPS_SIGNATURE_IDENTITY",
    "signature_issuer": "MLOPS_SIGNATURE_ISSUER",
    "signature_trust_config": "MLOPS_SIGNATURE_TRUST_CONFIG",
}
WATCHDOG_SLACK_SECONDS = 4.0  # beyond drain + graceful shutdown, for the bounded closes
GC_YOUNG_THRESHOLD = 50_000  # container allocations between young collections (CPython: 700)


class DrainingServer(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, state: ServiceState, drain_seconds: float, exit_within: float
    ):
        super().__init__(config)
        self.state = state
        self.drain_seconds = drain_seconds
        self.exit_within = exit_within

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.state.draining:  # a second signal: stop now
            super().handle_exit(sig, frame)
            return
        self.state.draining = True
        log.info("signal %s: not ready; shutting down in %.1f s", sig, self.drain_seconds)
        timer = threading.Timer(self.drain_seconds, super().handle_exit, (sig, frame))
        timer.daemon = True
        timer.start()
        watchdog = threading.Timer(self.exit_within, _exit_now, (self.exit_within,))
        watchdog.daemon = True
        watchdog.start()


def _exit_now(seconds: float) -> None:
    """Whatever still runs (a stuck disk, a scoring call that never returns), stop."""
    print(f"error: shutdown not finished {seconds:.0f} s after SIGTERM; exiting", file=sys.stderr)
    sys.stderr.flush()
    os._exit(128 + signal.SIGTERM)


def header_timeout_protocol(seconds: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, closing a connection whose request headers have not all
    arrived `seconds` after it opened or after its request began (uvicorn itself only times
    out idle keep-alive connections: a client that sends half a request line is kept)."""

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(seconds, self._too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        # As uvicorn's own protocols declare it (with the same ignore): asyncio's base class
        # takes a BaseTransport, the HTTP protocols a Transport.
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderTimeoutProtocol


def _digest(value: str, source: str) -> str:
    digest = value.strip().split()[0].lower() if value.strip() else ""
    if not SHA256.fullmatch(digest):
        raise PipelineError(f"{source}: not a sha256 hex digest")
    return digest


def pinned_sha256(model_path: Path, environ: Mapping[str, str]) -> tuple[str, bool]:
    """The champion's expected sha256, and whether it is pinned (not read beside the model)."""
    if environ.get("MLOPS_MODEL_SHA256"):
        return _digest(environ["MLOPS_MODEL_SHA256"], "MLOPS_MODEL_SHA256"), True
    if environ.get("MLOPS_MODEL_SHA256_FILE"):
        pin = Path(environ["MLOPS_MODEL_SHA256_FILE"])
        try:
            return _digest(pin.read_text(encoding="utf-8"), str(pin)), True
        except OSError as error:
            raise PipelineError(f"MLOPS_MODEL_SHA256_FILE {pin}: {error}") from None
    return storage.read_recorded_sha256(model_path), False


def challenger_of(settings: ServeSettings, environ: Mapping[str, str]) -> tuple[Path, str] | None:
    """The challenger's path and its expected sha256 (required: none is read beside it)."""
    path = environ.get("MLOPS_CHALLENGER_MODEL") or settings.challenger_model
    if not path:
        return None
    digest = environ.get("MLOPS_CHALLENGER_SHA256") or settings.challenger_sha256
    if not digest:
        raise PipelineError(
            f"challenger {path}: its expected sha256 must be given (MLOPS_CHALLENGER_SHA256 or"
            " serve.challenger_sha256); refusing to start"
        )
    return Path(path), _digest(digest, "MLOPS_CHALLENGER_SHA256")


def _overrides(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Any]:
    update: dict[str, Any] = {}
    if args.host:
        update["host"] = args.host
    if args.port:
        update["port"] = args.port
    if environ.get("MLOPS_INTERNAL_HOST"):
        update["internal_host"] = environ["MLOPS_INTERNAL_HOST"]
    if environ.get("MLOPS_INTERNAL_PORT"):
        update["internal_port"] = int(environ["MLOPS_INTERNAL_PORT"])
    if environ.get("MLOPS_SERVE_RUNTIME"):  # the image's RUNTIME build argument
        if environ["MLOPS_SERVE_RUNTIME"] not in RUNTIMES:
            raise PipelineError(f"MLOPS_SERVE_RUNTIME: one of {', '.join(RUNTIMES)}")
        update["runtime"] = environ["MLOPS_SERVE_RUNTIME"]
    if environ.get("MLOPS_MODEL_SIGNATURE"):
        if environ["MLOPS_MODEL_SIGNATURE"] not in SIGNATURE_MODES:
            raise PipelineError(f"MLOPS_MODEL_SIGNATURE: one of {', '.join(SIGNATURE_MODES)}")
        update["model_signature"] = environ["MLOPS_MODEL_SIGNATURE"]
    for setting, variable in SIGNATURE_VARIABLES.items():
        if environ.get(variable):
            value = environ[variable]
            update[setting] = (
                value if setting in ("signature_identity", "signature_issuer") else Path(value)
            )
    return update


def signature_check(params: Params, settings: ServeSettings) -> SignatureCheck | None:
    """How the served model's signature is verified (None: serve.model_signature off); a
    setting the mode needs and lacks is an error naming it."""
    mode = settings.model_signature
    if mode == "off":
        return None
    trust: signing.Trust
    if mode == "key":
        key = settings.signature_public_key
        if key is None:
            raise PipelineError(
                "serve.model_signature key: set serve.signature_public_key (or"
                " MLOPS_SIGNATURE_PUBLIC_KEY) to the signer's PEM public key"
            )
        if not key.is_file():
            raise PipelineError(f"serve.signature_public_key {key}: no such file")
        trust = signing.KeyTrust(key)
    else:
        if not settings.signature_identity:
            raise PipelineError(
                "serve.model_signature sigstore: set serve.signature_identity (or"
                " MLOPS_SIGNATURE_IDENTITY) to the signing workflow's identity, e.g."
                " https://github.com/OWNER/REPO/.github/workflows/release.yml@refs/heads/main"
            )
        trust_config = settings.signature_trust_config
        if trust_config is not None and not trust_config.is_file():
            raise PipelineError(f"serve.signature_trust_config {trust_config}: no such file")
        trust = signing.SigstoreTrust(
            settings.signature_identity, settings.signature_issuer, trust_config
        )
    return SignatureCheck(params.paths.model_signature, trust)


def _reference(path: Path) -> dict[str, Any] | None:
    """The training profile for the drift gauges; serving goes on without it."""
    try:
        return cast(dict[str, Any], storage.read_json(path))
    except (OSError, ValueError) as error:
        log.warning("%s: no training reference (%s); drift gauges without reference", path, error)
        return None


def _background(params: Params, settings: ServeSettings) -> list[dict[str, Any]] | None:
    """The explain stage's background rows for /explain; serving goes on without them (then
    /explain answers 503 saying so)."""
    if settings.explain == "off":
        return None
    try:
        return load_background(params.paths.background, params.contract)
    except PipelineError as error:
        log.warning("%s; /explain answers 503", error)
        return None


def served_model_path(params: Params, settings: ServeSettings) -> Path:
    """The file `serve.runtime` serves: the compiled model (onnx) or the pipeline (sklearn)."""
    return params.paths.onnx_model if settings.runtime == "onnx" else params.paths.model


def check_served_file(model_path: Path, expected: str) -> None:
    """Refuse to start on a missing model, one whose bytes do not match the expected hash, or
    an empty model.onnx (what the train stage writes when serve.runtime is sklearn)."""
    if not model_path.is_file() or storage.sha256_file(model_path) != expected:
        raise PipelineError(
            f"{model_path}: missing, or its sha256 does not match the expected {expected};"
            " refusing to start"
        )
    if model_path.suffix == ".onnx" and model_path.stat().st_size == 0:
        raise PipelineError(
            f"{model_path}: empty: the model was trained with serve.runtime: sklearn (not"
            " compiled to ONNX). Serve it with serve.runtime: sklearn (and the extra `sklearn`;"
            " the image: --build-arg RUNTIME=sklearn), or retrain with serve.runtime: onnx"
        )


def settle_garbage_collector() -> None:
    """The slowest answers were requests caught by a full garbage collection, which walks
    every object the imports made (FastAPI, pydantic, the request models). Those live as
    long as the process: freeze them out of the collector's sight, and collect the young
    generation less often (a request allocates a few hundred objects; cycles are rare)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 100)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mlops_template.serve")
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    parser.add_argument(
        "--host", default=os.environ.get("MLOPS_SERVE_HOST"), help="overrides serve.host"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=os.environ.get("MLOPS_SERVE_PORT"),
        help="overrides serve.port",
    )
    parser.add_argument(
        "--example",
        action="store_true",
        help="print the data contract's example record (a valid request body) and exit",
    )
    return parser


@dataclass(frozen=True)
class _Checked:
    """What the service starts with, every part checked before anything listens."""

    params: Params
    contract: Contract
    settings: ServeSettings
    model_path: Path
    expected: str  # the champion's sha256
    pinned: bool  # expected came from the reviewed commit, not from beside the model
    challenger: tuple[Path, str] | None
    internal: bool  # a second listener for the routes set to `internal`
    api_key: str | None  # required on the scoring routes (guard.api_key_from)
    signature: SignatureCheck | None  # None: serve.model_signature off


def _check(params: Params, args: argparse.Namespace) -> _Checked:
    contract = params.contract
    settings = params.serve.model_copy(update=_overrides(args, os.environ))
    model_path = served_model_path(params, settings)
    # Refuse to start on a model whose bytes do not match the expected hash; the
    # (slower) deserialization then happens in the background, on bytes hashed again.
    expected, pinned = pinned_sha256(model_path, os.environ)
    check_served_file(model_path, expected)
    challenger = challenger_of(settings, os.environ)
    internal = "internal" in (settings.metrics, settings.docs, settings.explain)
    if internal and (settings.internal_host, settings.internal_port) == (
        settings.host,
        settings.port,
    ):
        raise PipelineError("serve.internal_port: must differ from serve.port")
    api_key = api_key_from(os.environ)
    signature = signature_check(params, settings)
    return _Checked(
        params,
        contract,
        settings,
        model_path,
        expected,
        pinned,
        challenger,
        internal,
        api_key,
        signature,
    )


def _app(checked: _Checked, state: ServiceState) -> Guard:
    params, contract, challenger = checked.params, checked.contract, checked.challenger
    threshold = params.evaluate.threshold
    return create_app(
        checked.settings,
        lambda: ServedModel.load(
            checked.model_path, checked.expected, contract, threshold, checked.signature
        ),
        state,
        contract=contract,
        load_challenger=(
            (lambda: ServedModel.load(*challenger, contract, threshold)) if challenger else None
        ),
        reference=_reference(params.paths.reference),
        api_key=checked.api_key,
        model_name=params.registry.model_name,  # the Open Inference Protocol's /v2/models/{name}
        background=_background(params, checked.settings),
        explain=params.explain,
    )


def _uvicorn_config(app: Guard, settings: ServeSettings, graceful: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=header_timeout_protocol(settings.header_timeout_seconds),
        lifespan="on",
        access_log=False,
        limit_concurrency=settings.max_connections,
        # uvicorn annotates it int, but only hands it to loop.call_later: fractions work.
        timeout_keep_alive=settings.keep_alive_seconds,  # type: ignore[arg-type]
        timeout_graceful_shutdown=graceful,
        log_level="info",
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        params = load_params(args.params)
        if args.example:
            print(json.dumps(dict(params.contract.example)))
            return 0
        checked = _check(params, args)
    except (PipelineError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not checked.pinned:
        log.warning(
            "%s: verified against the sha256 recorded beside it, which is not pinned; set"
            " MLOPS_MODEL_SHA256 (the image pins it at build time)",
            checked.model_path,
        )
    if checked.signature is None:
        log.warning(
            "%s: its signature is not verified (serve.model_signature: off); production sets"
            " sigstore or key (MLOPS_MODEL_SIGNATURE, docs/serving.md)",
            checked.model_path,
        )
    state = ServiceState()
    settings = checked.settings
    app = _app(checked, state)
    graceful = int(settings.request_timeout_seconds) + 1
    config = _uvicorn_config(app, settings, graceful)
    sockets = None
    if checked.internal:
        listener = uvicorn.Config(app, host=settings.internal_host, port=settings.internal_port)
        sockets = [config.bind_socket(), listener.bind_socket()]
    # The event loop shares the GIL with the log writer and shadow threads: hand it over
    # more often than the default 5 ms, so no request waits a whole slice behind them.
    sys.setswitchinterval(0.0005)
    settle_garbage_collector()
    exit_within = settings.drain_seconds + graceful + WATCHDOG_SLACK_SECONDS
    DrainingServer(config, state, settings.drain_seconds, exit_within).run(sockets=sockets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
