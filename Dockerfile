# The prediction service, with the model the pipeline built (models/, verified by sha256 at
# start-up). Build after `make run` or `dvc pull`:
#   docker build -t mlops-template:local .
# It serves models/model.onnx (the model compiled by the train stage) with onnxruntime: no
# scikit-learn, SciPy or pandas in the image. For a model trained with serve.runtime: sklearn
# (not compiled), --build-arg RUNTIME=sklearn installs the extra `sklearn` and serves
# models/model.joblib instead.
# The base defaults to a public Python image pinned by digest (BASE_TAG carries the digest).
# Where no registry is reachable (this repository's tests) a locally built Debian image with
# python3 is passed: --build-arg BASE_REPO=local/python --build-arg BASE_TAG=3.11-bookworm.
ARG BASE_REPO=python
ARG BASE_TAG=3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b
# onnx (models/model.onnx) or sklearn (models/model.joblib, with scikit-learn and pandas).
ARG RUNTIME=onnx

FROM ${BASE_REPO}:${BASE_TAG} AS base

# The served model and its recorded sha256: models/model.onnx, or models/model.joblib with
# RUNTIME=sklearn (only that one need exist; the other file is never copied into the image),
# and its signature when `make sign-model` made one (params.yaml paths.model_signature,
# models/model.sig: change it here and in .dockerignore if a fork moves it). The service
# verifies it at load as serve.model_signature says (docs/serving.md, "Model signature").
FROM base AS model
ARG RUNTIME
COPY models/ /context/
RUN mkdir /models \
    && file="model.$([ "${RUNTIME}" = sklearn ] && echo joblib || echo onnx)" \
    && cp "/context/${file}" "/context/${file}.sha256" /models/ \
    && if [ -f /context/model.sig ]; then cp /context/model.sig /models/; fi

FROM base AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG RUNTIME
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# binutils (strip) for the build stage only: several wheels ship their extension modules with
# debug symbols (uvloop 14 MB, 1.6 MB stripped).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
# `ca_bundle` is an optional BuildKit secret for networks that intercept TLS; it is mounted
# for one command at a time and never stored in a layer.
# uv, the Makefile's UV_VERSION, from a wheel whose sha256 .ci/uv-requirements.txt lists.
COPY .ci/uv-requirements.txt /tmp/uv-requirements.txt
RUN --mount=type=secret,id=ca_bundle,required=false \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi; \
    python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir --require-hashes --only-binary :all: \
      -r /tmp/uv-requirements.txt
COPY pyproject.toml uv.lock README.md ./
# Runtime dependencies only: no pipeline group (dvc, mlflow, ...), no dev group; scikit-learn
# and pandas only with RUNTIME=sklearn (the extra `sklearn`; the extra `onnx` is empty).
RUN case "${RUNTIME}" in onnx | sklearn) ;; \
      *) echo "RUNTIME=${RUNTIME}: onnx or sklearn" >&2; exit 1 ;; esac
RUN --mount=type=secret,id=ca_bundle,required=false \
    if [ -s /run/secrets/ca_bundle ]; then export SSL_CERT_FILE=/run/secrets/ca_bundle; fi; \
    /opt/uv/bin/uv sync --frozen --no-default-groups --extra "${RUNTIME}" --no-install-project --no-cache
COPY src ./src
# Then what the service never runs: tests, pip, onnxruntime's tools (quantization,
# transformers) and its C API library (35 MB; the Python module links the runtime statically),
# NumPy's build helpers and headers, what model-signing's verifier never imports (the terminal
# output of sigstore's command line, rich and pygments, 13 MB: only sigstore/_cli.py imports
# them; pydantic's email validation and dnspython, 4 MB), debug symbols of extension modules
# (not of the auditwheel-patched libraries in *.libs/); and check that what it runs imports.
RUN --mount=type=secret,id=ca_bundle,required=false \
    if [ -s /run/secrets/ca_bundle ]; then export SSL_CERT_FILE=/run/secrets/ca_bundle; fi; \
    /opt/uv/bin/uv sync --frozen --no-default-groups --extra "${RUNTIME}" --no-editable --no-cache \
    && site=$(echo /app/.venv/lib/python3*/site-packages) \
    && find "${site}" -type d \( -name tests -o -name test \) -prune -exec rm -rf {} + \
    && rm -rf "${site}"/pip* /app/.venv/bin/pip* \
      "${site}"/onnxruntime/tools "${site}"/onnxruntime/quantization \
      "${site}"/onnxruntime/transformers "${site}"/onnxruntime/datasets \
      "${site}"/onnxruntime/backend "${site}"/onnxruntime/capi/libonnxruntime.so.* \
      "${site}"/numpy/distutils "${site}"/numpy/_pyinstaller "${site}"/numpy/_core/include \
      "${site}"/numpy/_core/lib \
      "${site}"/rich "${site}"/rich-* "${site}"/pygments "${site}"/pygments-* \
      "${site}"/markdown_it "${site}"/markdown_it_py-* "${site}"/mdurl "${site}"/mdurl-* \
      "${site}"/email_validator "${site}"/email_validator-* "${site}"/dns "${site}"/dnspython-* \
    && find "${site}" -name '*.pyi' -delete \
    && find "${site}" -name '*.so' -not -path '*.libs/*' -exec strip --strip-unneeded {} + \
    && /app/.venv/bin/python -c "import mlops_template.serve.__main__, onnxruntime, model_signing.verifying, sigstore.verify" \
    && if [ "${RUNTIME}" = sklearn ]; then /app/.venv/bin/python -c "import sklearn, pandas, joblib"; fi

FROM base AS runtime
LABEL org.opencontainers.image.title="mlops-template prediction service" \
      org.opencontainers.image.description="FastAPI service for the model built by the DVC pipeline"
# ORT_DISABLE_TELEMETRY: onnxruntime sends usage telemetry to Microsoft unless told not to.
ENV PATH=/app/.venv/bin:${PATH} \
    ORT_DISABLE_TELEMETRY=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MLOPS_SERVE_HOST=0.0.0.0 \
    MLOPS_SERVE_PORT=8000
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY params.yaml ./
# The data contract (params.yaml data.contract; data/contract.yaml unless a fork moved it, then
# change this line and .dockerignore): the request and response models, their examples and the
# drift gauges follow it. `python3 -m mlops_template.serve --example` prints its example record.
COPY data/contract.yaml ./data/
COPY --from=model /models/ ./models/
# The training profile (drift gauges) and the explain stage's background rows (/explain).
COPY models/model_card.md models/reference.json models/background.json ./models/
# The model's expected sha256, pinned at build time outside models/ (root-owned, read-only):
# the committed models/model.onnx.sha256 (model.joblib.sha256 with RUNTIME=sklearn; in the
# release, the reviewed commit's), or --build-arg MODEL_SHA256. The build fails unless the
# model copied above matches it; the service checks it again at start-up and refuses any
# other model, even one that comes with a matching .sha256 file beside it (a volume over
# models/, say).
ARG RUNTIME
ARG MODEL_SHA256=
RUN model="models/model.$([ "${RUNTIME}" = sklearn ] && echo joblib || echo onnx)" \
    && if [ ! -s "${model}" ]; then \
      echo "${model} is empty: the model was trained with serve.runtime: sklearn (not compiled);" \
        "build with --build-arg RUNTIME=sklearn, or retrain with serve.runtime: onnx" >&2; \
      exit 1; fi \
    && pin="${MODEL_SHA256:-$(cut -d ' ' -f 1 "${model}.sha256")}" \
    && mkdir -p /etc/mlops-template \
    && echo "${pin}  ${model}" > /etc/mlops-template/model.sha256 \
    && chmod 0444 /etc/mlops-template/model.sha256 \
    && sha256sum --check --strict /etc/mlops-template/model.sha256
# Sigstore's trusted root for keyless signature checks, as the installed sigstore release
# ships it (io/signing.py embedded_trust_config): verifying needs no network and no writable
# cache. Used with serve.model_signature sigstore; a fresher one can be mounted over it.
RUN python3 -c "from mlops_template.io.signing import embedded_trust_config as c; print(c(), end='')" \
      > /etc/mlops-template/sigstore-trust.json \
    && chmod 0444 /etc/mlops-template/sigstore-trust.json
ENV MLOPS_MODEL_SHA256_FILE=/etc/mlops-template/model.sha256 \
    MLOPS_SIGNATURE_TRUST_CONFIG=/etc/mlops-template/sigstore-trust.json \
    MLOPS_SERVE_RUNTIME=${RUNTIME}
# The only writable path: the prediction log (mount a volume here in production).
RUN mkdir -p /app/logs && chown 10001:10001 /app/logs
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python3", "-c", "import os, sys, urllib.request; url = f\"http://127.0.0.1:{os.environ['MLOPS_SERVE_PORT']}/health/ready\"; sys.exit(urllib.request.urlopen(url, timeout=2).status != 200)"]
CMD ["python3", "-m", "mlops_template.serve"]
