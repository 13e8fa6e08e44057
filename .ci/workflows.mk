# The steps that only .github/workflows call (included by the Makefile, so `make TARGET` runs
# them as a workflow does: every workflow step is a make target or the `mlops` CLI, and can be
# run and debugged locally). The variables they read are set at the top of the Makefile.

##@ Workflow steps (.github/workflows call these; run them locally to debug a job)
.PHONY: release-champion gate-inputs accept-inputs sign-release-model take-model-signature release-registry save-image push-image install-trivy scan-image install-cml post-report collect-outputs publish-outputs retrain-outputs retrain-pr deploy-pr release-record record-image schedule-note publish-target

release-champion: install ## In release.yml: the registry's champion and its served file into CHAMPION_DIR (read access)
	$(RUN) mlops model champion --out "$(CHAMPION_DIR)"

gate-inputs: install ## In release.yml: score the rebuilt model and CHAMPION_DIR's, hand over to INPUTS (no keys)
	$(RUN) mlops model gate-inputs --champion "$(CHAMPION_DIR)" --out "$(INPUTS)"

accept-inputs: install ## In release.yml: stage the hand-over INPUTS' rebuilt outputs into this checkout, checked
	$(RUN) mlops model accept --inputs "$(INPUTS)"

# The rebuilt model's signature: with the PEM private key in MODEL_SIGNING_KEY (a secret of the
# environment `model-signing`), by that key; otherwise keyless (the job's OIDC identity:
# release.yml on main). The signature goes to model-signature/ for the jobs after it.
sign-release-model: install ## In release.yml: stage INPUTS (checked), sign its served model (MODEL_SIGNING_KEY, else keyless) into model-signature/
	$(RUN) mlops model accept --inputs "$(INPUTS)"
	@if [ -n "$${MODEL_SIGNING_KEY:-}" ]; then $(MAKE) --no-print-directory sign-model; \
	else $(MAKE) --no-print-directory sign-model SIGSTORE=1; fi
	mkdir -p model-signature && cp "$(MODEL_SIGNATURE)" model-signature/

# Checked before the image is built, as the service checks it at load: by the public key in
# MODEL_SIGNING_PUBLIC_KEY (a repository variable, with a key pair), else keyless against
# release.yml on refs/heads/main of this repository (GITHUB_REPOSITORY).
take-model-signature: install ## In release.yml: model-signature/'s signature beside the staged model, verified (MODEL_SIGNING_PUBLIC_KEY, else release.yml's identity)
	cp model-signature/$(notdir $(MODEL_SIGNATURE)) "$(MODEL_SIGNATURE)"
	@if [ -n "$${MODEL_SIGNING_PUBLIC_KEY:-}" ]; then \
		key=$$(mktemp) && printf '%s\n' "$$MODEL_SIGNING_PUBLIC_KEY" > "$$key" && \
		$(MAKE) --no-print-directory verify-model PUBLIC_KEY="$$key"; status=$$?; rm -f "$$key"; exit $$status; \
	else $(MAKE) --no-print-directory verify-model \
		IDENTITY="https://github.com/$${GITHUB_REPOSITORY:?}/.github/workflows/release.yml@refs/heads/main"; fi

release-registry: install ## Release gate on the checked hand-over INPUTS: register unless unchanged, promote or refuse
	$(RUN) mlops model release --inputs "$(INPUTS)"

save-image: ## Write IMAGE to IMAGE_TAR (handed from the build job to the approved push job)
	$(DOCKER) save --output "$(IMAGE_TAR)" "$(IMAGE)"

push-image: ## Load IMAGE_TAR, tag it with the commit and model version, push to REPOSITORY
	DOCKER="$(DOCKER)" .ci/push-image "$(IMAGE_TAR)" "$(REPOSITORY)"

install-trivy: ## Trivy TRIVY_VERSION into .tools/trivy, its archive checked against TRIVY_SHA256
	TRIVY_VERSION="$(TRIVY_VERSION)" TRIVY_SHA256="$(TRIVY_SHA256)" .ci/install-trivy

scan-image: ## Scan IMAGE_TAR with Trivy (fresh DB cache; fails on fixable HIGH/CRITICAL), SBOM to sbom.cdx.json
	.ci/scan-image "$(IMAGE_TAR)"

install-cml: ## Only to publish plots: CML from .ci/cml's lockfile (npm ci, no install scripts)
	@if [ "$$(cml --version 2>/dev/null)" = "$(CML_VERSION)" ]; then echo "cml $(CML_VERSION) found"; \
	elif [ ! -f .ci/cml/package-lock.json ]; then echo "install-cml: .ci/cml/package-lock.json is not" \
		"committed: generate it where npm serves @dvcorg/cml (README, the pull-request loop)" >&2; exit 1; \
	else npm ci --prefix .ci/cml --ignore-scripts --no-audit --no-fund; fi

post-report: install ## pr-comment.yml: check $(REPORT_DIR) and its PR number against run RUN_ID, post it
	$(RUN) mlops ci post-report "$(REPORT_DIR)" --run-id "$$RUN_ID"

collect-outputs: install ## Hand-over: copy dvc.lock and the outputs it names into OUTPUTS_DIR
	$(RUN) mlops ci collect-outputs --out "$(OUTPUTS_DIR)"

publish-target: install ## publish.yml: the pull request train run RUN_ID trained, from the API (this repository's, open, at that commit)
	$(RUN) mlops ci publish-target --run-id "$$RUN_ID"

publish-outputs: install ## publish.yml: stage INCOMING into PR_DIR (at EXPECTED_HEAD), check, dvc push, commit to BRANCH
	$(RUN) mlops ci publish-outputs --incoming "$(INCOMING)" --repo "$(PR_DIR)" \
		--expect-head "$${EXPECTED_HEAD:-}"

retrain-outputs: install ## retrain.yml: hand over dvc.lock, its outputs and the drift report; changed=true|false
	$(RUN) mlops ci collect-outputs --out "$(OUTPUTS_DIR)" --changes \
		--extra reports/drift/drift.json --extra reports/drift/drift.md

retrain-pr: install ## Commit the retrained outputs (INCOMING, if set) to a new branch and open a pull request
	$(RUN) mlops ci open-pr $(if $(INCOMING),--incoming "$(INCOMING)") --report "$(REPORT_DIR)/report.md"

# ENV, IMAGE, DIGEST, MODEL_VERSION and RELEASE arrive from workflow inputs: passed to `mlops`
# from the environment ("$$NAME"), never through make, and `mlops` checks their shape.
deploy-pr: install ## deploy-bump on branch deploy/ENV, push it, open or update its pull request
	@if [ -n "$${RELEASE:-}" ]; then set -x; $(RUN) mlops deploy pr --env "$${ENV:-}" --release "$$RELEASE"; \
	else set -x; $(RUN) mlops deploy pr --env "$${ENV:-}" --image "$${IMAGE:-}" --digest "$${DIGEST:-}" \
		--model-version "$${MODEL_VERSION:-}"; fi

release-record: install ## In release.yml: write release/release.json (IMAGE, DIGEST, MODEL_VERSION pushed, or none)
	$(RUN) mlops deploy release-record --image "$${IMAGE:-}" --digest "$${DIGEST:-}" \
		--model-version "$${MODEL_VERSION:-}"

record-image: install ## In release.yml: tag registry version REGISTRY_VERSION with the pushed IMAGE, DIGEST, MODEL_VERSION
	$(RUN) mlops deploy record-image --version "$${REGISTRY_VERSION:-}" --image "$${IMAGE:-}" \
		--digest "$${DIGEST:-}" --model-version "$${MODEL_VERSION:-}"

schedule-note: ## In retrain.yml: on a run started by hand, note in the job summary how to re-enable the schedule
	.ci/schedule-note
