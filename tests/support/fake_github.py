"""A recording stand-in for GitHub's REST API on 127.0.0.1: the one test double of the
workflow tests (unit tests of mlops_template.io.github, and the workflows under act, which reach
it through GITHUB_API_URL).

It serves what the workflows ask for from plain dicts (runs, pull requests, the commits' pull
requests, issue comments, the token's user), paginates every list by `page_size` with a
`Link: rel="next"` header as GitHub does, and records every request.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPOSITORY = "acme/penguins"
BOT = "github-actions[bot]"


@dataclass(frozen=True)
class ApiCall:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


def pull_request(
    number: int,
    head_ref: str,
    head_sha: str = "0" * 40,
    head_repo: str = REPOSITORY,
    author: str = "someone",
    base_repo: str = REPOSITORY,
    base_ref: str = "main",
) -> dict[str, Any]:
    """A pull request as GitHub's API returns one (the fields the workflows read)."""
    return {
        "number": number,
        "state": "open",
        "user": {"login": author},
        "head": {"ref": head_ref, "sha": head_sha, "repo": {"full_name": head_repo}},
        "base": {"ref": base_ref, "repo": {"full_name": base_repo}},
        "html_url": f"https://github.com/{base_repo}/pull/{number}",
    }


def workflow_run(
    run_id: int,
    head_sha: str,
    head_branch: str,
    head_repo: str = REPOSITORY,
    pull_requests: list[int] | None = None,
) -> dict[str, Any]:
    """A train run as GET actions/runs/ID returns it. `pull_requests` is empty for forks."""
    return {
        "id": run_id,
        "event": "pull_request",
        "head_sha": head_sha,
        "head_branch": head_branch,
        "head_repository": {"full_name": head_repo},
        "html_url": f"https://github.com/{REPOSITORY}/actions/runs/{run_id}",
        "pull_requests": [{"number": number} for number in pull_requests or []],
    }


@dataclass
class FakeGitHub:
    repository: str = REPOSITORY
    page_size: int = 100
    runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    commit_pulls: dict[str, list[int]] = field(default_factory=dict)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    user: str | None = "retrain-bot"
    created_number: int = 8  # the number the next pull request opened gets
    calls: list[ApiCall] = field(default_factory=list)

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = raw.decode(errors="replace")
                fake.calls.append(ApiCall(self.command, self.path, dict(self.headers), body))
                status, answer, link = fake.answer(self.command, self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if link:
                    self.send_header("Link", link)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _serve  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeGitHub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- what it answers ----------------------------------------------------------------

    def _page(self, path: str, query: dict[str, str], items: list[Any]) -> tuple[Any, str]:
        page = int(query.get("page", "1"))
        start = (page - 1) * self.page_size
        link = ""
        if start + self.page_size < len(items):
            following = urllib.parse.urlencode({**query, "page": str(page + 1)})
            link = f'<{self.url}{path}?{following}>; rel="next"'
        return items[start : start + self.page_size], link

    def answer(self, method: str, target: str, body: Any) -> tuple[int, Any, str]:
        path, _, raw_query = target.partition("?")
        query = dict(urllib.parse.parse_qsl(raw_query))
        prefix = f"/repos/{self.repository}/"
        if path == "/user" and method == "GET":
            if self.user is None:
                return 403, {"message": "Resource not accessible by integration"}, ""
            return 200, {"login": self.user}, ""
        if not path.startswith(prefix):
            return 404, {"message": "Not Found"}, ""
        rest = path[len(prefix) :]
        if method == "GET" and (found := re.fullmatch(r"actions/runs/(\d+)", rest)):
            run = self.runs.get(int(found.group(1)))
            return (200, run, "") if run else (404, {"message": "Not Found"}, "")
        if method == "GET" and (found := re.fullmatch(r"pulls/(\d+)", rest)):
            pr = self.pulls.get(int(found.group(1)))
            return (200, pr, "") if pr else (404, {"message": "Not Found"}, "")
        if method == "GET" and rest == "pulls":
            listed = [pr for _, pr in sorted(self.pulls.items(), reverse=True)]
            if query.get("state") == "open":  # a test closes one by setting its state
                listed = [pr for pr in listed if pr.get("state", "open") == "open"]
            if "head" in query:
                listed = [
                    pr
                    for pr in listed
                    if f"{pr['head']['repo']['full_name'].split('/')[0]}:{pr['head']['ref']}"
                    == query["head"]
                ]
            return (200, *self._page(path, query, listed))
        if method == "PATCH" and (found := re.fullmatch(r"pulls/(\d+)", rest)):
            pr = self.pulls.get(int(found.group(1)))
            if pr is None:
                return 404, {"message": "Not Found"}, ""
            pr.update({key: body[key] for key in ("title", "body") if key in body})
            return 200, pr, ""
        if method == "POST" and rest == "pulls":
            # Listed as open from now on, as GitHub does: a later run finds it (and updates
            # it rather than opening another).
            number = self.created_number
            pr = pull_request(
                number,
                body["head"],
                head_repo=self.repository,
                base_repo=self.repository,
                base_ref=body["base"],
            )
            self.pulls[number] = {**pr, "title": body["title"], "body": body["body"]}
            self.created_number += 1
            return 201, self.pulls[number], ""
        if method == "GET" and (found := re.fullmatch(r"commits/([0-9a-f]{40})/pulls", rest)):
            listed = [self.pulls[n] for n in self.commit_pulls.get(found.group(1), [])]
            return (200, *self._page(path, query, listed))
        if (found := re.fullmatch(r"issues/(\d+)/comments", rest)) and method in {"GET", "POST"}:
            thread = self.comments.setdefault(int(found.group(1)), [])
            if method == "GET":
                return (200, *self._page(path, query, thread))
            comment = {"id": 1000 + len(self.calls), "body": body["body"], "user": {"login": BOT}}
            thread.append(comment)
            return 201, comment, ""
        if method == "PATCH" and (found := re.fullmatch(r"issues/comments/(\d+)", rest)):
            for thread in self.comments.values():
                for comment in thread:
                    if comment["id"] == int(found.group(1)):
                        comment["body"] = body["body"]
                        return 200, comment, ""
            return 404, {"message": "Not Found"}, ""
        return 404, {"message": "Not Found"}, ""

    # --- what the tests read ------------------------------------------------------------

    def requests(self) -> list[tuple[str, str]]:
        return [(call.method, call.path) for call in self.calls]

    def writes(self) -> list[ApiCall]:
        return [call for call in self.calls if call.method != "GET"]
