# Every workflow step and every README command goes through these targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv, pinned: this version here, `required-version` in pyproject.toml, setup-uv's `version:` in
# every workflow and .ci/uv-requirements.txt (tests/repo/test_ci.py checks they agree).
# The uv on PATH if it is this version; otherwise this version is installed into .tools/ (a
# plain venv, works anywhere python3 does, needs no root and leaves the system Python alone),
# by pip from .ci/uv-requirements.txt with --require-hashes (the Dockerfiles install it the
# same way): a wheel whose sha256 is not listed there is refused. After changing UV_VERSION,
# `make uv-requirements` rewrites that file from PyPI.
UV_VERSION := 0.13.9
UV ?= $(shell case "$$(uv --version 2>/dev/null)" in ("uv $(UV_VERSION)"|"uv $(UV_VERSION) "*) \
	command -v uv;; (*) echo .tools/bin/uv;; esac)
# Recipes and the git hooks they start (pre-commit runs `uv run ...`) find that uv on PATH.
export PATH := $(abspath $(dir $(UV))):$(PATH)
RUN := $(UV) run --frozen --no-sync
UV_SYNC_FLAGS ?= --compile-bytecode

# Pull-request loop (see .github/workflows/train.yml): the base to compare with, where the
# report goes, and the PR it belongs to. DVC remote credentials come from the environment
# (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for the S3 remote in .dvc/config); without them
# `pull` and `publish` say so and do nothing, which is how fork PRs run.
# BASE_REF, from train.yml: the base branch, or refs/heads/BRANCH in a merge queue.
# BASE, BASE_REF, PR and BRANCH are names an outsider can choose: workflows pass them in the
# environment, and only the shell reads them ("$$BASE"), never make (make would expand a
# `$(...)` in them, and a name pasted into double quotes would run its backticks).
BASE_REF ?=
BASE ?=
# The revision to compare with, as shell: BASE, else origin/<BASE_REF minus refs/heads/>, else main.
BASE_SH = base="$${BASE:-}"; ref="$${BASE_REF\#refs/heads/}"; base="$${base:-$${ref:+origin/$$ref}}"; \
	base="$${base:-main}"
# Release (see .github/workflows/release.yml).
DOCKER ?= docker
IMAGE ?= mlops-template:local
IMAGE_TAR ?= image.tar
BUILD_ARGS ?=
# The image serves what params.yaml's serve.runtime says: onnx (models/model.onnx, no
# scikit-learn in the image) or sklearn (models/model.joblib, the extra `sklearn`).
SERVE_RUNTIME ?= $(shell awk '/^serve:/ {s = 1; next} /^[^ #]/ {s = 0} s && $$1 == "runtime:" {print $$2; exit}' params.yaml)
SMOKE_PORT ?= 8000
CML_VERSION ?= 0.20.6
# Trivy, checksum-pinned (sha256 of trivy_$(TRIVY_VERSION)_Linux-64bit.tar.gz, the release's
# checksums file): make install-trivy, make scan-image.
TRIVY_VERSION := 0.69.3
TRIVY_SHA256 := 1816b632dfe529869c740c0913e36bd1629cb7688bd5634f4a858c1d57c88b75
REPOSITORY ?=
REPORT_DIR ?= pr-report
PR ?=
BRANCH ?=
# The hand-over between a job that runs the pipeline without write credentials and the job
# that publishes its outputs (train.yml -> publish.yml, retrain.yml): the artifact's folder on
# each side, and the pull request's checkout in publish.yml.
OUTPUTS_DIR ?= pipeline-outputs
CHAMPION_DIR ?= champion
INPUTS ?= release-inputs
# params.yaml's paths.model_signature (the release's signing and the image take it from here)
MODEL_SIGNATURE ?= models/model.sig
INCOMING ?=
PR_DIR ?= pr
# Monitoring and retraining (see .github/workflows/retrain.yml): where production drops its
# prediction logs and labelled feedback (a local directory or s3://bucket/prefix).
MONITORING_URI ?=
# `make mlflow-ui` listens here, on 127.0.0.1 only.
MLFLOW_UI_PORT ?= 5000
# `make ci`: the tests start their own dockerd and PostgreSQL (as the postgres user), which
# needs root. Where make does not run as root (GitHub's runners), the suite runs through
# passwordless sudo, keeping the environment; PATH explicitly, since sudo resets it.
AS_ROOT := $(if $(filter 0,$(shell id -u)),,sudo --preserve-env env "PATH=$$PATH")
# Coverage of src/'s lines by the unit tests, in percent (pyproject's [tool.coverage.*]): `make
# ci` fails under COVERAGE_FLOOR, `make coverage` under COVERAGE_FAST_FLOOR. The unit tests
# leave most of the registry, tracking and the served process to the real-service tests.
COVERAGE_FLOOR ?= 90
COVERAGE_FAST_FLOOR ?= 90

##@ Start here
.PHONY: help install run test ci clean

help: ## List every target, by purpose (`##@` lines are the headings; .ci/workflows.mk's last)
	@awk 'BEGIN {FS = ":.*## "} /^##@ / {printf "\n%s\n", substr($$0, 5)} \
		/^[a-zA-Z0-9_-]+:.*## / {printf "  make %-17s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/python -m pip install --quiet --require-hashes --only-binary :all: \
		-r .ci/uv-requirements.txt

install: $(UV) ## Install uv if missing, then the locked environment (uv.lock)
	$(UV) sync --frozen $(UV_SYNC_FLAGS)

run: install ## Check params.yaml as a whole, then the DVC pipeline (only stages whose inputs changed)
	$(RUN) mlops stage preflight
	$(RUN) dvc repro

test: install ## Run the whole test suite; tests whose services are not installed skip, saying why
	$(RUN) pytest

ci: install ## What CI runs (ci.yml, .ci/run): install the services, lint, every test; a skip fails
	.ci/provision
	$(MAKE) --no-print-directory lint
	@# The unit tests on every core, then the real-service ones on every core too, grouped
	@# (tests/conftest.py): one worker takes every Docker test, so the image is built once.
	@# The unit run under coverage.py (every Python process it starts too), its report failing
	@# under COVERAGE_FLOOR. The real-service run is not measured: under coverage it took half
	@# as long again (CI, 2 cores), to raise the total by a few points (README, "Two commands").
	$(AS_ROOT) $(RUN) coverage erase
	MLOPS_FAIL_ON_SKIP=1 $(AS_ROOT) $(RUN) coverage run -m pytest -m "not slow and not docker" -n auto
	$(AS_ROOT) $(RUN) coverage combine --quiet
	$(AS_ROOT) $(RUN) coverage report --fail-under=$(COVERAGE_FLOOR)
	MLOPS_FAIL_ON_SKIP=1 $(AS_ROOT) $(RUN) pytest -m "slow or docker" -n auto --dist loadfile

clean: ## Remove pipeline outputs and local tracking data (not the DVC cache)
	rm -rf data/*.parquet models/model.joblib models/model.onnx reports/train_timing.json reports/validation_failure.json \
		reports/stage_failure.json mlflow.db mlruns dvc_plots $(REPORT_DIR)


##@ The pipeline and experiments
.PHONY: diff plots model-card init-schema tune mlflow-ui report pull publish check-lock rebuild

diff: install ## Params, metrics and plots against BASE (default main; offline page: dvc_plots/plots.html)
	@$(BASE_SH); set -x; $(RUN) dvc params diff "$$base"; \
	$(RUN) dvc metrics diff "$$base"; $(RUN) dvc plots diff "$$base"; \
	$(RUN) mlops report plots --base "$$base" --out dvc_plots/plots.html

plots: install ## The evaluate stage's plots and metrics on one page that works offline (dvc_plots/plots.html)
	$(RUN) mlops report plots --out dvc_plots/plots.html

model-card: install ## The model card of the model dvc.lock describes, as markdown (models/model_card.md)
	$(RUN) mlops report card --out models/model_card.md

init-schema: install ## Profile a table into data.contract: make init-schema DATA=data/x.csv TARGET=y [TASK=..] [POSITIVE=..] [IGNORE="col1 col2"] [FORCE=1 replaces it]
	@set -f; set --; for column in $${IGNORE:-}; do set -- "$$@" --ignore "$$column"; done; \
	if [ "$${FORCE:-}" = 1 ]; then set -- "$$@" --force; fi; \
	$(RUN) mlops contract init --data "$${DATA:?DATA=path/to/table.csv}" --target "$${TARGET:?TARGET=column}" \
		$${TASK:+--task "$$TASK"} $${POSITIVE:+--positive "$$POSITIVE"} "$$@" \
	|| { status=$$?; [ "$${FORCE:-}" = 1 ] || echo "init-schema: if the contract exists, FORCE=1 replaces it" >&2; exit $$status; }

# Hyperparameter search: params.yaml's tune section (docs/tuning.md). It reads the split stage's
# training split, so `dvc repro split` runs first (nothing to do when it is up to date).
# APPLY=1 writes the best values into params.yaml's model section when they beat the current
# ones by more than the standard error of the paired fold differences: `git diff params.yaml`.
tune: install ## Seeded, bounded search over tune.space, cross-validated on the training split only; APPLY=1 writes a real improvement into params.yaml
	$(RUN) dvc repro split
	@set --; if [ "$${APPLY:-}" = 1 ]; then set -- --apply; fi; set -x; $(RUN) mlops model tune "$$@"

mlflow-ui: install ## Browse the local MLflow runs (mlflow.db) on 127.0.0.1, port MLFLOW_UI_PORT (5000)
	$(RUN) mlflow ui --backend-store-uri "sqlite:///$(CURDIR)/mlflow.db" \
		--host 127.0.0.1 --port "$(MLFLOW_UI_PORT)" --workers 1

report: install ## Write $(REPORT_DIR)/report.md: this branch against BASE (PR loop), and PR's number
	@if [ -n "$${PR:-}" ] && [[ ! "$$PR" =~ ^[1-9][0-9]{0,9}$$ ]]; then \
		echo "report: PR is not a pull request number" >&2; exit 1; fi
	@$(BASE_SH); set -x; $(RUN) mlops report pr --base "$$base" --out "$(REPORT_DIR)/report.md"
	@if [ -n "$${PR:-}" ]; then printf '%s\n' "$$PR" > "$(REPORT_DIR)/pr_number"; fi
	@if [ -n "$${GITHUB_STEP_SUMMARY:-}" ]; then cat "$(REPORT_DIR)/report.md" >> "$$GITHUB_STEP_SUMMARY"; fi

pull: install ## Fetch DVC outputs from the remote, if credentials are set
	@if [ -n "$${AWS_ACCESS_KEY_ID:-}" ]; then $(RUN) dvc pull --allow-missing; \
	else echo "pull: no DVC remote credentials (AWS_ACCESS_KEY_ID): skipped"; fi

publish: install ## dvc push the outputs and commit dvc.lock to BRANCH, if credentials are set
	@if [ -n "$${AWS_ACCESS_KEY_ID:-}" ]; then $(RUN) dvc push && .ci/commit-lock "$$BRANCH"; \
	else echo "publish: no DVC remote credentials (AWS_ACCESS_KEY_ID): skipped"; fi

check-lock: install ## Fail unless dvc.lock matches this commit's code, params and outputs
	$(RUN) mlops stage preflight
	$(RUN) .ci/check-lock

rebuild: install ## Rebuild every output from nothing (empty DVC cache) and fail unless each is dvc.lock's (the release's check)
	$(RUN) mlops model rebuild


##@ Tests, lint and docs
.PHONY: test-fast coverage lint docs lint-workflows lint-container lint-k8s uv-requirements

test-fast: install ## The unmarked tests: unit and quick repository checks (no dvc end to end, servers, act or Docker)
	$(RUN) pytest -m "not slow and not docker" -n auto

coverage: install ## The unit tests under coverage.py: src/'s uncovered lines, failing under COVERAGE_FAST_FLOOR
	$(RUN) coverage erase
	$(RUN) coverage run -m pytest -m "not slow and not docker" -n auto
	$(RUN) coverage combine --quiet
	$(RUN) coverage report --fail-under=$(COVERAGE_FAST_FLOOR)

lint: install ## pre-commit on every file: ruff lint + format, mypy --strict (src/), import contracts, hygiene hooks; then make docs
	$(RUN) pre-commit run --all-files --show-diff-on-failure
	$(DOCS_BUILD)

# The docs site (mkdocs.yml), offline: --strict fails on a broken link or anchor and on a page
# left out of the nav; the Reference pages are generated from the code (docs/gen_reference.py).
DOCS_BUILD = NO_MKDOCS_2_WARNING=1 $(RUN) mkdocs build --strict --quiet
docs: install ## Build the docs site into site/ (offline, --strict: a broken link fails); open site/index.html
	$(DOCS_BUILD)

lint-workflows: install ## zizmor (regular, pedantic, auditor), actionlint, check-jsonschema on .github/
	.ci/lint-workflows

lint-container: install ## hadolint and checkov on the Dockerfile and the local stack's (deploy/compose/images)
	UV="$(UV)" .ci/lint-container

lint-k8s: install ## Render each deploy/k8s overlay: kubernetes-validate --strict and checkov (zero findings)
	UV="$(UV)" .ci/lint-k8s

uv-requirements: ## After changing UV_VERSION: rewrite .ci/uv-requirements.txt (uv's wheels for our platforms, their sha256) from PyPI
	.ci/pin-uv "$(UV_VERSION)" .ci/uv-requirements.txt


##@ Serving and the image
.PHONY: serve image smoke k8s-config

serve: install ## Serve the model from `make run` on serve.host:serve.port (params.yaml)
	$(RUN) python -m mlops_template.serve

image: install ## Build the serving image IMAGE (needs models/ from `make run` or `make pull`)
	$(RUN) mlops report card --out models/model_card.md
	DOCKER_BUILDKIT=1 $(DOCKER) build --build-arg RUNTIME=$(or $(SERVE_RUNTIME),onnx) $(BUILD_ARGS) -t "$(IMAGE)" .

smoke: ## Run IMAGE and check ready, predict, metrics and a non-root user
	DOCKER="$(DOCKER)" .ci/smoke-test "$(IMAGE)" "$(SMOKE_PORT)"

k8s-config: ## Copy params.yaml's serve section to deploy/k8s/base/serve.yaml (the pods' ConfigMap)
	@{ echo "# params.yaml's serve section, copied by \`make k8s-config\`: edit params.yaml, then run it"; \
	  echo "# (tests/repo/test_k8s.py fails while they differ). The pods' ConfigMap: base/kustomization.yaml."; \
	  awk '/^serve:/ {s = 1} /^[^ #]/ && !/^serve:/ {s = 0} s && NF' params.yaml; } > deploy/k8s/base/serve.yaml
	@echo "k8s-config: deploy/k8s/base/serve.yaml"


##@ Registry and deploys
.PHONY: register promote sign-model verify-model record-signature rollback history deploy-bump verify-image

register: install ## Register the model dvc.lock describes in the MLflow Model Registry
	$(RUN) mlops model register

promote: install ## Champion/challenger gate: promote the newest version only if it is better
	$(RUN) mlops model promote

# The served model file's signature (paths.model_signature; docs/serving.md, "Model
# signature"). Signing: KEY=private.pem, or the PEM itself in MODEL_SIGNING_KEY (a CI secret,
# piped to `mlops`, never written to disk), or SIGSTORE=1 (keyless: GitHub Actions' OIDC token,
# `id-token: write`). Verifying: PUBLIC_KEY=public.pem, or IDENTITY=<certificate identity>
# (ISSUER defaults to GitHub Actions'). The values reach `mlops` from the environment.
sign-model: install ## Sign the served model into paths.model_signature: KEY=private.pem (or the PEM in MODEL_SIGNING_KEY), or SIGSTORE=1 (keyless, CI)
	@if [ "$${SIGSTORE:-}" = 1 ]; then set -x; $(RUN) mlops model sign --sigstore; \
	elif [ -n "$${KEY:-}" ]; then set -x; $(RUN) mlops model sign --private-key "$$KEY"; \
	elif [ -n "$${MODEL_SIGNING_KEY:-}" ]; then \
		printf '%s\n' "$$MODEL_SIGNING_KEY" | $(RUN) mlops model sign --private-key -; \
	else echo "sign-model: KEY=private.pem, MODEL_SIGNING_KEY (the PEM) or SIGSTORE=1" >&2; exit 2; fi

verify-model: install ## Verify the served model's signature as the service does: PUBLIC_KEY=public.pem, or IDENTITY=... [ISSUER=...]
	@if [ -n "$${PUBLIC_KEY:-}" ]; then set -x; $(RUN) mlops model verify --public-key "$$PUBLIC_KEY"; \
	elif [ -n "$${IDENTITY:-}" ]; then set -x; $(RUN) mlops model verify --identity "$$IDENTITY" \
		$${ISSUER:+--issuer "$$ISSUER"}; \
	else echo "verify-model: PUBLIC_KEY=public.pem, or IDENTITY=<certificate identity>" >&2; exit 2; fi

record-signature: install ## Tag registry version REGISTRY_VERSION with its model's signature (SIGNATURE, default paths.model_signature: what it signs, by whom)
	$(RUN) mlops model record-signature --version "$${REGISTRY_VERSION:-}" $${SIGNATURE:+--signature "$$SIGNATURE"}

# ENV (default production) is passed to `mlops` as data, as for the deploy targets below.
rollback: install ## Roll ENV (production) back: champion to the version it replaced, ENV's overlay to its recorded image; OPEN_PR=1 proposes it, ALIAS_ONLY=1 moves the alias alone
	@set --; if [ "$${ALIAS_ONLY:-}" = 1 ]; then set -- "$$@" --alias-only; fi; \
	if [ "$${OPEN_PR:-}" = 1 ]; then set -- "$$@" --pr; fi; \
	set -x; $(RUN) mlops deploy rollback --env "$${ENV:-production}" "$$@"

history: install ## Every deployment per environment, newest first (ENV=one, FORMAT=json); PRs and approvers with GITHUB_TOKEN, registry versions with MLFLOW_TRACKING_URI
	$(RUN) mlops deploy history $${ENV:+--env "$$ENV"} --format "$${FORMAT:-table}"

# The GitOps deploy (deploy.yml, and .ci/workflows.mk's deploy-pr): ENV, IMAGE, DIGEST and
# MODEL_VERSION (or RELEASE, release.yml's record) arrive from workflow inputs: the recipes pass
# them to `mlops` from the environment ("$$NAME"), never through make, and `mlops` checks them.
deploy-bump: install ## Set overlay ENV's image (IMAGE, DIGEST) and MODEL_VERSION in deploy/k8s/overlays
	$(RUN) mlops deploy bump --env "$${ENV:-}" --image "$${IMAGE:-}" --digest "$${DIGEST:-}" \
		--model-version "$${MODEL_VERSION:-}"

# What deploy-pr and rollback check before proposing anything (docs/deploy.md): the registry
# recorded IMAGE@DIGEST with MODEL_VERSION, and main's release.yml signed it (cosign verify).
verify-image: install ## Check IMAGE@DIGEST as deploy-pr does: recorded on a registry version with MODEL_VERSION, signed by release.yml on main (cosign)
	$(RUN) mlops deploy verify --image "$${IMAGE:-}" --digest "$${DIGEST:-}" \
		--model-version "$${MODEL_VERSION:-}"


##@ Monitoring and retraining
.PHONY: traffic fetch-monitoring drift retrain

traffic: install ## Send REQUESTS (200) records from data.source to `make serve`; SHIFT="feature=delta ..." shifts them
	@set -f; set --; for shift in $${SHIFT:-}; do set -- "$$@" --shift "$$shift"; done; \
	$(RUN) mlops monitor traffic --requests "$${REQUESTS:-200}" "$$@"

fetch-monitoring: install ## Mirror prediction logs and feedback from MONITORING_URI (monitoring.fetched)
	@if [ -n "$(MONITORING_URI)" ]; then $(RUN) mlops monitor fetch --source "$(MONITORING_URI)"; \
	else echo "fetch-monitoring: no MONITORING_URI: using the local logs/"; fi

drift: install ## Drift report on the logged traffic (exit 0: no drift, 3: drift, 1: error)
	$(RUN) mlops monitor drift $(if $(MONITORING_URI),--fetched)

retrain: install ## Re-read the data source (forced ingest), then re-run what changed
	$(RUN) mlops stage preflight
	$(RUN) dvc repro --force ingest
	$(RUN) dvc repro


##@ Benchmarks (side by side, one run)
.PHONY: bench-pipeline bench-serve bench-explain bench-tune

bench-pipeline: install ## Per-stage wall time and peak memory at 100k and 1M rows
	$(RUN) python benchmarks/pipeline.py

bench-serve: install ## Our service (ONNX) vs the seed Flask app, gunicorn and mlflow serve (same model, one thread each) and a FastAPI ceiling (needs wrk)
	$(RUN) python benchmarks/serve.py

bench-explain: install ## /predict latency alone and under /explain load, and /explain's own (benchmarks/explain.py)
	$(RUN) python benchmarks/explain.py

bench-tune: install ## The same search with tune.n_jobs 1, 2 and one per core: seconds, trials, best score (docs/tuning.md)
	$(RUN) python benchmarks/tune.py


##@ The local stack (deploy/compose)
.PHONY: stack-images up stack-traffic stack-register stack-drift screenshots down

# The local stack (deploy/compose/, its README): the service, Prometheus with deploy/prometheus,
# MLflow on PostgreSQL with artefacts in an S3 API (moto), and bounded traffic; ports on
# 127.0.0.1 only. Public images are pinned by digest in compose.yaml; LOCAL_IMAGES=1 builds
# local stand-ins from Debian's packages instead (no registry needed). The service image is
# IMAGE, built by `make image` when missing (it needs models/ from `make run` or `make pull`).
LOCAL_IMAGES ?=
STACK = DOCKER="$(DOCKER)" SERVICE_IMAGE="$(IMAGE)" LOCAL_IMAGES="$(LOCAL_IMAGES)" $(RUN) python deploy/compose/stack.py
# With LOCAL_IMAGES=1 the service image is built on the same local base, through the host network.
STACK_BUILD_ARGS = $(if $(filter 1,$(LOCAL_IMAGES)),--network host --build-arg BASE_REPO=local/python \
	--build-arg BASE_TAG=3.11-bookworm $(if $(wildcard /etc/ssl/certs/ca-certificates.crt),--secret id=ca_bundle$(,)src=/etc/ssl/certs/ca-certificates.crt))
, := ,

stack-images: install ## Build the stack's images (cached), IMAGE if missing; LOCAL_IMAGES=1: local stand-ins for the public ones
	$(STACK) images
	@$(DOCKER) image inspect "$(IMAGE)" >/dev/null 2>&1 || \
		$(MAKE) --no-print-directory image BUILD_ARGS="$(STACK_BUILD_ARGS) $(BUILD_ARGS)"

up: stack-images ## Start the local stack (deploy/compose), wait until healthy, print its URLs
	$(STACK) up

stack-traffic: install ## More traffic to the stack: REQUESTS (1000), SHIFT="feature=delta ..." (e.g. island=Biscoe)
	TRAFFIC_REQUESTS="$${REQUESTS:-1000}" TRAFFIC_SHIFT="$${SHIFT:-}" $(STACK) traffic

# The stack's MLflow would hand out presigned S3 URLs naming its own network's endpoint
# (http://s3:5000), which the host cannot reach: its clients download through MLflow instead.
# The caller's own MLflow credentials are not sent to the stack's (env -u).
STACK_MLFLOW_ENV = env -u MLFLOW_TRACKING_TOKEN -u MLFLOW_TRACKING_USERNAME -u MLFLOW_TRACKING_PASSWORD \
	NO_PROXY=127.0.0.1,localhost MLFLOW_TRACKING_URI="http://127.0.0.1:$${MLFLOW_PORT:-5000}" \
	MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD=false MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD=false
stack-register: install ## Register the model dvc.lock describes in the stack's MLflow and promote it (after `make run`)
	$(STACK_MLFLOW_ENV) $(RUN) mlops model register
	$(STACK_MLFLOW_ENV) $(RUN) mlops model promote

# The stack's log shipper copies the service's prediction log to s3://prediction-logs in its
# S3 API, as production's platform ships it to a bucket: the drift report reads it from there,
# into .stack/ (STACK_STATE), not the checkout's logs/ and reports/. Exit 3 (drift) is a report.
stack-drift: install ## Drift report on the stack's traffic (.stack/drift/drift.html): the log shipped to the stack's S3, fetched, then mlops monitor drift
	$(STACK) drift || [ $$? -eq 3 ]

SCREENSHOTS ?= docs/images
screenshots: install ## The running stack in headless Chromium, as PNGs in SCREENSHOTS: MLflow's champion, Prometheus's drift alert, the drift report
	$(RUN) python deploy/compose/screenshots.py --out "$(SCREENSHOTS)"

down: install ## Stop the local stack and remove its containers and network; VOLUMES=1 its data too
	$(STACK) down $(if $(filter 1,$(VOLUMES)),--volumes)

# The steps only workflows call, in their own file: the targets above are the ones you type.
include .ci/workflows.mk
