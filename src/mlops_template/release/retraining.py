"""The retraining pull request: what the retrain workflow proposes (`mlops ci open-pr`).

The retraining job hands over its outputs; they are staged into this checkout and checked
against their dvc.lock. While a retraining pull request of this repository's bot is open, the
run's drift report becomes a comment on it; otherwise the outputs go to a new retrain/ branch
and a pull request whose body is the drift report and the training report (its images and
local links reduced to text: a pull request body cannot reach the run's files).
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from mlops_template import PipelineError
from mlops_template.io import actions, github, handoff
from mlops_template.io.actions import BOT_EMAIL, BOT_NAME
from mlops_template.io.github import GitHub
from mlops_template.reporting import safety
from mlops_template.reporting.markdown import truncate

# GitHub refuses a pull request body over 65536 characters; leave room for the footer.
MAX_PR_BODY = 60000


def open_or_comment(incoming: Path | None, report: Path, drift_dir: Path, base: str) -> None:
    """Stage the retrained outputs (checked against their dvc.lock), then comment on the open
    retraining pull request, or push a retrain/ branch and open one; nothing if nothing
    drifted and nothing changed."""
    drift_md = drift_dir / "drift.md"
    _stage_retrained(incoming, [(drift_dir / "drift.json").as_posix(), drift_md.as_posix()])
    for file in (drift_md, report):
        if not file.is_file() or file.stat().st_size == 0:
            raise PipelineError(
                f"{file} is missing or empty (run make drift, make retrain, make report first)"
            )
    drifted = os.environ.get("DRIFTED", "false") == "true"
    actions.git("add", "--all", "--", *(path for path in handoff.GIT_PATHS if Path(path).exists()))
    if not drifted and not handoff.git_changes(Path(), exclude=[drift_dir.as_posix()]):
        print("open-pr: no drift and retraining changed nothing: no pull request needed")
        return

    if not os.environ.get("RETRAIN_PR_TOKEN"):
        raise PipelineError(
            "RETRAIN_PR_TOKEN is not set: add a token that may open pull requests"
            " (pull-requests: write) as the secret RETRAIN_PR_TOKEN"
        )
    gh = github.GitHub.from_env("RETRAIN_PR_TOKEN")
    author = os.environ.get("RETRAIN_PR_AUTHOR") or github.token_login(gh)
    run_url = actions.run_url()

    # While a retraining PR is open, this run's drift report becomes a comment on it.
    open_number = github.find_open_retraining_pr(gh, author, base)
    if open_number is not None:
        _comment_on_open_pr(gh, open_number, drift_md, run_url)
        return

    if handoff.dvc_credentials():
        handoff.dvc_push(Path())
    else:
        print("open-pr: no DVC remote credentials (AWS_ACCESS_KEY_ID): dvc push skipped")
    branch, title = _push_retrain_branch(drifted, run_url)
    body = _retrain_pr_body(report, drift_md, run_url)
    created = gh.request(
        "POST",
        gh.repo_path("pulls"),
        {"title": title, "head": branch, "base": base, "body": body},
        expect=(201,),
    )
    url = created.get("html_url", "") if isinstance(created, dict) else ""
    print(f"open-pr: opened {url} ({branch} into {base})")


def _stage_retrained(incoming: Path | None, extras: list[str]) -> None:
    """The retraining job's hand-over, checked against its dvc.lock, into this checkout."""
    if incoming is not None:
        staged = handoff.stage(incoming, Path(), extras)
        handoff.verify_lock(Path())
        print(f"open-pr: {len(staged)} file(s) staged; they match their dvc.lock")


def _comment_on_open_pr(gh: GitHub, number: int, drift_md: Path, run_url: str) -> None:
    note = (
        f"\n---\nA newer run of the retrain workflow: {run_url}. This pull request is still"
        " open, so that run opened no other one; its retrained outputs are its artifacts."
    )
    body = drift_md.read_text(encoding="utf-8")[:MAX_PR_BODY] + note
    gh.request("POST", gh.repo_path(f"issues/{number}/comments"), {"body": body}, expect=(201,))
    print(
        f"open-pr: retraining pull request #{number} is still open:"
        " added this run's drift report to it"
    )


def _push_retrain_branch(drifted: bool, run_url: str) -> tuple[str, str]:
    """Commit what is staged on a new retrain/<date>-<run> branch and push it; returns the
    branch and the commit's title (the pull request's too)."""
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    run_id = os.environ.get("GITHUB_RUN_ID") or datetime.now(UTC).strftime("%H%M%S")
    branch = f"{github.RETRAIN_PREFIX}{today}-{run_id}"
    attempt = os.environ.get("GITHUB_RUN_ATTEMPT", "1")
    if attempt != "1":
        branch = f"{branch}-{attempt}"  # a re-run must not collide with the first attempt
    github.validate_branch(branch)
    title = f"Retrain: {'drift in production traffic' if drifted else 'scheduled run'} ({today})"

    actions.git("switch", "--quiet", "--create", branch)
    actions.git(
        "-c", f"user.name={BOT_NAME}", "-c", f"user.email={BOT_EMAIL}",
        "commit", "--quiet", "-m", title, "-m", f"Run: {run_url}",
    )  # fmt: skip
    actions.git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", env=actions.push_env())
    print(f"open-pr: pushed {branch}")
    return branch, title


def _retrain_pr_body(report: Path, drift_md: Path, run_url: str) -> str:
    """The drift report, then the training report, its images and local links reduced to
    text (a PR body cannot reach the run's files)."""
    try:
        checked = safety.check_report(report.parent, [f"{actions.server_repo_url()}/"])
        note = "_The plots are in the `retrain-report` artifact of the run linked below._"
        training = safety.render(checked, note)
    except safety.ReportRefusedError as error:
        print(f"open-pr: the training report is left out of the body: {error}", file=sys.stderr)
        training = "_The training report is in the `retrain-report` artifact of the run._\n"
    footer = (
        f"\n\n---\nOpened by the retrain workflow: {run_url} "
        "(artifacts: `drift-report`, with the HTML page and its plots, and `retrain-report`)."
    )
    return truncate(drift_md.read_text(encoding="utf-8") + "\n" + training, MAX_PR_BODY, footer)
