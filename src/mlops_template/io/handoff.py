"""Hand pipeline outputs from a job without write credentials to the job that publishes them.

train.yml and retrain.yml run the pipeline (pull-request code, or code reading production's
logs) in a job that holds no write token and at most read-only DVC credentials. It collects
`dvc.lock` and every output it names into an artifact (`collect`). A second job, which runs
only trusted code and never the pull request's, stages that artifact into a checkout
(`stage`): only `dvc.lock` and the outputs it names under data/, models/ and reports/ (plus
named extras), only regular files, never through a symlink; then `dvc commit` hashes them and
the resulting dvc.lock must equal the one handed over. Only then does it `dvc push` and
commit.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from mlops_template import PipelineError
from mlops_template.io.storage import SAFE_PATH

LOCK = "dvc.lock"
ALLOWED_ROOTS = ("data", "models", "reports")
# The git paths a pipeline run changes (as .ci/commit-lock adds them).
GIT_PATHS = ("dvc.lock", *ALLOWED_ROOTS)
MAX_FILES = 10_000


class HandoffError(PipelineError):
    """The handed-over outputs break a rule, or do not match their dvc.lock."""


def tool(name: str) -> str:
    """A console script of this environment (dvc), whatever the current directory."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def lock_outputs(lock: dict[str, Any]) -> list[str]:
    """The output paths a dvc.lock names, in order."""
    stages = lock.get("stages") if isinstance(lock, dict) else None
    if not isinstance(stages, dict):
        raise HandoffError(f"{LOCK}: no stages")
    paths: list[str] = []
    for name, stage in stages.items():
        for out in (stage or {}).get("outs") or []:
            path = out.get("path") if isinstance(out, dict) else None
            if not isinstance(path, str):
                raise HandoffError(f"{LOCK}: stage {name}: an output without a path")
            paths.append(path)
    return paths


def _read_lock(path: Path) -> dict[str, Any]:
    _plain_file(path)
    try:
        lock = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise HandoffError(f"{path}: not a dvc.lock ({error})") from None
    if not isinstance(lock, dict):
        raise HandoffError(f"{path}: not a dvc.lock")
    return lock


def _plain_file(path: Path) -> None:
    try:
        info = path.lstat()
    except OSError:
        raise HandoffError(f"{path} is missing") from None
    if not stat.S_ISREG(info.st_mode):
        raise HandoffError(f"{path} is not a regular file (a symlink or something else)")


def check_relative(path: str, roots: Iterable[str] = ALLOWED_ROOTS) -> str:
    """`path` if it is a plain relative path under one of `roots`; raise otherwise."""
    if not SAFE_PATH.fullmatch(path) or path.split("/", 1)[0] not in roots or "/" not in path:
        raise HandoffError(
            f"output {path!r} refused: only plain relative paths under {', '.join(roots)}/"
        )
    return path


def _no_symlink_on_the_way(root: Path, relative: str) -> None:
    """No component of root/relative that exists may be a symlink (nor root itself)."""
    current = root
    for part in ("", *relative.split("/")):
        current = current / part if part else current
        if current.is_symlink():
            raise HandoffError(f"{current} is a symlink: refused")


def _files(source: Path) -> Iterator[tuple[Path, str]]:
    """(file, path relative to source) for a file, or every file under a directory."""
    info = source.lstat()
    if stat.S_ISREG(info.st_mode):
        yield source, ""
        return
    if not stat.S_ISDIR(info.st_mode):
        raise HandoffError(f"{source} is not a regular file or directory")
    for directory, dirs, names in os.walk(source):
        for name in sorted(dirs + names):
            entry = Path(directory) / name
            mode = entry.lstat().st_mode
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise HandoffError(f"{entry} is not a regular file (a symlink or something else)")
            yield entry, entry.relative_to(source).as_posix()


def _copy(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.parent / f".{destination.name}.handoff"
    shutil.copyfile(source, tmp, follow_symlinks=False)
    os.replace(tmp, destination)  # replaces a symlink itself, never writes through it


def collect(out: Path, extras: Iterable[str] = (), root: Path = Path()) -> list[str]:
    """Copy dvc.lock, every output it names and `extras` from `root` into `out`."""
    lock = _read_lock(root / LOCK)
    paths = [LOCK, *lock_outputs(lock), *extras]
    for relative in paths:
        source = root / relative
        if not source.exists():
            raise HandoffError(f"{source} is missing: did the pipeline run?")
        if source.is_dir():
            shutil.copytree(source, out / relative, symlinks=False, dirs_exist_ok=True)
        else:
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, out / relative)
    return paths


def stage(incoming: Path, repo: Path, extras: Iterable[str] = ()) -> list[str]:
    """Copy what `incoming` holds of dvc.lock, its outputs and `extras` into `repo`.

    Anything else in `incoming` is ignored; a path outside data/, models/ and reports/, a
    symlink (in the artifact or on the way in the checkout) or a missing output refuses the
    whole hand-over. Returns the repository paths written."""
    if incoming.is_symlink() or not incoming.is_dir():
        raise HandoffError(f"{incoming} is not a directory")
    lock = _read_lock(incoming / LOCK)
    wanted = [check_relative(path) for path in [*lock_outputs(lock), *extras]]
    copies: list[tuple[Path, str]] = [(incoming / LOCK, LOCK)]
    for relative in wanted:
        _no_symlink_on_the_way(incoming, relative)
        source = incoming / relative
        if not source.exists():
            raise HandoffError(f"{relative} is not in the hand-over")
        for file, below in _files(source):
            target = f"{relative}/{below}" if below else relative
            check_relative(target)
            copies.append((file, target))
    if len(copies) > MAX_FILES:
        raise HandoffError(f"more than {MAX_FILES} files handed over")
    for file, target in copies:
        _no_symlink_on_the_way(repo, target)
        _copy(file, repo / target)
    return [target for _, target in copies]


def verify_lock(repo: Path) -> None:
    """`dvc commit --force` in `repo`: hash the staged outputs (into the local cache, ready
    for `dvc push`) and require the dvc.lock it writes to equal the one handed over."""
    handed = _read_lock(repo / LOCK)
    original = (repo / LOCK).read_bytes()
    result = subprocess.run(
        [tool("dvc"), "commit", "--force", "--quiet"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise HandoffError(f"dvc commit failed: {result.stderr.strip() or result.stdout.strip()}")
    recomputed = _read_lock(repo / LOCK)
    if recomputed != handed:
        differing = sorted(
            name
            for name in set(handed.get("stages", {})) | set(recomputed.get("stages", {}))
            if handed.get("stages", {}).get(name) != recomputed.get("stages", {}).get(name)
        )
        raise HandoffError(
            "the handed-over outputs do not match their dvc.lock (stages: "
            f"{', '.join(differing) or 'the file as a whole'}): refused"
        )
    (repo / LOCK).write_bytes(original)  # byte for byte what the pipeline wrote


def use_trusted_dvc_config(trusted: Path, repo: Path) -> None:
    """Give `repo` (a pull request's checkout) the DVC configuration of `trusted` (the base
    commit's): the remote the outputs are pushed to, with the write key, is never one the pull
    request chose. A `config.local` the PR committed is removed; the trusted one, if any (a
    machine's own settings), is copied."""
    for name in ("config", "config.local"):
        source, target = trusted / ".dvc" / name, repo / ".dvc" / name
        _no_symlink_on_the_way(repo, f".dvc/{name}")
        target.unlink(missing_ok=True)
        if source.is_file() and not source.is_symlink():
            shutil.copyfile(source, target)


def git_changes(repo: Path, exclude: Iterable[str] = ()) -> list[str]:
    """Changed or new files under dvc.lock, data/, models/, reports/ (minus `exclude`)."""
    pathspecs = [*GIT_PATHS, *(f":(exclude){path}" for path in exclude)]
    result = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "--", *pathspecs],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line[3:] for line in result.stdout.splitlines() if line.strip()]


def dvc_credentials() -> bool:
    return bool(os.environ.get("AWS_ACCESS_KEY_ID"))


def dvc_push(repo: Path) -> None:
    result = subprocess.run([tool("dvc"), "push"], cwd=repo, check=False)
    if result.returncode != 0:
        raise HandoffError("dvc push failed")
