"""What shipped, in the registry: which image serves each registered version, and the
rollback that puts the previous champion's image back.

The release workflow pushes an image for the version the gate let through (promoted, or the
unchanged champion with a code change) and records it on that version as the tag `image`:
one JSON value holding the repository, the digest and the model version (one tag, so it is
never half-updated), plus an audit record `image.<time>` (registry._record). A newer image
for the same version (the same model shipping new code) replaces the tag and is recorded
too: the tag is always the newest image that serves the version.

`rollback` moves `champion` back to the version it replaced and sets an overlay to that
version's recorded image, in the working tree; proposing it as a deploy pull request is
release/proposals.py's. Every recorded value is checked with gitops.validate_release before it can
reach an overlay: the registry is a shared server, and its tags are data, not trust.

The functions take an MlflowClient (or a stand-in with the same methods) and the overlays'
folder, so a test can run them on a copy of the repository.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_template import PipelineError
from mlops_template.io import storage
from mlops_template.release import gitops, registry

IMAGE_TAG = "image"
IMAGE_EVENT = "image"  # the audit records: image.<time>
PREVIOUS_TAG = "previous_champion"
# On the version a rollback made champion: the version it withdrew. A champion reached that
# way is not rolled back past: another `make rollback` (say, for the other environment) sets
# the overlay to this champion's image and leaves the alias where it is.
ROLLED_BACK_FROM_TAG = "rolled_back_from"
_FIELDS = ("image", "digest", "model_version")
# A registry version as MLflow numbers them (also what the gate's `version` output holds).
REGISTRY_VERSION = re.compile(r"[1-9][0-9]{0,9}")


def validate_version(value: str, what: str = "registry version") -> str:
    if not isinstance(value, str) or not REGISTRY_VERSION.fullmatch(value):
        raise gitops.DeployError(f"{what} {value!r:.80} refused: a registry version number")
    return value


def image_value(shipped: gitops.Release) -> str:
    """The `image` tag's value."""
    return json.dumps(
        dict(zip(_FIELDS, (shipped.image, shipped.digest, shipped.model_version), strict=True)),
        sort_keys=True,
    )


def parse_image(raw: str, where: str) -> gitops.Release:
    """A recorded image, checked as strictly as a workflow input; DeployError otherwise."""
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if (
        not isinstance(value, dict)
        or set(value) != set(_FIELDS)
        or not all(isinstance(value[key], str) for key in _FIELDS)
    ):
        raise gitops.DeployError(
            f"{where}: the recorded image {raw!r:.120} is refused: not a JSON object of"
            " image, digest and model_version"
        )
    try:
        return gitops.validate_release(*(value[key] for key in _FIELDS))
    except gitops.DeployError as error:
        raise gitops.DeployError(f"{where}: the recorded image is refused: {error}") from None


def recorded_image(version: Any) -> gitops.Release | None:
    """The image a registered version records, None if it records none; refused values raise."""
    raw = version.tags.get(IMAGE_TAG)
    if raw is None:
        return None
    return parse_image(raw, f"registry version {version.version}")


def record_image(client: Any, name: str, version: str, shipped: gitops.Release) -> bool:
    """Tag `version` with the image that serves it and record the event; False (nothing
    written) when it already records exactly that image (a re-run release)."""
    validate_version(version)
    target = client.get_model_version(name, version)
    value = image_value(shipped)
    raw = target.tags.get(IMAGE_TAG)
    if raw == value:
        return False
    try:
        replaced = None if raw is None else parse_image(raw, "").reference
    except gitops.DeployError:
        replaced = "(an unreadable value)"
    # The audit record first: if the tag then fails, a re-run records it again.
    detail = {
        "image": shipped.image,
        "digest": shipped.digest,
        "model_version": shipped.model_version,
        "replaces": replaced,
    }
    registry._record(client, name, version, IMAGE_EVENT, detail)
    client.set_model_version_tag(name, version, IMAGE_TAG, value)
    return True


@dataclass(frozen=True)
class Rollback:
    """`champion` moved from one version to another; `bump` is the overlay's change (None:
    the alias alone moved)."""

    env: str
    from_version: str
    to_version: str
    bump: gitops.Bump | None


def rollback_target(client: Any, name: str, alias_only: bool) -> tuple[str, str, Any]:
    """(the champion's version, the previous champion's, its recorded image or None), every
    value checked; raises with the reason when there is nothing to roll back to."""
    current = registry._champion(client, name)
    if current is None:
        raise PipelineError(f"{name}: no champion in the registry: nothing to roll back")
    if current.tags.get(ROLLED_BACK_FROM_TAG) and not alias_only:
        # Already rolled back: this environment catches up with the champion, no step further.
        return str(current.version), str(current.version), _required_image(client, name, current)
    previous = current.tags.get(PREVIOUS_TAG)
    if not previous:
        raise PipelineError(
            f"{name}: champion version {current.version} replaced no earlier version"
            " (no previous_champion tag): no previous champion to roll back to"
        )
    previous = validate_version(previous, f"version {current.version}'s previous_champion")
    if alias_only:
        return str(current.version), previous, None
    return (
        str(current.version),
        previous,
        _required_image(client, name, client.get_model_version(name, previous)),
    )


def _required_image(client: Any, name: str, version: Any) -> gitops.Release:
    image = recorded_image(version)
    if image is None:
        raise gitops.DeployError(
            f"{name}: version {version.version} records no image (it was released before the"
            " registry recorded images, or never pushed): the overlay cannot be prepared. Pass"
            " --alias-only (ALIAS_ONLY=1) to move the alias alone, and deploy its image by"
            " hand (make deploy-pr)"
        )
    return image


def rollback(
    client: Any,
    name: str,
    env: str,
    overlays: Path,
    alias_only: bool = False,
    verify: Callable[[gitops.Release], None] | None = None,
) -> Rollback:
    """Move `champion` back to the version it replaced and set `env`'s overlay to that
    version's recorded image (in the working tree: merging its pull request is the deploy).

    The overlay is prepared first and the alias moved after: the overlay is the step that can
    fail here (an overlay laid out otherwise, a refused value), and while it can, the registry
    must not name a champion that nothing is prepared to serve. If moving the alias fails,
    the overlay's two files get their old text back: all or nothing. The audit records on
    both versions follow the move (as promote's follow its decision). The alias moves now,
    not when the pull request merges, so that the next release's gate already compares
    with the rolled-back model rather than the one being withdrawn.

    `verify` (deploy rollback: the image's signature, release/trust.py) sees the target's
    recorded image before anything is written or moved; it raises to refuse."""
    gitops.validate_env(env)
    current, previous, image = rollback_target(client, name, alias_only)
    if image is not None and verify is not None:
        verify(image)
    bump = None
    if image is not None:
        folder = gitops.overlay_dir(overlays, env)
        saved = [
            (path, path.read_text(encoding="utf-8"))
            for path in (folder / gitops.KUSTOMIZATION, folder / gitops.RELEASE)
        ]
        bump = gitops.bump(overlays, env, image)
    if previous != current:
        try:
            client.set_registered_model_alias(name, registry.CHAMPION, previous)
        except BaseException:
            if bump is not None and bump.changed:
                for path, text in saved:
                    storage.write_text(path, text)
            raise
        _mark(client, name, current, previous, env)
    detail = {
        "from": current,
        "to": previous,
        "env": env,
        "image": None if image is None else image.reference,
        "model_version": None if image is None else image.model_version,
    }
    for version in sorted({current, previous}):
        registry._record(client, name, version, "rollback", detail)
    return Rollback(env, current, previous, bump)


def _mark(client: Any, name: str, withdrawn: str, champion: str, env: str) -> None:
    """The withdrawn version is refused by the gate from now on (main may still hold its
    model: the next release would otherwise promote it again), and the new champion says how
    it became one (a later rollback stops there)."""
    reason = json.dumps({"by_rollback_to": champion, "env": env}, sort_keys=True)
    client.set_model_version_tag(name, withdrawn, registry.WITHDRAWN_TAG, reason)
    client.set_model_version_tag(name, champion, ROLLED_BACK_FROM_TAG, withdrawn)
