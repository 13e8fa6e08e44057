"""GitOps deploy: what an environment serves is its overlay in deploy/k8s/overlays/<env>.

`bump` sets the overlay's image (repository and digest, `images[0]` of kustomization.yaml)
and the pods' model version (`mlops-template/model-version` in release.yaml, double-quoted:
a string even when all 12 digits are decimal) by editing those values in the text, so
every other byte of both files (comments included) stays as it was; the result is parsed
back and must differ from the original in exactly those values. Every value is checked
against a strict shape first: they arrive from a workflow's inputs or a release artifact,
and only a repository name, a sha256 digest and 12 hex digits can ever reach the files.

`open_or_update_pr` proposes the change as a pull request from the branch `deploy/<env>`
(merging it is the deploy), updating the open one rather than opening another.
"""

from __future__ import annotations

import difflib
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlops_template import PipelineError
from mlops_template.io import storage
from mlops_template.io.github import dig

ENVIRONMENTS = ("staging", "production")
OVERLAYS = Path("deploy/k8s/overlays")
KUSTOMIZATION = "kustomization.yaml"
RELEASE = "release.yaml"
ANNOTATION = "mlops-template/model-version"
UNRELEASED = "unreleased"
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
BRANCH_PREFIX = "deploy/"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
MODEL_VERSION = re.compile(r"[0-9a-f]{12}")
# An OCI repository as the distribution spec names one, lowercase: an optional registry
# host (with a port) and path components of lowercase letters and digits joined by . _ __ -.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY = re.compile(
    rf"(?:[a-z0-9]+(?:[.-][a-z0-9]+)*(?::[0-9]{{1,5}})?/)?{_COMPONENT}(?:/{_COMPONENT})*"
)
MAX_REPOSITORY = 255

_NEW_NAME = re.compile(r"^(    newName: )(\S+)$", re.M)
_DIGEST_LINE = re.compile(r"^(    digest: )(\S+)$", re.M)
# The model version is written double-quoted ("0123456789ab"): unquoted, an all-digit one
# (about 1 release in 280) reads as a YAML number, and an annotation must be a string.
# Read quoted or not (overlays committed before the quotes), never with quotes inside.
_VERSION_LINE = re.compile(
    rf"""^(        {re.escape(ANNOTATION)}: )("[^"'\s\\]*"|'[^"'\s\\]*'|[^"'\s\\]+)$""", re.M
)


def _unquoted(value: str) -> str:
    return value[1:-1] if value[:1] in {'"', "'"} else value


def _quoted(value: str) -> str:
    return f'"{value}"'


class DeployError(PipelineError):
    """A refused value, or an overlay this code does not recognise."""


@dataclass(frozen=True)
class Release:
    """What an environment serves: the image by digest and the model version."""

    image: str
    digest: str
    model_version: str

    @property
    def reference(self) -> str:
        return f"{self.image}@{self.digest}"

    @property
    def short_digest(self) -> str:
        return self.digest[: len("sha256:") + 12]


@dataclass(frozen=True)
class Bump:
    env: str
    old: Release
    new: Release
    diff: str

    @property
    def changed(self) -> bool:
        return self.old != self.new


def validate_env(env: str) -> str:
    if env not in ENVIRONMENTS:
        raise DeployError(f"environment {env!r:.80} refused: one of {', '.join(ENVIRONMENTS)}")
    return env


def validate_release(image: str, digest: str, model_version: str) -> Release:
    """Refuse anything but a lowercase repository name, sha256:<64 hex> and 12 hex digits."""
    if len(image) > MAX_REPOSITORY or not REPOSITORY.fullmatch(image):
        raise DeployError(
            f"image {image!r:.80} refused: a lowercase repository name"
            " (registry/owner/name, no tag, no digest), e.g. ghcr.io/acme/penguins"
        )
    if not DIGEST.fullmatch(digest):
        raise DeployError(f"digest {digest!r:.80} refused: sha256: and 64 lowercase hex digits")
    if digest == PLACEHOLDER_DIGEST:
        raise DeployError("digest refused: the all-zero placeholder is no release")
    if not MODEL_VERSION.fullmatch(model_version):
        raise DeployError(
            f"model version {model_version!r:.80} refused: 12 lowercase hex digits"
            " (the first 12 of the served model's sha256, the image's model-<version> tag)"
        )
    return Release(image, digest, model_version)


def overlay_dir(overlays: Path, env: str) -> Path:
    folder = overlays / validate_env(env)
    if not (folder / KUSTOMIZATION).is_file() or not (folder / RELEASE).is_file():
        raise DeployError(f"{folder}: no {KUSTOMIZATION} and {RELEASE} there")
    return folder


def _one(pattern: re.Pattern[str], text: str, what: str, path: Path) -> re.Match[str]:
    found = list(pattern.finditer(text))
    if len(found) != 1:
        raise DeployError(f"{path}: expected one `{what}` line, found {len(found)}")
    return found[0]


def _first_image_block(text: str, path: Path) -> tuple[int, int]:
    """The span of `images:`'s first item (`  - name: ...` up to the next item or key)."""
    start = re.search(r"^images:\n(  - name: \S+\n)", text, re.M)
    if start is None:
        raise DeployError(f"{path}: no `images:` list whose first item is `  - name: ...`")
    begin = start.start(1)
    end = re.compile(r"^(?!    )", re.M).search(text, start.end(1))
    return begin, end.start() if end else len(text)


def parse_overlay(kustomization: str, release: str, folder: Path) -> Release:
    """The values an overlay's two files hold (unchecked: a placeholder reads as itself);
    `folder` only names them in errors. history.py reads past commits' files with it."""
    begin, end = _first_image_block(kustomization, folder / KUSTOMIZATION)
    block = kustomization[begin:end]
    image = _one(_NEW_NAME, block, "newName:", folder / KUSTOMIZATION).group(2)
    digest = _one(_DIGEST_LINE, block, "digest:", folder / KUSTOMIZATION).group(2)
    version = _one(_VERSION_LINE, release, ANNOTATION, folder / RELEASE).group(2)
    return Release(image, digest, _unquoted(version))


def _replace(text: str, match: re.Match[str], value: str, offset: int = 0) -> str:
    return text[: offset + match.start(2)] + value + text[offset + match.end(2) :]


def _check(before: str, after: str, path: Path, expected: dict[str, Any]) -> None:
    """Parsed back, `after` is `before` with `expected` (dotted paths) set, nothing else."""
    old, new = yaml.safe_load(before), yaml.safe_load(after)
    for dotted, value in expected.items():
        keys: list[Any] = [int(k) if k.isdigit() else k for k in dotted.split("|")]
        target_old, target_new = old, new
        for key in keys[:-1]:
            target_old, target_new = target_old[key], target_new[key]
        if target_new[keys[-1]] != value:
            raise DeployError(f"{path}: the edit did not set {dotted} (unexpected layout)")
        target_old[keys[-1]] = value
    if old != new:
        raise DeployError(f"{path}: the edit changed more than it should (unexpected layout)")


def bump(overlays: Path, env: str, new: Release, write: bool = True) -> Bump:
    """Set `env`'s image, digest and model version; write only if something changes."""
    folder = overlay_dir(overlays, env)
    kpath, rpath = folder / KUSTOMIZATION, folder / RELEASE
    kustomization, release = kpath.read_text(encoding="utf-8"), rpath.read_text(encoding="utf-8")
    old = parse_overlay(kustomization, release, folder)
    if old == new:
        return Bump(env, old, new, "")
    begin, end = _first_image_block(kustomization, kpath)
    new_k = _replace(kustomization, _one(_DIGEST_LINE, kustomization[begin:end], "", kpath),
                     new.digest, begin)  # fmt: skip
    begin, end = _first_image_block(new_k, kpath)
    new_k = _replace(new_k, _one(_NEW_NAME, new_k[begin:end], "", kpath), new.image, begin)
    new_r = _replace(release, _one(_VERSION_LINE, release, ANNOTATION, rpath),
                     _quoted(new.model_version))  # fmt: skip
    _check(kustomization, new_k, kpath,
           {"images|0|newName": new.image, "images|0|digest": new.digest})  # fmt: skip
    _check(release, new_r, rpath,
           {f"spec|template|metadata|annotations|{ANNOTATION}": new.model_version})  # fmt: skip
    diff = "".join(
        line
        for path, a, b in ((kpath, kustomization, new_k), (rpath, release, new_r))
        for line in difflib.unified_diff(
            a.splitlines(keepends=True),
            b.splitlines(keepends=True),
            path.as_posix(),
            path.as_posix(),
            n=0,
        )
    )
    if write:
        _write_both((kpath, kustomization, new_k), (rpath, release, new_r))
    return Bump(env, old, new, diff)


def _write_both(*edits: tuple[Path, str, str]) -> None:
    """Both files or neither: each is replaced atomically (storage.write_text), and if a later one
    fails, the ones already replaced get their old text back before the error is raised."""
    done: list[tuple[Path, str]] = []
    try:
        for path, old, new in edits:
            storage.write_text(path, new)
            done.append((path, old))
    except OSError as error:
        for path, old in done:
            storage.write_text(path, old)
        raise DeployError(f"{path}: not written ({error}); the overlay is unchanged") from None


# --- the deploy pull request -------------------------------------------------------------


def pr_title(result: Bump, rollback: bool = False) -> str:
    new = result.new
    if rollback:
        return f"Roll back {result.env} to model {new.model_version} ({new.short_digest})"
    return f"Deploy model {new.model_version} to {result.env} ({new.short_digest})"


def pr_body(
    result: Bump, run_url: str, paths: list[str], note: str = "", local: str = "make deploy-pr"
) -> str:
    """The deploy pull request's body; `note` (a rollback's: which registry versions) goes
    first. Without `run_url` (no workflow run), it says `local` opened it."""
    old, new, env = result.old, result.new, result.env
    was = (
        "nothing released yet (the placeholder digest)"
        if old.digest == PLACEHOLDER_DIGEST
        else f"`{old.reference}`, model `{old.model_version}`"
    )
    if old.digest == PLACEHOLDER_DIGEST:
        rollback = (
            "There is no earlier release in this environment to go back to: to stop serving,"
            " revert this pull request's commit (the pods then fail to pull the placeholder)."
        )
    else:
        rollback = (
            "After merging, roll back with another pull request that puts the previous"
            " values back:\n\n"
            f"    make deploy-pr ENV={env} IMAGE={old.image} DIGEST={old.digest}"
            f" MODEL_VERSION={old.model_version}\n\n"
            f"or *Actions → deploy → Run workflow* with environment `{env}`, image"
            f" `{old.image}`, digest `{old.digest}` and model version `{old.model_version}`"
            " (or revert this pull request's commit)."
        )
    opened = (f"Opened by the deploy workflow: {run_url}" if run_url
              else f"Opened by `{local}` (local)")  # fmt: skip
    files = "\n".join(f"- `{path}`" for path in paths)
    intro = f"{note}\n\n" if note else ""
    return (
        f"## Deploy to `{env}`\n\n{intro}"
        f"Merging this pull request is the deploy: the `{env}` overlay then runs\n\n"
        f"- image `{new.reference}`\n- model version `{new.model_version}`\n\n"
        f"It serves {was} now.\n\n```diff\n{result.diff}```\n\nFiles:\n{files}\n\n"
        f"## Roll back\n\n{rollback}\n\n---\n{opened}\n"
    )


def find_open_deploy_pr(gh: Any, branch: str, base: str = "main") -> int | None:
    """The open pull request from `branch` of this very repository into `base`, or None."""
    owner = gh.repository.split("/", 1)[0]
    head = urllib.parse.quote(f"{owner}:{branch}", safe="")
    for pr in gh.paginate(gh.repo_path(f"pulls?state=open&head={head}&per_page=100")):
        if (
            dig(pr, "head", "repo", "full_name") == gh.repository
            and dig(pr, "head", "ref") == branch
            and dig(pr, "base", "ref") == base
        ):
            return int(dig(pr, "number"))
    return None


def open_or_update_pr(
    gh: Any, branch: str, title: str, body: str, base: str = "main"
) -> tuple[str, int, str]:
    """("updated" | "created", number, url): the open PR from `branch` gets the new title
    and body, else one is opened."""
    number = find_open_deploy_pr(gh, branch, base)
    if number is not None:
        answer = gh.request("PATCH", gh.repo_path(f"pulls/{number}"),
                            {"title": title, "body": body})  # fmt: skip
        return "updated", number, str(dig(answer, "html_url") or "")
    answer = gh.request(
        "POST", gh.repo_path("pulls"),
        {"title": title, "head": branch, "base": base, "body": body}, expect=(201,),
    )  # fmt: skip
    return "created", int(dig(answer, "number")), str(dig(answer, "html_url") or "")
