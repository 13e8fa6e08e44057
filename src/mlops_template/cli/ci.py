"""The `mlops` subcommands the workflows' privileged steps run (registered in cli.py).

check-report and post-report (pr-comment.yml), collect-outputs and publish-outputs (train.yml,
retrain.yml), open-pr (retrain.yml); the deploy's (release.yml, deploy.yml) are in
cli/deploy.py. Each checks what an untrusted run handed over before it uses any of it; see
github.py, reporting/safety.py and handoff.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlops_template import PipelineError
from mlops_template.cli.runner import guarded
from mlops_template.io import actions
from mlops_template.io.actions import BOT_EMAIL, BOT_NAME

if TYPE_CHECKING:
    from mlops_template.io.github import GitHub
    from mlops_template.reporting.safety import CheckedReport

# GitHub refuses a pull request body over 65536 characters; leave room for the footer.
MAX_PR_BODY = 60000
MAX_COMMENT = 60000
TRUE = {"1", "true", "yes"}


def _truncate(body: str, limit: int, footer: str = "") -> str:
    if len(body) + len(footer) <= limit:
        return body + footer
    note = "\n\n_… truncated: the full report is the run's artifact._"
    return body[: limit - len(footer) - len(note)] + note + footer


def check_report(
    folder: Annotated[Path, typer.Argument(help="The report folder (report.md, images).")],
    allow_url: Annotated[
        list[str] | None, typer.Option(help="An allowed URL prefix (https only).")
    ] = None,
) -> None:
    """Refuse a report whose links leave its folder: only relative paths to regular files
    inside it, images only PNG, no symlinks, no URLs but the allowed prefixes."""
    from mlops_template.reporting import safety

    def check() -> None:
        allowed = allow_url or [f"{actions.server_repo_url()}/"]
        checked = safety.check_report(folder, allowed)
        print(
            f"check-report: {folder / safety.REPORT_NAME}: {len(checked.links)}"
            f" link(s), {len(checked.images)} PNG image(s), all inside {folder}"
        )

    guarded(check)


def post_report(
    folder: Annotated[Path, typer.Argument(help="The downloaded report artifact.")],
    run_id: Annotated[int, typer.Option(help="The train run that produced it.")],
    publish_plots: Annotated[
        bool,
        typer.Option(
            envvar="REPORT_PUBLISH_PLOTS",
            help="Upload the checked PNGs with CML to its public asset host.",
        ),
    ] = False,
    artifact: Annotated[str, typer.Option(help="The artifact's name.")] = "pr-report",
) -> None:
    """pr-comment.yml: verify the PR number against the triggering run, check the report,
    then create or update the one report comment (without images unless published)."""
    from mlops_template.io import github
    from mlops_template.reporting import safety

    def post() -> None:
        pr_file = folder / "pr_number"
        safety.regular_file(pr_file, "the PR number")
        claimed = github.read_pr_number(pr_file.read_text(encoding="ascii", errors="replace"))
        checked = safety.check_report(folder, [f"{actions.server_repo_url()}/"])
        gh = github.GitHub.from_env()
        target = github.verify_report_target(gh, run_id, claimed)
        run_url = actions.run_url(str(run_id))
        if re.fullmatch(r"https://[\w.-]+(?:/[\w.-]+)+", target.run_url):
            run_url = target.run_url
        print(f"post-report: run {run_id} is pull request #{claimed}'s (verified)")
        if publish_plots:
            _post_with_cml(checked, claimed, run_url)
            return
        note = (
            f"_The plots are in the `{artifact}` artifact of the [training run]({run_url})"
            " (the report is also in that run's job summary)._"
        )
        body = safety.render(checked, note)
        # The run URL came from the API, not the artifact: the one link allowed back in.
        body = github.REPORT_MARKER + "\n" + _truncate(body, MAX_COMMENT)
        outcome = github.upsert_comment(gh, claimed, body)
        print(f"post-report: {outcome} the report comment on pull request #{claimed}")
        actions.summary(f"Report {outcome} on pull request #{claimed}.")

    guarded(post)


def collect_outputs(
    out: Annotated[Path, typer.Option(help="Folder to write (the artifact).")],
    extra: Annotated[list[str] | None, typer.Option(help="Another file to include.")] = None,
    changes: Annotated[
        bool,
        typer.Option(
            help="Also write changed=true|false (git, minus the extras) to GITHUB_OUTPUT."
        ),
    ] = False,
) -> None:
    """Copy dvc.lock and every output it names (and the extras) into OUT, for the job that
    publishes them."""
    from mlops_template.io import handoff

    def collect() -> None:
        paths = handoff.collect(out, extra or [])
        print(f"collect-outputs: {len(paths)} path(s) into {out}")
        if changes:
            changed = handoff.git_changes(Path(), exclude=extra or [])
            print(f"collect-outputs: {len(changed)} changed file(s) in git")
            actions.github_output(changed="true" if changed else "false")

    guarded(collect)


def publish_outputs(
    incoming: Annotated[Path, typer.Option(help="The downloaded hand-over artifact.")],
    repo: Annotated[Path, typer.Option(help="The pull request's checkout (data only).")],
) -> None:
    """train.yml's publish job: stage the outputs into the PR's checkout, check them
    against their dvc.lock, dvc push (to the remote of this checkout's DVC config, not the
    PR's), and commit dvc.lock to $BRANCH."""
    from mlops_template.io import github, handoff

    def publish() -> None:
        branch = github.validate_branch(os.environ.get("BRANCH", ""))
        if not handoff.dvc_credentials():
            print("publish: no DVC remote credentials (AWS_ACCESS_KEY_ID): skipped")
            return
        commit_lock = Path(".ci/commit-lock").resolve()  # this checkout's, not the PR's
        handoff.use_trusted_dvc_config(Path(), repo)
        staged = handoff.stage(incoming, repo)
        handoff.verify_lock(repo)
        print(f"publish: {len(staged)} file(s) staged; they match their dvc.lock")
        handoff.dvc_push(repo)
        if subprocess.run([str(commit_lock), branch], cwd=repo, check=False).returncode:
            raise PipelineError("commit-lock failed (see above)")

    guarded(publish)


def open_pr(
    incoming: Annotated[
        Path | None, typer.Option(help="The retraining job's hand-over artifact.")
    ] = None,
    report: Annotated[Path, typer.Option(help="The training report.")] = Path(
        "pr-report/report.md"
    ),
    drift_dir: Annotated[Path, typer.Option(help="The drift report folder.")] = Path(
        "reports/drift"
    ),
    base: Annotated[str, typer.Option(help="The branch to propose to.")] = "main",
) -> None:
    """retrain.yml: open the retraining pull request, or comment on the open one.

    The open one is a PR from a retrain/ branch of this repository, opened by the bot
    (RETRAIN_PR_AUTHOR, else the login of RETRAIN_PR_TOKEN), read from every page."""
    guarded(lambda: _open_pr(incoming, report, drift_dir, base))


def _open_pr(incoming: Path | None, report: Path, drift_dir: Path, base: str) -> None:
    from mlops_template.io import github, handoff

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
    from mlops_template.io import handoff

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
    from mlops_template.io import github

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
    from mlops_template.reporting import safety

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
    return _truncate(drift_md.read_text(encoding="utf-8") + "\n" + training, MAX_PR_BODY, footer)


def _post_with_cml(checked: CheckedReport, number: int, run_url: str) -> None:
    """Publish on purpose: the checked PNGs, copied under fresh names into an empty folder
    with the rendered markdown, posted by CML from there (it uploads them to its asset host)."""
    from mlops_template.io import github
    from mlops_template.reporting import safety

    search = os.pathsep.join([str(Path(".ci/cml/node_modules/.bin").resolve()), os.environ["PATH"]])
    cml = shutil.which("cml", path=search)
    if cml is None:
        raise PipelineError(
            "REPORT_PUBLISH_PLOTS is true, but cml is not installed (make install-cml)"
        )
    with tempfile.TemporaryDirectory(prefix="report-") as staging:
        names = {}
        for index, (target, path) in enumerate(sorted(checked.images.items()), start=1):
            name = f"plot-{index}.png"
            shutil.copyfile(path, Path(staging) / name)
            names[target] = name
        body = safety.render(checked, "", names)
        footer = f"\n\n_Posted for the [training run]({run_url})._"
        text = github.REPORT_MARKER + "\n" + _truncate(body, MAX_COMMENT, footer)
        (Path(staging) / "comment.md").write_text(text, encoding="utf-8")
        repo = actions.server_repo_url()
        env = {**os.environ, "REPO_TOKEN": os.environ.get("GITHUB_TOKEN", "")}
        command = [
            cml, "comment", "update", "--publish", f"--target=pr/{number}", f"--repo={repo}",
            "--watermark-title=mlops-template report", "comment.md",
        ]  # fmt: skip
        if subprocess.run(command, cwd=staging, env=env, check=False).returncode != 0:
            raise PipelineError("cml comment update failed (see above)")
    print(f"post-report: posted the report with its plots (CML) on pull request #{number}")


app = typer.Typer(
    help="The workflows' privileged steps: the PR report, hand-overs, the retraining PR.",
    no_args_is_help=True,
)
app.command("check-report")(check_report)
app.command("post-report")(post_report)
app.command("collect-outputs")(collect_outputs)
app.command("publish-outputs")(publish_outputs)
app.command("open-pr")(open_pr)
