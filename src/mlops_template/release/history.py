"""Every deployment per environment, newest first: `mlops deploy history` (`make history`).

What an environment ran, and when, is the history of its overlay on main: each commit on
main's first-parent line that changed the overlay's image digest or model version is a
deployment, effective from that commit's time (the merge of its deploy pull request; Argo CD
or Flux applies it within minutes). The overlay's files are read at each commit with
release/gitops.py's reader. Two optional sources add what git cannot say:

- GitHub (GITHUB_TOKEN and GITHUB_REPOSITORY set): the pull request that merged the commit,
  who merged it and who approved it (the latest review of each reviewer is an approval); a
  commit no pull request merged is shown as pushed directly;
- the registry (MLFLOW_TRACKING_URI set): the registered version whose recorded images hold
  that digest (releases.py; else whose served model's sha256 starts with the model version)
  and when and by whom it was promoted.

Every value shown is checked or made printable first: the registry and GitHub answer with
data that anyone with write access there chose.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops_template import PipelineError
from mlops_template.io import tracking
from mlops_template.io.github import dig, validate_branch
from mlops_template.release import gitops
from mlops_template.release.releases import IMAGE_EVENT, IMAGE_TAG

LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_SEPARATOR = "\x1f"


@dataclass(frozen=True)
class Deployment:
    """One change of what an environment serves."""

    env: str
    time: str  # the commit's time on main, UTC, ISO 8601
    commit: str
    state: str  # released | placeholder (nothing released) | invalid | unreadable
    image: str
    digest: str
    model_version: str
    author: str  # the commit's git author
    note: str = ""
    pr: int | None = None
    pr_title: str | None = None
    merged_by: str | None = None
    approved_by: tuple[str, ...] = ()
    registry_version: str | None = None
    registry_match: str | None = None  # digest | model_version
    promoted: str | None = None  # when and by whom the version became champion


@dataclass(frozen=True)
class History:
    ref: str
    sources: dict[str, str]
    deployments: dict[str, list[Deployment]]  # per environment, newest first


def printable(value: Any, limit: int = 200) -> str:
    """`value` as one line of printable text (control characters become `?`)."""
    text = str(value)[:limit]
    return "".join(char if char.isprintable() else "?" for char in text)


# --- git: the overlays on main ----------------------------------------------------------


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise PipelineError(f"git {args[0]} failed: {result.stderr.strip()[:300]}")
    return result


def locate(overlays: Path) -> tuple[Path, Path]:
    """(the root of the repository holding `overlays`, `overlays` relative to that root)."""
    folder = overlays.resolve()
    if not folder.is_dir():
        raise PipelineError(f"{overlays}: no such folder (the overlays: --overlays)")
    top = Path(_git(folder, "rev-parse", "--show-toplevel").stdout.strip()).resolve()
    return top, folder.relative_to(top)


def resolve_ref(repo: Path, ref: str | None) -> str:
    """`ref` if given (a plain branch name), else main, else origin/main."""
    candidates = [validate_branch(ref)] if ref else ["main", "origin/main"]
    for candidate in candidates:
        check = _git(
            repo, "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}", check=False
        )
        if check.returncode == 0:
            return candidate
    raise PipelineError(
        f"{repo.resolve()}: no branch {' or '.join(candidates)} to read the deploy history from"
        " (fetch it, or name one with --ref)"
    )


def _show(repo: Path, commit: str, path: str) -> str | None:
    result = _git(repo, "show", f"{commit}:{path}", check=False)
    return result.stdout if result.returncode == 0 else None


def _utc(stamp: str) -> str:
    return datetime.fromisoformat(stamp).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _state(values: gitops.Release) -> tuple[str, str]:
    if values.digest == gitops.PLACEHOLDER_DIGEST or values.model_version == gitops.UNRELEASED:
        return "placeholder", "nothing released (the placeholder values)"
    try:
        gitops.validate_release(values.image, values.digest, values.model_version)
    except gitops.DeployError as error:
        return "invalid", printable(error)
    return "released", ""


def overlay_history(repo: Path, ref: str, overlays: Path, env: str) -> list[Deployment]:
    """Each commit of `ref`'s first-parent line that changed what `env`'s overlay serves,
    newest first. `overlays` is relative to the repository's root."""
    folder = overlays / gitops.validate_env(env)
    paths = [(folder / gitops.KUSTOMIZATION).as_posix(), (folder / gitops.RELEASE).as_posix()]
    log = _git(
        repo,
        "log",
        "--first-parent",
        "--reverse",
        f"--format=%H{_SEPARATOR}%cI{_SEPARATOR}%an",
        ref,
        "--",
        *paths,
    ).stdout
    rows: list[Deployment] = []
    last: gitops.Release | None = None
    for line in log.splitlines():
        commit, stamp, author = line.split(_SEPARATOR, 2)
        texts = [_show(repo, commit, path) for path in paths]
        if texts[0] is None or texts[1] is None:
            last = None  # the overlay removed (or not complete yet) at this commit
            continue
        try:
            values = gitops.parse_overlay(texts[0], texts[1], folder)
            state, note = _state(values)
        except gitops.DeployError as error:
            values, state, note = gitops.Release("", "", ""), "unreadable", printable(error)
        if values == last and state != "unreadable":
            continue  # the overlay changed elsewhere (replicas, comments): no deployment
        last = values
        rows.append(
            Deployment(
                env,
                _utc(stamp),
                commit,
                state,
                printable(values.image),
                printable(values.digest),
                printable(values.model_version),
                printable(author),
                note,
            )
        )
    return _mark_returns(rows)[::-1]


def _mark_returns(rows: list[Deployment]) -> list[Deployment]:
    """A release served before (oldest first): a rollback, or a redeploy."""
    first_seen: dict[tuple[str, str, str], str] = {}
    marked = []
    for row in rows:
        key = (row.image, row.digest, row.model_version)
        if row.state == "released" and key in first_seen and not row.note:
            row = replace(row, note=f"back to the release deployed {first_seen[key]}")
        first_seen.setdefault(key, row.time)
        marked.append(row)
    return marked


def is_shallow(repo: Path) -> bool:
    return _git(repo, "rev-parse", "--is-shallow-repository").stdout.strip() == "true"


# --- GitHub: the pull request that merged each change -----------------------------------


def _login(value: Any) -> str | None:
    return value if isinstance(value, str) and LOGIN.fullmatch(value) else None


def merged_pull_request(gh: Any, commit: str, base: str) -> Any | None:
    """The pull request of this repository, merged into `base`, whose merge commit (or squash
    commit) is `commit`; None for a commit pushed to `base` directly."""
    for pr in gh.paginate(gh.repo_path(f"commits/{commit}/pulls?per_page=100")):
        if (
            dig(pr, "merge_commit_sha") == commit
            and dig(pr, "merged_at")
            and dig(pr, "base", "ref") == base
            and dig(pr, "base", "repo", "full_name") == gh.repository
            and isinstance(dig(pr, "number"), int)
        ):
            return pr
    return None


def approvers(gh: Any, number: int) -> tuple[str, ...]:
    """Reviewers whose latest review (approve, request changes, or a dismissal) approves."""
    latest: dict[str, str] = {}
    for review in gh.paginate(gh.repo_path(f"pulls/{number}/reviews?per_page=100")):
        login, state = _login(dig(review, "user", "login")), dig(review, "state")
        if login and state in {"APPROVED", "CHANGES_REQUESTED", "DISMISSED"}:
            latest[login] = state
    return tuple(sorted(login for login, state in latest.items() if state == "APPROVED"))


def with_pull_requests(gh: Any, rows: list[Deployment], base: str) -> list[Deployment]:
    found: dict[str, dict[str, Any]] = {}
    enriched = []
    for row in rows:
        if row.commit not in found:
            pr = merged_pull_request(gh, row.commit, base)
            if pr is None:
                found[row.commit] = {"note": "pushed to main directly: no pull request"}
            else:
                number = int(dig(pr, "number"))
                full = gh.request("GET", gh.repo_path(f"pulls/{number}"))
                found[row.commit] = {
                    "pr": number,
                    "pr_title": printable(dig(full, "title") or ""),
                    "merged_by": _login(dig(full, "merged_by", "login")),
                    "approved_by": approvers(gh, number),
                }
        fields = dict(found[row.commit])
        if "note" in fields and row.state == "placeholder":
            del fields["note"]  # the overlays as first committed: no deployment
        elif "note" in fields:
            fields["note"] = "; ".join(filter(None, [row.note, fields["note"]]))
        enriched.append(replace(row, **fields))
    return enriched


# --- the registry: which version each release served ------------------------------------


def _json_object(raw: Any) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


@dataclass
class RegistryIndex:
    by_digest: dict[str, int]
    by_model: dict[str, int]
    promoted: dict[int, str]


def registry_index(client: Any, name: str) -> RegistryIndex:
    index = RegistryIndex({}, {}, {})
    for version in client.search_model_versions(f"name = '{name}'"):
        number, tags = int(version.version), dict(version.tags or {})
        for key, raw in tags.items():
            if key == IMAGE_TAG or key.startswith(f"{IMAGE_EVENT}."):
                digest = _json_object(raw).get("digest")
                if isinstance(digest, str) and gitops.DIGEST.fullmatch(digest):
                    index.by_digest[digest] = max(number, index.by_digest.get(digest, 0))
            record = _json_object(raw) if key.startswith("promotion.") else {}
            if record.get("promoted") is True:
                when = f"{printable(record.get('at'), 40)} by {printable(record.get('actor'), 60)}"
                index.promoted[number] = max(when, index.promoted.get(number, ""))
        served = tags.get(tracking.ONNX_SHA_TAG) or tags.get(tracking.MODEL_SHA_TAG) or ""
        if SHA256_HEX.fullmatch(served):
            index.by_model[served[:12]] = max(number, index.by_model.get(served[:12], 0))
    return index


def with_registry(index: RegistryIndex, rows: list[Deployment]) -> list[Deployment]:
    enriched = []
    for row in rows:
        version, match = index.by_digest.get(row.digest), "digest"
        if version is None:
            version, match = index.by_model.get(row.model_version), "model_version"
        if version is None or row.state != "released":
            enriched.append(row)
            continue
        enriched.append(
            replace(
                row,
                registry_version=str(version),
                registry_match=match,
                promoted=index.promoted.get(version),
            )
        )
    return enriched


# --- the whole answer -------------------------------------------------------------------


def history(
    repo: Path,
    overlays: Path,
    envs: list[str],
    ref: str | None = None,
    gh: Any | None = None,
    registry: tuple[Any, str] | None = None,
) -> History:
    """The deployments of `envs` from git, with GitHub's pull requests (`gh`) and the
    registry's versions (`registry`: a client and the model's name) when given."""
    if is_shallow(repo):
        # The log of a shallow clone ends at its boundary commit, which then reads as the
        # deployment of whatever its overlay holds: a wrong answer, so none.
        raise PipelineError(
            f"{repo}: a shallow clone: the history of main is incomplete here, and its oldest"
            " commit would read as a deployment. Fetch the whole history first: git fetch"
            " --unshallow (in GitHub Actions: actions/checkout with fetch-depth: 0)"
        )
    ref = resolve_ref(repo, ref)
    sources = {"git": f"{ref}: the overlays' commits"}
    deployments = {env: overlay_history(repo, ref, overlays, env) for env in envs}
    sources["github"] = "not used (GITHUB_TOKEN and GITHUB_REPOSITORY not set)"
    sources["registry"] = "not used (MLFLOW_TRACKING_URI not set)"
    if gh is not None:
        base = ref.removeprefix("origin/")
        deployments = {env: with_pull_requests(gh, rows, base) for env, rows in deployments.items()}
        sources["github"] = f"{gh.repository}: merged pull requests and their reviews"
    if registry is not None:
        client, name = registry
        index = registry_index(client, name)
        deployments = {env: with_registry(index, rows) for env, rows in deployments.items()}
        sources["registry"] = f"MLflow, model {name}: recorded images and promotions"
    return History(ref, sources, deployments)


def as_json(result: History) -> str:
    payload = {
        "ref": result.ref,
        "sources": result.sources,
        "environments": {
            env: [asdict(row) for row in rows] for env, rows in result.deployments.items()
        },
    }
    return json.dumps(payload, indent=2)


COLUMNS = (
    "time (UTC)",
    "model",
    "image digest",
    "commit",
    "PR",
    "merged by",
    "approved by",
    "registry",
    "note",
)


def _cells(row: Deployment) -> list[str]:
    digest = row.digest[: len("sha256:") + 12] if row.state == "released" else row.state
    return [
        row.time.replace("T", " ").removesuffix("Z"),
        row.model_version if row.state == "released" else "-",
        digest,
        row.commit[:8],
        f"#{row.pr}" if row.pr else "-",
        row.merged_by or "-",
        ", ".join(row.approved_by) or "-",
        f"v{row.registry_version}" if row.registry_version else "-",
        row.note,
    ]


def as_table(result: History) -> str:
    lines = [f"Deployments from the overlays on {result.ref}, newest first."]
    lines += [f"  {name}: {what}" for name, what in result.sources.items()]
    for env, rows in result.deployments.items():
        table = [list(COLUMNS)] + [_cells(row) for row in rows]
        widths = [max(len(cells[i]) for cells in table) for i in range(len(COLUMNS))]
        lines += ["", f"{env}:" + ("" if rows else " no commit changed its overlay")]
        if rows:
            lines += [
                "  "
                + "  ".join(
                    cell.ljust(width) for cell, width in zip(cells, widths, strict=True)
                ).rstrip()
                for cells in table
            ]
    return "\n".join(lines) + "\n"
