"""mlops_template.io.github against a recording stand-in for GitHub's REST API: which pull
request a report belongs to, which branch a run's outputs are published to, the report
comment, the open retraining pull request, and the names from events that the workflows and
the Makefile accept."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mlops_template.io.github import (
    REPORT_MARKER,
    GitHub,
    GitHubError,
    PublishTarget,
    find_open_retraining_pr,
    token_login,
    upsert_comment,
    validate_branch,
    verify_publish_target,
    verify_report_target,
)
from tests.conftest import REPO_ROOT
from tests.support.fake_github import REPOSITORY, FakeGitHub, pull_request, workflow_run

HEAD = "a" * 40
OTHER = "b" * 40


@pytest.fixture
def api() -> FakeGitHub:
    with FakeGitHub() as fake:
        yield fake


def client(api: FakeGitHub) -> GitHub:
    return GitHub("token-for-tests", REPOSITORY, api.url)


# --- the report's pull request -------------------------------------------------------------


def test_a_same_repository_run_is_its_pull_requests(api: FakeGitHub) -> None:
    api.runs[4242] = workflow_run(4242, HEAD, "more-trees", pull_requests=[7])
    api.pulls[7] = pull_request(7, "more-trees", HEAD)
    target = verify_report_target(client(api), 4242, 7)
    assert target.number == 7
    assert target.run_url.endswith("/actions/runs/4242")
    assert api.requests() == [
        ("GET", f"/repos/{REPOSITORY}/actions/runs/4242"),
        ("GET", f"/repos/{REPOSITORY}/pulls/7"),
    ]
    assert api.calls[0].headers["Authorization"] == "Bearer token-for-tests"


def test_a_fork_run_is_found_by_its_commit_then_by_owner_and_branch(api: FakeGitHub) -> None:
    """workflow_run.pull_requests is empty for fork PRs."""
    api.runs[1] = workflow_run(1, HEAD, "fix", head_repo="someone/penguins")
    api.pulls[9] = pull_request(9, "fix", HEAD, head_repo="someone/penguins")
    api.commit_pulls[HEAD] = [9]
    assert verify_report_target(client(api), 1, 9).number == 9
    api.commit_pulls.clear()
    api.calls.clear()
    assert verify_report_target(client(api), 1, 9).number == 9
    assert api.requests()[-1] == (
        "GET",
        f"/repos/{REPOSITORY}/pulls?state=open&head=someone%3Afix&per_page=100",
    )


def test_the_pr_branch_moved_on_by_the_dvc_lock_commit_still_matches(api: FakeGitHub) -> None:
    api.runs[3] = workflow_run(3, HEAD, "more-trees", pull_requests=[7])
    api.pulls[7] = pull_request(7, "more-trees", OTHER)  # train committed dvc.lock on top
    assert verify_report_target(client(api), 3, 7).number == 7


def test_a_spoofed_pr_number_fails_loudly(api: FakeGitHub) -> None:
    """A fork's artifact names someone else's pull request (#5): refused, naming the truth."""
    api.runs[1] = workflow_run(1, HEAD, "fix", head_repo="someone/penguins")
    api.pulls[9] = pull_request(9, "fix", HEAD, head_repo="someone/penguins")
    api.pulls[5] = pull_request(5, "fix", OTHER)  # a same-named branch of the base repository
    api.commit_pulls[HEAD] = [9, 5]
    with pytest.raises(GitHubError, match=r"names pull request #5, but run 1 .* belongs to #9"):
        verify_report_target(client(api), 1, 5)


def test_a_run_with_no_pull_request_of_this_repository_is_refused(api: FakeGitHub) -> None:
    api.runs[1] = workflow_run(1, HEAD, "fix", head_repo="someone/penguins")
    api.pulls[5] = pull_request(5, "main", OTHER)
    with pytest.raises(GitHubError, match="belongs to no pull request of this repository"):
        verify_report_target(client(api), 1, 5)


def test_a_run_not_started_by_a_pull_request_is_refused(api: FakeGitHub) -> None:
    api.runs[1] = {**workflow_run(1, HEAD, "main"), "event": "push"}
    with pytest.raises(GitHubError, match="not started by a pull request"):
        verify_report_target(client(api), 1, 1)


# --- where a run's outputs are published -------------------------------------------------


def test_a_same_repository_run_publishes_to_its_pull_requests_branch(api: FakeGitHub) -> None:
    api.runs[4242] = workflow_run(4242, HEAD, "more-trees", pull_requests=[7])
    api.pulls[7] = pull_request(7, "more-trees", HEAD)
    target = verify_publish_target(client(api), 4242)
    assert target == PublishTarget(7, "more-trees", HEAD)
    api.runs[5] = workflow_run(5, HEAD, "more-trees")  # not listed in the run: by branch
    api.calls.clear()
    assert verify_publish_target(client(api), 5) == target
    listing = f"/repos/{REPOSITORY}/pulls?state=open&head=acme%3Amore-trees&per_page=100"
    assert api.requests()[-1] == ("GET", listing)


def test_a_pull_request_whose_head_moved_on_is_not_published_here(api: FakeGitHub) -> None:
    api.runs[3] = workflow_run(3, HEAD, "more-trees", pull_requests=[7])
    api.pulls[7] = pull_request(7, "more-trees", OTHER)  # pushed since: a newer run publishes
    assert verify_publish_target(client(api), 3) is None


@pytest.mark.parametrize(
    ("run", "pulls", "message"),
    [
        # A fork named its branch like one of ours (even `main`): never published.
        (workflow_run(1, HEAD, "main", head_repo="eve/penguins", pull_requests=[9]),
         [pull_request(9, "main", HEAD, head_repo="eve/penguins")],
         "trained a pull request from eve/penguins, not acme/penguins: a fork's outputs"),
        ({**workflow_run(1, HEAD, "main"), "event": "push"}, [],
         "was not started by a pull request"),
        (workflow_run(1, HEAD, "gone"), [], "belongs to no open pull request of acme/penguins"),
        # Our branch, but the pull request is closed, or into another repository.
        (workflow_run(1, HEAD, "x", pull_requests=[4]),
         [{**pull_request(4, "x", HEAD), "state": "closed"}], "belongs to no open pull request"),
        (workflow_run(1, HEAD, "x", pull_requests=[4]),
         [pull_request(4, "x", HEAD, base_repo="eve/penguins")], "belongs to no open pull"),
        (workflow_run(1, HEAD, "-x", pull_requests=[4]), [], "branch name '-x' refused"),
    ],
    ids=["fork", "push", "no-pr", "closed", "other-base", "hostile-branch"],
)  # fmt: skip
def test_a_run_that_is_not_an_open_same_repository_pull_requests_publishes_nothing(
    api: FakeGitHub, run: dict, pulls: list[dict], message: str
) -> None:
    api.runs[1] = run
    api.pulls.update({pr["number"]: pr for pr in pulls})
    with pytest.raises(GitHubError, match=message):
        verify_publish_target(client(api), 1)


def test_every_page_is_read(api: FakeGitHub) -> None:
    api.page_size = 1
    api.runs[1] = workflow_run(1, HEAD, "fix", head_repo="someone/penguins")
    for number in (3, 4, 9):
        api.pulls[number] = pull_request(number, "x", OTHER, head_repo="someone/penguins")
    api.pulls[9]["head"].update(ref="fix", sha=HEAD)
    api.commit_pulls[HEAD] = [3, 4, 9]
    assert verify_report_target(client(api), 1, 9).number == 9
    pages = [path for method, path in api.requests() if "/commits/" in path]
    assert len(pages) == 3
    assert pages[-1].endswith("page=3")


def test_the_token_never_follows_a_link_to_another_host(api: FakeGitHub) -> None:
    gh = client(api)
    original = api.answer

    def elsewhere(method: str, target: str, body: object) -> tuple[int, object, str]:
        status, answer, _ = original(method, target, body)
        return status, answer, '<https://evil.example/steal?page=2>; rel="next"'

    api.answer = elsewhere  # type: ignore[method-assign]
    api.runs[1] = workflow_run(1, HEAD, "fix", head_repo="someone/penguins")
    with pytest.raises(GitHubError, match="another host"):
        list(gh.paginate(gh.repo_path(f"commits/{HEAD}/pulls")))


def test_an_api_error_names_the_status(api: FakeGitHub) -> None:
    with pytest.raises(GitHubError, match="HTTP 404"):
        verify_report_target(client(api), 404, 1)


# --- the report comment ----------------------------------------------------------------


def test_the_report_comment_is_created_then_updated(api: FakeGitHub) -> None:
    gh = client(api)
    # Someone quoting the marker is not the bot: their comment is left alone.
    api.comments[7] = [{"id": 1, "body": f"{REPORT_MARKER} me too", "user": {"login": "eve"}}]
    assert upsert_comment(gh, 7, f"{REPORT_MARKER}\nfirst") == "created"
    assert upsert_comment(gh, 7, f"{REPORT_MARKER}\nsecond") == "updated"
    bodies = [comment["body"] for comment in api.comments[7]]
    assert bodies == [f"{REPORT_MARKER} me too", f"{REPORT_MARKER}\nsecond"]
    assert [call.method for call in api.writes()] == ["POST", "PATCH"]


def test_an_oversized_comment_is_refused_before_any_request(api: FakeGitHub) -> None:
    with pytest.raises(GitHubError, match="over GitHub's"):
        upsert_comment(client(api), 7, "x" * 70000)
    assert api.calls == []


# --- the open retraining pull request ------------------------------------------------------


def test_only_the_bots_retrain_branch_of_this_repository_counts(api: FakeGitHub) -> None:
    api.page_size = 1
    api.pulls[12] = pull_request(12, "retrain/x", head_repo="eve/penguins", author="retrain-bot")
    api.pulls[11] = pull_request(11, "retrain/x", head_repo="eve/penguins", author="eve")
    api.pulls[10] = pull_request(10, "retrain/2026-01-05-1", author="alice")  # by hand
    api.pulls[9] = pull_request(9, "retrain/2026-01-05-2", author="retrain-bot", base_ref="dev")
    api.pulls[8] = pull_request(8, "retrain/2026-01-01-7", author="retrain-bot")
    assert find_open_retraining_pr(client(api), "retrain-bot") == 8
    assert len(api.calls) == 5  # one pull request per page: every page read
    del api.pulls[8]
    assert find_open_retraining_pr(client(api), "retrain-bot") is None


def test_the_bot_is_the_tokens_account(api: FakeGitHub) -> None:
    assert token_login(client(api)) == "retrain-bot"
    api.user = None  # a GitHub App installation token cannot ask
    with pytest.raises(GitHubError, match="RETRAIN_PR_AUTHOR"):
        token_login(client(api))


# --- names from events -------------------------------------------------------------------

HOSTILE = [
    "x`touch pwned-backtick`",
    "x$(touch pwned-dollar)",
    "x$(shell touch pwned-make)",
    "-x",
    "a..b",
    "a//b",
    "a/.b",
    "a/",
    "a.",
    "a.lock",
    "a b",
    "a;b",
    "a\nb",
    "",
]


@pytest.mark.parametrize("name", ["main", "retrain/2026-01-05-42-2", "feat/x_y.z-1"])
def test_plain_branch_names_pass(name: str) -> None:
    assert validate_branch(name) == name


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_branch_names_are_refused(name: str) -> None:
    with pytest.raises(GitHubError, match="refused"):
        validate_branch(name)
    result = subprocess.run(
        [REPO_ROOT / ".ci" / "commit-lock", name], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2


def test_the_makefile_never_runs_a_branch_pr_or_base_name(tmp_path: Path) -> None:
    """BRANCH, PR, BASE_REF and BASE arrive from events: make must not expand them and the
    shell must not run them (they are read as "$$NAME", never pasted into the recipe)."""
    hostile = f"x$(shell touch {tmp_path}/make)`touch {tmp_path}/tick`$(touch {tmp_path}/dollar)"
    env = {
        **os.environ,
        "BRANCH": hostile,
        "PR": hostile,
        "BASE_REF": hostile,
        "AWS_ACCESS_KEY_ID": "set",
        "GITHUB_STEP_SUMMARY": "",
    }
    fake = {"UV": "/bin/true", "RUN": "echo"}
    overrides = [f"{key}={value}" for key, value in fake.items()]
    for target in ("report", "publish", "diff"):
        subprocess.run(
            ["make", "--no-print-directory", "-C", str(REPO_ROOT), target, *overrides],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    assert sorted(path.name for path in tmp_path.iterdir()) == []
    report = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO_ROOT), "report", *overrides],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert report.returncode != 0
    assert "PR is not a pull request number" in report.stderr
    diff = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO_ROOT), "diff", *overrides],
        env={**env, "BASE_REF": "refs/heads/release/1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert "echo dvc params diff origin/release/1" in diff.stderr  # set -x shows the command
