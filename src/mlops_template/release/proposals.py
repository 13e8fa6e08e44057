"""Proposing an overlay change as environment <env>'s deploy pull request (deploy-pr and
rollback --pr): the checks made before anything is written, then the commit on branch
deploy/<env>, its push and the pull request."""

from __future__ import annotations

import os
import subprocess
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
    actions.git("switch", "--quiet", "--force-create", branch)
    actions.git("add", "--", *paths)
    actions.git(
        "-c", f"user.name={BOT_NAME}", "-c", f"user.email={BOT_EMAIL}",
        "commit", "--quiet", "-m", title, "-m", origin, "--", *paths,
    )  # fmt: skip
    # The branch is the workflow's own, rebuilt from the base each time: force is expected.
    # Pushed with DEPLOY_PR_TOKEN too when it is set: a push made with the workflow's token
    # starts no workflow, so an open pull request's checks would never run on the new commit.
    token = _pr_token_variable()
    push_env = actions.push_env(token)
    actions.git("push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{branch}", env=push_env)
    print(f"deploy-pr: pushed {branch}")
    gh = github.GitHub.from_env(token)
    body = gitops.pr_body(result, run_url, paths, note, local)
    outcome, number, url = gitops.open_or_update_pr(gh, branch, title, body, base)
    print(f"deploy-pr: {outcome} pull request #{number} {url} ({branch} into {base})")
    actions.summary(f"Deploy pull request #{number} {outcome}: {title}")
