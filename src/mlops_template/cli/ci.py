"""`mlops ci ...`: the subcommands the workflows' privileged steps run.

check-report and post-report (pr-comment.yml), collect-outputs (train.yml, retrain.yml),
publish-target and publish-outputs (publish.yml), open-pr (retrain.yml:
release/retraining.py); the deploy's (release.yml, deploy.yml) are in cli/deploy.py. Each
checks what an untrusted run handed over before it uses any of it; see io/github.py,
reporting/safety.py and io/handoff.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlops_template import PipelineError
from mlops_template.cli.runner import guarded
from mlops_template.io import actions
from mlops_template.reporting.markdown import truncate

if TYPE_CHECKING:
    from mlops_template.reporting.safety import CheckedReport

# GitHub refuses a comment over 65536 characters; leave room for the footer.
MAX_COMMENT = 60000


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
        body = github.REPORT_MARKER + "\n" + truncate(body, MAX_COMMENT)
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


def publish_target(
    run_id: Annotated[int, typer.Option(help="The train run whose outputs to publish.")],
) -> None:
    """publish.yml: which pull request run RUN_ID trained, from the API alone (this
    repository's, open, its head still the trained commit); sha, branch and number to
    GITHUB_OUTPUT, all empty when its head has moved on (nothing to publish)."""
    from mlops_template.io import github

    def target() -> None:
        found = github.verify_publish_target(github.GitHub.from_env(), run_id)
        if found is None:
            print(f"publish-target: the pull request run {run_id} trained has a newer head:"
                  " the run for that commit publishes it; nothing to publish here")  # fmt: skip
            actions.github_output(sha="", branch="", number="")
            return
        print(f"publish-target: run {run_id} trained pull request #{found.number}"
              f" ({found.branch} at {found.head_sha[:12]}) (verified)")  # fmt: skip
        actions.github_output(sha=found.head_sha, branch=found.branch, number=str(found.number))

    guarded(target)


def publish_outputs(
    incoming: Annotated[Path, typer.Option(help="The downloaded hand-over artifact.")],
    repo: Annotated[Path, typer.Option(help="The pull request's checkout (data only).")],
    expect_head: Annotated[
        str, typer.Option(help="The commit the checkout must be at (publish-target's).")
    ] = "",
) -> None:
    """publish.yml's job: stage the outputs into the PR's checkout, check them against their
    dvc.lock, dvc push (to the remote of this checkout's DVC config, not the PR's), and
    commit dvc.lock to $BRANCH."""
    from mlops_template.io import github, handoff

    def publish() -> None:
        branch = github.validate_branch(os.environ.get("BRANCH", ""))
        if expect_head:
            head = subprocess.run(
                ["git", "-C", str(repo), "rev-parse", "HEAD"],
                capture_output=True, text=True, check=False,
            ).stdout.strip()  # fmt: skip
            if head != expect_head:
                raise PipelineError(
                    f"{repo} is at {head[:12] or 'no commit'}, not the trained commit"
                    f" {expect_head[:12]}: nothing is published"
                )
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
    from mlops_template.release import retraining

    guarded(lambda: retraining.open_or_comment(incoming, report, drift_dir, base))


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
        text = github.REPORT_MARKER + "\n" + truncate(body, MAX_COMMENT, footer)
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
app.command("publish-target")(publish_target)
app.command("publish-outputs")(publish_outputs)
app.command("open-pr")(open_pr)
