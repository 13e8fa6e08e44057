"""The workflows' privileged steps as `mlops` subcommands, against the GitHub stand-in:
post-report (pr-comment.yml) and open-pr (retrain.yml); and which job of which workflow holds
which credential."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlops_template.io.github import REPORT_MARKER
from tests.conftest import REPO_ROOT
from tests.support.fake_github import REPOSITORY, FakeGitHub, pull_request, workflow_run
from tests.unit.reporting.test_safety import GOOD, folder

MLOPS = Path(sys.executable).with_name("mlops")
HEAD = "c" * 40


def mlops(
    api: FakeGitHub, *args: str, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    full_env = {
        **os.environ,
        "GITHUB_API_URL": api.url,
        "GITHUB_REPOSITORY": REPOSITORY,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_TOKEN": "workflow-token",
        "GITHUB_STEP_SUMMARY": "",
        "GITHUB_OUTPUT": "",
        **env,
    }
    return subprocess.run(
        [str(MLOPS), *args], cwd=cwd, env=full_env, capture_output=True, text=True, check=False
    )


@pytest.fixture
def api() -> FakeGitHub:
    with FakeGitHub() as fake:
        fake.runs[4242] = workflow_run(4242, HEAD, "more-trees", pull_requests=[7])
        fake.pulls[7] = pull_request(7, "more-trees", HEAD)
        yield fake


def report_dir(tmp_path: Path, markdown: str = GOOD, pr: str = "7") -> Path:
    report = folder(tmp_path, markdown)
    (report / "pr_number").write_text(f"{pr}\n")
    return report


def test_post_report_posts_the_markdown_without_images(api: FakeGitHub, tmp_path: Path) -> None:
    result = mlops(api, "ci", "post-report", str(report_dir(tmp_path)), "--run-id", "4242")
    assert result.returncode == 0, result.stderr
    assert "run 4242 is pull request #7's (verified)" in result.stdout
    (comment,) = api.comments[7]
    body = comment["body"]
    assert body.startswith(REPORT_MARKER + "\n## Model report")
    assert "![" not in body
    assert (
        "_The plots are in the `pr-report` artifact of the [training run]"
        "(https://github.com/acme/penguins/actions/runs/4242)" in body
    )
    # Posted again (the next push): the same comment is updated.
    assert (
        mlops(
            api, "ci", "post-report", str(report_dir(tmp_path / "2")), "--run-id", "4242"
        ).returncode
        == 0
    )
    assert len(api.comments[7]) == 1
    assert [call.method for call in api.writes()] == ["POST", "PATCH"]


def test_a_spoofed_pr_number_posts_nothing(api: FakeGitHub, tmp_path: Path) -> None:
    api.pulls[5] = pull_request(5, "other", "d" * 40)
    result = mlops(api, "ci", "post-report", str(report_dir(tmp_path, pr="5")), "--run-id", "4242")
    assert result.returncode == 1
    assert "names pull request #5, but run 4242" in result.stderr
    assert "belongs to #7" in result.stderr
    assert api.writes() == []


def test_a_report_linking_outside_its_folder_posts_nothing(api: FakeGitHub, tmp_path: Path) -> None:
    markdown = "## Model report\n\n![env](/proc/self/environ)\n[x](../../.git/config)\n"
    result = mlops(
        api, "ci", "post-report", str(report_dir(tmp_path, markdown)), "--run-id", "4242"
    )
    assert result.returncode == 1
    assert "/proc/self/environ" in result.stderr
    assert "nothing is posted" in result.stderr
    assert api.calls == []  # refused before the API is asked anything


@pytest.mark.parametrize("pr", ["7; rm -rf /", "0", "-1", "", "99999999999"])
def test_a_pr_number_that_is_not_one_is_refused(api: FakeGitHub, tmp_path: Path, pr: str) -> None:
    result = mlops(api, "ci", "post-report", str(report_dir(tmp_path, pr=pr)), "--run-id", "4242")
    assert result.returncode == 1
    assert "not a pull request number" in result.stderr
    assert api.calls == []


def test_published_plots_go_through_cml_with_only_the_checked_pngs(
    api: FakeGitHub, tmp_path: Path
) -> None:
    record = tmp_path / "cml-record"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "cml").write_text(
        "#!/usr/bin/env bash\nset -e\n"
        f'mkdir -p {record}; printf "%s\\n" "$@" > {record}/args; ls > {record}/files\n'
        f'cp comment.md {record}/; echo "$REPO_TOKEN" > {record}/token\n'
    )
    (bin_dir / "cml").chmod(0o755)
    result = mlops(
        api,
        "ci",
        "post-report",
        str(report_dir(tmp_path)),
        "--run-id",
        "4242",
        REPORT_PUBLISH_PLOTS="true",
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    )
    assert result.returncode == 0, result.stderr
    args = (record / "args").read_text().splitlines()
    assert args[:3] == ["comment", "update", "--publish"]
    assert "--target=pr/7" in args
    assert (record / "files").read_text().split() == ["comment.md", "plot-1.png"]
    assert "![ROC](plot-1.png)" in (record / "comment.md").read_text()
    assert (record / "token").read_text().strip() == "workflow-token"
    assert api.writes() == []  # CML posted it


# --- open-pr ---------------------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture
def retrained(tmp_path: Path) -> tuple[Path, Path]:
    """main's checkout after a drifted retraining run (no DVC: the working tree as left)."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / "dvc.lock").write_text("schema: '2.0'\n")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "main")
    git(work, "remote", "add", "origin", str(origin))
    git(work, "push", "-q", "origin", "main")
    (work / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    (work / "reports" / "drift").mkdir(parents=True)
    (work / "reports" / "drift" / "drift.md").write_text("## Drift report: 🔴 drift\n")
    (work / "reports" / "drift" / "drift.json").write_text('{"drifted": true}\n')
    report_dir(work, pr="1")
    return work, origin


def open_pr(api: FakeGitHub, work: Path) -> subprocess.CompletedProcess[str]:
    return mlops(
        api,
        "ci",
        "open-pr",
        cwd=work,
        DRIFTED="true",
        RETRAIN_PR_TOKEN="pr-token",
        GITHUB_RUN_ID="99",
        AWS_ACCESS_KEY_ID="",
    )


def test_a_fork_branch_named_retrain_is_not_the_open_retraining_pr(
    api: FakeGitHub, retrained: tuple[Path, Path]
) -> None:
    work, origin = retrained
    api.pulls[9] = pull_request(9, "retrain/x", head_repo="eve/penguins", author="retrain-bot")
    result = open_pr(api, work)
    assert result.returncode == 0, result.stderr
    assert api.requests() == [
        ("GET", "/user"),
        ("GET", f"/repos/{REPOSITORY}/pulls?state=open&per_page=100"),
        ("POST", f"/repos/{REPOSITORY}/pulls"),
    ]
    opened = api.calls[-1]
    assert opened.headers["Authorization"] == "Bearer pr-token"
    assert opened.body["head"].startswith("retrain/")
    assert opened.body["body"].startswith("## Drift report: 🔴 drift")
    assert "![" not in opened.body["body"]
    assert "The plots are in the `retrain-report` artifact" in opened.body["body"]
    branches = git(origin, "for-each-ref", "--format=%(refname:short)", "refs/heads/retrain")
    assert branches.split() == [opened.body["head"]]


def test_while_the_bots_retraining_pr_is_open_it_gets_a_comment(
    api: FakeGitHub, retrained: tuple[Path, Path]
) -> None:
    work, origin = retrained
    api.pulls[8] = pull_request(8, "retrain/2026-01-01-1", author="retrain-bot")
    result = open_pr(api, work)
    assert result.returncode == 0, result.stderr
    assert "retraining pull request #8 is still open" in result.stdout
    assert [(call.method, call.path) for call in api.writes()] == [
        ("POST", f"/repos/{REPOSITORY}/issues/8/comments")
    ]
    assert git(origin, "for-each-ref", "refs/heads/retrain") == ""


# --- which job holds which credential ---------------------------------------------------


def workflow(name: str) -> dict:
    return yaml.safe_load((REPO_ROOT / ".github" / "workflows" / name).read_text())


WRITE_SECRETS = ("DVC_REMOTE_ACCESS_KEY_ID", "DVC_REMOTE_SECRET_ACCESS_KEY", "RETRAIN_PR_TOKEN")


@pytest.mark.parametrize(("name", "job"), [("train.yml", "train"), ("retrain.yml", "retrain")])
def test_the_job_that_runs_untrusted_code_holds_no_write_credential(name: str, job: str) -> None:
    """train: the pull request's code; retrain: production's logs parsed, then the pipeline."""
    spec = workflow(name)["jobs"][job]
    assert spec["permissions"] == {"contents": "read"}
    text = yaml.safe_dump(spec)
    for secret in WRITE_SECRETS:
        assert f"secrets.{secret}" not in text
    assert "github.token" not in text
    assert "GITHUB_TOKEN" not in text


@pytest.mark.parametrize(("name", "job"), [("publish.yml", "publish"), ("retrain.yml", "open-pr")])
def test_the_publishing_job_runs_no_make_target_of_the_pipeline(name: str, job: str) -> None:
    targets = [step.get("run", "").split()[:2] for step in workflow(name)["jobs"][job]["steps"]]
    for target in ("run", "retrain", "report", "pull", "image"):
        assert ["make", target] not in targets


def test_the_dvc_write_key_is_only_in_a_workflow_a_pull_request_cannot_edit() -> None:
    """train.yml runs on pull_request, so a branch can edit it: it has one job and no write
    credential. publish.yml runs on workflow_run (GitHub takes it from the default branch),
    checks out the default branch and the PR only as data, at the commit the API names, and
    hands the write key to the one step that publishes."""
    assert list(workflow("train.yml")["jobs"]) == ["train"]
    spec = workflow("publish.yml")
    assert spec[True] == {"workflow_run": {"workflows": ["train"], "types": ["completed"]}}
    (job,) = spec["jobs"].values()
    assert job["environment"] == "dvc-publish"
    for condition in ("workflow_run.event == 'pull_request'", "conclusion == 'success'",
                      "workflow_run.path == '.github/workflows/train.yml'",
                      "head_repository.full_name == github.repository"):  # fmt: skip
        assert condition in job["if"]
    steps = job["steps"]
    assert steps[0]["with"] == {"persist-credentials": False}  # the default branch
    (target,) = [step for step in steps if step.get("run") == "make publish-target"]
    (pr,) = [step for step in steps if step.get("with", {}).get("path") == "pr"]
    assert pr["with"]["ref"] == f"${{{{ steps.{target['id']}.outputs.sha }}}}"
    with_secrets = [step for step in steps if "secrets." in yaml.safe_dump(step)]
    assert [step["run"] for step in with_secrets] == [
        "make publish-outputs INCOMING=incoming PR_DIR=pr"]  # fmt: skip
    assert with_secrets[0]["env"]["EXPECTED_HEAD"] == pr["with"]["ref"]
    for name in ("train.yml", "pr-comment.yml", "ci.yml", "release.yml", "deploy.yml"):
        text = (REPO_ROOT / ".github" / "workflows" / name).read_text()
        assert "DVC_REMOTE_ACCESS_KEY_ID" not in text, name


def test_production_logs_are_read_with_their_own_key() -> None:
    """Only retrain.yml's retrain job (environment `monitoring`, main only) holds the key that
    reads production's prediction logs and feedback, on the one step that fetches them; the
    DVC read key that pull requests get reads none of it."""
    job = workflow("retrain.yml")["jobs"]["retrain"]
    assert job["environment"] == "monitoring"
    holding = [step for step in job["steps"] if "MONITORING_READ" in yaml.safe_dump(step)]
    assert [step["run"] for step in holding] == ["make fetch-monitoring"]
    assert holding[0]["env"] == {
        "AWS_ACCESS_KEY_ID": "${{ secrets.MONITORING_READ_ACCESS_KEY_ID }}",
        "AWS_SECRET_ACCESS_KEY": "${{ secrets.MONITORING_READ_SECRET_ACCESS_KEY }}",
    }
    for path in (REPO_ROOT / ".github" / "workflows").glob("*.yml"):
        if path.name != "retrain.yml":
            assert "MONITORING_READ" not in path.read_text(), path.name


# --- the release: scan before hand-over, push only the scanned tarball ------------------


def fake_trivy(tmp_path: Path, exit_code: int) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "trivy").write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> {tmp_path}/trivy-calls\n'
        'for a in "$@"; do [[ "$prev" == --output ]] && echo "{}" > "$a"; prev=$a; done\n'
        f'[[ " $* " == *" --format cyclonedx "* ]] || exit {exit_code}\n'
    )
    (bin_dir / "trivy").chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_OUTPUT": str(tmp_path / "output"),
    }


@pytest.mark.parametrize("exit_code", [0, 1])
def test_scan_image_hands_on_only_a_clean_tarball(tmp_path: Path, exit_code: int) -> None:
    (tmp_path / "image.tar").write_bytes(b"an image")
    result = subprocess.run(
        [REPO_ROOT / ".ci" / "scan-image", "image.tar"],
        cwd=tmp_path,
        env=fake_trivy(tmp_path, exit_code),
        capture_output=True,
        text=True,
        check=False,
    )
    calls = (tmp_path / "trivy-calls").read_text().splitlines()
    assert calls[0].startswith("image --input image.tar --cache-dir /tmp/")
    assert "--severity CRITICAL,HIGH --ignore-unfixed --exit-code 1" in calls[0]
    if exit_code:
        assert result.returncode != 0
        assert not (tmp_path / "output").exists()  # no checksum: the publish job pushes nothing
    else:
        assert result.returncode == 0, result.stderr
        assert "--format cyclonedx --output sbom.cdx.json" in calls[1]
        digest = hashlib.sha256(b"an image").hexdigest()
        assert (tmp_path / "output").read_text() == f"image_sha256={digest}\n"


def test_push_image_refuses_a_tarball_that_was_not_scanned(tmp_path: Path) -> None:
    (tmp_path / "image.tar").write_bytes(b"another image")
    env = {**os.environ, "DOCKER": "false", "IMAGE_SHA256": "0" * 64}
    result = subprocess.run(
        [REPO_ROOT / ".ci" / "push-image", "image.tar", "registry.example/x"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "not the tarball that was scanned" in result.stderr
    env = {**env, "IMAGE_SHA256": "", "GITHUB_ACTIONS": "true"}
    result = subprocess.run(
        [REPO_ROOT / ".ci" / "push-image", "image.tar", "registry.example/x"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "IMAGE_SHA256" in result.stderr


def test_the_release_scans_in_the_build_job_and_pushes_by_checksum() -> None:
    release = workflow("release.yml")
    build, publish = release["jobs"]["build"], release["jobs"]["push"]
    runs = [step.get("run", "") for step in build["steps"]]
    assert runs.index("make scan-image IMAGE_TAR=image.tar") > runs.index(
        "make save-image IMAGE_TAR=image.tar"
    )
    uploads = [
        i for i, step in enumerate(build["steps"]) if "upload-artifact" in step.get("uses", "")
    ]
    assert min(uploads) > runs.index("make scan-image IMAGE_TAR=image.tar")
    assert build["permissions"] == {"contents": "read"}
    assert "trivy" not in yaml.safe_dump(publish).lower()
    (push,) = [step for step in publish["steps"] if step.get("id") == "push"]
    assert push["env"]["IMAGE_SHA256"] == "${{ needs.build.outputs.image_sha256 }}"
    assert "cache" not in yaml.safe_dump(build).replace("enable-cache: false", "")


def test_cml_is_pinned_and_never_installed_without_its_lockfile() -> None:
    """`make install-cml` is `npm ci --ignore-scripts` from .ci/cml's lockfile, or nothing."""
    import json
    import re as regex

    makefile = (REPO_ROOT / "Makefile").read_text() + (
        REPO_ROOT / ".ci" / "workflows.mk"
    ).read_text()
    version = regex.search(r"^CML_VERSION \?= (\S+)$", makefile, regex.M).group(1)
    package = json.loads((REPO_ROOT / ".ci" / "cml" / "package.json").read_text())
    assert package["dependencies"] == {"@dvcorg/cml": version}  # exact, no range
    assert "npm ci --prefix .ci/cml --ignore-scripts" in makefile
    assert "npm install" not in makefile
    if not (REPO_ROOT / ".ci" / "cml" / "package-lock.json").exists():
        result = subprocess.run(
            ["make", "--no-print-directory", "-C", str(REPO_ROOT), "install-cml"],
            env={**os.environ, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode != 0
        assert "package-lock.json is not committed" in result.stderr


@pytest.mark.parametrize("runtime", ["onnx", "sklearn"])
def test_push_image_tags_the_version_the_service_answers_with(tmp_path: Path, runtime: str) -> None:
    """`model-<12 hex>` is the served file's sha256 (model_version in every answer): the ONNX
    model's, or the scikit-learn model's when serve.runtime sklearn left model.onnx empty."""
    onnx_sha = hashlib.sha256(b"" if runtime == "sklearn" else b"onnx").hexdigest()
    joblib_sha = hashlib.sha256(b"joblib").hexdigest()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.onnx.sha256").write_text(f"{onnx_sha}  model.onnx\n")
    (tmp_path / "models" / "model.joblib.sha256").write_text(f"{joblib_sha}  model.joblib\n")
    (tmp_path / "image.tar").write_bytes(b"image")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
        cwd=tmp_path,
        check=True,
    )
    docker = tmp_path / "docker"
    docker.write_text(
        "#!/bin/sh\n"
        'echo "$@" >> calls\n'
        'case "$1" in load) echo "Loaded image: local:x";;'
        ' push) echo "x: digest: sha256:' + "d" * 64 + ' size: 1";; esac\n'
    )
    docker.chmod(0o755)
    result = subprocess.run(
        [REPO_ROOT / ".ci" / "push-image", "image.tar", "registry.example/x"],
        cwd=tmp_path,
        env={
            **os.environ,
            "DOCKER": str(docker),
            "IMAGE_SHA256": "",
            "GITHUB_OUTPUT": str(tmp_path / "output"),
            "GITHUB_ACTIONS": "",  # as outside Actions (this suite also runs under act)
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    served = joblib_sha if runtime == "sklearn" else onnx_sha
    assert f"model-{served[:12]}, champion" in result.stdout
    assert f"tag local:x registry.example/x:model-{served[:12]}" in (tmp_path / "calls").read_text()
    # release.yml's record for deploy.yml (make release-record) reads these three.
    assert (tmp_path / "output").read_text() == (
        f"image=registry.example/x\ndigest=sha256:{'d' * 64}\nmodel_version={served[:12]}\n"
    )
