"""The registry learns which image serves each version (`mlops deploy record-image`, release.yml),
and a rollback moves `champion` back and sets an overlay to the previous champion's recorded
image, all or nothing, refusing any recorded value that is not a release's. Against a
stand-in for MlflowClient here; tests/integration/test_rollback.py runs the same against a real
MLflow server, through the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mlflow.exceptions import MlflowException

from mlops_template.release import gitops, releases
from mlops_template.release import registry as registry_module
from tests.conftest import REPO_ROOT
from tests.repo import test_k8s
from tests.support.act import STUBS
from tests.support.fake_github import REPOSITORY, FakeGitHub
from tests.support.overlays import read_overlay
from tests.unit.release.test_gitops import (
    DIGEST,
    IMAGE,
    OTHER_DIGEST,
    OTHER_VERSION,
    VERSION,
    files,
    git,
    mlops,
    workflow,
)

NAME = "mlops-template"
A = gitops.Release(IMAGE, DIGEST, VERSION)
B = gitops.Release(IMAGE, OTHER_DIGEST, OTHER_VERSION)


@dataclass
class Version:
    version: str
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Registry:
    """The MlflowClient methods releases.py and history.py call, on dicts."""

    versions: dict[str, Version] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    fail_alias: bool = False

    def get_model_version_by_alias(self, name: str, alias: str) -> Version:
        if alias not in self.aliases:
            raise MlflowException(f"no alias {alias}")
        return self.versions[self.aliases[alias]]

    def get_model_version(self, name: str, version: str) -> Version:
        if version not in self.versions:
            raise MlflowException(f"no version {version}")
        return self.versions[version]

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        if self.fail_alias:
            raise MlflowException("the server refused")
        self.aliases[alias] = version

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self.versions[version].tags[key] = value

    def search_model_versions(self, query: str) -> list[Version]:
        return list(self.versions.values())

    def records(self, version: str, event: str) -> list[dict[str, Any]]:
        tags = self.versions[version].tags
        return [json.loads(value) for key, value in sorted(tags.items())
                if key.startswith(f"{event}.")]  # fmt: skip


def released(a: gitops.Release = A, b: gitops.Release = B) -> Registry:
    """Version 1 released with image `a`, then version 2 promoted over it with image `b`."""
    registry = Registry()
    for number in ("1", "2"):
        registry.versions[number] = Version(number)
    releases.record_image(registry, NAME, "1", a)
    releases.record_image(registry, NAME, "2", b)
    registry.versions["2"].tags[releases.PREVIOUS_TAG] = "1"
    registry.aliases["champion"] = "2"
    return registry


@pytest.fixture
def k8s(tmp_path: Path) -> Path:
    """A copy of deploy/k8s (base and overlays)."""
    shutil.copytree(test_k8s.K8S, tmp_path / "k8s")
    return tmp_path / "k8s"


def serving(k8s: Path, env: str, release: gitops.Release) -> None:
    gitops.bump(k8s / "overlays", env, release)


# --- the registry learns what shipped ------------------------------------------------------


def test_the_released_version_records_its_newest_image_and_every_change() -> None:
    registry = Registry({"1": Version("1")})
    assert releases.record_image(registry, NAME, "1", A) is True
    tag = json.loads(registry.versions["1"].tags["image"])
    assert tag == {"image": IMAGE, "digest": DIGEST, "model_version": VERSION}
    assert releases.recorded_image(registry.versions["1"]) == A
    # A re-run release records nothing twice.
    assert releases.record_image(registry, NAME, "1", A) is False
    assert len(registry.records("1", "image")) == 1
    # The same model shipping new code: the tag names the newest image, the audit both.
    newer = gitops.Release(IMAGE, "sha256:" + "ef" * 32, VERSION)
    assert releases.record_image(registry, NAME, "1", newer) is True
    assert releases.recorded_image(registry.versions["1"]) == newer
    first, second = registry.records("1", "image")
    assert first["replaces"] is None
    assert second["replaces"] == A.reference
    assert second["digest"] == newer.digest
    assert {"at", "actor", "commit"} <= set(second)


def test_record_image_checks_every_value_before_the_registry_is_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlops_template.cli import deploy

    # Nothing listens on port 9: a value that got as far as the registry would fail otherwise.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    params = REPO_ROOT / "params.yaml"
    with pytest.raises(gitops.DeployError, match="digest"):
        deploy._record_image(params, "1", IMAGE, DIGEST + "\nx: y", VERSION)
    for version in ("", "-", "1; true", "0", "../1", "1\n"):
        with pytest.raises(gitops.DeployError, match="registry version"):
            deploy._record_image(params, version, IMAGE, DIGEST, VERSION)
    # The command: exit 1 with the reason; nothing pushed, or no registry: nothing to do.
    refused = mlops("deploy", "record-image", "--version", "1", "--image", IMAGE, "--digest", "x",
                    "--model-version", VERSION, cwd=REPO_ROOT)  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: digest 'x' refused")
    nothing = mlops("deploy", "record-image", "--version", "-", cwd=REPO_ROOT)
    assert nothing.returncode == 0, nothing.stderr
    assert "nothing was pushed" in nothing.stdout
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    deploy._record_image(params, "-", IMAGE, DIGEST, VERSION)  # no registry: no error


# --- the rollback ------------------------------------------------------------------------------


def test_rollback_moves_the_alias_and_sets_the_overlay_to_the_previous_image(
    k8s: Path,
) -> None:
    registry = released()
    serving(k8s, "production", B)
    serving(k8s, "staging", B)
    before = files(k8s)
    done = releases.rollback(registry, NAME, "production", k8s / "overlays")
    assert (done.from_version, done.to_version) == ("2", "1")
    assert registry.aliases["champion"] == "1"
    assert read_overlay(k8s / "overlays", "production") == A
    assert read_overlay(k8s / "overlays", "staging") == B  # only the one named
    after = files(k8s)
    assert {name for name in before if before[name] != after[name]} == {
        "overlays/production/kustomization.yaml", "overlays/production/release.yaml"}  # fmt: skip
    assert done.bump is not None
    assert f"+    digest: {DIGEST}" in done.bump.diff
    for version in ("1", "2"):
        (record,) = registry.records(version, "rollback")
        assert record["from"] == "2"
        assert record["to"] == "1"
        assert record["env"] == "production"
        assert record["image"] == A.reference
        assert record["model_version"] == VERSION
    # The withdrawn version is marked for the gate; the champion says how it became one.
    assert json.loads(registry.versions["2"].tags[registry_module.WITHDRAWN_TAG]) == {
        "by_rollback_to": "1", "env": "production"}  # fmt: skip
    assert registry.versions["1"].tags[releases.ROLLED_BACK_FROM_TAG] == "2"


def test_a_second_rollback_catches_the_other_environment_up_and_goes_no_further_back(
    k8s: Path,
) -> None:
    """Version 1 itself replaced a version 0: still, one rollback is one step. The second
    (staging's, or production's again) sets the overlay to the champion's image; the alias
    stays."""
    registry = released()
    registry.versions["0"] = Version("0", {"image": releases.image_value(B)})
    registry.versions["1"].tags[releases.PREVIOUS_TAG] = "0"
    serving(k8s, "production", B)
    serving(k8s, "staging", B)
    releases.rollback(registry, NAME, "production", k8s / "overlays")
    staging = releases.rollback(registry, NAME, "staging", k8s / "overlays")
    assert (staging.from_version, staging.to_version) == ("1", "1")
    assert registry.aliases["champion"] == "1"
    assert read_overlay(k8s / "overlays", "staging") == A
    again = releases.rollback(registry, NAME, "production", k8s / "overlays")
    assert again.bump is not None
    assert not again.bump.changed
    assert registry.aliases["champion"] == "1"
    assert read_overlay(k8s / "overlays", "production") == A
    assert registry_module.WITHDRAWN_TAG not in registry.versions["1"].tags


def test_an_overlay_already_serving_the_previous_image_is_left_as_it_is(
    k8s: Path,
) -> None:
    registry = released()
    serving(k8s, "production", A)  # version 2's pull request was never merged
    before = files(k8s)
    done = releases.rollback(registry, NAME, "production", k8s / "overlays")
    assert done.bump is not None
    assert not done.bump.changed
    assert files(k8s) == before
    assert registry.aliases["champion"] == "1"


HOSTILE_IMAGES = [
    json.dumps({"image": IMAGE, "digest": DIGEST + "\nimages: []", "model_version": VERSION}),
    json.dumps({"image": IMAGE.upper(), "digest": DIGEST, "model_version": VERSION}),
    json.dumps({"image": IMAGE, "digest": gitops.PLACEHOLDER_DIGEST, "model_version": VERSION}),
    json.dumps({"image": IMAGE, "digest": DIGEST, "model_version": "$(touch pwned)"}),
    json.dumps({"image": IMAGE, "digest": DIGEST, "model_version": VERSION, "extra": "x"}),
    json.dumps({"image": IMAGE, "digest": DIGEST, "model_version": 12}),
    json.dumps([IMAGE, DIGEST, VERSION]),
    f"{IMAGE}@{DIGEST}",
]


@pytest.mark.parametrize("raw", HOSTILE_IMAGES)
def test_a_recorded_image_that_is_no_release_is_refused_and_nothing_changes(
    k8s: Path,
    raw: str,
) -> None:
    registry = released()
    registry.versions["1"].tags["image"] = raw
    serving(k8s, "production", B)
    before = files(k8s)
    with pytest.raises(gitops.DeployError, match="registry version 1: the recorded image"):
        releases.rollback(registry, NAME, "production", k8s / "overlays")
    assert files(k8s) == before
    assert registry.aliases["champion"] == "2"
    assert registry.records("1", "rollback") == []


@pytest.mark.parametrize("previous", ["1\n", "../1", "-1", "1 2", "v1"])
def test_a_hostile_previous_champion_tag_is_refused(
    k8s: Path,
    previous: str,
) -> None:
    registry = released()
    registry.versions["2"].tags[releases.PREVIOUS_TAG] = previous
    before = files(k8s)
    with pytest.raises(gitops.DeployError, match="previous_champion"):
        releases.rollback(registry, NAME, "production", k8s / "overlays")
    assert files(k8s) == before
    assert registry.aliases["champion"] == "2"


def test_nothing_to_roll_back_to_says_why(k8s: Path) -> None:
    registry = Registry({"1": Version("1")})
    with pytest.raises(Exception, match="no champion in the registry"):
        releases.rollback(registry, NAME, "production", k8s / "overlays")
    registry.aliases["champion"] = "1"
    with pytest.raises(Exception, match="no previous champion to roll back to"):
        releases.rollback(registry, NAME, "production", k8s / "overlays")


def test_a_previous_champion_without_an_image_needs_alias_only(k8s: Path) -> None:
    registry = released()
    del registry.versions["1"].tags["image"]
    before = files(k8s)
    with pytest.raises(gitops.DeployError, match=r"records no image.*--alias-only"):
        releases.rollback(registry, NAME, "production", k8s / "overlays")
    assert registry.aliases["champion"] == "2"
    done = releases.rollback(registry, NAME, "production", k8s / "overlays", alias_only=True)
    assert done.bump is None
    assert registry.aliases["champion"] == "1"
    assert files(k8s) == before
    (record,) = registry.records("1", "rollback")
    assert record["image"] is None


def test_an_overlay_that_cannot_be_prepared_moves_no_alias(k8s: Path) -> None:
    registry = released()
    kustomization = k8s / "overlays" / "production" / "kustomization.yaml"
    kustomization.write_text(
        kustomization.read_text().replace("    digest: sha256", "    digest:  sha256")
    )
    before = files(k8s)
    with pytest.raises(gitops.DeployError, match="expected one `digest:` line"):
        releases.rollback(registry, NAME, "production", k8s / "overlays")
    assert files(k8s) == before
    assert registry.aliases["champion"] == "2"
    with pytest.raises(gitops.DeployError, match="environment 'prod' refused"):
        releases.rollback(registry, NAME, "prod", k8s / "overlays")


def test_a_failed_alias_move_puts_the_overlay_back(k8s: Path) -> None:
    registry = released()
    registry.fail_alias = True
    serving(k8s, "production", B)
    before = files(k8s)
    with pytest.raises(MlflowException, match="the server refused"):
        releases.rollback(registry, NAME, "production", k8s / "overlays")
    assert files(k8s) == before
    assert registry.aliases["champion"] == "2"


def test_the_bump_writes_both_files_or_neither(
    k8s: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlops_template.io import storage

    write_text = storage.write_text

    def failing(path: Path, text: str) -> None:
        if path.name == gitops.RELEASE and "0123456789ab" in text:
            raise OSError(28, "No space left on device")
        write_text(path, text)

    monkeypatch.setattr(storage, "write_text", failing)
    before = files(k8s)
    with pytest.raises(gitops.DeployError, match=r"not written.*the overlay is unchanged"):
        gitops.bump(k8s / "overlays", "production", A)
    assert files(k8s) == before


def test_rollback_with_pr_proposes_it_as_the_environments_deploy_pull_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`mlops deploy rollback --pr`: the prepared overlay goes to deploy/production, whose pull
    request says it is a rollback and from which registry version."""
    from mlops_template.cli import deploy
    from mlops_template.release import registry

    origin, work = tmp_path / "origin.git", tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    shutil.copytree(test_k8s.K8S, work / "deploy" / "k8s")
    shutil.copy(REPO_ROOT / "params.yaml", work / "params.yaml")
    git(work, "init", "-q", "-b", "main")
    gitops.bump(work / gitops.OVERLAYS, "production", B)
    git(work, "add", "deploy")
    git(work, "commit", "-qm", "main serves B")
    git(work, "remote", "add", "origin", str(origin))
    git(work, "push", "-q", "origin", "main")
    fake = released()
    monkeypatch.setattr(registry, "_client", lambda: fake)
    monkeypatch.chdir(work)
    # A, version 1's recorded image, signed by main's release (the cosign stand-in's ledger).
    monkeypatch.setenv("PATH", f"{STUBS / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ACT_STUB_RECORD", str(tmp_path))
    signer = f"{REPOSITORY}/.github/workflows/release.yml@refs/heads/main"
    subprocess.run(["cosign", "sign", "--yes", A.reference], check=True,
                   env={**os.environ, "GITHUB_WORKFLOW_REF": signer})  # fmt: skip
    with FakeGitHub() as api:
        for name, value in {"GITHUB_API_URL": api.url, "GITHUB_REPOSITORY": REPOSITORY,
                            "GITHUB_TOKEN": "workflow-token", "DEPLOY_PR_TOKEN": "",
                            "GITHUB_RUN_ID": "9", "GITHUB_STEP_SUMMARY": ""}.items():  # fmt: skip
            monkeypatch.setenv(name, value)
        deploy._rollback(Path("params.yaml"), "production", False, True,
                             gitops.OVERLAYS, "main")  # fmt: skip
    assert fake.aliases["champion"] == "1"
    opened = api.writes()[-1]
    assert opened.body["head"] == "deploy/production"
    assert opened.body["title"] == f"Roll back production to model {VERSION} (sha256:{'ab' * 6})"
    body = opened.body["body"]
    assert "moved from version 2 back to version 1" in body
    assert f"image `{A.reference}`" in body
    assert f"It serves `{B.reference}`, model `{OTHER_VERSION}` now." in body
    changed = git(origin, "diff", "--name-only", "main", "deploy/production").split()
    assert changed == ["deploy/k8s/overlays/production/kustomization.yaml",
                       "deploy/k8s/overlays/production/release.yaml"]  # fmt: skip


def test_rollback_with_pr_from_a_feature_branch_moves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkout is checked before the alias moves: refused, the registry and the overlay
    are as they were, nothing pushed, no API call."""
    from mlops_template import PipelineError
    from mlops_template.cli import deploy
    from mlops_template.release import registry

    origin, work = tmp_path / "origin.git", tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    shutil.copytree(test_k8s.K8S, work / "deploy" / "k8s")
    shutil.copy(REPO_ROOT / "params.yaml", work / "params.yaml")
    git(work, "init", "-q", "-b", "main")
    gitops.bump(work / gitops.OVERLAYS, "production", B)
    git(work, "add", "deploy")
    git(work, "commit", "-qm", "main serves B")
    git(work, "remote", "add", "origin", str(origin))
    git(work, "push", "-q", "origin", "main")
    git(work, "switch", "-q", "-c", "wip")
    git(work, "commit", "-q", "--allow-empty", "-m", "wip")
    fake = released()
    monkeypatch.setattr(registry, "_client", lambda: fake)
    monkeypatch.chdir(work)
    before = files(work / "deploy")
    with FakeGitHub() as api:
        for name, value in {"GITHUB_API_URL": api.url, "GITHUB_REPOSITORY": REPOSITORY,
                            "GITHUB_TOKEN": "workflow-token", "DEPLOY_PR_TOKEN": "",
                            "GITHUB_STEP_SUMMARY": ""}.items():  # fmt: skip
            monkeypatch.setenv(name, value)
        with pytest.raises(PipelineError, match=r"HEAD \(branch wip, .*not origin/main"):
            deploy._rollback(Path("params.yaml"), "production", False, True,
                                 gitops.OVERLAYS, "main")  # fmt: skip
        assert api.calls == []
    assert fake.aliases["champion"] == "2"
    assert files(work / "deploy") == before
    assert git(origin, "for-each-ref", "--format=%(refname)").split() == ["refs/heads/main"]


# --- make and the release workflow -------------------------------------------------------------


def test_the_makefile_passes_rollback_history_and_record_image_values_as_data(
    tmp_path: Path,
) -> None:
    hostile = f"x$(shell touch {tmp_path}/make)`touch {tmp_path}/tick`$(touch {tmp_path}/dollar)"
    env = {**os.environ, "ENV": hostile, "IMAGE": hostile, "DIGEST": hostile,
           "MODEL_VERSION": hostile, "REGISTRY_VERSION": hostile, "FORMAT": hostile,
           "ALIAS_ONLY": "1", "OPEN_PR": "1"}  # fmt: skip
    for target, expected in (
        ("rollback", f"--env {hostile} --alias-only --pr"),
        ("history", f"--env {hostile} --format {hostile}"),
        ("record-image", f"--version {hostile} --image {hostile}"),
    ):
        result = subprocess.run(
            ["make", "--no-print-directory", "-C", str(REPO_ROOT), target, "UV=/bin/true",
             "RUN=echo"], env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert expected in result.stdout, result.stdout
    assert sorted(path.name for path in tmp_path.iterdir()) == []
    default = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO_ROOT), "rollback", "UV=/bin/true",
         "RUN=echo"], env={**os.environ, "ENV": "", "ALIAS_ONLY": "0", "OPEN_PR": ""},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert default.stdout.splitlines()[-1] == "mlops deploy rollback --env production"


def test_release_records_the_pushed_image_on_the_gates_version() -> None:
    jobs = workflow("release.yml")["jobs"]
    steps = jobs["record"]["steps"]
    (record,) = [i for i, step in enumerate(steps) if step.get("run") == "make record-image"]
    assert record < next(i for i, s in enumerate(steps) if s.get("run") == "make release-record")
    assert set(jobs["record"]["needs"]) == {"gate", "push", "sign"}  # after the signature
    step = steps[record]
    assert step["if"] == "needs.gate.outputs.deploy == 'true'"
    assert step["env"] == {
        "REGISTRY_VERSION": "${{ needs.gate.outputs.version }}",
        "IMAGE": "${{ needs.push.outputs.image }}",
        "DIGEST": "${{ needs.push.outputs.digest }}",
        "MODEL_VERSION": "${{ needs.push.outputs.model_version }}",
        "MLFLOW_TRACKING_URI": "${{ secrets.MLFLOW_TRACKING_URI }}",
        "MLFLOW_TRACKING_USERNAME": "${{ secrets.MLFLOW_TRACKING_USERNAME }}",
        "MLFLOW_TRACKING_PASSWORD": "${{ secrets.MLFLOW_TRACKING_PASSWORD }}",
    }
    # The registry's credentials only where the registry is read (champion, its own
    # read-only environment) or written (the gate and this step, behind the approval).
    holders = {
        name: [step.get("id") or step.get("run") for step in job["steps"]
               if "secrets.MLFLOW" in json.dumps(step)]
        for name, job in jobs.items()
    }  # fmt: skip
    assert {name: found for name, found in holders.items() if found} == {
        "champion": ["make release-champion CHAMPION_DIR=champion"],
        "gate": ["gate"],
        "record": [
            "make record-image",
            "make record-signature SIGNATURE=model-signature/model.sig",
        ],
    }
    assert jobs["champion"]["environment"] == "registry-read"
    assert jobs["gate"]["environment"] == "production"  # the approval
    assert jobs["record"]["environment"] == "registry-write"  # no second approval
