"""The deploy's `mlops` subcommands (registered in cli.py).

release-record and record-image (release.yml: what was pushed, for deploy.yml and for the
registry), deploy-bump and deploy-pr (deploy.yml: an overlay's change as a pull request),
rollback (the previous champion back, in the registry and in an overlay) and history (every
deployment per environment). Every value that reaches an overlay is checked by
deploy.validate_release first, wherever it came from: a workflow input, an artifact or a
registry tag.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from mlops_template import deploy
from mlops_template.config import DEFAULT_PARAMS, load_params
from mlops_template.errors import PipelineError
from mlops_template.workflow_cli import (
    BOT_EMAIL,
    BOT_NAME,
    _git,
    _guarded,
    _push_env,
    _run_url,
    _summary,
)

ParamsOption = Annotated[
    Path, typer.Option("--params", "-p", help="Parameters file.", dir_okay=False)
]
OverlaysOption = Annotated[Path, typer.Option(help="The overlays folder.")]


def add_commands(app: typer.Typer) -> None:
    """Add the deploy subcommands to the `mlops` app."""

    @app.command("deploy-bump")
    def deploy_bump(
        env: Annotated[str, typer.Option(help="staging or production.")],
        image: Annotated[str, typer.Option(help="The repository, e.g. ghcr.io/acme/penguins.")],
        digest: Annotated[str, typer.Option(help="The pushed image's sha256:<64 hex>.")],
        model_version: Annotated[str, typer.Option(help="12 hex digits (model-<version>).")],
        overlays: OverlaysOption = deploy.OVERLAYS,
    ) -> None:
        """Set ENV's overlay to IMAGE@DIGEST and MODEL_VERSION (nothing else in the files)."""
        _guarded(lambda: _deploy_bump(overlays, env, image, digest, model_version))

    @app.command("deploy-pr")
    def deploy_pr(
        env: Annotated[str, typer.Option(help="staging or production.")],
        image: Annotated[str, typer.Option(help="The repository (or --release).")] = "",
        digest: Annotated[str, typer.Option(help="sha256:<64 hex> (or --release).")] = "",
        model_version: Annotated[str, typer.Option(help="12 hex digits (or --release).")] = "",
        release: Annotated[
            Path | None, typer.Option(help="release.yml's record (release.json) instead.")
        ] = None,
        overlays: OverlaysOption = deploy.OVERLAYS,
        base: Annotated[str, typer.Option(help="The branch to propose to.")] = "main",
    ) -> None:
        """deploy.yml: bump ENV's overlay on branch deploy/ENV, push it and open (or update)
        its pull request. Merging it is the deploy."""
        _guarded(lambda: _deploy_pr(env, image, digest, model_version, release, overlays, base))

    @app.command("release-record")
    def release_record(
        out: Annotated[Path, typer.Option(help="The record to write (JSON).")] = Path(
            "release/release.json"
        ),
        image: Annotated[str, typer.Option(help="The pushed repository.")] = "",
        digest: Annotated[str, typer.Option(help="The pushed digest.")] = "",
        model_version: Annotated[str, typer.Option(help="The model version.")] = "",
    ) -> None:
        """release.yml: record what was pushed (all three values) or that nothing was (none),
        for deploy.yml."""
        _guarded(lambda: _release_record(out, image, digest, model_version))

    @app.command("record-image")
    def record_image(
        version: Annotated[str, typer.Option(help="The registry version the gate released.")],
        image: Annotated[str, typer.Option(help="The pushed repository.")] = "",
        digest: Annotated[str, typer.Option(help="The pushed digest.")] = "",
        model_version: Annotated[str, typer.Option(help="The model version.")] = "",
        params: ParamsOption = DEFAULT_PARAMS,
    ) -> None:
        """release.yml: tag registry version VERSION with the image that now serves it (the
        values checked first) and record the event; without MLFLOW_TRACKING_URI, nothing."""
        _guarded(lambda: _record_image(params, version, image, digest, model_version))

    register_rollback_and_history(app)


def register_rollback_and_history(app: typer.Typer) -> None:
    @app.command()
    def rollback(
        env: Annotated[str, typer.Option(help="The overlay to roll back.")] = "production",
        alias_only: Annotated[
            bool, typer.Option(help="Move the alias alone (the version records no image).")
        ] = False,
        pr: Annotated[
            bool | None,
            typer.Option(
                "--pr/--no-pr",
                help="Push deploy/ENV and open its pull request (default: in GitHub Actions"
                " with a token).",
            ),
        ] = None,
        overlays: OverlaysOption = deploy.OVERLAYS,
        base: Annotated[str, typer.Option(help="The branch to propose to.")] = "main",
        params: ParamsOption = DEFAULT_PARAMS,
    ) -> None:
        """Move `champion` back to the version it replaced and set ENV's overlay to that
        version's recorded image; with --pr, propose it as ENV's deploy pull request."""
        _guarded(lambda: _rollback(params, env, alias_only, pr, overlays, base))

    @app.command()
    def history(
        env: Annotated[
            list[str] | None, typer.Option(help="An environment (repeatable; default: all).")
        ] = None,
        output: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
        ref: Annotated[
            str | None, typer.Option(help="The branch whose history (default: main).")
        ] = None,
        overlays: OverlaysOption = deploy.OVERLAYS,
        params: ParamsOption = DEFAULT_PARAMS,
    ) -> None:
        """Every deployment per environment, newest first: when, image digest, model version,
        commit; the pull request, who merged and who approved it (GITHUB_TOKEN and
        GITHUB_REPOSITORY set); the registry version (MLFLOW_TRACKING_URI set)."""
        _guarded(lambda: _history(params, env, output, ref, overlays))


def _deploy_bump(overlays: Path, env: str, image: str, digest: str, model_version: str) -> None:
    result = deploy.bump(overlays, env, deploy.validate_release(image, digest, model_version))
    if not result.changed:
        print(
            f"deploy-bump: {env} already serves {result.new.reference} (model"
            f" {result.new.model_version}): nothing changed"
        )
        return
    print(
        f"deploy-bump: {env}: {result.old.reference} (model {result.old.model_version})"
        f" -> {result.new.reference} (model {result.new.model_version})"
    )
    print(result.diff, end="")


def _read_release(path: Path) -> tuple[str, str, str] | None:
    """release.yml's record: None if it pushed nothing, else its three values (unchecked)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise PipelineError(f"{path}: not a release record ({error})") from None
    if not isinstance(record, dict) or set(record) not in ({"pushed"}, {
        "pushed", "image", "digest", "model_version"}):  # fmt: skip
        raise PipelineError(f"{path}: not a release record (unexpected keys)")
    if record["pushed"] is not True:
        return None
    values = record["image"], record["digest"], record["model_version"]
    if not all(isinstance(value, str) for value in values):
        raise PipelineError(f"{path}: not a release record (values are not strings)")
    return values


def _release_record(out: Path, image: str, digest: str, model_version: str) -> None:
    if not (image or digest or model_version):
        record: dict[str, object] = {"pushed": False}
        print("release-record: nothing was pushed: nothing to deploy")
    else:
        checked = deploy.validate_release(image, digest, model_version)
        record = {"pushed": True, "image": checked.image, "digest": checked.digest,
                  "model_version": checked.model_version}  # fmt: skip
        print(f"release-record: {checked.reference} (model {checked.model_version})")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _record_image(params: Path, version: str, image: str, digest: str, model_version: str) -> None:
    from mlops_template import registry, releases

    if not (image or digest or model_version):
        print("record-image: nothing was pushed: nothing to record")
        return
    shipped = deploy.validate_release(image, digest, model_version)
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        print("record-image: no MLFLOW_TRACKING_URI: no registry to record the image in")
        return
    releases.validate_version(version)
    name = load_params(params).registry.model_name
    if releases.record_image(registry._client(), name, version, shipped):
        print(f"record-image: {name} version {version} is served by {shipped.reference}"
              f" (model {shipped.model_version})")  # fmt: skip
    else:
        print(f"record-image: {name} version {version} already records {shipped.reference}")


def _deploy_pr(
    env: str,
    image: str,
    digest: str,
    model_version: str,
    release: Path | None,
    overlays: Path,
    base: str,
) -> None:
    deploy.validate_env(env)
    if release is not None:
        values = _read_release(release)
        if values is None:
            print(f"deploy-pr: {release}: the release pushed no image: nothing to deploy")
            return
        image, digest, model_version = values
    new = deploy.validate_release(image, digest, model_version)
    check_proposable(overlays, env, base, "deploy-pr")
    result = deploy.bump(overlays, env, new)
    if not result.changed:
        print(f"deploy-pr: {env} already serves {new.reference} on {base}: no pull request")
        return
    print(result.diff, end="")
    _propose(result, overlays, base, deploy.pr_title(result), "")


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
    from mlops_template import github

    deploy.validate_env(env)
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
        _git("fetch", "--quiet", "--no-tags", "origin", f"refs/heads/{base}",
             env=_push_env(_pr_token_variable()))  # fmt: skip
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
    paths = [(folder / deploy.KUSTOMIZATION).as_posix(), (folder / deploy.RELEASE).as_posix()]
    modified = _git_out("status", "--porcelain", "--", *paths)
    if modified:
        raise PipelineError(
            f"{command}: {folder}'s files differ from {base}'s ({modified.splitlines()[0]}"
            f"...): restore them (git restore {' '.join(paths)}) and try again; nothing was"
            " changed"
        )


def _in_actions_run() -> bool:
    return bool(os.environ.get("GITHUB_RUN_ID") and os.environ.get("GITHUB_SERVER_URL"))


def _propose(
    result: deploy.Bump, overlays: Path, base: str, title: str, note: str,
    local: str = "make deploy-pr",
) -> None:  # fmt: skip
    """Commit the bumped overlay on branch deploy/<env>, push it and open (or update) its
    pull request. The callers ran check_proposable before anything was bumped; `local`
    names the command in the body when this is no workflow run."""
    from mlops_template import github

    env = result.env
    branch = github.validate_branch(f"{deploy.BRANCH_PREFIX}{env}")
    folder = overlays / env
    paths = [(folder / deploy.KUSTOMIZATION).as_posix(), (folder / deploy.RELEASE).as_posix()]
    run_url = _run_url() if _in_actions_run() else ""
    origin = f"Run: {run_url}" if run_url else f"Opened by `{local}` (local)"
    _git("switch", "--quiet", "--force-create", branch)
    _git("add", "--", *paths)
    _git(
        "-c", f"user.name={BOT_NAME}", "-c", f"user.email={BOT_EMAIL}",
        "commit", "--quiet", "-m", title, "-m", origin, "--", *paths,
    )  # fmt: skip
    # The branch is the workflow's own, rebuilt from the base each time: force is expected.
    # Pushed with DEPLOY_PR_TOKEN too when it is set: a push made with the workflow's token
    # starts no workflow, so an open pull request's checks would never run on the new commit.
    token = _pr_token_variable()
    push_env = _push_env(token)
    _git("push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{branch}", env=push_env)
    print(f"deploy-pr: pushed {branch}")
    gh = github.GitHub.from_env(token)
    body = deploy.pr_body(result, run_url, paths, note, local)
    outcome, number, url = deploy.open_or_update_pr(gh, branch, title, body, base)
    print(f"deploy-pr: {outcome} pull request #{number} {url} ({branch} into {base})")
    _summary(f"Deploy pull request #{number} {outcome}: {title}")


def _rollback(
    params: Path, env: str, alias_only: bool, pr: bool | None, overlays: Path, base: str
) -> None:
    from mlops_template import registry, releases

    name = load_params(params).registry.model_name
    if pr is None:
        token = os.environ.get("DEPLOY_PR_TOKEN") or os.environ.get("GITHUB_TOKEN")
        pr = os.environ.get("GITHUB_ACTIONS") == "true" and bool(token)
    if pr and not alias_only:  # before the alias moves: a refusal then changes nothing
        check_proposable(overlays, env, base, "rollback --pr")
    done = releases.rollback(registry._client(), name, env, overlays, alias_only)
    if done.to_version == done.from_version:
        print(f"rollback: champion stays version {done.to_version}: a rollback made it champion,"
              f" and a rollback does not go further back; {env} is set to its image")  # fmt: skip
    else:
        print(f"rollback: champion is version {done.to_version} (was {done.from_version})")
    if done.bump is None:
        print(
            f"rollback: the alias alone moved (--alias-only): no overlay changed, {env} serves"
            f" what it served; deploy version {done.to_version}'s image with make deploy-pr"
        )
        return
    old, new = done.bump.old, done.bump.new
    if not done.bump.changed:
        print(f"rollback: {env} already serves {new.reference} (model {new.model_version}):"
              " no overlay change to deploy")  # fmt: skip
        return
    print(f"rollback: {env}: {old.reference} (model {old.model_version}) -> {new.reference}"
          f" (model {new.model_version})")  # fmt: skip
    print(done.bump.diff, end="")
    by_hand = (f"make deploy-pr ENV={env} IMAGE={new.image} DIGEST={new.digest}"
               f" MODEL_VERSION={new.model_version}")  # fmt: skip
    if not pr:
        print(
            f"rollback: the overlay is changed in this working tree only; merging it is the"
            f" deploy. Commit it in a pull request, or discard it (git restore {overlays / env})"
            f" and propose it as {env}'s deploy pull request: {by_hand}"
        )
        return
    note = (f"Rollback: registry `champion` moved from version {done.from_version} back to"
            f" version {done.to_version}, whose recorded image this is.")  # fmt: skip
    try:
        _propose(done.bump, overlays, base, deploy.pr_title(done.bump, rollback=True), note,
                 "mlops rollback --pr")  # fmt: skip
    except PipelineError as error:
        raise PipelineError(
            f"{error}. The alias moved and the overlay is prepared in the working tree;"
            f" propose it from a clean checkout of {base} with: {by_hand}"
        ) from None


def _history(
    params: Path, envs: list[str] | None, output: str, ref: str | None, overlays: Path
) -> None:
    from mlops_template import github, history

    if output not in {"table", "json"}:
        raise PipelineError(f"--format {output!r:.40} refused: table or json")
    envs = [deploy.validate_env(env) for env in envs or deploy.ENVIRONMENTS]
    repo, relative = history.locate(overlays)
    gh = None
    if os.environ.get("GITHUB_TOKEN") and os.environ.get("GITHUB_REPOSITORY"):
        gh = github.GitHub.from_env()
    source = None
    if os.environ.get("MLFLOW_TRACKING_URI"):
        from mlops_template import registry

        source = (registry._client(), load_params(params).registry.model_name)
    result = history.history(repo, relative, envs, ref, gh, source)
    print(history.as_json(result) if output == "json" else history.as_table(result), end="")
