"""The hand-over of pipeline outputs from a job without write credentials to the job that
publishes them: what is staged, what is refused, and the dvc.lock check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlops_template.io import handoff
from mlops_template.io.handoff import HandoffError

LOCK = {
    "schema": "2.0",
    "stages": {
        "train": {
            "cmd": "mlops stage train",
            "outs": [
                {"path": "models/model.joblib", "md5": "0" * 32},
                {"path": "reports/plots/roc.json", "md5": "1" * 32},
            ],
        },
        "ingest": {"cmd": "mlops stage ingest", "outs": [{"path": "data/raw.parquet"}]},
    },
}


def hand_over(root: Path, lock: dict | None = None) -> Path:
    incoming = root / "incoming"
    for path in ("models/model.joblib", "reports/plots/roc.json", "data/raw.parquet"):
        (incoming / path).parent.mkdir(parents=True, exist_ok=True)
        (incoming / path).write_text(f"{path}\n")
    (incoming / "dvc.lock").write_text(yaml.safe_dump(lock or LOCK))
    return incoming


def test_only_dvc_lock_and_its_outputs_are_staged(tmp_path: Path) -> None:
    incoming = hand_over(tmp_path)
    (incoming / ".git" / "hooks").mkdir(parents=True)
    (incoming / ".git" / "hooks" / "post-commit").write_text("#!/bin/sh\ntouch pwned\n")
    (incoming / "Makefile").write_text("all:\n\ttouch pwned\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    staged = handoff.stage(incoming, repo)
    assert sorted(staged) == [
        "data/raw.parquet",
        "dvc.lock",
        "models/model.joblib",
        "reports/plots/roc.json",
    ]
    assert not (repo / ".git").exists()
    assert not (repo / "Makefile").exists()
    assert (repo / "models" / "model.joblib").read_text() == "models/model.joblib\n"


@pytest.mark.parametrize(
    "path",
    [".github/workflows/x.yml", "Makefile", "../outside", "/etc/x", "models/../.git/config"],
)
def test_an_output_outside_data_models_reports_refuses_the_hand_over(
    tmp_path: Path, path: str
) -> None:
    lock = {"stages": {"evil": {"outs": [{"path": path}]}}}
    incoming = hand_over(tmp_path, lock)
    repo = tmp_path / "repo"
    repo.mkdir()
    with pytest.raises(HandoffError, match="refused"):
        handoff.stage(incoming, repo)
    assert list(repo.iterdir()) == []  # nothing written, not even dvc.lock


def test_a_symlink_in_the_hand_over_is_refused(tmp_path: Path) -> None:
    incoming = hand_over(tmp_path)
    secret = tmp_path / "secret"
    secret.write_text("token\n")
    (incoming / "models" / "model.joblib").unlink()
    (incoming / "models" / "model.joblib").symlink_to(secret)
    repo = tmp_path / "repo"
    repo.mkdir()
    with pytest.raises(HandoffError, match="symlink"):
        handoff.stage(incoming, repo)


def test_nothing_is_written_through_a_symlink_in_the_checkout(tmp_path: Path) -> None:
    """The pull request's checkout could hold models -> ../.git/hooks: refused."""
    incoming = hand_over(tmp_path)
    repo = tmp_path / "repo"
    hooks = repo / ".git" / "hooks"
    hooks.mkdir(parents=True)
    (repo / "models").symlink_to(hooks)
    with pytest.raises(HandoffError, match="symlink"):
        handoff.stage(incoming, repo)
    assert list(hooks.iterdir()) == []
    (repo / "models").unlink()
    (repo / "models").mkdir()
    (repo / "models" / "model.joblib").symlink_to(hooks / "post-commit")
    with pytest.raises(HandoffError, match="symlink"):
        handoff.stage(incoming, repo)
    assert list(hooks.iterdir()) == []


def test_a_missing_output_refuses_the_hand_over(tmp_path: Path) -> None:
    incoming = hand_over(tmp_path)
    (incoming / "data" / "raw.parquet").unlink()
    with pytest.raises(HandoffError, match="not in the hand-over"):
        handoff.stage(incoming, tmp_path / "repo")


def dvc_project(root: Path) -> Path:
    """A real DVC project: one stage, its dvc.lock from `dvc repro`."""
    root.mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def run(*args: str) -> None:
        subprocess.run(args, cwd=root, check=True, capture_output=True, env=env)

    run("git", "init", "-q")
    run("dvc", "init", "-q")
    (root / "in.txt").write_text("input\n")
    (root / "dvc.yaml").write_text(
        "stages:\n  copy:\n    cmd: mkdir -p models && cp in.txt models/out.txt\n"
        "    deps: [in.txt]\n    outs: [models/out.txt]\n"
    )
    run("dvc", "repro", "-q")
    return root


def test_the_staged_outputs_must_reproduce_the_handed_dvc_lock(tmp_path: Path) -> None:
    trained = dvc_project(tmp_path / "trained")
    incoming = tmp_path / "incoming"
    handoff.collect(incoming, root=trained)
    assert (incoming / "models" / "out.txt").read_text() == "input\n"

    # A fresh checkout of the same commit (no outputs, no cache): staged, then checked.
    checkout = tmp_path / "checkout"
    subprocess.run(["cp", "-a", str(trained), str(checkout)], check=True)
    subprocess.run(["rm", "-rf", "models", ".dvc/cache"], cwd=checkout, check=True)
    lock_before = (incoming / "dvc.lock").read_bytes()
    handoff.stage(incoming, checkout)
    handoff.verify_lock(checkout)
    assert (checkout / "dvc.lock").read_bytes() == lock_before
    assert any((checkout / ".dvc" / "cache").rglob("*"))  # ready for dvc push

    # An output that is not what its dvc.lock says is refused.
    (incoming / "models" / "out.txt").write_text("tampered\n")
    handoff.stage(incoming, checkout)
    with pytest.raises(HandoffError, match="do not match their dvc"):
        handoff.verify_lock(checkout)


def test_collect_reports_whether_git_sees_a_change(tmp_path: Path) -> None:
    project = dvc_project(tmp_path / "project")
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
        cwd=project,
        check=True,
    )
    assert handoff.git_changes(project) == []
    (project / "reports" / "drift").mkdir(parents=True)
    (project / "reports" / "drift" / "drift.md").write_text("drift\n")
    assert handoff.git_changes(project, exclude=["reports/drift"]) == []
    (project / "dvc.lock").write_text((project / "dvc.lock").read_text() + "\n")
    assert handoff.git_changes(project, exclude=["reports/drift"]) == ["dvc.lock"]


def test_the_push_goes_to_the_trusted_remote_not_the_pull_requests(tmp_path: Path) -> None:
    trusted, repo = tmp_path / "main", tmp_path / "pr"
    (trusted / ".dvc").mkdir(parents=True)
    (repo / ".dvc").mkdir(parents=True)
    (trusted / ".dvc" / "config").write_text("['remote \"storage\"']\n    url = s3://ours\n")
    (repo / ".dvc" / "config").write_text("['remote \"storage\"']\n    url = s3://theirs\n")
    (repo / ".dvc" / "config.local").write_text("[core]\n    remote = elsewhere\n")
    handoff.use_trusted_dvc_config(trusted, repo)
    assert "s3://ours" in (repo / ".dvc" / "config").read_text()
    assert not (repo / ".dvc" / "config.local").exists()
    (trusted / ".dvc" / "config.local").write_text("# this machine's\n")
    handoff.use_trusted_dvc_config(trusted, repo)
    assert (repo / ".dvc" / "config.local").read_text() == "# this machine's\n"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("stages: [unclosed\n", "not a dvc.lock"),
        ("- a list\n", "not a dvc.lock"),
        ("schema: '2.0'\n", "no stages"),
        ("stages:\n  train:\n    outs:\n    - md5: abc\n", "stage train: an output without a path"),
    ],
)
def test_a_malformed_dvc_lock_refuses_the_hand_over(tmp_path: Path, text: str, reason: str) -> None:
    incoming = hand_over(tmp_path)
    (incoming / "dvc.lock").write_text(text)
    repo = tmp_path / "repo"
    repo.mkdir()
    with pytest.raises(HandoffError, match=reason):
        handoff.stage(incoming, repo)
    assert list(repo.iterdir()) == []


def test_a_hand_over_that_is_not_a_directory_or_whose_lock_is_a_link_is_refused(
    tmp_path: Path,
) -> None:
    incoming = hand_over(tmp_path)
    repo = tmp_path / "repo"
    with pytest.raises(HandoffError, match="is not a directory"):
        handoff.stage(incoming / "dvc.lock", repo)
    linked = tmp_path / "linked"
    linked.symlink_to(incoming)
    with pytest.raises(HandoffError, match="is not a directory"):
        handoff.stage(linked, repo)
    real_lock = tmp_path / "elsewhere.lock"
    (incoming / "dvc.lock").rename(real_lock)
    (incoming / "dvc.lock").symlink_to(real_lock)
    with pytest.raises(HandoffError, match="not a regular file"):
        handoff.stage(incoming, repo)
    (incoming / "dvc.lock").unlink()
    with pytest.raises(HandoffError, match=r"dvc\.lock is missing"):
        handoff.stage(incoming, repo)


DIRECTORY_LOCK = {"stages": {"evaluate": {"outs": [{"path": "reports/plots"}]}}}


def test_a_directory_output_is_staged_file_by_file(tmp_path: Path) -> None:
    incoming = hand_over(tmp_path, DIRECTORY_LOCK)
    (incoming / "reports" / "plots" / "pr" / "curve.json").parent.mkdir(parents=True)
    (incoming / "reports" / "plots" / "pr" / "curve.json").write_text("{}\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    assert sorted(handoff.stage(incoming, repo)) == [
        "dvc.lock",
        "reports/plots/pr/curve.json",
        "reports/plots/roc.json",
    ]
    assert (repo / "reports" / "plots" / "pr" / "curve.json").read_text() == "{}\n"


def test_a_symlink_inside_a_directory_output_is_refused(tmp_path: Path) -> None:
    incoming = hand_over(tmp_path, DIRECTORY_LOCK)
    (tmp_path / "secret").write_text("token\n")
    (incoming / "reports" / "plots" / "leak.json").symlink_to(tmp_path / "secret")
    repo = tmp_path / "repo"
    repo.mkdir()
    with pytest.raises(HandoffError, match=r"leak\.json is not a regular file"):
        handoff.stage(incoming, repo)
    assert list(repo.iterdir()) == []


def test_collect_copies_the_lock_its_outputs_and_extras_or_names_what_is_missing(
    tmp_path: Path,
) -> None:
    root = hand_over(tmp_path, DIRECTORY_LOCK)
    (root / "reports" / "drift").mkdir()
    (root / "reports" / "drift" / "drift.json").write_text("{}\n")
    out = tmp_path / "out"
    paths = handoff.collect(out, extras=["reports/drift/drift.json"], root=root)
    assert paths == ["dvc.lock", "reports/plots", "reports/drift/drift.json"]
    assert (out / "reports" / "plots" / "roc.json").read_text() == "reports/plots/roc.json\n"
    assert (out / "reports" / "drift" / "drift.json").is_file()
    with pytest.raises(HandoffError, match=r"drift\.md is missing: did the pipeline run\?"):
        handoff.collect(tmp_path / "again", extras=["reports/drift/drift.md"], root=root)
