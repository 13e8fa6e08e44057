"""`mlops deploy history`: every deployment per environment, newest first, from the overlays' git
history on main, with the pull request that merged each one, who merged it and who approved
it (against the GitHub stand-in) and the registry version it served (a stand-in registry);
each source optional and named; hostile answers never shown as they came."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mlops_template import PipelineError
from mlops_template.io.github import GitHub
from mlops_template.release import gitops, history, releases
from tests.repo import test_k8s
from tests.support.fake_github import REPOSITORY, FakeGitHub, pull_request
from tests.unit.release.test_gitops import mlops
from tests.unit.release.test_releases import NAME, Registry, Version

IMAGE = "ghcr.io/acme/penguins"
A = gitops.Release(IMAGE, "sha256:" + "aa" * 32, "aaaaaaaaaaaa")
B = gitops.Release(IMAGE, "sha256:" + "bb" * 32, "bbbbbbbbbbbb")
C = gitops.Release(IMAGE, "sha256:" + "cc" * 32, "cccccccccccc")


@dataclass
class ReviewingGitHub(FakeGitHub):
    """The stand-in, plus the reviews of a pull request (GET pulls/N/reviews)."""

    reviews: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def answer(self, method: str, target: str, body: Any) -> tuple[int, Any, str]:
        path, _, raw_query = target.partition("?")
        found = re.fullmatch(rf"/repos/{self.repository}/pulls/(\d+)/reviews", path)
        if method == "GET" and found:
            query = dict(urllib.parse.parse_qsl(raw_query))
            return (200, *self._page(path, query, self.reviews.get(int(found.group(1)), [])))
        return super().answer(method, target, body)


def review(login: str, state: str) -> dict[str, Any]:
    return {"user": {"login": login}, "state": state}


def git(cwd: Path, *args: str, when: str = "2026-01-01T00:00:00+00:00") -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.com",
           "GIT_COMMITTER_NAME": "GitHub", "GIT_COMMITTER_EMAIL": "noreply@github.com",
           "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}  # fmt: skip
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip


@dataclass
class Repo:
    root: Path
    merges: list[str] = field(default_factory=list)

    @property
    def overlays(self) -> Path:
        return self.root / gitops.OVERLAYS

    def merge(self, env: str, release: gitops.Release, when: str, number: int) -> str:
        """A deploy pull request merged with a merge commit, as GitHub's merge button does."""
        branch = f"deploy/{env}"
        git(self.root, "switch", "-q", "-c", branch)
        gitops.bump(self.overlays, env, release)
        git(self.root, "commit", "-qam", f"Deploy model {release.model_version}", when=when)
        git(self.root, "switch", "-q", "main")
        git(self.root, "merge", "-q", "--no-ff", "-m", f"Merge pull request #{number}", branch,
            when=when)  # fmt: skip
        git(self.root, "branch", "-q", "-D", branch)
        self.merges.append(git(self.root, "rev-parse", "HEAD"))
        return self.merges[-1]

    def push(self, env: str, release: gitops.Release, when: str) -> str:
        """A commit straight to main, no pull request."""
        gitops.bump(self.overlays, env, release)
        git(self.root, "commit", "-qam", "hotfix", when=when)
        return git(self.root, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    """main: the placeholder overlays; production gets A, B, then A back (the rollback),
    staging A by a direct push; an edit of production's replicas deploys nothing."""
    root = tmp_path / "repo"
    shutil.copytree(test_k8s.K8S, root / "deploy" / "k8s")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "deploy")
    git(root, "commit", "-qm", "overlays", when="2026-01-01T00:00:00+00:00")
    made = Repo(root)
    made.merge("production", A, "2026-01-02T10:00:00+02:00", 11)
    made.merge("production", B, "2026-01-03T10:00:00+00:00", 12)
    patch = made.overlays / "production" / "kustomization.yaml"
    patch.write_text(patch.read_text() + "# a comment, not a deployment\n")
    git(root, "commit", "-qam", "comment", when="2026-01-03T11:00:00+00:00")
    made.merge("production", A, "2026-01-04T10:00:00+00:00", 13)
    made.push("staging", A, "2026-01-05T10:00:00+00:00")
    return made


def digests(rows: list[history.Deployment]) -> list[str]:
    return [row.digest for row in rows]


def test_git_alone_lists_each_change_of_what_is_served_newest_first(repo: Repo) -> None:
    result = history.history(repo.root, gitops.OVERLAYS, list(gitops.ENVIRONMENTS))
    production = result.deployments["production"]
    assert digests(production) == [A.digest, B.digest, A.digest, gitops.PLACEHOLDER_DIGEST]
    assert [row.state for row in production] == ["released"] * 3 + ["placeholder"]
    assert [row.commit for row in production[:3]] == repo.merges[::-1]
    assert [row.time for row in production] == [
        "2026-01-04T10:00:00Z", "2026-01-03T10:00:00Z", "2026-01-02T08:00:00Z",  # UTC
        "2026-01-01T00:00:00Z"]  # fmt: skip
    assert production[0].model_version == A.model_version
    assert production[0].note == "back to the release deployed 2026-01-02T08:00:00Z"
    assert production[1].note == ""
    assert production[0].author == "Ada"
    assert production[0].pr is None
    staging = result.deployments["staging"]
    assert digests(staging) == [A.digest, gitops.PLACEHOLDER_DIGEST]
    assert result.sources["github"].startswith("not used")
    assert result.sources["registry"].startswith("not used")
    assert result.sources["git"] == "main: the overlays' commits"


def test_github_names_the_pull_request_who_merged_and_who_approved(repo: Repo) -> None:
    with ReviewingGitHub() as api:
        for number, merge in zip((11, 12, 13), repo.merges, strict=True):
            api.pulls[number] = {
                **pull_request(number, "deploy/production"),
                "state": "closed", "merged_at": "2026-01-02T08:00:00Z",
                "merge_commit_sha": merge, "merged_by": {"login": f"merger{number}"},
                "title": f"Deploy #{number}\x1b[31m",
            }  # fmt: skip
            api.commit_pulls[merge] = [number]
        # Another pull request containing the commit, not the one that merged it.
        api.pulls[20] = {**pull_request(20, "feature"), "merged_at": "x",
                         "merge_commit_sha": "f" * 40}  # fmt: skip
        api.commit_pulls[repo.merges[0]] = [20, 11]
        api.reviews[11] = [review("alice", "CHANGES_REQUESTED"), review("alice", "APPROVED"),
                           review("bob", "APPROVED"), review("carol", "COMMENTED"),
                           review("dave", "APPROVED"), review("dave", "DISMISSED"),
                           review("eve\x1b[2J", "APPROVED")]  # fmt: skip
        api.reviews[12] = [review("bob", "APPROVED"), review("bob", "CHANGES_REQUESTED")]
        api.reviews[13] = [review("carol", "APPROVED")]
        gh = GitHub("token", REPOSITORY, api.url)
        result = history.history(repo.root, gitops.OVERLAYS, ["production", "staging"], gh=gh)
    production = result.deployments["production"]
    assert [row.pr for row in production] == [13, 12, 11, None]
    assert [row.merged_by for row in production[:3]] == ["merger13", "merger12", "merger11"]
    assert [row.approved_by for row in production[:3]] == [("carol",), (), ("alice", "bob")]
    assert production[0].pr_title == "Deploy #13?[31m"  # made printable
    (pushed, _) = result.deployments["staging"]
    assert pushed.pr is None
    assert pushed.note == "pushed to main directly: no pull request"
    assert result.sources["github"] == f"{REPOSITORY}: merged pull requests and their reviews"
    assert all(call.method == "GET" for call in api.calls)


def test_the_registry_names_the_version_each_release_served(repo: Repo) -> None:
    registry = Registry({"1": Version("1"), "2": Version("2"), "3": Version("3")})
    releases.record_image(registry, NAME, "1", A)
    releases.record_image(registry, NAME, "2", C)  # then B replaced C: the audit keeps C
    releases.record_image(registry, NAME, "2", B)
    registry.versions["2"].tags["promotion.20260103T000000.000000Z"] = json.dumps(
        {"promoted": True, "at": "20260103T000000Z", "actor": "ci\x07"}
    )
    registry.versions["3"].tags["image"] = json.dumps({"digest": "sha256:" + "ee" * 32})
    registry.versions["3"].tags["onnx_sha256"] = "dd" * 32  # model version dddddddddddd
    registry.versions["1"].tags["image.20260101T000000.000000Z"] = "not json"
    result = history.history(repo.root, gitops.OVERLAYS, ["production"],
                             registry=(registry, NAME))  # fmt: skip
    production = result.deployments["production"]
    assert [row.registry_version for row in production] == ["1", "2", "1", None]
    assert {row.registry_match for row in production[:3]} == {"digest"}
    assert production[1].promoted == "20260103T000000Z by ci?"
    other = history.with_registry(
        history.registry_index(registry, NAME),
        [dataclasses.replace(production[0], digest="sha256:" + "99" * 32,
                         model_version="dddddddddddd")],
    )  # fmt: skip
    assert (other[0].registry_version, other[0].registry_match) == ("3", "model_version")


def test_an_overlay_that_no_longer_parses_is_shown_as_unreadable(repo: Repo) -> None:
    kustomization = repo.overlays / "production" / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace("    digest: ", "    digest:  "))
    git(repo.root, "commit", "-qam", "broken", when="2026-01-06T00:00:00+00:00")
    (row, *_) = history.history(repo.root, gitops.OVERLAYS, ["production"]).deployments[
        "production"]  # fmt: skip
    assert row.state == "unreadable"
    assert "expected one `digest:` line" in row.note


def test_the_command_prints_a_table_or_json_and_names_its_sources(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"GITHUB_TOKEN": "", "MLFLOW_TRACKING_URI": ""}
    table = mlops("deploy", "history", "--env", "production", cwd=repo.root, **env)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == "Deployments from the overlays on main, newest first."
    assert "  github: not used (GITHUB_TOKEN and GITHUB_REPOSITORY not set)" in lines
    header = next(i for i, line in enumerate(lines) if "time (UTC)" in line)
    rows = lines[header + 1 :]
    assert rows[0].split()[:5] == ["2026-01-04", "10:00:00", A.model_version,
                                   A.digest[:19], repo.merges[2][:8]]  # fmt: skip
    assert rows[1].split()[3] == B.digest[:19]
    assert "placeholder" in rows[3]
    assert "staging" not in table.stdout
    # From outside the repository too: the overlays' own repository is read.
    elsewhere = mlops("deploy", "history", "--env", "staging", "--format", "json", "--overlays",
                      str(repo.overlays), cwd=repo.root.parent, **env)  # fmt: skip
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert json.loads(elsewhere.stdout)["environments"]["staging"][0]["digest"] == A.digest
    data = json.loads(mlops("deploy", "history", "--format", "json", cwd=repo.root, **env).stdout)
    assert set(data["environments"]) == {"staging", "production"}
    assert [row["digest"] for row in data["environments"]["production"]][:3] == [
        A.digest, B.digest, A.digest]  # fmt: skip
    # Refused before anything is read.
    from mlops_template.cli import deploy

    for name in env:
        monkeypatch.delenv(name, raising=False)
    params, overlays = repo.root / "params.yaml", repo.overlays
    for case in (
        (["production"], "yaml", None, "--format 'yaml' refused"),
        (["prod"], "table", None, "environment 'prod' refused"),
        (["production"], "table", "-x", "branch name '-x' refused"),
        (["production"], "table", "nope", "no branch nope"),
    ):
        envs, output, ref, message = case
        with pytest.raises(PipelineError, match=re.escape(message)):
            deploy._history(params, envs, output, ref, overlays)


def test_a_shallow_clone_is_refused_before_anything_is_printed(repo: Repo, tmp_path: Path) -> None:
    """Actions' default checkout holds one commit: its log would list that commit as a
    deployment of whatever it serves, and nothing older. No answer rather than a wrong one."""
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", repo.root.as_uri(), str(shallow))
    assert git(shallow, "rev-parse", "--is-shallow-repository") == "true"
    env = {"GITHUB_TOKEN": "", "MLFLOW_TRACKING_URI": ""}
    for output in ("table", "json"):
        result = mlops("deploy", "history", "--format", output, cwd=shallow, **env)
        assert result.returncode == 1
        assert result.stdout == ""
        assert "shallow clone: the history of main is incomplete here" in result.stderr
        assert "git fetch --unshallow" in result.stderr
        assert "fetch-depth: 0" in result.stderr
    git(shallow, "fetch", "-q", "--unshallow")  # as told: then it answers
    result = mlops(
        "deploy", "history", "--env", "production", "--format", "json", cwd=shallow, **env
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["environments"]["production"]
    assert [row["digest"] for row in rows] == [A.digest, B.digest, A.digest,
                                               gitops.PLACEHOLDER_DIGEST]  # fmt: skip
