"""What a command running in a GitHub Actions job needs from its run: git with the job's
token (never on a command line), the step summary and outputs, and the run's URL. Shared by
the workflow commands (cli/ci.py) and the deploy pull requests (release/proposals.py)."""

from __future__ import annotations

import base64
import os
import subprocess

from mlops_template import PipelineError

BOT_NAME = "github-actions[bot]"
BOT_EMAIL = "41898282+github-actions[bot]@users.noreply.github.com"


def github_output(**values: str) -> None:
    path = os.environ.get("GITHUB_OUTPUT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.writelines(f"{key}={value}\n" for key, value in values.items())


def summary(text: str) -> None:
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(text + "\n")


def server_repo_url() -> str:
    server = os.environ.get("GITHUB_SERVER_URL") or "https://github.com"
    return f"{server.rstrip('/')}/{os.environ.get('GITHUB_REPOSITORY', '')}"


def run_url(run_id: str | None = None) -> str:
    """The URL of run `run_id`, by default this job's own run (GITHUB_RUN_ID)."""
    if run_id is None:
        run_id = os.environ.get("GITHUB_RUN_ID", "")
    return f"{server_repo_url()}/actions/runs/{run_id}"


def push_env(variable: str = "GITHUB_TOKEN") -> dict[str, str]:
    """The token in environment variable `variable` (the workflow's, by default) for `git
    push` to github.com, through git's environment config (never on a command line)."""
    env = dict(os.environ)
    token = os.environ.get(variable, "")
    origin = subprocess.run(
        ["git", "remote", "get-url", "origin"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if token and origin.startswith("https://github.com/"):
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        env.update(
            GIT_CONFIG_COUNT="1",
            GIT_CONFIG_KEY_0="http.https://github.com/.extraheader",
            GIT_CONFIG_VALUE_0=f"AUTHORIZATION: basic {basic}",
        )
    return env


def bot_env() -> dict[str, str]:
    """The environment for a commit made as the bot: author and committer both, which the
    GIT_AUTHOR_* and GIT_COMMITTER_* a caller's environment may hold would otherwise win."""
    identity = {"NAME": BOT_NAME, "EMAIL": BOT_EMAIL}
    return {
        **os.environ,
        **{f"GIT_{role}_{key}": value for role in ("AUTHOR", "COMMITTER")
           for key, value in identity.items()},
    }  # fmt: skip


def git(*args: str, env: dict[str, str] | None = None) -> None:
    if subprocess.run(["git", *args], check=False, env=env).returncode != 0:
        raise PipelineError(f"git {args[0]} failed (see above)")
