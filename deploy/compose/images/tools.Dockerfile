# The stack's Python services, from the project's own locked environment (uv.lock): the MLflow
# tracking server (with PostgreSQL's driver and boto3 for S3 artefacts), moto's S3 server (a
# stand-in for the object store), the log shipper and `mlops monitor traffic`. One image for the three, as no
# public image carries this project's versions. Built by `make stack-images`, from the
# repository root:
#   docker build -f deploy/compose/images/tools.Dockerfile -t mlops-template-tools:local .
# The base is the same as the service's Dockerfile: a public Python image pinned by digest, or
# a locally built Debian image where no registry is reachable (this repository's tests).
ARG BASE_REPO=python
ARG BASE_TAG=3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

FROM ${BASE_REPO}:${BASE_TAG}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# `ca_bundle` is an optional BuildKit secret for networks that intercept TLS (as the service's
# Dockerfile): mounted for one command at a time, never stored in a layer.
# uv, the Makefile's UV_VERSION, from a wheel whose sha256 .ci/uv-requirements.txt lists.
COPY .ci/uv-requirements.txt /tmp/uv-requirements.txt
RUN --mount=type=secret,id=ca_bundle,required=false \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi; \
    python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir --require-hashes --only-binary :all: \
      -r /tmp/uv-requirements.txt
COPY pyproject.toml uv.lock README.md ./
COPY src ./src
# Every version comes from uv.lock (exported as constraints); only what these services run is
# installed, not the whole pipeline and dev groups.
RUN --mount=type=secret,id=ca_bundle,required=false \
    if [ -s /run/secrets/ca_bundle ]; then export SSL_CERT_FILE=/run/secrets/ca_bundle; fi; \
    /opt/uv/bin/uv export --frozen --no-hashes --all-groups --all-extras --no-emit-project \
      --output-file /tmp/constraints.txt >/dev/null \
    && /opt/uv/bin/uv venv /app/.venv \
    && /opt/uv/bin/uv pip install --python /app/.venv/bin/python --no-cache \
      --constraint /tmp/constraints.txt \
      . mlflow "psycopg[binary]" boto3 "moto[server]" typer httpx pandas pyarrow \
    && rm -rf /opt/uv /tmp/constraints.txt /src \
    && /app/.venv/bin/mlflow --version \
    && /app/.venv/bin/mlops monitor traffic --help >/dev/null \
    && /app/.venv/bin/python -c "import psycopg, boto3, moto.server"
# The log shipper (the `log-shipper` service): standard library and boto3.
COPY deploy/compose/ship_logs.py /app/ship_logs.py
# MLflow's usage telemetry is off (as onnxruntime's in the service's image).
ENV PATH=/app/.venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=true
WORKDIR /project
USER 10001:10001
# One image, four roles (the S3 API, MLflow, the log shipper, the traffic run): compose.yaml
# gives each server its own health check; the shipper and the traffic run serve nothing.
# checkov:skip=CKV_DOCKER_2: each role's health check is in compose.yaml
