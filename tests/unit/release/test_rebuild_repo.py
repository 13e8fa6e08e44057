"""rebuild() on a small repository of its own: real git and dvc, a two-stage pipeline whose
commands are shell one-liners (the real pipeline's rebuild: tests/integration/test_rebuild.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_template.release.rebuild import RebuildMismatchError, empty_cache, rebuild
from tests.support.project import sh

DVC_YAML = """stages:
  make:
    cmd: mkdir -p models && printf 'weights %s' "$(cat seed.txt)" > models/model.bin
    deps: [seed.txt]
    outs: [models/model.bin]
  report:
    cmd: mkdir -p reports && wc -c < models/model.bin > reports/size.txt
    deps: [models/model.bin]
    outs: [reports/size.txt]
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    sh(root, "git", "init", "-q", "-b", "main")
    sh(root, "dvc", "init", "-q")
    (root / "seed.txt").write_text("42\n")
    (root / "dvc.yaml").write_text(DVC_YAML)
    sh(root, "dvc", "repro", "-q")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-q", "-m", "reviewed")
    return root


def test_an_honest_commit_rebuilds_to_its_lock_in_an_empty_cache(repo: Path) -> None:
    (repo / "models/model.bin").write_bytes(b"left over by a PR job")  # removed first
    lines: list[str] = []
    found = rebuild(repo, progress=lines.append)
    assert [out.path for out in found] == ["models/model.bin", "reports/size.txt"]
    assert (repo / "models/model.bin").read_text() == "weights 42"
    assert lines[-1] == "rebuild: all 2 outputs are byte for byte the ones dvc.lock names"
    assert sh(repo, "git", "status", "--porcelain").stdout == ""  # the lock and config as merged


def test_a_crafted_output_the_commit_does_not_build_is_named(repo: Path) -> None:
    (repo / "models/model.bin").write_text("weights 42 + backdoor")
    sh(repo, "dvc", "commit", "-q", "--force", "make")
    sh(repo, "dvc", "repro", "-q", "report")
    sh(repo, "git", "commit", "-q", "-am", "bot: dvc.lock")
    lock = (repo / "dvc.lock").read_text()
    with pytest.raises(RebuildMismatchError) as raised:
        rebuild(repo, progress=lambda _: None)
    named = {(d.stage, d.path) for d in raised.value.differences}
    assert named == {("make", "models/model.bin"), ("report", "reports/size.txt")}
    assert (repo / "dvc.lock").read_text() == lock


def test_the_empty_cache_is_temporary_and_config_local_comes_back(repo: Path) -> None:
    local = repo / ".dvc/config.local"
    local.write_text("[core]\n    autostage = false\n")
    with empty_cache(repo) as cache:
        assert cache.is_dir()
        assert str(cache) in local.read_text()
    assert not cache.exists()
    assert local.read_text() == "[core]\n    autostage = false\n"
