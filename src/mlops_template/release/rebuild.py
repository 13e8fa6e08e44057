"""Rebuild on main: the model that ships is built from the merged commit, not taken from the
pull request's job.

A pull request's `train` job runs the branch's code and writes the model files and dvc.lock;
those are claims. The release runs the whole pipeline again from the merged commit, in a job
that holds no write permission, with an empty DVC cache (nothing the pull request pushed is
reused: only the data sources that `.dvc` files track are pulled) and without DVC's run cache.
Then every output must be the one dvc.lock names, byte for byte (the same md5). A difference
fails the release and names the file, both hashes and the stage; nothing is registered,
pushed or signed. What ships afterwards is these rebuilt bytes.

The rule is exact equality because the pipeline is deterministic (seeded; `dvc repro -f`
twice gives the same dvc.lock, tested) on one runner class. A model built on another class
of machine (a self-hosted `TRAIN_RUNS_ON` runner against GitHub's hosted one) may differ in
the last bits: the release's rebuild then runs on the same runner class as the pull request's
training (release.yml), and a difference is never accepted silently.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlops_template import PipelineError
from mlops_template.io import storage
from mlops_template.io.handoff import tool

LOCK = Path("dvc.lock")


@dataclass(frozen=True)
class Output:
    stage: str
    path: str
    md5: str | None  # None when dvc.lock records none (an output DVC does not hash)


@dataclass(frozen=True)
class Difference:
    """An output whose rebuilt bytes are not the reviewed ones."""

    stage: str
    path: str
    reviewed: str | None  # dvc.lock's md5, as merged
    rebuilt: str | None  # the md5 of what the rebuild wrote (None: not written)
    sha256: str | None  # the rebuilt file's sha256 (a file, not a directory)

    def line(self) -> str:
        sha = f", rebuilt sha256 {self.sha256}" if self.sha256 else ""
        return (
            f"{self.path} (stage {self.stage}): dvc.lock says md5 {self.reviewed or 'none'},"
            f" the rebuild wrote md5 {self.rebuilt or 'nothing'}{sha}"
        )


class RebuildMismatchError(PipelineError):
    """The merged commit does not rebuild to the outputs its dvc.lock names."""

    def __init__(self, differences: list[Difference], other: list[str]) -> None:
        self.differences = differences
        self.other = other
        lines = [difference.line() for difference in differences] + other
        super().__init__(
            "rebuild: the merged commit does not rebuild to the reviewed outputs: nothing is"
            " registered, pushed or signed.\n  "
            + "\n  ".join(lines)
            + "\nThe model files a pull request's job wrote are not what its code builds. Revert"
            " the merge on main (main's dvc.lock still names those files: nothing may pull and"
            " load them), then train from the reviewed code (`make run`) and merge that."
        )


def outputs(lock: Mapping[str, Any]) -> list[Output]:
    """Every output a dvc.lock names, with its stage and md5 (a directory's `.dir` md5)."""
    stages = lock.get("stages")
    if not isinstance(stages, dict):
        raise PipelineError(f"{LOCK}: no stages")
    found = []
    for stage, entry in stages.items():
        for out in (entry or {}).get("outs") or []:
            found.append(Output(stage, str(out["path"]), out.get("md5")))
    return found


def read_lock(path: Path = LOCK) -> dict[str, Any]:
    if not path.is_file():
        raise PipelineError(f"{path} not found: nothing to rebuild")
    lock = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(lock, dict):
        raise PipelineError(f"{path}: not a dvc.lock")
    return lock


def compare(reviewed: Mapping[str, Any], rebuilt: Mapping[str, Any], root: Path) -> None:
    """Raise RebuildMismatchError unless both locks name the same outputs with the same md5s and
    record the same dependencies and params for every stage."""
    before = {(out.stage, out.path): out for out in outputs(reviewed)}
    after = {(out.stage, out.path): out for out in outputs(rebuilt)}
    differences = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if old is not None and new is not None and old.md5 == new.md5:
            continue
        stage, path = key
        file = root / path
        sha = storage.sha256_file(file) if new is not None and file.is_file() else None
        reviewed_md5 = old.md5 if old is not None else None
        rebuilt_md5 = new.md5 if new is not None else None
        differences.append(Difference(stage, path, reviewed_md5, rebuilt_md5, sha))
    other = [
        f"stage {name}: its dependencies or params in dvc.lock are not this commit's"
        " (a stale dvc.lock)"
        for name in sorted(set(reviewed["stages"]) | set(rebuilt["stages"]))
        if _inputs(reviewed, name) != _inputs(rebuilt, name)
    ]
    if differences or other:
        raise RebuildMismatchError(differences, other)


def _inputs(lock: Mapping[str, Any], stage: str) -> Any:
    entry = lock["stages"].get(stage) or {}
    return {key: entry.get(key) for key in ("cmd", "deps", "params")}


def tracked_sources(root: Path) -> list[str]:
    """The `.dvc` files in git: data that no stage writes (pulled, never rebuilt)."""
    result = subprocess.run(
        ["git", "ls-files", "-z", "--", "*.dvc"],
        cwd=root,
        capture_output=True,
        check=True,
    )
    return [name for name in result.stdout.decode().split("\0") if name]


def _dvc(root: Path, *args: str) -> None:
    result = subprocess.run([tool("dvc"), *args], cwd=root, check=False)
    if result.returncode != 0:
        raise PipelineError(f"rebuild: `dvc {' '.join(args)}` failed (exit {result.returncode})")


@contextmanager
def empty_cache(root: Path) -> Iterator[Path]:
    """A fresh, empty DVC cache for the commands run inside (`cache.dir` in the repository's
    `.dvc/config.local`, put back as it was afterwards)."""
    local = root / ".dvc" / "config.local"
    saved = local.read_bytes() if local.is_file() else None
    with tempfile.TemporaryDirectory(prefix="rebuild-cache-") as cache:
        _dvc(root, "config", "--local", "cache.dir", cache)
        # Copies, never links into a cache that is deleted afterwards.
        _dvc(root, "config", "--local", "cache.type", "copy")
        try:
            yield Path(cache)
        finally:
            if saved is None:
                local.unlink(missing_ok=True)
            else:
                local.write_bytes(saved)


def rebuild(root: Path = Path(), progress: Callable[[str], None] = print) -> list[Output]:
    """Run the pipeline of the commit checked out at `root` from nothing and check the result
    against its dvc.lock; returns the outputs, each now the rebuilt bytes."""
    lock_file = root / LOCK
    reviewed_text = lock_file.read_text(encoding="utf-8")
    reviewed = read_lock(lock_file)
    for out in outputs(reviewed):  # nothing a pull request's job wrote stays in the workspace
        target = root / out.path
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    try:
        with empty_cache(root):
            sources = tracked_sources(root)
            if sources:
                progress(f"rebuild: pulling the data sources {', '.join(sources)} (nothing else)")
                _dvc(root, "pull", *sources)
            progress("rebuild: `dvc repro --force --no-run-cache` from an empty cache")
            _dvc(root, "repro", "--force", "--no-run-cache")
        compare(reviewed, read_lock(lock_file), root)
    finally:
        lock_file.write_text(reviewed_text, encoding="utf-8")  # the merged commit's, always
    found = outputs(reviewed)
    progress(f"rebuild: all {len(found)} outputs are byte for byte the ones dvc.lock names")
    return found
