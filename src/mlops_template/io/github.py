"""GitHub's REST API for the workflows' privileged steps (urllib only, no dependency).

Everything a privileged job learns from an artifact of an untrusted run is checked here
against what GitHub itself says: the pull request a report belongs to is derived from the
triggering run (its head commit and head repository), and the open retraining pull request
is the one opened from this repository by the bot identity, not any branch named like one.

The token goes only to `GITHUB_API_URL` (what Actions sets): redirects are not followed and
pagination links must point at the same host.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mlops_template import PipelineError

API_VERSION = "2022-11-28"
MAX_PAGES = 50
# The identity a workflow's own GITHUB_TOKEN comments and commits as.
ACTIONS_BOT = "github-actions[bot]"
REPORT_MARKER = "<!-- mlops-template: training report -->"
# GitHub refuses issue comments and pull request bodies over 65536 characters.
MAX_BODY = 65536
REPOSITORY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}")
# A branch name as this project accepts it from an event: git's rules and then some (no
# shell, make or git option metacharacters at all), so a name can only ever be data.
BRANCH_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,199}")
_LINK_NEXT = re.compile(r'<([^<>]+)>\s*;\s*rel="next"')


class GitHubError(PipelineError):
    """The API refused, or answered something that fails a check."""


def validate_branch(name: str) -> str:
    """Return `name` if it is a plain branch name; raise otherwise (never quote, refuse)."""
    if (
        not BRANCH_NAME.fullmatch(name)
        or ".." in name
        or "//" in name
        or "/." in name
        or name.endswith(("/", ".", ".lock"))
    ):
        raise GitHubError(
            f"branch name {name!r} refused: only letters, digits and . _ / - are accepted"
            " (no `..`, `//`, leading `-` or `.`, trailing `/`, `.` or `.lock`)"
        )
    return name


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is an error here: the token never follows it elsewhere


@dataclass(frozen=True)
class GitHub:
    """The REST API for one repository, with one token."""

    token: str
    repository: str
    api_url: str = "https://api.github.com"
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if not REPOSITORY_NAME.fullmatch(self.repository):
            raise GitHubError(f"not a repository name (owner/name): {self.repository!r}")
        parts = urllib.parse.urlsplit(self.api_url)
        if parts.scheme not in {"https", "http"} or not parts.netloc:
            raise GitHubError(f"not an API URL: {self.api_url!r}")
        if not self.token:
            raise GitHubError("no token for GitHub's API")

    @classmethod
    def from_env(cls, token_variable: str = "GITHUB_TOKEN") -> GitHub:  # noqa: S107 (a name)
        repository = os.environ.get("GITHUB_REPOSITORY", "")
        if not repository:
            raise GitHubError("GITHUB_REPOSITORY is not set")
        token = os.environ.get(token_variable, "")
        if not token:
            raise GitHubError(f"{token_variable} is not set")
        api_url = os.environ.get("GITHUB_API_URL") or "https://api.github.com"
        return cls(token, repository, api_url.rstrip("/"))

    def repo_path(self, path: str) -> str:
        return f"repos/{self.repository}/{path}"

    def _url(self, path: str) -> str:
        return f"{self.api_url.rstrip('/')}/{path.lstrip('/')}"

    def _same_host(self, url: str) -> bool:
        mine, theirs = urllib.parse.urlsplit(self.api_url), urllib.parse.urlsplit(url)
        return (mine.scheme, mine.netloc) == (theirs.scheme, theirs.netloc)

    def _send(
        self, method: str, url: str, body: Any = None, expect: tuple[int, ...] = (200,)
    ) -> tuple[Any, str]:
        """(parsed JSON, Link header); raise GitHubError on any other status."""
        if not self._same_host(url):
            raise GitHubError(f"refusing to send the token to another host: {url}")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (checked)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/vnd.github+json")
        request.add_header("X-GitHub-Api-Version", API_VERSION)
        request.add_header("User-Agent", "mlops-template")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=self.timeout) as response:
                status, raw, link = response.status, response.read(), response.headers["Link"]
        except urllib.error.HTTPError as error:
            status, raw, link = error.code, error.read(), None
        except (urllib.error.URLError, OSError) as error:
            raise GitHubError(f"{method} {url}: {error}") from None
        if status not in expect:
            message = raw.decode(errors="replace")[:1000]
            raise GitHubError(f"{method} {url}: HTTP {status}: {message}")
        try:
            parsed = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            raise GitHubError(f"{method} {url}: the answer is not JSON") from None
        return parsed, link or ""

    def request(
        self, method: str, path: str, body: Any = None, expect: tuple[int, ...] = (200,)
    ) -> Any:
        return self._send(method, self._url(path), body, expect)[0]

    def paginate(self, path: str) -> Iterator[Any]:
        """Every item of a list endpoint, following `Link: rel="next"` (same host only)."""
        url: str | None = self._url(path)
        for _ in range(MAX_PAGES):
            if url is None:
                return
            page, link = self._send("GET", url)
            if not isinstance(page, list):
                raise GitHubError(f"GET {url}: expected a list")
            yield from page
            found = _LINK_NEXT.search(link)
            url = found.group(1) if found else None
        if url is not None:
            raise GitHubError(f"GET {path}: more than {MAX_PAGES} pages")


def dig(item: Any, *keys: str) -> Any:
    """`item[k1][k2]...` of a JSON answer, or None where a level is missing or not an object."""
    for key in keys:
        if not isinstance(item, dict):
            return None
        item = item.get(key)
    return item


# --- which pull request a training run's report belongs to ------------------------------


@dataclass(frozen=True)
class ReportTarget:
    """The pull request a train run's report belongs to, as the API says."""

    number: int
    run_url: str
    head_sha: str


def read_pr_number(text: str) -> int:
    value = text.strip()
    if not re.fullmatch(r"[1-9][0-9]{0,9}", value):
        raise GitHubError(f"the artifact's pr_number is not a pull request number: {value!r:.40}")
    return int(value)


def verify_report_target(gh: GitHub, run_id: int, claimed: int) -> ReportTarget:
    """Derive the PR from the triggering run through the API; it must be `claimed`.

    The run (GET actions/runs/ID) gives its head commit, head repository and head branch. A
    pull request of this repository is the run's if its head is in that same repository and
    is that commit or that branch (the branch: train.yml's publish job commits dvc.lock on top
    of the commit it trained). Candidates come from the run's `pull_requests` (empty for fork
    PRs), then the PRs of the commit, then the open PRs of `owner:branch`; each is re-read
    and checked. Only the head repository's owner can have PRs that match, so an artifact that
    names anyone else's pull request fails here."""
    run = gh.request("GET", gh.repo_path(f"actions/runs/{run_id}"))
    if dig(run, "event") != "pull_request":
        raise GitHubError(f"run {run_id} was not started by a pull request")
    head_sha = str(dig(run, "head_sha") or "")
    head_repo = str(dig(run, "head_repository", "full_name") or "")
    head_branch = str(dig(run, "head_branch") or "")
    if not re.fullmatch(r"[0-9a-f]{40}", head_sha) or not head_repo:
        raise GitHubError(f"run {run_id}: no head commit or head repository")
    run_url = str(dig(run, "html_url") or "")

    def matches(pr: Any) -> bool:
        return (
            dig(pr, "base", "repo", "full_name") == gh.repository
            and dig(pr, "head", "repo", "full_name") == head_repo
            and (
                dig(pr, "head", "sha") == head_sha
                or (bool(head_branch) and dig(pr, "head", "ref") == head_branch)
            )
        )

    found: dict[int, Any] = {}

    def derived() -> list[int]:
        return sorted(number for number, pr in found.items() if matches(pr))

    for listed in dig(run, "pull_requests") or []:
        number = dig(listed, "number")
        if isinstance(number, int) and number not in found:
            found[number] = gh.request("GET", gh.repo_path(f"pulls/{number}"))
    if not derived():
        for pr in gh.paginate(gh.repo_path(f"commits/{head_sha}/pulls?per_page=100")):
            found.setdefault(dig(pr, "number"), pr)
    if not derived() and head_branch:
        owner = head_repo.split("/", 1)[0]
        head = urllib.parse.quote(f"{owner}:{head_branch}", safe="")
        for pr in gh.paginate(gh.repo_path(f"pulls?state=open&head={head}&per_page=100")):
            found.setdefault(dig(pr, "number"), pr)

    numbers = derived()
    if claimed in numbers:
        return ReportTarget(claimed, run_url, head_sha)
    belongs = ", ".join(f"#{n}" for n in numbers) or "no pull request of this repository"
    raise GitHubError(
        f"the artifact names pull request #{claimed}, but run {run_id} (commit"
        f" {head_sha[:12]} of {head_repo}) belongs to {belongs}: refusing to post"
    )


# --- which branch a training run's outputs are published to -----------------------------


@dataclass(frozen=True)
class PublishTarget:
    """The open pull request of this repository whose head a train run trained."""

    number: int
    branch: str
    head_sha: str


def verify_publish_target(gh: GitHub, run_id: int) -> PublishTarget | None:
    """publish.yml: the same-repository pull request whose outputs run `run_id` handed over,
    from the API alone (the artifact names nothing here); None when that pull request's head
    has moved on since (a newer run trains and publishes it).

    The run (GET actions/runs/ID) must be a pull request's, from this very repository (a
    fork's outputs are never published: its branch is not ours to push to, whatever its
    name), with a plain head branch name. Its pull request is an open one of this repository,
    from that repository's branch of that name, into this repository; the run's commit must
    still be its head."""
    run = gh.request("GET", gh.repo_path(f"actions/runs/{run_id}"))
    if dig(run, "event") != "pull_request":
        raise GitHubError(f"run {run_id} was not started by a pull request: nothing to publish")
    head_sha = str(dig(run, "head_sha") or "")
    head_repo = str(dig(run, "head_repository", "full_name") or "")
    if head_repo != gh.repository:
        raise GitHubError(
            f"run {run_id} trained a pull request from {head_repo or 'an unknown repository'},"
            f" not {gh.repository}: a fork's outputs are never published"
        )
    if not re.fullmatch(r"[0-9a-f]{40}", head_sha):
        raise GitHubError(f"run {run_id}: no head commit")
    branch = validate_branch(str(dig(run, "head_branch") or ""))

    def ours(pr: Any) -> bool:
        return bool(
            dig(pr, "state") == "open"
            and dig(pr, "base", "repo", "full_name") == gh.repository
            and dig(pr, "head", "repo", "full_name") == gh.repository
            and dig(pr, "head", "ref") == branch
        )

    found: dict[int, Any] = {}
    for listed in dig(run, "pull_requests") or []:
        number = dig(listed, "number")
        if isinstance(number, int) and number not in found:
            found[number] = gh.request("GET", gh.repo_path(f"pulls/{number}"))
    if not any(ours(pr) for pr in found.values()):
        owner = gh.repository.split("/", 1)[0]
        head = urllib.parse.quote(f"{owner}:{branch}", safe="")
        for pr in gh.paginate(gh.repo_path(f"pulls?state=open&head={head}&per_page=100")):
            found.setdefault(dig(pr, "number"), pr)
    candidates = sorted((number, pr) for number, pr in found.items() if ours(pr))
    if not candidates:
        raise GitHubError(
            f"run {run_id} (commit {head_sha[:12]} of branch {branch}) belongs to no open pull"
            f" request of {gh.repository}: nothing to publish"
        )
    for number, pr in candidates:
        if dig(pr, "head", "sha") == head_sha:
            return PublishTarget(int(number), branch, head_sha)
    return None


def upsert_comment(gh: GitHub, number: int, body: str, author: str = ACTIONS_BOT) -> str:
    """Update this project's report comment on PR `number` (by marker and author), or create
    it. Returns "updated" or "created"."""
    if len(body) > MAX_BODY:
        raise GitHubError(f"comment body is {len(body)} characters, over GitHub's {MAX_BODY}")
    for comment in gh.paginate(gh.repo_path(f"issues/{number}/comments?per_page=100")):
        if REPORT_MARKER in str(dig(comment, "body") or "") and (
            dig(comment, "user", "login") == author
        ):
            comment_id = int(dig(comment, "id"))
            gh.request("PATCH", gh.repo_path(f"issues/comments/{comment_id}"), {"body": body})
            return "updated"
    gh.request("POST", gh.repo_path(f"issues/{number}/comments"), {"body": body}, expect=(201,))
    return "created"


# --- the retraining pull request ---------------------------------------------------------


RETRAIN_PREFIX = "retrain/"


def token_login(gh: GitHub) -> str:
    """The login the token acts as (GET /user). GitHub App installation tokens cannot ask:
    name the app's `<slug>[bot]` login in RETRAIN_PR_AUTHOR instead."""
    try:
        login = dig(gh.request("GET", "user"), "login")
    except GitHubError as error:
        raise GitHubError(
            f"could not tell which account RETRAIN_PR_TOKEN belongs to ({error}); set the"
            " repository variable RETRAIN_PR_AUTHOR to its login (for a GitHub App:"
            " `<app-slug>[bot]`)"
        ) from None
    if not isinstance(login, str) or not login:
        raise GitHubError("GET /user: no login in the answer")
    return login


def is_retraining_pr(pr: Any, repository: str, author: str, base: str = "main") -> bool:
    """Opened by the bot, from a retrain/ branch of this very repository, into `base`."""
    return (
        dig(pr, "head", "repo", "full_name") == repository
        and str(dig(pr, "head", "ref") or "").startswith(RETRAIN_PREFIX)
        and dig(pr, "user", "login") == author
        and dig(pr, "base", "ref") == base
    )


def find_open_retraining_pr(gh: GitHub, author: str, base: str = "main") -> int | None:
    """The newest open retraining PR (every page of the open PRs is read), or None."""
    for pr in gh.paginate(gh.repo_path("pulls?state=open&per_page=100")):
        if is_retraining_pr(pr, gh.repository, author, base):
            return int(dig(pr, "number"))
    return None
