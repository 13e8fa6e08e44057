"""Proposing an overlay change as environment <env>'s deploy pull request (deploy-pr and
rollback --pr): the checks made before anything is written, then the commit on branch
deploy/<env>, its push and the pull request."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mlops_template import PipelineError
from mlops_template.io import actions
from mlops_template.io.actions import BOT_EMAIL, BOT_NAME
from mlops_template.release import gitops


def _pr_token_variable() -> str:
    return "DEPLOY_PR_TOKEN" if os.environ.get("DEPLOY_PR_TOKEN") else "GITHUB_TOKEN"


def _git_out(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PipelineError(f"git {args[0]} failed: {done.stderr.strip()[:300]}")
    return done.stdout.strip()


def check_proposable(overlays: Path, env: str, base: str, command: str) -> None:
    """Before anything is written (the overlay, a commit, a branch, the registry's alias):
    deploy/<env> is rebuilt from this checkout's HEAD, so HEAD must be `base`'s tip on
    origin (fetched now) and `env`'s overlay files unmodified; and GITHUB_REPOSITORY and a
    token (DEPLOY_PR_TOKEN or GITHUB_TOKEN) must be set to push and open the pull request.
    Run from a feature branch or a stale checkout, the pushed branch would carry its commits
    or undo main's newer ones."""
    from mlops_template.io import github

    gitops.validate_env(env)
    github.validate_branch(base)
    if not os.environ.get("GITHUB_REPOSITORY"):
        raise PipelineError(
            f"{command}: GITHUB_REPOSITORY is not set: export it (owner/name, e.g."
            " acme/penguins) to name the repository the pull request is opened in;"
            " nothing was changed"
        )
    if not (os.environ.get("DEPLOY_PR_TOKEN") or os.environ.get("GITHUB_TOKEN")):
        raise PipelineError(
            f"{command}: neither DEPLOY_PR_TOKEN nor GITHUB_TOKEN is set: export a token"
            " that may push branches and open pull requests (contents and pull-requests"
            " write); nothing was changed"
        )
    try:
        actions.git("fetch", "--quiet", "--no-tags", "origin", f"refs/heads/{base}",
             env=actions.push_env(_pr_token_variable()))  # fmt: skip
    except PipelineError:
        raise PipelineError(
            f"{command}: could not fetch {base} from origin (see above) to check that this"
            f" checkout is its tip; nothing was changed"
        ) from None
    head = _git_out("rev-parse", "--verify", "HEAD^{commit}")
    tip = _git_out("rev-parse", "--verify", "FETCH_HEAD^{commit}")
    if head != tip:
        where = _git_out("rev-parse", "--abbrev-ref", "HEAD")
        named = "a detached HEAD" if where == "HEAD" else f"branch {where}"
        raise PipelineError(
            f"{command}: HEAD ({named}, {head[:12]}) is not origin/{base} ({tip[:12]}):"
            f" deploy/{env} is built from this checkout, so it would carry whatever differs."
            f" Run `git switch {base} && git pull` (commit or stash your work first) and try"
            " again; nothing was changed"
        )
    folder = overlays / env
    paths = [(folder / gitops.KUSTOMIZATION).as_posix(), (folder / gitops.RELEASE).as_posix()]
    modified = _git_out("status", "--porcelain", "--", *paths)
    if modified:
        raise PipelineError(
            f"{command}: {folder}'s files differ from {base}'s ({modified.splitlines()[0]}"
            f"...): restore them (git restore {' '.join(paths)}) and try again; nothing was"
            " changed"
        )


@dataclass(frozen=True)
class Commit:
    sha: str
    author: str
    subject: str


def _commit(sha: str) -> Commit:
    author, _, subject = _git_out("log", "-1", "--format=%an <%ae>%x00%s", sha).partition("\0")
    return Commit(sha, author[:100], subject[:100])


def previous_branch(branch: str, paths: list[str], env: dict[str, str]) -> tuple[str, list[Commit]]:
    """What origin's `branch` holds before this run rebuilds it: (its commit, "" if there is
    no such branch; the commits on it that are not this workflow's).

    The workflow's own branch is HEAD (the base's tip, checked by check_proposable) or an
    older tip of the base, plus at most one commit by the bot that changes only the overlay's
    two files. Any other commit was pushed by someone else after the pull request was opened:
    its description (written for the bot's commit) no longer describes the branch. The
    branch is reset all the same (refusing would let anyone who can push a branch hold up
    every deploy), and the caller says what was discarded. The author is only a claim (git
    takes any name): a commit that claims the bot but touches other files is foreign too."""
    done = subprocess.run(
        ["git", "ls-remote", "origin", f"refs/heads/{branch}"],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    if done.returncode != 0:
        raise PipelineError(f"git ls-remote failed: {done.stderr.strip()[:300]}")
    listed = done.stdout.split()
    if not listed:
        return "", []
    tip = listed[0]
    actions.git("fetch", "--quiet", "--no-tags", "origin", f"refs/heads/{branch}", env=env)
    if _git_out("rev-parse", "--verify", "FETCH_HEAD^{commit}") != tip:
        raise PipelineError(f"origin's {branch} moved while it was read: re-run")
    beyond = _git_out("rev-list", "--reverse", "--topo-order", tip, "^HEAD").split()
    if beyond and _own(beyond[0], paths):
        beyond = beyond[1:]
    return tip, [_commit(sha) for sha in beyond]


def _own(sha: str, paths: list[str]) -> bool:
    """A commit as propose makes one: by the bot, changing only `paths`, on a commit of the
    base (HEAD or an older tip)."""
    emails = _git_out("log", "-1", "--format=%ae%n%ce", sha).split()
    parents = _git_out("rev-list", "--parents", "-n", "1", sha).split()[1:]
    touched = _git_out("diff-tree", "--no-commit-id", "--name-only", "-r", sha).split()
    on_base = len(parents) == 1 and subprocess.run(
        ["git", "merge-base", "--is-ancestor", parents[0], "HEAD"], check=False
    ).returncode == 0  # fmt: skip
    return emails == [BOT_EMAIL, BOT_EMAIL] and on_base and set(touched) <= set(paths)


def _reset_note(branch: str, foreign: list[Commit]) -> str:
    """The pull request's warning (commit ids only: subjects and names are anyone's text)."""
    for commit in foreign:
        print(f"deploy-pr: {branch} held {commit.sha[:12]} by {commit.author!r}:"
              f" {commit.subject!r}, not this workflow's")  # fmt: skip
    shas = ", ".join(f"`{commit.sha}`" for commit in foreign)
    return (
        f"**{branch} was reset.** It held {len(foreign)} commit(s) this workflow did not make"
        f" ({shas}), pushed after the pull request was opened; this update discarded them."
        f" The branch is again `main`'s tip plus this workflow's one commit. Only the bot"
        f" should push to `{gitops.BRANCH_PREFIX}*` branches (a ruleset: see the deploy docs)."
    )


def _in_actions_run() -> bool:
    return bool(os.environ.get("GITHUB_RUN_ID") and os.environ.get("GITHUB_SERVER_URL"))


def propose(
    result: gitops.Bump, overlays: Path, base: str, title: str, note: str,
    local: str = "make deploy-pr",
) -> None:  # fmt: skip
    """Commit the bumped overlay on branch deploy/<env>, push it and open (or update) its
    pull request. The callers ran check_proposable before anything was bumped; `local`
    names the command in the body when this is no workflow run."""
    from mlops_template.io import github

    env = result.env
    branch = github.validate_branch(f"{gitops.BRANCH_PREFIX}{env}")
    folder = overlays / env
    paths = [(folder / gitops.KUSTOMIZATION).as_posix(), (folder / gitops.RELEASE).as_posix()]
    run_url = actions.run_url() if _in_actions_run() else ""
    origin = f"Run: {run_url}" if run_url else f"Opened by `{local}` (local)"
    token = _pr_token_variable()
    push_env = actions.push_env(token)
    previous, foreign = previous_branch(branch, paths, push_env)
    if foreign:
        note = _reset_note(branch, foreign) + (f"\n\n{note}" if note else "")
    actions.git("switch", "--quiet", "--force-create", branch)
    actions.git("add", "--", *paths)
    actions.git(
        "-c", f"user.name={BOT_NAME}", "-c", f"user.email={BOT_EMAIL}",
        "commit", "--quiet", "-m", title, "-m", origin, "--", *paths,
        env=actions.bot_env(),
    )  # fmt: skip
    # The branch is the workflow's own, rebuilt from the base each time: force is expected,
    # but only over the commit read above (a push made meanwhile fails this one: re-run).
    # Pushed with DEPLOY_PR_TOKEN too when it is set: a push made with the workflow's token
    # starts no workflow, so an open pull request's checks would never run on the new commit.
    lease = f"--force-with-lease=refs/heads/{branch}:{previous}"
    actions.git("push", "--quiet", lease, "origin", f"HEAD:refs/heads/{branch}", env=push_env)
    print(f"deploy-pr: pushed {branch}")
    if foreign:
        shas = ", ".join(commit.sha[:12] for commit in foreign)
        print(f"::warning title={branch} reset::{branch} held {len(foreign)} commit(s) this"
              f" workflow did not make ({shas}); this update discarded them")  # fmt: skip
        actions.summary(f"{branch} held commits this workflow did not make ({shas}): discarded.")
    gh = github.GitHub.from_env(token)
    body = gitops.pr_body(result, run_url, paths, note, local)
    outcome, number, url = gitops.open_or_update_pr(gh, branch, title, body, base)
    print(f"deploy-pr: {outcome} pull request #{number} {url} ({branch} into {base})")
    actions.summary(f"Deploy pull request #{number} {outcome}: {title}")
