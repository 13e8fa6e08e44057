"""The GitOps deploy: `mlops deploy bump` sets an overlay's image, digest and model version
and nothing else (comments and every other byte kept), is idempotent and refuses hostile
values; the bumped overlay still passes test_k8s.py's checks; `mlops deploy pr` pushes
deploy/<env> and opens or updates its pull request (against the GitHub stand-in; the images it
proposes are recorded in an MLflow registry on SQLite and signed in the cosign stand-in's
ledger, as release.yml leaves them), discarding and naming commits that are not its own;
deploy.yml and release.yml hand the release over as tests/unit/cli/test_ci.py expects of
privileged jobs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_template.config import load_params
from mlops_template.release import gitops, releases
from tests.conftest import REPO_ROOT
from tests.repo import test_k8s
from tests.support.act import STUBS
from tests.support.fake_github import REPOSITORY, FakeGitHub, pull_request
from tests.support.overlays import read_overlay

MLOPS = Path(sys.executable).with_name("mlops")
IMAGE = "ghcr.io/acme/penguins"
DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32
VERSION = "0123456789ab"
OTHER_VERSION = "ba9876543210"
WORKFLOWS = REPO_ROOT / ".github" / "workflows"
MODEL_NAME = load_params(REPO_ROOT / "params.yaml").registry.model_name


def mlops(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MLOPS), *args], cwd=cwd, env={**os.environ, **env},
        capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.fixture
def k8s(tmp_path: Path) -> Path:
    """A copy of deploy/k8s (base and overlays): the overlays are edited, the base rendered."""
    shutil.copytree(test_k8s.K8S, tmp_path / "k8s")
    return tmp_path / "k8s"


def files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}  # fmt: skip


def bump_cli(k8s: Path, env: str = "staging", image: str = IMAGE, digest: str = DIGEST,
             version: str = VERSION) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return mlops(
        "deploy", "bump", "--env", env, "--image", image, "--digest", digest,
        "--model-version", version, "--overlays", str(k8s / "overlays"),
    )  # fmt: skip


# --- the overlay edit ----------------------------------------------------------------------


def test_the_bump_sets_the_three_values_and_keeps_every_other_byte(k8s: Path) -> None:
    before = files(k8s)
    result = bump_cli(k8s)
    assert result.returncode == 0, result.stderr
    after = files(k8s)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"overlays/staging/kustomization.yaml", "overlays/staging/release.yaml"}
    expected_lines = {
        "overlays/staging/kustomization.yaml": {
            "    newName: ghcr.io/your-org/mlops-template": f"    newName: {IMAGE}",
            f"    digest: {gitops.PLACEHOLDER_DIGEST}": f"    digest: {DIGEST}",
        },
        "overlays/staging/release.yaml": {
            '        mlops-template/model-version: "unreleased"':
                f'        mlops-template/model-version: "{VERSION}"',  # quoted: a string
        },
    }  # fmt: skip
    for name, replaced in expected_lines.items():
        old_lines = before[name].decode().split("\n")
        new_lines = after[name].decode().split("\n")
        assert len(old_lines) == len(new_lines)
        for old, new in zip(old_lines, new_lines, strict=True):
            assert new == replaced.get(old, old)  # comments and all else, byte for byte
        assert sum(old != new for old, new in zip(old_lines, new_lines, strict=True)) == len(
            replaced)  # fmt: skip
    kustomization = yaml.safe_load(after["overlays/staging/kustomization.yaml"])
    assert kustomization["images"] == [{"name": "mlops-template", "newName": IMAGE,
                                        "digest": DIGEST}]  # fmt: skip
    assert f"staging: ghcr.io/your-org/mlops-template@{gitops.PLACEHOLDER_DIGEST}" in result.stdout
    assert f"-> {IMAGE}@{DIGEST} (model {VERSION})" in result.stdout
    assert f"+    digest: {DIGEST}" in result.stdout  # the diff
    assert f'+        mlops-template/model-version: "{VERSION}"' in result.stdout


def test_the_same_values_again_change_nothing_and_say_so(k8s: Path) -> None:
    assert bump_cli(k8s).returncode == 0
    before = files(k8s)
    again = bump_cli(k8s)
    assert again.returncode == 0, again.stderr
    assert "nothing changed" in again.stdout
    assert files(k8s) == before
    other = bump_cli(k8s, digest=OTHER_DIGEST, version=OTHER_VERSION)  # then a new release
    assert other.returncode == 0
    assert f"{IMAGE}@{DIGEST} (model {VERSION}) -> {IMAGE}@{OTHER_DIGEST}" in other.stdout


def test_production_is_bumped_alone(k8s: Path) -> None:
    before = files(k8s)
    assert bump_cli(k8s, env="production").returncode == 0
    after = files(k8s)
    assert {name for name in before if before[name] != after[name]} == {
        "overlays/production/kustomization.yaml", "overlays/production/release.yaml"}  # fmt: skip


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("env", "prod", "environment 'prod' refused"),
        ("env", "../staging", "refused"),
        ("image", "ghcr.io/acme/penguins:latest", "image"),
        ("image", "ghcr.io/acme/penguins@" + DIGEST, "image"),
        ("image", "ghcr.io/Acme/penguins", "lowercase repository name"),
        ("image", "ghcr.io/acme/penguins\nmalicious: true", "image"),
        ("image", "ghcr.io/acme/$(touch pwned)", "image"),
        ("image", "ghcr.io/acme/penguins # comment", "image"),
        ("image", "-ghcr.io/acme", "image"),
        ("image", "", "image"),
        ("digest", "sha256:" + "AB" * 32, "digest"),
        ("digest", "sha256:" + "ab" * 31, "digest"),
        ("digest", DIGEST + "\nimages: []", "digest"),
        ("digest", "sha512:" + "ab" * 64, "digest"),
        ("digest", gitops.PLACEHOLDER_DIGEST, "placeholder"),
        ("version", "unreleased", "model version"),
        ("version", VERSION + "c", "model version"),
        ("version", "0123456789AB", "model version"),
        ("version", VERSION[:11] + "`", "model version"),
        ("version", VERSION + "\n", "model version"),
    ],
)
def test_hostile_or_malformed_values_are_refused_before_any_write(
    k8s: Path, option: str, value: str, message: str
) -> None:
    before = files(k8s)
    result = bump_cli(k8s, **{option: value})
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert files(k8s) == before
    assert not (k8s / "pwned").exists()


def test_an_overlay_laid_out_otherwise_is_refused_not_guessed(k8s: Path) -> None:
    kustomization = k8s / "overlays" / "staging" / "kustomization.yaml"
    text = kustomization.read_text()
    kustomization.write_text(text.replace("    digest: sha256", "    digest:  sha256", 1)
                             + "# digest: sha256:x\n")  # fmt: skip
    before = files(k8s)
    result = bump_cli(k8s)
    assert result.returncode == 1
    assert "expected one `digest:` line" in result.stderr
    assert files(k8s) == before


def test_the_makefile_passes_the_values_as_data(tmp_path: Path) -> None:
    """ENV, IMAGE, DIGEST, MODEL_VERSION and RELEASE come from workflow inputs: make must
    not expand them and the shell must not run them."""
    hostile = f"x$(shell touch {tmp_path}/make)`touch {tmp_path}/tick`$(touch {tmp_path}/dollar)"
    env = {**os.environ, "ENV": hostile, "IMAGE": hostile, "DIGEST": hostile,
           "MODEL_VERSION": hostile}  # fmt: skip
    overrides = ["UV=/bin/true", "RUN=echo"]
    release = {"RELEASE": hostile}
    for target, extra in (("deploy-bump", {}), ("deploy-pr", {}), ("deploy-pr", release),
                          ("release-record", {})):  # fmt: skip
        result = subprocess.run(
            ["make", "--no-print-directory", "-C", str(REPO_ROOT), target, *overrides],
            env={**env, **extra}, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert f"--digest {hostile}" in result.stdout or f"--release {hostile}" in result.stdout
    assert sorted(path.name for path in tmp_path.iterdir()) == []


# --- the bumped overlay still passes the manifests' checks ----------------------------------


def test_a_bumped_overlay_renders_and_passes_the_k8s_checks(k8s: Path) -> None:
    for env in gitops.ENVIRONMENTS:
        assert bump_cli(k8s, env=env).returncode == 0
        text = test_k8s.render(k8s / "overlays" / env)
        objects = list(yaml.safe_load_all(text))
        rendered = (env, text, objects)
        test_k8s.test_validates_against_the_kubernetes_schemas_strictly(rendered)
        test_k8s.test_pods_meet_the_restricted_pod_security_standard(rendered)
        test_k8s.test_the_image_is_pinned_by_digest_with_a_model_version(rendered)
        test_k8s.test_no_service_account_token_in_the_pods(rendered)
        spec = test_k8s.pod_spec(objects)
        assert {c["image"] for c in spec["containers"] + spec["initContainers"]} == {
            f"{IMAGE}@{DIGEST}"}  # fmt: skip
        template = test_k8s.the(objects, "Deployment")["spec"]["template"]
        assert template["metadata"]["annotations"][gitops.ANNOTATION] == VERSION


@pytest.mark.parametrize("version", ["123456789012", "012345678901"])
def test_an_all_digit_model_version_stays_a_string(k8s: Path, version: str) -> None:
    """About 1 release in 280 has 12 decimal digits: unquoted, YAML reads 123456789012 as a
    number (the parse-back check refused it) and kustomize renders 012345678901 as the
    number 12345678901, which no annotation may be. Written quoted, it is the string."""
    result = bump_cli(k8s, version=version)
    assert result.returncode == 0, result.stderr
    release = k8s / "overlays" / "staging" / "release.yaml"
    assert f'        mlops-template/model-version: "{version}"\n' in release.read_text()
    assert read_overlay(k8s / "overlays", "staging").model_version == version
    again = bump_cli(k8s, version=version)
    assert again.returncode == 0, again.stderr
    assert "nothing changed" in again.stdout
    text = test_k8s.render(k8s / "overlays" / "staging")
    objects = list(yaml.safe_load_all(text))
    test_k8s.test_validates_against_the_kubernetes_schemas_strictly(("staging", text, objects))
    test_k8s.test_the_image_is_pinned_by_digest_with_a_model_version(("staging", text, objects))
    template = test_k8s.the(objects, "Deployment")["spec"]["template"]
    assert template["metadata"]["annotations"][gitops.ANNOTATION] == version  # the string
    other = bump_cli(k8s, digest=OTHER_DIGEST, version=OTHER_VERSION)  # and from it, onwards
    assert other.returncode == 0, other.stderr
    assert f"(model {version}) -> {IMAGE}@{OTHER_DIGEST} (model {OTHER_VERSION})" in other.stdout


@pytest.mark.parametrize(
    "written", ["0123456789ab", "123456789012", "'0123456789ab'", "unreleased"]
)
def test_an_overlay_with_the_version_unquoted_still_reads_and_bumps(
    k8s: Path, written: str
) -> None:
    """Overlays committed before the quotes (a fork's) hold the value bare."""
    release = k8s / "overlays" / "staging" / "release.yaml"
    text = release.read_text()
    line = f'        {gitops.ANNOTATION}: "unreleased"\n'
    assert text.endswith(line)
    release.write_text(text.replace(line, f"        {gitops.ANNOTATION}: {written}\n"))
    assert read_overlay(k8s / "overlays", "staging").model_version == written.strip("'")
    result = bump_cli(k8s, version=OTHER_VERSION)
    assert result.returncode == 0, result.stderr
    assert release.read_text() == text.replace(
        line, f'        {gitops.ANNOTATION}: "{OTHER_VERSION}"\n'
    )


# --- the release record ----------------------------------------------------------------------


def test_the_release_record_holds_the_pushed_values_or_none(tmp_path: Path) -> None:
    out = tmp_path / "release" / "release.json"
    result = mlops("deploy", "release-record", "--out", str(out), "--image", IMAGE,
                   "--digest", DIGEST, "--model-version", VERSION)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text()) == {"pushed": True, "image": IMAGE, "digest": DIGEST,
                                           "model_version": VERSION}  # fmt: skip
    assert mlops("deploy", "release-record", "--out", str(out)).returncode == 0
    assert json.loads(out.read_text()) == {"pushed": False}
    refused = mlops("deploy", "release-record", "--out", str(out), "--image", IMAGE,
                    "--digest", "x", "--model-version", VERSION)  # fmt: skip
    assert refused.returncode == 1
    assert json.loads(out.read_text()) == {"pushed": False}


# --- the deploy pull request -------------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


@pytest.fixture
def checkout(tmp_path: Path) -> tuple[Path, Path]:
    """main's checkout with deploy/k8s, and its origin."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    work = tmp_path / "work"
    shutil.copytree(test_k8s.K8S, work / "deploy" / "k8s")
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "deploy")
    git(work, "commit", "-qm", "main")
    git(work, "remote", "add", "origin", str(origin))
    git(work, "push", "-q", "origin", "main")
    return work, origin


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What release.yml leaves for (IMAGE, DIGEST, VERSION) and (IMAGE, OTHER_DIGEST,
    OTHER_VERSION): registry versions 1 and 2 recording them (MLflow on SQLite), and their
    signatures by main's release workflow (the cosign stand-in's ledger). The environment in
    which `mlops deploy pr` finds both."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("shipped")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    name = MODEL_NAME
    client.create_registered_model(name)
    run = client.create_run(client.create_experiment("release"))
    env = {"MLFLOW_TRACKING_URI": uri, "ACT_STUB_SIGSTORE": str(root),
           "PATH": f"{STUBS / 'bin'}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    for digest, model_version in ((DIGEST, VERSION), (OTHER_DIGEST, OTHER_VERSION)):
        version = client.create_model_version(name, f"runs:/{run.info.run_id}/m", run.info.run_id)
        releases.record_image(client, name, str(version.version),
                              gitops.Release(IMAGE, digest, model_version))  # fmt: skip
        subprocess.run(
            [STUBS / "bin" / "cosign", "sign", "--yes", f"{IMAGE}@{digest}"], check=True,
            env={**env, "ACT_STUB_RECORD": str(root), "GITHUB_WORKFLOW_REF":
                 f"{REPOSITORY}/.github/workflows/release.yml@refs/heads/main"},
        )  # fmt: skip
    return env


@pytest.fixture
def api(shipped: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> FakeGitHub:
    for key, value in shipped.items():
        monkeypatch.setenv(key, value)
    with FakeGitHub() as fake:
        yield fake


def deploy_pr(
    api: FakeGitHub, work: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return mlops(
        "deploy", "pr", "--env", "staging", "--params", str(REPO_ROOT / "params.yaml"), *args,
        cwd=work,
        **{"GITHUB_API_URL": api.url, "GITHUB_REPOSITORY": REPOSITORY,
           "GITHUB_SERVER_URL": "https://github.com", "GITHUB_RUN_ID": "77",
           "GITHUB_TOKEN": "workflow-token", "GITHUB_STEP_SUMMARY": "", "GITHUB_OUTPUT": "",
           "DEPLOY_PR_TOKEN": "", **env},
    )  # fmt: skip


def values(image: str = IMAGE, digest: str = DIGEST, version: str = VERSION) -> list[str]:
    return ["--image", image, "--digest", digest, "--model-version", version]


def test_deploy_pr_pushes_the_branch_and_opens_the_pull_request(
    api: FakeGitHub, checkout: tuple[Path, Path]
) -> None:
    work, origin = checkout
    result = deploy_pr(api, work, *values(), DEPLOY_PR_TOKEN="pr-token")
    assert result.returncode == 0, result.stderr
    assert api.requests() == [
        ("GET", f"/repos/{REPOSITORY}/pulls?state=open&head=acme%3Adeploy%2Fstaging&per_page=100"),
        ("POST", f"/repos/{REPOSITORY}/pulls"),
    ]
    opened = api.calls[-1]
    assert opened.headers["Authorization"] == "Bearer pr-token"
    assert opened.body["head"] == "deploy/staging"
    assert opened.body["base"] == "main"
    assert opened.body["title"] == f"Deploy model {VERSION} to staging (sha256:{'ab' * 6})"
    body = opened.body["body"]
    assert f"image `{IMAGE}@{DIGEST}`" in body
    assert "nothing released yet" in body
    assert "## Roll back" in body
    assert "https://github.com/acme/penguins/actions/runs/77" in body
    changed = git(origin, "diff", "--name-only", "main", "deploy/staging").split()
    assert changed == ["deploy/k8s/overlays/staging/kustomization.yaml",
                       "deploy/k8s/overlays/staging/release.yaml"]  # fmt: skip
    assert git(origin, "rev-parse", "deploy/staging^") == git(origin, "rev-parse", "main")
    assert "created pull request #8" in result.stdout
    assert "**deploy/staging was reset.**" not in body


def test_a_commit_claiming_the_bot_but_touching_other_files_is_discarded_and_named(
    api: FakeGitHub, checkout: tuple[Path, Path], tmp_path: Path
) -> None:
    """A commit on deploy/staging that names the bot as its author (git takes any name) but
    changes a file outside the overlay's two: not the workflow's own. The branch is rebuilt
    from main and the pull request names the commit it discarded."""
    from mlops_template.io.actions import BOT_EMAIL, BOT_NAME

    work, origin = checkout
    api.pulls[5] = pull_request(5, "deploy/staging")
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(origin), str(other))
    (other / "deploy" / "k8s" / "overlays" / "staging" / "extra.yaml").write_text("kind: Pod\n")
    git(other, "add", "-A")
    # As the author and committer (the environment's GIT_AUTHOR_* would win over -c user.*).
    identity = {
        "GIT_AUTHOR_NAME": BOT_NAME,
        "GIT_AUTHOR_EMAIL": BOT_EMAIL,
        "GIT_COMMITTER_NAME": BOT_NAME,
        "GIT_COMMITTER_EMAIL": BOT_EMAIL,
    }
    subprocess.run(
        ["git", "commit", "-qm", "Deploy model x to staging"],
        cwd=other, check=True, env={**os.environ, **identity},
    )  # fmt: skip
    git(other, "push", "-q", "origin", "HEAD:refs/heads/deploy/staging")
    foreign = git(other, "rev-parse", "HEAD").strip()
    result = deploy_pr(api, work, *values())
    assert result.returncode == 0, result.stderr
    assert f"deploy/staging held {foreign[:12]} by 'github-actions[bot] <" in result.stdout
    assert f"It held 1 commit(s) this workflow did not make (`{foreign}`)" in api.pulls[5]["body"]
    changed = git(origin, "diff", "--name-only", "main", "deploy/staging").split()
    assert changed == ["deploy/k8s/overlays/staging/kustomization.yaml",
                       "deploy/k8s/overlays/staging/release.yaml"]  # fmt: skip
    # The bot's own commit from that run is not named the next time: the branch is its own.
    git(work, "switch", "-q", "main")  # as a fresh checkout of main, the next run
    again = deploy_pr(api, work, *values(digest=OTHER_DIGEST, version=OTHER_VERSION))
    assert again.returncode == 0, again.stderr
    assert "was reset" not in api.pulls[5]["body"]


def test_deploy_pr_refuses_an_image_the_registry_did_not_record(
    api: FakeGitHub, checkout: tuple[Path, Path]
) -> None:
    """Signed or not, a digest no registry version records is not proposed; nor is a recorded
    digest with another model version."""
    work, origin = checkout
    foreign = "sha256:" + "ef" * 32
    for args, message in (
        (values(digest=foreign), f"digest {foreign} ({IMAGE}) is recorded on no version"),
        (values(version=OTHER_VERSION),
         f"is recorded on registry version 1 of {MODEL_NAME} with model version {VERSION},"
         f" not {OTHER_VERSION}"),
        (values(image="ghcr.io/eve/penguins"),
         f"with repository {IMAGE}, not ghcr.io/eve/penguins"),
    ):  # fmt: skip
        result = deploy_pr(api, work, *args)
        assert result.returncode == 1
        assert message in result.stderr
        assert "nothing was proposed" in result.stderr
        assert api.calls == []
        assert "deploy/staging" not in git(origin, "branch", "--list")
        assert git(work, "status", "--porcelain", "--", "deploy") == ""


def test_deploy_pr_without_a_registry_or_cosign_is_refused(
    api: FakeGitHub, checkout: tuple[Path, Path]
) -> None:
    work, origin = checkout
    no_registry = deploy_pr(api, work, *values(), MLFLOW_TRACKING_URI="")
    assert "MLFLOW_TRACKING_URI is not set" in no_registry.stderr
    no_cosign = deploy_pr(
        api, work, *values(), PATH=str(Path(sys.executable).parent) + ":/usr/bin:/bin"
    )
    assert "cosign is not installed" in no_cosign.stderr
    for result in (no_registry, no_cosign):
        assert result.returncode == 1
        assert api.calls == []
        assert "deploy/staging" not in git(origin, "branch", "--list")


def test_deploy_pr_updates_the_open_one_and_its_body_names_the_rollback(
    api: FakeGitHub, checkout: tuple[Path, Path]
) -> None:
    """main serves a release; the open deploy/staging PR (not a fork's) gets the newer one,
    and its body says how to put main's values back."""
    work, origin = checkout
    gitops.bump(work / "deploy" / "k8s" / "overlays", "staging",
                gitops.Release(IMAGE, DIGEST, VERSION))  # fmt: skip
    git(work, "commit", "-qam", "deployed")
    git(work, "push", "-q", "origin", "main")
    api.pulls[3] = pull_request(3, "deploy/staging", head_repo="eve/penguins")
    api.pulls[5] = pull_request(5, "deploy/staging")
    git(origin, "branch", "deploy/staging", "main~1")  # the branch as the last run left it
    result = deploy_pr(api, work, *values(digest=OTHER_DIGEST, version=OTHER_VERSION))
    assert result.returncode == 0, result.stderr
    assert [(call.method, call.path) for call in api.writes()] == [
        ("PATCH", f"/repos/{REPOSITORY}/pulls/5")]  # fmt: skip
    assert api.calls[-1].headers["Authorization"] == "Bearer workflow-token"
    assert api.pulls[5]["title"] == f"Deploy model {OTHER_VERSION} to staging (sha256:{'cd' * 6})"
    body = api.pulls[5]["body"]
    assert f"It serves `{IMAGE}@{DIGEST}`, model `{VERSION}` now." in body
    assert (f"make deploy-pr ENV=staging IMAGE={IMAGE} DIGEST={DIGEST} MODEL_VERSION={VERSION}"
            in body)  # fmt: skip
    assert git(origin, "rev-parse", "deploy/staging^") == git(origin, "rev-parse", "main")
    assert "updated pull request #5" in result.stdout


def test_deploy_pr_with_what_main_serves_proposes_nothing(
    api: FakeGitHub, checkout: tuple[Path, Path]
) -> None:
    work, origin = checkout
    gitops.bump(work / "deploy" / "k8s" / "overlays", "staging",
                gitops.Release(IMAGE, DIGEST, VERSION))  # fmt: skip
    git(work, "commit", "-qam", "deployed")
    git(work, "push", "-q", "origin", "main")
    result = deploy_pr(api, work, *values())
    assert result.returncode == 0, result.stderr
    assert "already serves" in result.stdout
    assert api.calls == []
    assert "deploy/staging" not in git(origin, "branch", "--list")


def test_deploy_pr_from_the_release_record(
    api: FakeGitHub, checkout: tuple[Path, Path], tmp_path: Path
) -> None:
    work, _ = checkout
    record = tmp_path / "release.json"
    record.write_text(json.dumps({"pushed": False}))
    result = deploy_pr(api, work, "--release", str(record))
    assert result.returncode == 0, result.stderr
    assert "pushed no image: nothing to deploy" in result.stdout
    assert api.calls == []
    record.write_text(json.dumps({"pushed": True, "image": IMAGE, "digest": DIGEST + "\n",
                                  "model_version": VERSION}))  # fmt: skip
    refused = deploy_pr(api, work, "--release", str(record))
    assert refused.returncode == 1
    assert "digest" in refused.stderr
    assert api.calls == []
    record.write_text(json.dumps({"pushed": True, "image": IMAGE, "digest": DIGEST,
                                  "model_version": VERSION}))  # fmt: skip
    result = deploy_pr(api, work, "--release", str(record))
    assert result.returncode == 0, result.stderr
    assert api.writes()[-1].body["head"] == "deploy/staging"


def refused_and_untouched(
    api: FakeGitHub, work: Path, origin: Path, result: subprocess.CompletedProcess[str]
) -> None:
    assert result.returncode == 1
    assert result.stderr.startswith("error: deploy-pr: ")
    assert "nothing was changed" in result.stderr
    assert api.calls == []
    assert "deploy/staging" not in git(origin, "branch", "--list")
    assert git(work, "status", "--porcelain", "--", "deploy") == ""  # the overlay untouched


def test_deploy_pr_from_a_feature_branch_is_refused(
    api: FakeGitHub, checkout: tuple[Path, Path]
) -> None:
    """deploy/<env> is built from HEAD: from a feature branch it would carry the WIP."""
    work, origin = checkout
    git(work, "switch", "-q", "-c", "wip")
    (work / "wip.txt").write_text("work in progress\n")
    git(work, "add", "wip.txt")
    git(work, "commit", "-qm", "wip")
    head = git(work, "rev-parse", "HEAD").strip()
    main = git(origin, "rev-parse", "main").strip()
    result = deploy_pr(api, work, *values())
    refused_and_untouched(api, work, origin, result)
    assert f"HEAD (branch wip, {head[:12]}) is not origin/main ({main[:12]})" in result.stderr
    assert "git switch main && git pull" in result.stderr
    assert git(work, "branch", "--show-current").strip() == "wip"


def test_deploy_pr_from_a_stale_checkout_is_refused(
    api: FakeGitHub, checkout: tuple[Path, Path], tmp_path: Path
) -> None:
    """origin/main moved on (another merge): the branch would undo it."""
    work, origin = checkout
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(origin), str(other))
    (other / "newer.txt").write_text("merged meanwhile\n")
    git(other, "add", "newer.txt")
    git(other, "commit", "-qm", "newer")
    git(other, "push", "-q", "origin", "main")
    result = deploy_pr(api, work, *values())
    refused_and_untouched(api, work, origin, result)
    assert "is not origin/main" in result.stderr
    git(work, "pull", "-q", "origin", "main")  # as told: then it goes through
    result = deploy_pr(api, work, *values())
    assert result.returncode == 0, result.stderr
    assert git(origin, "rev-parse", "deploy/staging^") == git(origin, "rev-parse", "main")


def test_deploy_pr_with_the_overlay_edited_is_refused(
    api: FakeGitHub, checkout: tuple[Path, Path]
) -> None:
    work, origin = checkout
    release = work / "deploy" / "k8s" / "overlays" / "staging" / "release.yaml"
    release.write_text(release.read_text() + "# edited by hand\n")
    result = deploy_pr(api, work, *values())
    assert result.returncode == 1
    assert "differ from main's" in result.stderr
    assert "nothing was changed" in result.stderr
    assert release.read_text().endswith("# edited by hand\n")
    assert api.calls == []
    assert "deploy/staging" not in git(origin, "branch", "--list")


@pytest.mark.parametrize(
    ("unset", "message"),
    [
        (("GITHUB_REPOSITORY",), "GITHUB_REPOSITORY is not set"),
        (("GITHUB_TOKEN", "DEPLOY_PR_TOKEN"), "neither DEPLOY_PR_TOKEN nor GITHUB_TOKEN"),
    ],
)
def test_deploy_pr_without_a_repository_or_token_is_refused_before_any_write(
    api: FakeGitHub, checkout: tuple[Path, Path], unset: tuple[str, ...], message: str
) -> None:
    work, origin = checkout
    result = deploy_pr(api, work, *values(), **dict.fromkeys(unset, ""))
    refused_and_untouched(api, work, origin, result)
    assert message in result.stderr


def test_deploy_pr_outside_actions_names_no_run(
    api: FakeGitHub, checkout: tuple[Path, Path]
) -> None:
    work, origin = checkout
    result = deploy_pr(api, work, *values(), GITHUB_RUN_ID="", GITHUB_SERVER_URL="")
    assert result.returncode == 0, result.stderr
    body = api.writes()[-1].body["body"]
    assert "Opened by `make deploy-pr` (local)" in body
    assert "/actions/runs/" not in body
    message = git(origin, "log", "-1", "--format=%B", "deploy/staging")
    assert "Opened by `make deploy-pr` (local)" in message
    assert "/actions/runs/" not in message


@pytest.mark.parametrize(("pr_token", "used"), [("pr-token", "pr-token"), ("", "workflow-token")])
def test_the_branch_is_pushed_with_the_pr_token_when_set(
    k8s: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pr_token: str, used: str
) -> None:
    """A push with the workflow's token starts no workflow: an updated deploy pull request
    would keep its old commit's checks. With DEPLOY_PR_TOKEN the push is that account's."""
    import base64

    from mlops_template.release import proposals

    origin = tmp_path / "repo"
    git(tmp_path, "init", "-q", str(origin))
    git(origin, "remote", "add", "origin", "https://github.com/acme/penguins")
    monkeypatch.chdir(origin)
    monkeypatch.setenv("GITHUB_TOKEN", "workflow-token")
    monkeypatch.setenv("DEPLOY_PR_TOKEN", pr_token)
    pushes: list[dict[str, str]] = []

    def fake_git(*args: str, env: dict[str, str] | None = None) -> None:
        if args[0] == "push":
            pushes.append(env or {})

    class StopError(Exception):
        pass

    def no_api(token: str) -> None:
        raise StopError(token)

    monkeypatch.setattr(proposals.actions, "git", fake_git)
    monkeypatch.setattr(proposals, "previous_branch", lambda *args: ("", []))
    monkeypatch.setattr("mlops_template.io.github.GitHub.from_env", no_api)
    overlays = k8s / "overlays"
    result = gitops.bump(overlays, "staging", gitops.validate_release(IMAGE, DIGEST, VERSION))
    with pytest.raises(StopError):
        proposals.propose(result, overlays, "main", "t", "")
    (push,) = pushes
    header = push["GIT_CONFIG_VALUE_0"].removeprefix("AUTHORIZATION: basic ")
    assert base64.b64decode(header).decode() == f"x-access-token:{used}"


# --- the workflows -----------------------------------------------------------------------------


def workflow(name: str) -> dict[str, Any]:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def test_deploy_workflow_triggers_on_the_release_and_by_hand() -> None:
    spec = workflow("deploy.yml")
    on = spec[True]  # YAML 1.1 reads the key `on` as true
    assert on["workflow_run"] == {"workflows": ["release"], "types": ["completed"],
                                  "branches": ["main"]}  # fmt: skip
    inputs = on["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"environment", "image", "digest", "model_version"}
    assert inputs["environment"]["options"] == list(gitops.ENVIRONMENTS)
    assert spec["name"] == "deploy"
    assert workflow("release.yml")["name"] == "release"
    (job,) = spec["jobs"].values()
    assert "conclusion == 'success'" in job["if"]
    assert "head_branch == 'main'" in job["if"]
    assert "workflow_run.path == '.github/workflows/release.yml'" in job["if"]


def test_deploy_workflow_holds_least_privilege_and_runs_make() -> None:
    spec = workflow("deploy.yml")
    assert spec["permissions"] == {}
    (job,) = spec["jobs"].values()
    assert job["permissions"] == {"actions": "read", "contents": "write", "packages": "read",
                                  "pull-requests": "write"}  # fmt: skip
    steps = job["steps"]
    checkout = steps[0]
    assert checkout["with"] == {"ref": "main", "persist-credentials": False}
    for step in steps:
        if "uses" in step:
            assert re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
        else:
            assert step["run"].startswith("make "), step["run"]
            assert "${{" not in step["run"]  # inputs arrive in the environment only
    runs = [step["run"] for step in steps if "run" in step]
    assert runs == ["make install", "make deploy-pr", "make deploy-pr"]
    (download,) = [step for step in steps if "download-artifact" in step.get("uses", "")]
    assert download["with"]["name"] == "release"
    from_release, by_hand = (step for step in steps if step.get("run") == "make deploy-pr")
    assert from_release["env"]["ENV"] == "staging"  # a release goes to staging only
    assert from_release["env"]["RELEASE"] == download["with"]["path"] + "release.json"
    assert by_hand["env"]["ENV"] == "${{ inputs.environment }}"
    # Both read the registry as its read-only user, and verify with the installed cosign
    # (release.yml's pin of the installer).
    for step in (from_release, by_hand):
        assert step["env"]["MLFLOW_TRACKING_USERNAME"] == "${{ secrets.MLFLOW_READ_USERNAME }}"
        assert step["env"]["MLFLOW_TRACKING_PASSWORD"] == "${{ secrets.MLFLOW_READ_PASSWORD }}"
    release_steps = [step for job in workflow("release.yml")["jobs"].values()
                     for step in job.get("steps", [])]  # fmt: skip
    (installer,) = [step for step in steps if "cosign-installer" in step.get("uses", "")]
    assert any(step.get("uses") == installer["uses"] and step.get("with") == installer["with"]
               for step in release_steps)  # fmt: skip
    assert steps.index(installer) < steps.index(from_release)


def test_release_hands_the_pushed_image_over_to_deploy() -> None:
    record = workflow("release.yml")["jobs"]["record"]
    steps = record["steps"]
    (index,) = [i for i, step in enumerate(steps) if step.get("run") == "make release-record"]
    assert "if" not in steps[index]  # `pushed: false` too, when the gate refused
    assert "needs.gate.result == 'success'" in record["if"]
    pushed = "needs.gate.outputs.deploy == 'true' && needs.push.outputs"
    assert steps[index]["env"] == {
        "IMAGE": f"${{{{ {pushed}.image || '' }}}}",
        "DIGEST": f"${{{{ {pushed}.digest || '' }}}}",
        "MODEL_VERSION": f"${{{{ {pushed}.model_version || '' }}}}",
    }
    upload = steps[index + 1]
    assert "upload-artifact" in upload["uses"]
    assert upload["with"]["name"] == "release"
    assert upload["with"]["path"] == "release/release.json"
    assert "model_version=%s" in (REPO_ROOT / ".ci" / "push-image").read_text()
