"""deploy.yml, executed with act on this host (see test_workflows.py for the set-up).

Everything in the job is real (make install, `mlops deploy pr`, git pushes to a bare origin,
an MLflow server whose registry versions record the released images, as release.yml's
`mlops deploy record-image` records them) but GitHub's REST API, the recording stand-in on
127.0.0.1 (tests/support/fake_github.py), Sigstore, and the release artifact. Keyless signing
and verification need Sigstore's public services: the cosign stand-in on the job's PATH
(act_stubs/bin/cosign) verifies only a signature its own `cosign sign` put in a ledger, for the
identity that signed. act cannot download another run's artifact, so the download-artifact stub
copies a record written beforehand by `mlops deploy release-record`, as release.yml writes it.

One origin and one API stand-in serve the whole module, because deploying is a sequence: a
first release opens the staging pull request, a second one while it is open rebuilds the
branch and updates it (and again after someone pushed to the branch: that commit is
discarded), the reviewer merges, production is promoted by hand, staging rolled back. Each run
reads what the ones before it left, as on GitHub. Then images the release did not ship (not
signed by main's release, not recorded, recorded with another model version) are refused
with nothing pushed or opened. A run takes about 6 s.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow.tracking import MlflowClient

from mlops_template.release import gitops, releases
from tests.support.act import STUBS, act, succeeded
from tests.support.fake_github import ApiCall, FakeGitHub
from tests.support.processes import VENV_BIN
from tests.support.project import copy_repo, sh

pytestmark = pytest.mark.slow

REPOSITORY = "acme/penguins"
WORKFLOW_TOKEN = "workflow-token-for-tests"
PR_TOKEN = "deploy-pr-token-for-tests"
IMAGE = "ghcr.io/acme/penguins"
PLACEHOLDER = "sha256:" + "0" * 64
FIRST = ("sha256:" + "1a" * 32, "1a1a1a1a1a1a")  # (digest, model version)
SECOND = ("sha256:" + "2b" * 32, "2b2b2b2b2b2b")
# Recorded on registry version 3, but signed only by release.yml on a branch.
UNSIGNED = ("sha256:" + "3c" * 32, "3c3c3c3c3c3c")
# Signed by main's release workflow, but recorded on no registry version.
FOREIGN = ("sha256:" + "4d" * 32, "4d4d4d4d4d4d")
MODEL = "deploy-workflow-test"  # params.yaml's registry.model_name in origin (a shared server)
SIGNER = f"{REPOSITORY}/.github/workflows/release.yml@refs/heads/main"  # GITHUB_WORKFLOW_REF
IDENTITY = f"https://github.com/{SIGNER}"
# The workflow's token, and DEPLOY_PR_TOKEN (environment deploy-pr) that opens the pull request.
BOTH_TOKENS = {"GITHUB_TOKEN": WORKFLOW_TOKEN, "DEPLOY_PR_TOKEN": PR_TOKEN}
RELEASE_RUN_ID = 4242
RUN_URL = f"https://github.com/{REPOSITORY}/actions/runs/77"
JOB = "[deploy/Open or update the deploy pull request]"
KUSTOMIZATION = "deploy/k8s/overlays/{env}/kustomization.yaml"
RELEASE = "deploy/k8s/overlays/{env}/release.yaml"
OPEN = ("POST", f"/repos/{REPOSITORY}/pulls")


def listing(env: str) -> tuple[str, str]:
    """The request for the open pull requests from this repository's deploy/<env>."""
    head = f"acme%3Adeploy%2F{env}"
    return ("GET", f"/repos/{REPOSITORY}/pulls?state=open&head={head}&per_page=100")


def short(digest: str) -> str:
    return digest[: len("sha256:") + 12]


@dataclass(frozen=True)
class Site:
    """The bare origin (main holds the template), GitHub's API, the MLflow registry and
    Sigstore's ledger, shared by the runs."""

    root: Path
    origin: Path
    api: FakeGitHub
    mlflow: str
    sigstore: Path

    def release(self, digest: str, model_version: str) -> str:
        """What release.yml leaves in the registry: a new version recording IMAGE@digest."""
        client = MlflowClient(tracking_uri=self.mlflow)
        run = client.create_run(client.get_experiment_by_name("deploy").experiment_id)
        source = f"runs:/{run.info.run_id}/model"
        version = str(client.create_model_version(MODEL, source, run.info.run_id).version)
        shipped = gitops.Release(IMAGE, digest, model_version)
        assert releases.record_image(client, MODEL, version, shipped)
        return version

    def sign(self, digest: str, ref: str = "refs/heads/main") -> None:
        """release.yml's `cosign sign` of IMAGE@digest, run by the workflow on `ref`."""
        signer = SIGNER.replace("@refs/heads/main", f"@{ref}")
        env = {
            "GITHUB_WORKFLOW_REF": signer,
            "GITHUB_SERVER_URL": "https://github.com",
            "ACT_STUB_RECORD": str(self.sigstore),
            "ACT_STUB_SIGSTORE": str(self.sigstore),
        }
        sh(self.root, str(STUBS / "bin" / "cosign"), "sign", "--yes", f"{IMAGE}@{digest}", env=env)

    def branches(self) -> dict[str, str]:
        """origin's deploy/* branches: name -> commit."""
        refs = sh(
            self.origin,
            "git",
            "for-each-ref",
            "--format=%(refname:short) %(objectname)",
            "refs/heads/deploy",
        )
        return dict(line.split() for line in refs.stdout.splitlines())

    def rev(self, revision: str) -> str:
        return sh(self.origin, "git", "rev-parse", revision).stdout.strip()

    def diff(self, branch: str) -> str:
        """`git diff main <branch>` in origin, with full blob ids (no abbreviation to match)."""
        return sh(self.origin, "git", "diff", "--full-index", "main", branch).stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, mlflow_server: str) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("deploy")
    origin = root / "origin.git"
    sh(root, "git", "init", "-q", "--bare", "-b", "main", str(origin))
    template = copy_repo(root / "template")
    params = yaml.safe_load((template / "params.yaml").read_text())
    params["registry"]["model_name"] = MODEL
    (template / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(template, "git", "commit", "-q", "-am", "The registry's model name for these tests")
    sh(template, "git", "remote", "add", "origin", str(origin))
    sh(template, "git", "push", "-q", "origin", "main")
    client = MlflowClient(tracking_uri=mlflow_server)
    client.create_registered_model(MODEL)
    client.create_experiment("deploy")
    sigstore = root / "sigstore"
    sigstore.mkdir()
    with FakeGitHub() as api:
        site = Site(root, origin, api, mlflow_server, sigstore)
        # What the releases left: FIRST and SECOND shipped (recorded and signed by main's
        # release), UNSIGNED recorded but signed by a branch's, FOREIGN signed but unrecorded.
        assert [site.release(*values) for values in (FIRST, SECOND, UNSIGNED)] == ["1", "2", "3"]
        for digest in (FIRST[0], SECOND[0], FOREIGN[0]):
            site.sign(digest)
        site.sign(UNSIGNED[0], ref="refs/heads/feature")
        yield site


@dataclass(frozen=True)
class Run:
    result: subprocess.CompletedProcess[str]
    calls: list[ApiCall]  # this run's requests only
    before: dict[str, str]  # origin's deploy/* branches before the run
    after: dict[str, str]
    artifacts: Path

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr

    def requests(self) -> list[tuple[str, str]]:
        return [(call.method, call.path) for call in self.calls]


def release_finished(
    conclusion: str = "success",
    event: str = "push",
    branch: str = "main",
    path: str = ".github/workflows/release.yml",
) -> dict[str, Any]:
    """The workflow_run event GitHub sends deploy.yml when a release run completes."""
    run = {
        "id": RELEASE_RUN_ID,
        "name": "release",
        "path": path,
        "conclusion": conclusion,
        "event": event,
        "head_branch": branch,
        "head_sha": "f" * 40,
    }
    return {"action": "completed", "workflow_run": run}


def dispatched(environment: str, image: str, digest: str, model_version: str) -> dict[str, Any]:
    return {
        "inputs": {
            "environment": environment,
            "image": image,
            "digest": digest,
            "model_version": model_version,
        }
    }


def run_deploy(
    site: Site,
    name: str,
    event: str,
    payload: dict[str, Any],
    pushed: tuple[str, str] | None = None,
    secrets: dict[str, str] | None = None,
) -> Run:
    """deploy.yml in a fresh clone of origin; for a workflow_run, the release's record says
    `pushed` (digest, model version) of IMAGE, or that nothing was pushed."""
    sh(site.root, "git", "clone", "-q", str(site.origin), name)
    artifacts = site.root / f"{name}-artifacts"
    artifacts.mkdir()
    if event == "workflow_run":
        values = (
            []
            if pushed is None
            else ["--image", IMAGE, "--digest", pushed[0], "--model-version", pushed[1]]
        )
        out = artifacts / "release" / "release.json"
        sh(
            site.root,
            str(VENV_BIN / "mlops"),
            "deploy",
            "release-record",
            "--out",
            str(out),
            *values,
        )
    before, first_call = site.branches(), len(site.api.calls)
    result = act(
        site.root / name,
        event,
        "deploy.yml",
        {**payload, "repository": {"full_name": REPOSITORY}},
        # The registry's address (a read-only user on GitHub: MLFLOW_READ_*).
        secrets={
            **(BOTH_TOKENS if secrets is None else secrets),
            "MLFLOW_TRACKING_URI": site.mlflow,
        },
        env={
            "ACT_STUB_ARTIFACTS": str(artifacts),
            "ACT_STUB_RECORD": str(artifacts),
            "ACT_STUB_SIGSTORE": str(site.sigstore),
            "GITHUB_REPOSITORY": REPOSITORY,
            "GITHUB_API_URL": site.api.url,
            "GITHUB_RUN_ID": "77",
        },
    )
    return Run(result, site.api.calls[first_call:], before, site.branches(), artifacts)


def expected_diff(
    site: Site, env: str, branch: str, old: tuple[str, str, str], new: tuple[str, str, str]
) -> str:
    """`git diff main <branch>` when the overlay's image (repository, digest) and model
    version go from `old` to `new`: those three lines, with the overlays' own context."""
    kustomization, release = KUSTOMIZATION.format(env=env), RELEASE.format(env=env)
    k_ids = f"{site.rev(f'main:{kustomization}')}..{site.rev(f'{branch}:{kustomization}')}"
    r_ids = f"{site.rev(f'main:{release}')}..{site.rev(f'{branch}:{release}')}"
    if old[0] == new[0]:  # the same repository: only the digest line changes
        images = (
            "@@ -18,7 +18,7 @@ labels:\n"
            " images:\n"
            "   - name: mlops-template\n"
            f"     newName: {new[0]}\n"
            f"-    digest: {old[1]}\n"
            f"+    digest: {new[1]}\n"
        )
    else:
        images = (
            "@@ -17,8 +17,8 @@ labels:\n"
            " # rather than run something unreviewed. Change it together with release.yaml's"
            " model version.\n"
            " images:\n"
            "   - name: mlops-template\n"
            f"-    newName: {old[0]}\n"
            f"-    digest: {old[1]}\n"
            f"+    newName: {new[0]}\n"
            f"+    digest: {new[1]}\n"
        )
    return (
        f"diff --git a/{kustomization} b/{kustomization}\n"
        f"index {k_ids} 100644\n"
        f"--- a/{kustomization}\n"
        f"+++ b/{kustomization}\n"
        f"{images}"
        " patches:\n"
        "   - path: release.yaml\n"
        "   - target:\n"
        f"diff --git a/{release} b/{release}\n"
        f"index {r_ids} 100644\n"
        f"--- a/{release}\n"
        f"+++ b/{release}\n"
        "@@ -11,4 +11,4 @@ spec:\n"
        "   template:\n"
        "     metadata:\n"
        "       annotations:\n"
        f'-        mlops-template/model-version: "{old[2]}"\n'
        f'+        mlops-template/model-version: "{new[2]}"\n'
    )


UNRELEASED = ("ghcr.io/your-org/mlops-template", PLACEHOLDER, "unreleased")


# --- staging, after each release on main ------------------------------------------------------


@pytest.fixture(scope="module")
def first(site: Site) -> Run:
    return run_deploy(site, "first-release", "workflow_run", release_finished(), FIRST)


def test_a_release_on_main_opens_the_staging_pull_request(first: Run) -> None:
    output = succeeded(first.result)
    # The record came from the run that finished, through download-artifact.
    assert (first.artifacts / "download-run-id").read_text().strip() == str(RELEASE_RUN_ID)
    assert first.requests() == [listing("staging"), OPEN]
    opened = first.calls[-1]
    assert opened.headers["Authorization"] == f"Bearer {PR_TOKEN}"  # DEPLOY_PR_TOKEN, set
    assert opened.body["head"] == "deploy/staging"
    assert opened.body["base"] == "main"
    assert opened.body["title"] == f"Deploy model {FIRST[1]} to staging ({short(FIRST[0])})"
    body = opened.body["body"]
    assert f"- image `{IMAGE}@{FIRST[0]}`\n- model version `{FIRST[1]}`" in body
    assert "It serves nothing released yet (the placeholder digest) now." in body
    assert RUN_URL in body
    assert f"{JOB}   | deploy-pr: created pull request #8" in output
    # Checked first: the registry's record of the image, and main's release's signature.
    assert (
        f"deploy-pr: {IMAGE}@{FIRST[0]} (model {FIRST[1]}) is the image recorded on registry"
        f" version 1 of {MODEL}, signed by {IDENTITY} (verified)" in output
    )
    assert (first.artifacts / "login-registry").read_text().strip() == "ghcr.io"


def test_the_staging_branch_is_main_plus_the_overlay_values(site: Site, first: Run) -> None:
    assert first.before == {}
    assert list(first.after) == ["deploy/staging"]
    assert site.rev("deploy/staging^") == site.rev("main")  # one commit on main
    head = sh(site.origin, "git", "log", "-1", "--format=%an|%s", "deploy/staging").stdout
    assert head == f"github-actions[bot]|Deploy model {FIRST[1]} to staging ({short(FIRST[0])})\n"
    assert site.diff("deploy/staging") == expected_diff(
        site, "staging", "deploy/staging", UNRELEASED, (IMAGE, *FIRST)
    )


@pytest.fixture(scope="module")
def second(site: Site, first: Run) -> Run:
    """Main moves on while #8 is open, then the next release finishes."""
    clone = site.root / "first-release"
    sh(clone, "git", "switch", "-q", "main")
    (clone / "NOTES.md").write_text("Unrelated work merged meanwhile.\n")
    sh(clone, "git", "add", "NOTES.md")
    sh(clone, "git", "commit", "-q", "-m", "unrelated")
    sh(clone, "git", "push", "-q", "origin", "main")
    return run_deploy(site, "second-release", "workflow_run", release_finished(), SECOND)


def test_a_second_release_updates_the_open_pull_request(site: Site, second: Run) -> None:
    output = succeeded(second.result)
    assert second.requests() == [listing("staging"), ("PATCH", f"/repos/{REPOSITORY}/pulls/8")]
    assert second.calls[-1].headers["Authorization"] == f"Bearer {PR_TOKEN}"
    assert [pr["number"] for pr in site.api.pulls.values()] == [8]  # not a second one
    pr = site.api.pulls[8]
    assert pr["title"] == f"Deploy model {SECOND[1]} to staging ({short(SECOND[0])})"
    assert f"- image `{IMAGE}@{SECOND[0]}`" in pr["body"]
    assert FIRST[0] not in pr["body"]  # the superseded release is gone, main never ran it
    assert f"{JOB}   | deploy-pr: updated pull request #8" in output


def test_the_second_release_rebuilds_the_branch_from_main(site: Site, second: Run) -> None:
    assert list(second.after) == ["deploy/staging"]
    assert second.after["deploy/staging"] != second.before["deploy/staging"]  # forced
    assert site.rev("deploy/staging^") == site.rev("main")  # the moved main, not the old base
    assert site.diff("deploy/staging") == expected_diff(
        site, "staging", "deploy/staging", UNRELEASED, (IMAGE, *SECOND)
    )


@pytest.fixture(scope="module")
def tampered(site: Site, second: Run) -> tuple[Run, str]:
    """Someone pushes a commit of their own to deploy/staging while #8 is open (its
    description now describes a branch that is no longer there); then the release runs again."""
    clone = site.root / "tamperer"
    sh(site.root, "git", "clone", "-q", "--branch", "deploy/staging", str(site.origin), clone.name)
    overlay = clone / KUSTOMIZATION.format(env="staging")
    overlay.write_text(overlay.read_text() + "# replicas: 0\n")
    (clone / "deploy" / "k8s" / "overlays" / "staging" / "extra.yaml").write_text("kind: Pod\n")
    sh(clone, "git", "add", "-A")
    sh(clone, "git", "commit", "-q", "-m", "tweak")
    sh(clone, "git", "push", "-q", "origin", "deploy/staging")
    foreign = sh(clone, "git", "rev-parse", "HEAD").stdout.strip()
    return run_deploy(site, "after-tampering", "workflow_run", release_finished(), SECOND), foreign


def test_a_commit_pushed_to_the_deploy_branch_is_discarded_and_named(
    site: Site, tampered: tuple[Run, str]
) -> None:
    run, foreign = tampered
    output = succeeded(run.result)
    assert run.before["deploy/staging"] == foreign
    assert run.requests() == [listing("staging"), ("PATCH", f"/repos/{REPOSITORY}/pulls/8")]
    # The branch is main's tip plus the bot's one commit again: the foreign one is gone.
    assert site.rev("deploy/staging^") == site.rev("main")
    assert sh(site.origin, "git", "branch", "--contains", foreign).stdout == ""
    assert site.diff("deploy/staging") == expected_diff(
        site, "staging", "deploy/staging", UNRELEASED, (IMAGE, *SECOND)
    )
    # ... and the pull request and the run say what was discarded.
    body = site.api.pulls[8]["body"]
    assert (
        "**deploy/staging was reset.** It held 1 commit(s) this workflow did not make"
        f" (`{foreign}`)" in body
    )
    assert f"deploy/staging held {foreign[:12]} by 'test <test@example.com>': 'tweak'" in output
    assert "::warning title=deploy/staging reset::deploy/staging held 1 commit(s)" in output


@pytest.fixture(scope="module")
def nothing_pushed(site: Site, tampered: tuple[Run, str]) -> Run:
    return run_deploy(site, "refused-release", "workflow_run", release_finished(), None)


def test_a_release_that_pushed_nothing_proposes_nothing(nothing_pushed: Run) -> None:
    output = succeeded(nothing_pushed.result)
    assert (
        f"{JOB}   | deploy-pr: release/release.json: the release pushed no image:"
        " nothing to deploy" in output
    )
    assert nothing_pushed.calls == []
    assert nothing_pushed.after == nothing_pushed.before


# --- by hand: a promotion, a rollback, hostile inputs ------------------------------------------


def merge(site: Site, number: int, branch: str) -> None:
    """The reviewer merges the pull request: main fast-forwards to its branch, it closes."""
    sh(site.origin, "git", "update-ref", "refs/heads/main", site.rev(branch), site.rev("main"))
    site.api.pulls[number]["state"] = "closed"


@pytest.fixture(scope="module")
def promotion(site: Site, nothing_pushed: Run) -> Run:
    """#8 is merged (staging serves SECOND); production gets staging's values, by hand, with
    no DEPLOY_PR_TOKEN set."""
    merge(site, 8, "deploy/staging")
    payload = dispatched("production", IMAGE, *SECOND)
    return run_deploy(
        site, "promotion", "workflow_dispatch", payload, secrets={"GITHUB_TOKEN": WORKFLOW_TOKEN}
    )


def test_a_promotion_opens_the_production_pull_request(site: Site, promotion: Run) -> None:
    output = succeeded(promotion.result)
    assert "Staging, from the release's record" not in output
    assert promotion.requests() == [listing("production"), OPEN]
    opened = promotion.calls[-1]
    assert opened.headers["Authorization"] == f"Bearer {WORKFLOW_TOKEN}"  # no DEPLOY_PR_TOKEN
    assert (opened.body["head"], opened.body["base"]) == ("deploy/production", "main")
    assert opened.body["title"] == f"Deploy model {SECOND[1]} to production ({short(SECOND[0])})"
    assert f"{JOB}   | deploy-pr: created pull request #9" in output
    assert set(promotion.after) == {"deploy/staging", "deploy/production"}
    assert promotion.after["deploy/staging"] == promotion.before["deploy/staging"]
    assert site.rev("deploy/production^") == site.rev("main")
    assert site.diff("deploy/production") == expected_diff(
        site, "production", "deploy/production", UNRELEASED, (IMAGE, *SECOND)
    )


@pytest.fixture(scope="module")
def rollback(site: Site, promotion: Run) -> Run:
    """Staging back to the first release, by hand: the merged #8 is closed, so a new one."""
    payload = dispatched("staging", IMAGE, *FIRST)
    return run_deploy(site, "rollback", "workflow_dispatch", payload)


def test_a_rollback_names_what_it_replaces_and_how_to_undo_it(site: Site, rollback: Run) -> None:
    output = succeeded(rollback.result)
    assert rollback.requests() == [listing("staging"), OPEN]
    opened = rollback.calls[-1]
    assert opened.body["title"] == f"Deploy model {FIRST[1]} to staging ({short(FIRST[0])})"
    body = opened.body["body"]
    assert f"- image `{IMAGE}@{FIRST[0]}`\n- model version `{FIRST[1]}`" in body
    assert f"It serves `{IMAGE}@{SECOND[0]}`, model `{SECOND[1]}` now." in body
    assert (
        f"make deploy-pr ENV=staging IMAGE={IMAGE} DIGEST={SECOND[0]} MODEL_VERSION={SECOND[1]}"
        in body
    )
    assert f"{JOB}   | deploy-pr: created pull request #10" in output
    assert site.rev("deploy/staging^") == site.rev("main")  # main now serves SECOND
    assert site.diff("deploy/staging") == expected_diff(
        site, "staging", "deploy/staging", (IMAGE, *SECOND), (IMAGE, *FIRST)
    )


HOSTILE = {
    "digest": (IMAGE, "sha256:$(id)", SECOND[1], "digest 'sha256:$(id)' refused"),
    "image": ("ghcr.io/acme/x\n../../etc", *SECOND, r"image 'ghcr.io/acme/x\n../../etc' refused"),
}


@pytest.mark.parametrize("field", sorted(HOSTILE))
def test_a_hostile_input_fails_the_job_and_nothing_is_pushed(
    site: Site, rollback: Run, field: str
) -> None:
    """After the sequence, so that there are branches and pull requests to leave alone."""
    image, digest, model_version, refusal = HOSTILE[field]
    payload = dispatched("production", image, digest, model_version)
    run = run_deploy(site, f"hostile-{field}", "workflow_dispatch", payload)
    assert run.result.returncode != 0
    assert "Job failed" in run.output
    assert f"error: {refusal}" in run.output
    assert not re.search(r"uid=\d+\(", run.output)  # $(id) was never run
    assert run.calls == []
    assert run.after == run.before


NOT_SHIPPED = {
    "unsigned": (
        UNSIGNED,
        f"error: {IMAGE}@{UNSIGNED[0]} has no signature by {IDENTITY} (issuer"
        " https://token.actions.githubusercontent.com): cosign verify refused (Error: no"
        " matching signatures",
    ),
    "foreign": (
        FOREIGN,
        f"error: digest {FOREIGN[0]} ({IMAGE}) is recorded on no version of the registered"
        f" model {MODEL} (3 version(s) read)",
    ),
    "other-model-version": (
        (FIRST[0], SECOND[1]),
        f"error: digest {FIRST[0]} is recorded on registry version 1 of {MODEL} with model"
        f" version {FIRST[1]}, not {SECOND[1]}",
    ),
}


@pytest.mark.parametrize("case", sorted(NOT_SHIPPED))
def test_an_image_the_release_did_not_ship_is_refused_and_nothing_is_pushed(
    site: Site, rollback: Run, case: str
) -> None:
    """By hand, for production: each fails one check (FOREIGN is signed by main's release,
    UNSIGNED is recorded; either check alone refuses)."""
    (digest, model_version), refusal = NOT_SHIPPED[case]
    payload = dispatched("production", IMAGE, digest, model_version)
    run = run_deploy(site, f"not-shipped-{case}", "workflow_dispatch", payload)
    assert run.result.returncode != 0
    assert "Job failed" in run.output
    assert refusal in run.output
    assert "nothing was proposed" in run.output
    assert run.calls == []
    assert run.after == run.before


def test_a_release_record_naming_an_unsigned_image_proposes_nothing(
    site: Site, rollback: Run
) -> None:
    """The record is main's release's own artifact; it is verified all the same."""
    run = run_deploy(site, "record-unsigned", "workflow_run", release_finished(), UNSIGNED)
    assert run.result.returncode != 0
    assert f"error: {IMAGE}@{UNSIGNED[0]} has no signature by {IDENTITY}" in run.output
    assert run.calls == []
    assert run.after == run.before


# --- releases that must not deploy -------------------------------------------------------------


NOT_DEPLOYED = {
    "failed": release_finished(conclusion="failure"),
    "not-main": release_finished(branch="feature"),
    "pull-request": release_finished(event="pull_request"),
    # Another workflow named `release` (any writer can add one on a branch and run it on main's
    # name only if merged; the check costs nothing): only release.yml's runs deploy.
    "other-workflow": release_finished(path=".github/workflows/other.yml"),
}


@pytest.mark.parametrize("case", sorted(NOT_DEPLOYED))
def test_the_job_does_not_run_for_a_release_that_must_not_deploy(
    site: Site, rollback: Run, case: str
) -> None:
    """A record that says it pushed FIRST is there: the job must not even read it."""
    run = run_deploy(site, f"skipped-{case}", "workflow_run", NOT_DEPLOYED[case], FIRST)
    assert run.result.returncode == 0, run.output[-6000:]
    # act logs nothing of a job whose `if:` is false (with -v: "evaluated to 'false'").
    assert JOB not in run.output
    assert not (run.artifacts / "download-run-id").exists()
    assert run.calls == []
    assert run.after == run.before
