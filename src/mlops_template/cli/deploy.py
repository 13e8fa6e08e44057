"""`mlops deploy ...`: the deploy's subcommands (registered in app.py).

release-record and record-image (release.yml: what was pushed, for deploy.yml and for the
registry), bump and pr (deploy.yml: an overlay's change as a pull request), verify (what pr
and rollback check first: the registry's record of the image and its signature,
release/trust.py),
rollback (the previous champion back, in the registry and in an overlay) and history (every
deployment per environment). Every value that reaches an overlay is checked by
gitops.validate_release first, wherever it came from: a workflow input, an artifact or a
registry tag. Proposing a deploy pull request (deploy pr, rollback --pr) is release/proposals.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from mlops_template import PipelineError
from mlops_template.cli.runner import ParamsOption, guarded
from mlops_template.config import DEFAULT_PARAMS, load_params
from mlops_template.release import gitops, proposals

OverlaysOption = Annotated[Path, typer.Option(help="The overlays folder.")]


def deploy_bump(
    env: Annotated[str, typer.Option(help=f"{' or '.join(gitops.ENVIRONMENTS)}.")],
    image: Annotated[str, typer.Option(help="The repository, e.g. ghcr.io/acme/penguins.")],
    digest: Annotated[str, typer.Option(help="The pushed image's sha256:<64 hex>.")],
    model_version: Annotated[str, typer.Option(help="12 hex digits (model-<version>).")],
    overlays: OverlaysOption = gitops.OVERLAYS,
) -> None:
    """Set ENV's overlay to IMAGE@DIGEST and MODEL_VERSION (nothing else in the files)."""
    guarded(lambda: _deploy_bump(overlays, env, image, digest, model_version))


def deploy_pr(
    env: Annotated[str, typer.Option(help=f"{' or '.join(gitops.ENVIRONMENTS)}.")],
    image: Annotated[str, typer.Option(help="The repository (or --release).")] = "",
    digest: Annotated[str, typer.Option(help="sha256:<64 hex> (or --release).")] = "",
    model_version: Annotated[str, typer.Option(help="12 hex digits (or --release).")] = "",
    release: Annotated[
        Path | None, typer.Option(help="release.yml's record (release.json) instead.")
    ] = None,
    overlays: OverlaysOption = gitops.OVERLAYS,
    base: Annotated[str, typer.Option(help="The branch to propose to.")] = "main",
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """deploy.yml: check that the registry recorded IMAGE@DIGEST with MODEL_VERSION and that
    main's release workflow signed it, then bump ENV's overlay on branch deploy/ENV, push it
    and open (or update) its pull request. Merging it is the deploy."""
    guarded(lambda: _deploy_pr(params, env, image, digest, model_version, release, overlays, base))


def verify(
    image: Annotated[str, typer.Option(help="The repository, e.g. ghcr.io/acme/penguins.")],
    digest: Annotated[str, typer.Option(help="The image's sha256:<64 hex>.")],
    model_version: Annotated[str, typer.Option(help="12 hex digits (model-<version>).")],
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """What deploy pr checks before it proposes anything: IMAGE@DIGEST is recorded on a
    registry version with MODEL_VERSION (MLFLOW_TRACKING_URI), and `cosign verify` finds
    its signature by this repository's release workflow on main (GITHUB_REPOSITORY)."""
    guarded(lambda: _verify(params, gitops.validate_release(image, digest, model_version)))


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
    guarded(lambda: _release_record(out, image, digest, model_version))


def record_image(
    version: Annotated[str, typer.Option(help="The registry version the gate released.")],
    image: Annotated[str, typer.Option(help="The pushed repository.")] = "",
    digest: Annotated[str, typer.Option(help="The pushed digest.")] = "",
    model_version: Annotated[str, typer.Option(help="The model version.")] = "",
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """release.yml: tag registry version VERSION with the image that now serves it (the
    values checked first) and record the event; without MLFLOW_TRACKING_URI, nothing."""
    guarded(lambda: _record_image(params, version, image, digest, model_version))


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
    overlays: OverlaysOption = gitops.OVERLAYS,
    base: Annotated[str, typer.Option(help="The branch to propose to.")] = "main",
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Move `champion` back to the version it replaced and set ENV's overlay to that
    version's recorded image; with --pr, propose it as ENV's deploy pull request."""
    guarded(lambda: _rollback(params, env, alias_only, pr, overlays, base))


def history(
    env: Annotated[
        list[str] | None, typer.Option(help="An environment (repeatable; default: all).")
    ] = None,
    output: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    ref: Annotated[
        str | None, typer.Option(help="The branch whose history (default: main).")
    ] = None,
    overlays: OverlaysOption = gitops.OVERLAYS,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Every deployment per environment, newest first: when, image digest, model version,
    commit; the pull request, who merged and who approved it (GITHUB_TOKEN and
    GITHUB_REPOSITORY set); the registry version (MLFLOW_TRACKING_URI set)."""
    guarded(lambda: _history(params, env, output, ref, overlays))


def _deploy_bump(overlays: Path, env: str, image: str, digest: str, model_version: str) -> None:
    result = gitops.bump(overlays, env, gitops.validate_release(image, digest, model_version))
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
        checked = gitops.validate_release(image, digest, model_version)
        record = {"pushed": True, "image": checked.image, "digest": checked.digest,
                  "model_version": checked.model_version}  # fmt: skip
        print(f"release-record: {checked.reference} (model {checked.model_version})")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _record_image(params: Path, version: str, image: str, digest: str, model_version: str) -> None:
    from mlops_template.release import registry, releases

    if not (image or digest or model_version):
        print("record-image: nothing was pushed: nothing to record")
        return
    shipped = gitops.validate_release(image, digest, model_version)
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


def _registry(params: Path, command: str) -> tuple[Any, str]:
    """(client, registered model name) of the registry the release recorded images on."""
    from mlops_template.release import registry

    if not os.environ.get("MLFLOW_TRACKING_URI"):
        raise PipelineError(
            f"{command}: MLFLOW_TRACKING_URI is not set: the image to deploy is checked against"
            " the registry that recorded the release (a read-only user is enough:"
            " MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD); nothing was proposed"
        )
    return registry._client(), load_params(params).registry.model_name


def _verify(params: Path, wanted: gitops.Release, command: str = "verify") -> None:
    from mlops_template.release import trust

    identity = trust.signing_identity()
    client, name = _registry(params, command)
    record = trust.verify(client, name, wanted, identity)
    kind = "the image" if record.current else "an earlier image"
    print(
        f"{command}: {wanted.reference} (model {wanted.model_version}) is {kind} recorded on"
        f" registry version {record.version} of {name}, signed by {identity} (verified)"
    )


def _deploy_pr(
    params: Path,
    env: str,
    image: str,
    digest: str,
    model_version: str,
    release: Path | None,
    overlays: Path,
    base: str,
) -> None:
    gitops.validate_env(env)
    if release is not None:
        values = _read_release(release)
        if values is None:
            print(f"deploy-pr: {release}: the release pushed no image: nothing to deploy")
            return
        image, digest, model_version = values
    new = gitops.validate_release(image, digest, model_version)
    proposals.check_proposable(overlays, env, base, "deploy-pr")
    _verify(params, new, "deploy-pr")
    result = gitops.bump(overlays, env, new)
    if not result.changed:
        print(f"deploy-pr: {env} already serves {new.reference} on {base}: no pull request")
        return
    print(result.diff, end="")
    proposals.propose(result, overlays, base, gitops.pr_title(result), "")


def _rollback(
    params: Path, env: str, alias_only: bool, pr: bool | None, overlays: Path, base: str
) -> None:
    from mlops_template.release import registry, releases, trust

    name = load_params(params).registry.model_name
    identity = "" if alias_only else trust.signing_identity()
    if pr is None:
        token = os.environ.get("DEPLOY_PR_TOKEN") or os.environ.get("GITHUB_TOKEN")
        pr = os.environ.get("GITHUB_ACTIONS") == "true" and bool(token)
    if pr and not alias_only:  # before the alias moves: a refusal then changes nothing
        proposals.check_proposable(overlays, env, base, "rollback --pr")

    def signed(image: gitops.Release) -> None:
        """Before anything moves: the target's recorded image is signed by main's release."""
        trust.verify_signature(image, identity)
        print(f"rollback: {image.reference} is signed by {identity} (verified)")

    done = releases.rollback(registry._client(), name, env, overlays, alias_only, signed)
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
        title = gitops.pr_title(done.bump, rollback=True)
        proposals.propose(done.bump, overlays, base, title, note, "mlops deploy rollback --pr")
    except PipelineError as error:
        raise PipelineError(
            f"{error}. The alias moved and the overlay is prepared in the working tree;"
            f" propose it from a clean checkout of {base} with: {by_hand}"
        ) from None


def _history(
    params: Path, envs: list[str] | None, output: str, ref: str | None, overlays: Path
) -> None:
    from mlops_template.io import github
    from mlops_template.release import history

    if output not in {"table", "json"}:
        raise PipelineError(f"--format {output!r:.40} refused: table or json")
    envs = [gitops.validate_env(env) for env in envs or gitops.ENVIRONMENTS]
    repo, relative = history.locate(overlays)
    gh = None
    if os.environ.get("GITHUB_TOKEN") and os.environ.get("GITHUB_REPOSITORY"):
        gh = github.GitHub.from_env()
    source = None
    if os.environ.get("MLFLOW_TRACKING_URI"):
        from mlops_template.release import registry

        source = (registry._client(), load_params(params).registry.model_name)
    result = history.history(repo, relative, envs, ref, gh, source)
    print(history.as_json(result) if output == "json" else history.as_table(result), end="")


app = typer.Typer(
    help="Releases and environments: records, deploy pull requests, rollback, history.",
    no_args_is_help=True,
)
app.command("bump")(deploy_bump)
app.command("pr")(deploy_pr)
app.command("verify")(verify)
app.command("release-record")(release_record)
app.command("record-image")(record_image)
app.command("rollback")(rollback)
app.command("history")(history)
