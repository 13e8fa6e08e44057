"""The GitHub Actions workflows, executed with act on this host.

Actions that would be fetched from GitHub are mapped to small local stubs (act_stubs/ beside
this file): checkout copies the test's clone, setup-uv puts our uv on PATH,
upload/download-artifact copy to a folder. GitHub's REST API is a recording stand-in on
127.0.0.1 (tests/support/fake_github.py). Everything else is real: make, uv, dvc, the pipeline,
git pushes to a bare "origin", and an S3 API (moto) as the DVC remote.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.support.act import PR_NUMBER, act, succeeded
from tests.support.fake_github import REPOSITORY, FakeGitHub, pull_request, workflow_run
from tests.support.project import STAGES, ran_stages, sh
from tests.support.servers import S3_BUCKET, Forge, dvc_remote_secrets, s3_env, use_s3_remote

pytestmark = pytest.mark.slow

# act prefixes each line of a job's log with [workflow/job name].
TRAIN_JOB = "[train/Retrain changed stages and report]"
PUBLISH_JOB = "[publish/Push the outputs and commit dvc.lock (same-repository PRs)]"
TRAIN_RUN_ID = 4242


def pr_event(clone: Path, base: str, head_repo: str) -> dict:
    head = sh(clone, "git", "rev-parse", "HEAD").stdout.strip()
    base_sha = sh(clone, "git", "rev-parse", f"origin/{base}").stdout.strip()
    branch = sh(clone, "git", "branch", "--show-current").stdout.strip()
    return {
        "number": PR_NUMBER,
        "pull_request": {
            "number": PR_NUMBER,
            "head": {"ref": branch, "sha": head, "repo": {"full_name": head_repo}},
            "base": {"ref": base, "sha": base_sha, "repo": {"full_name": REPOSITORY}},
        },
        "repository": {"full_name": REPOSITORY},
    }


def branch_with_fewer_trees(forge: Forge, name: str) -> Path:
    clone = forge.root / name
    sh(forge.root, "git", "clone", "-q", str(forge.origin), name)
    sh(clone, "git", "checkout", "-q", "-b", name)
    params = clone / "params.yaml"
    params.write_text(params.read_text().replace("n_estimators: 100", "n_estimators: 7"))
    sh(clone, "git", "commit", "-q", "-am", "Fewer trees")
    sh(clone, "git", "push", "-q", "origin", name)
    return clone


# TRAIN_RUNS_ON as a team sets it: a self-hosted runner's labels (act offers `mlops-train`).
TRAIN_RUNNER = '["self-hosted", "mlops-train"]'


def train_finished(
    head_sha: str, branch: str, head_repo: str = REPOSITORY, conclusion: str = "success"
) -> dict:
    """The workflow_run event GitHub sends publish.yml (and pr-comment.yml) when a train run
    on a pull request completes."""
    return {
        "workflow_run": {
            "id": TRAIN_RUN_ID,
            "event": "pull_request",
            "conclusion": conclusion,
            "path": ".github/workflows/train.yml",
            "head_sha": head_sha,
            "head_branch": branch,
            "head_repository": {"full_name": head_repo},
        },
        "repository": {"full_name": REPOSITORY},
    }


def publish_run(
    forge: Forge, name: str, artifacts: Path, api: FakeGitHub, event: dict
) -> tuple[int, str]:
    """publish.yml from the default branch (a fresh clone of origin's main whose committed
    .dvc/config names the S3 API: act runs a checkout without a ref in its own copy of the
    tree, which leaves git-ignored files such as config.local out), with the DVC write key;
    GitHub's API is `api`."""
    default_branch = forge.root / name
    sh(forge.root, "git", "clone", "-q", str(forge.origin), default_branch.name)
    sh(default_branch, "dvc", "remote", "modify", "storage", "url", f"s3://{S3_BUCKET}/store")
    sh(default_branch, "dvc", "remote", "modify", "storage", "endpointurl", forge.endpoint)
    sh(default_branch, "git", "commit", "-q", "-am", "main's remote is the S3 API")
    result = act(
        default_branch,
        "workflow_run",
        "publish.yml",
        event,
        secrets={**dvc_remote_secrets(), "GITHUB_TOKEN": "workflow-token-for-tests"},
        env={
            "ACT_STUB_ARTIFACTS": str(artifacts),
            "GITHUB_REPOSITORY": REPOSITORY,
            "GITHUB_API_URL": api.url,
        },
    )
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="module")
def same_repo_run(forge: Forge) -> tuple[Path, str]:
    """train.yml on a same-repo pull request that changes a parameter, with the secrets."""
    clone = branch_with_fewer_trees(forge, "more-trees")
    use_s3_remote(clone, forge.endpoint, "store")
    artifacts = forge.root / "artifacts"
    event = pr_event(clone, "main", REPOSITORY)
    result = act(
        clone,
        "pull_request",
        "train.yml",
        event,
        secrets=dvc_remote_secrets(),
        env={"ACT_STUB_ARTIFACTS": str(artifacts)},
        # The team's larger runner for training (docs/scaling.md).
        variables={"TRAIN_RUNS_ON": TRAIN_RUNNER},
        runners=("ubuntu-latest", "mlops-train"),
    )
    (artifacts / "head-sha").write_text(event["pull_request"]["head"]["sha"])
    return artifacts, succeeded(result)


@pytest.fixture(scope="module")
def published(forge: Forge, same_repo_run: tuple[Path, str]) -> str:
    """publish.yml after that train run: GitHub's API says run 4242 is pull request #7's,
    whose head is the commit it trained."""
    artifacts, _ = same_repo_run
    head = (artifacts / "head-sha").read_text()
    with FakeGitHub() as api:
        api.runs[TRAIN_RUN_ID] = workflow_run(TRAIN_RUN_ID, head, "more-trees",
                                              pull_requests=[PR_NUMBER])  # fmt: skip
        api.pulls[PR_NUMBER] = pull_request(PR_NUMBER, "more-trees", head)
        code, output = publish_run(
            forge, "publish-default-branch", artifacts, api, train_finished(head, "more-trees")
        )
    assert code == 0, output[-6000:]
    assert "Job succeeded" in output
    return output


def test_pull_request_retrains_only_the_changed_stages(same_repo_run: tuple[Path, str]) -> None:
    _, output = same_repo_run
    assert ran_stages(output) == ["train", "evaluate", "behaviour", "explain"]
    for stage in ("ingest", "validate", "split"):
        assert f"Stage '{stage}' didn't change, skipping" in output
    assert "files fetched" in output  # main's outputs came from the S3 remote


def test_a_same_repo_pull_request_trains_on_the_runner_train_runs_on_names(
    forge: Forge,
) -> None:
    """With TRAIN_RUNS_ON naming a runner this host does not offer, act skips the training job
    for want of it (and the publishing job after it): the labels come from the variable.
    (same_repo_run trains on it when it is offered.)"""
    clone = forge.root / "runner-choice"
    sh(forge.root, "git", "clone", "-q", str(forge.origin), clone.name)
    result = act(
        clone,
        "pull_request",
        "train.yml",
        pr_event(clone, "main", REPOSITORY),
        secrets={},
        env={},
        variables={"TRAIN_RUNS_ON": '["self-hosted", "gpu-box"]'},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Skipping unsupported platform -- Try running with `-P gpu-box=" in output
    assert "Job succeeded" not in output


def test_report_is_the_artifact_for_the_comment(same_repo_run: tuple[Path, str]) -> None:
    artifacts, _ = same_repo_run
    report = (artifacts / "pr-report" / "report.md").read_text()
    assert "against `origin/main`" in report or "`origin/main`" in report
    assert "| `model.n_estimators` | `100` | `7` |" in report
    assert (artifacts / "pr-report" / "pr_number").read_text().strip() == str(PR_NUMBER)
    assert (artifacts / "pr-report" / "report_images" / "roc.png").is_file()


def test_dvc_lock_is_committed_back_and_outputs_reach_the_remote(
    forge: Forge, published: str, tmp_path: Path
) -> None:
    log = sh(forge.origin, "git", "log", "-2", "--format=%an|%s", "more-trees").stdout
    assert log.splitlines() == [
        "github-actions[bot]|Update dvc.lock and reports from CI [dvc repro]",
        "test|Fewer trees",
    ]
    changed = sh(forge.origin, "git", "show", "--name-only", "--format=", "more-trees").stdout
    assert "dvc.lock" in changed.split()

    # Proof of the push: a fresh clone with an empty cache fetches the new model from S3.
    sh(tmp_path, "git", "clone", "-q", "--branch", "more-trees", str(forge.origin), "verify")
    verify = tmp_path / "verify"
    use_s3_remote(verify, forge.endpoint, "store")
    assert not (verify / ".dvc" / "cache").exists()
    sh(verify, "dvc", "pull", env=s3_env())
    lock = yaml.safe_load((verify / "dvc.lock").read_text())
    model_out = next(o for o in lock["stages"]["train"]["outs"] if o["path"].endswith(".joblib"))
    assert (verify / model_out["path"]).is_file()
    assert "Data and pipelines are up to date" in sh(verify, "dvc", "status").stdout


def test_the_pull_request_code_ran_without_write_credentials(
    same_repo_run: tuple[Path, str], published: str
) -> None:
    """train ran the PR's pipeline (train.yml has no other job); publish.yml (main's code, no
    PR code) found the PR through the API and pushed, after checking the hand-over."""
    _, output = same_repo_run
    train = "\n".join(line for line in output.splitlines() if line.startswith(TRAIN_JOB))
    assert "Running stage 'train'" in train
    assert "[train/" in output
    assert all(line.startswith(TRAIN_JOB) for line in output.splitlines() if "[train/" in line)
    publish = "\n".join(line for line in published.splitlines() if line.startswith(PUBLISH_JOB))
    assert f"run {TRAIN_RUN_ID} trained pull request #{PR_NUMBER} (more-trees at" in publish
    assert "Running stage" not in publish
    assert re.search(r"publish: \d+ file\(s\) staged; they match their dvc.lock", publish)
    assert "commit-lock: pushed" in publish


def test_publish_does_nothing_for_a_fork_or_a_superseded_run(
    forge: Forge, same_repo_run: tuple[Path, str]
) -> None:
    """A fork's run (its branch named like ours): the job does not run. A run of ours whose
    pull request has a newer head: the job finds that out from the API and pushes nothing."""
    artifacts, _ = same_repo_run
    head = (artifacts / "head-sha").read_text()
    refs_before = sh(forge.origin, "git", "for-each-ref").stdout
    with FakeGitHub() as api:
        fork = train_finished(head, "more-trees", head_repo="eve/penguins")
        code, output = publish_run(forge, "publish-fork", artifacts, api, fork)
        assert code == 0, output[-4000:]
        assert PUBLISH_JOB not in output
        assert api.calls == []
        api.runs[TRAIN_RUN_ID] = workflow_run(TRAIN_RUN_ID, head, "more-trees",
                                              pull_requests=[PR_NUMBER])  # fmt: skip
        api.pulls[PR_NUMBER] = pull_request(PR_NUMBER, "more-trees", "e" * 40)  # pushed since
        code, output = publish_run(
            forge, "publish-superseded", artifacts, api, train_finished(head, "more-trees")
        )
    assert code == 0, output[-4000:]
    assert "has a newer head: the run for that commit publishes it" in output
    assert "commit-lock" not in output
    assert sh(forge.origin, "git", "for-each-ref").stdout == refs_before


def comment_run(forge: Forge, name: str, artifacts: Path, api: FakeGitHub) -> tuple[int, str]:
    """pr-comment.yml for train run 4242 (the GitHub stand-in knows whose run it is)."""
    default_branch = forge.root / name
    sh(forge.root, "git", "clone", "-q", str(forge.origin), default_branch.name)
    result = act(
        default_branch,
        "workflow_run",
        "pr-comment.yml",
        {
            "workflow_run": {"id": 4242, "event": "pull_request", "conclusion": "success"},
            "repository": {"full_name": REPOSITORY},
        },
        secrets={"GITHUB_TOKEN": "workflow-token-for-tests"},
        env={
            "ACT_STUB_ARTIFACTS": str(artifacts),
            "GITHUB_REPOSITORY": REPOSITORY,
            "GITHUB_API_URL": api.url,
        },
    )
    return result.returncode, result.stdout + result.stderr


def test_comment_workflow_posts_the_report(forge: Forge, same_repo_run: tuple[Path, str]) -> None:
    """A fork-style run (no pull_requests in the run): the PR is found by its head commit."""
    artifacts, _ = same_repo_run
    head = (artifacts / "head-sha").read_text()
    with FakeGitHub() as api:
        api.runs[4242] = workflow_run(4242, head, "more-trees")
        api.pulls[PR_NUMBER] = pull_request(PR_NUMBER, "more-trees", head)
        api.commit_pulls[head] = [PR_NUMBER]
        code, output = comment_run(forge, "default-branch", artifacts, api)
    assert code == 0, output[-6000:]
    assert (artifacts / "download-run-id").read_text().strip() == "4242"
    assert f"run 4242 is pull request #{PR_NUMBER}'s (verified)" in output
    assert api.calls[0].headers["Authorization"] == "Bearer workflow-token-for-tests"
    (comment,) = api.comments[PR_NUMBER]
    report = (artifacts / "pr-report" / "report.md").read_text()
    body = comment["body"]
    assert body.startswith("<!-- mlops-template: training report -->\n## Model report")
    assert report.split("### Plots")[0] in body  # the text as written
    assert "![" not in body  # no image goes anywhere ...
    assert "The plots are in the `pr-report` artifact of the [training run]" in body  # ... said


def spoofable_artifacts(forge: Forge, same_repo_run: tuple[Path, str], name: str) -> Path:
    artifacts, _ = same_repo_run
    copy = forge.root / name
    shutil.copytree(artifacts / "pr-report", copy / "pr-report")
    return copy


def test_a_spoofed_pr_number_fails_the_comment_job(
    forge: Forge, same_repo_run: tuple[Path, str]
) -> None:
    """A fork's run whose artifact names another pull request (#5): nothing is posted."""
    artifacts = spoofable_artifacts(forge, same_repo_run, "spoofed-artifacts")
    (artifacts / "pr-report" / "pr_number").write_text("5\n")
    fork_head = "f" * 40
    with FakeGitHub() as api:
        api.runs[4242] = workflow_run(4242, fork_head, "fix", head_repo="eve/penguins")
        api.pulls[9] = pull_request(9, "fix", fork_head, head_repo="eve/penguins")
        api.pulls[5] = pull_request(5, "more-trees", "e" * 40)  # someone else's
        api.commit_pulls[fork_head] = [9]
        code, output = comment_run(forge, "default-branch-spoofed", artifacts, api)
    assert code != 0
    assert "the artifact names pull request #5, but run 4242" in output
    assert "belongs to #9" in output
    assert api.writes() == []
    assert api.comments == {}


def test_a_report_linking_a_file_outside_its_folder_is_refused(
    forge: Forge, same_repo_run: tuple[Path, str]
) -> None:
    artifacts = spoofable_artifacts(forge, same_repo_run, "outside-artifacts")
    report = artifacts / "pr-report" / "report.md"
    report.write_text(
        report.read_text() + "\n![token](../../../../proc/self/environ)\n[x](/etc/passwd)\n"
    )
    head = (same_repo_run[0] / "head-sha").read_text()
    with FakeGitHub() as api:
        api.runs[4242] = workflow_run(4242, head, "more-trees", pull_requests=[PR_NUMBER])
        api.pulls[PR_NUMBER] = pull_request(PR_NUMBER, "more-trees", head)
        code, output = comment_run(forge, "default-branch-outside", artifacts, api)
    assert code != 0
    assert "refused, nothing is posted" in output
    assert "../../../../proc/self/environ" in output
    assert api.calls == []  # refused before anything was asked or posted


def test_fork_pull_request_trains_and_reports_without_secrets(forge: Forge) -> None:
    clone = branch_with_fewer_trees(forge, "from-a-fork")
    before = sh(forge.origin, "git", "rev-parse", "from-a-fork").stdout
    artifacts = forge.root / "fork-artifacts"
    result = act(
        clone,
        "pull_request",
        "train.yml",
        pr_event(clone, "main", "someone/penguins"),
        secrets={},
        env={"ACT_STUB_ARTIFACTS": str(artifacts)},
        # The team's runner is set but not offered here: a fork's code must never reach it, so
        # the job runs only if it asked for GitHub's hosted runner.
        variables={"TRAIN_RUNS_ON": TRAIN_RUNNER},
    )
    output = succeeded(result)
    assert "pull: no DVC remote credentials" in output
    assert not (artifacts / "pipeline-outputs").exists()  # nothing is handed over to publish
    assert ran_stages(output) == list(STAGES)  # no cache to reuse: everything runs
    assert (
        "| `model.n_estimators` | `100` | `7` |"
        in (artifacts / "pr-report" / "report.md").read_text()
    )
    assert sh(forge.origin, "git", "rev-parse", "from-a-fork").stdout == before


def test_ci_workflow_lints_and_tests(forge: Forge) -> None:
    clone = forge.root / "ci"
    sh(forge.root, "git", "clone", "-q", str(forge.origin), clone.name)
    result = act(
        clone,
        "push",
        "ci.yml",
        {"ref": "refs/heads/main", "repository": {"full_name": "acme/penguins"}},
        secrets={},
        # `make ci` as on GitHub, but each of its two pytest runs gets a few tests (the unit
        # run a module, the real-service run promtool's check): the slow and docker tests are
        # what is running this one (most of an hour), and the whole suite runs on this same
        # tree around it. What is checked here is the job's wiring: provision, lint, then both
        # pytest runs under MLOPS_FAIL_ON_SKIP, and coverage's report (a few tests cover a
        # fraction of src/, so the floor is 0 here; the whole suite around this one has it).
        env={
            "PYTEST_ADDOPTS": "-p no:cacheprovider --color=no tests/unit/config/test_params.py"
            " tests/integration/test_prometheus.py::test_promtool_accepts_the_config_and_the_rules",
            "COVERAGE_FLOOR": "0",
        },
    )
    output = succeeded(result)
    assert "provision: " in output
    assert "ruff check" in output
    assert len(re.findall(r"=+ \d+ passed", output)) == 2  # two pytest runs, both green
    assert re.search(r"=+ 1 passed\b", output)  # the real-service run's one (on xdist workers)
    assert "MLOPS_FAIL_ON_SKIP=1" in output  # a skip would have failed the job
    assert re.search(r"^.*TOTAL +\d+ +\d+ +\d+\.\d%", output, re.MULTILINE)  # both runs measured
    assert "--fail-under=0" in output


def test_merge_queue_rechecks_the_candidate_against_main_and_pushes_nothing(
    forge: Forge,
) -> None:
    """train.yml on `merge_group`. The candidate is a PR on top of main whose train run had
    committed its dvc.lock and pushed its outputs. In the queue the release's rebuild passes,
    nothing else re-runs, the report compares with main as it is now, and nothing is pushed."""
    clone = forge.root / "queue"
    sh(forge.root, "git", "clone", "-q", str(forge.origin), clone.name)
    use_s3_remote(clone, forge.endpoint, "store")
    queue_branch = "gh-readonly-queue/main/pr-7-candidate"
    sh(clone, "git", "checkout", "-q", "-b", queue_branch)
    params = clone / "params.yaml"
    params.write_text(params.read_text().replace("n_estimators: 100", "n_estimators: 5"))
    sh(clone, "dvc", "pull", env=s3_env())
    sh(clone, "dvc", "repro")
    sh(clone, "dvc", "push", env=s3_env())
    sh(clone, "git", "add", "-A")
    sh(clone, "git", "commit", "-q", "-m", "Fewer trees, with the dvc.lock train committed")
    sh(clone, "git", "push", "-q", "origin", queue_branch)
    refs_before = sh(forge.origin, "git", "for-each-ref").stdout
    artifacts = forge.root / "queue-artifacts"
    result = act(
        clone,
        "merge_group",
        "train.yml",
        {
            "action": "checks_requested",
            "merge_group": {
                "head_sha": sh(clone, "git", "rev-parse", "HEAD").stdout.strip(),
                "head_ref": f"refs/heads/{queue_branch}",
                "base_sha": sh(clone, "git", "rev-parse", "origin/main").stdout.strip(),
                "base_ref": "refs/heads/main",
            },
            "repository": {"full_name": "acme/penguins"},
        },
        secrets=dvc_remote_secrets(),
        env={"ACT_STUB_ARTIFACTS": str(artifacts)},
    )
    output = succeeded(result)
    # The release's rebuild: every stage once, from nothing; then `make run` has nothing to do.
    assert "outputs are byte for byte the ones dvc.lock names" in output
    assert ran_stages(output) == list(STAGES)
    assert all(output.count(f"Running stage '{stage}'") == 1 for stage in STAGES)
    report = (artifacts / "pr-report" / "report.md").read_text()
    assert "`origin/main`" in report
    assert "| `model.n_estimators` | `100` | `5` |" in report
    assert not (artifacts / "pr-report" / "pr_number").exists()  # no PR: pr-comment skips it
    assert "commit-lock" not in output
    assert not (artifacts / "pipeline-outputs").exists()  # nothing for publish.yml
    assert sh(forge.origin, "git", "for-each-ref").stdout == refs_before


def test_docs_workflow_builds_the_site_and_publishes_what_it_built(forge: Forge) -> None:
    """docs.yml on a push to main: `make docs` builds the site offline and strictly, the
    Pages artifact is that site, and the deploy job (Pages, OIDC) publishes it."""
    clone = forge.root / "docs"
    sh(forge.root, "git", "clone", "-q", str(forge.origin), clone.name)
    artifacts, record = forge.root / "docs-artifacts", forge.root / "docs-record"
    record.mkdir()
    result = act(
        clone,
        "push",
        "docs.yml",
        {"ref": "refs/heads/main", "repository": {"full_name": REPOSITORY}},
        secrets={},
        env={"ACT_STUB_ARTIFACTS": str(artifacts), "ACT_STUB_RECORD": str(record)},
    )
    output = succeeded(result)
    assert "mkdocs build --strict" in output
    site = artifacts / "github-pages"
    for page in ("index.html", "architecture/index.html", "reference/cli/index.html"):
        assert (site / page).is_file(), page
    assert "mlops stage ingest" in (site / "reference" / "cli" / "index.html").read_text()
    assert (record / "pages-deployed").read_text().strip() == "github-pages"
