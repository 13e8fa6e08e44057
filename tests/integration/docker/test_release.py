"""The release's lock check: main's dvc.lock must be the reviewed pipeline state. (release.yml
itself runs under act, merge after merge, in tests/integration/docker/test_lifecycle.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.project import copy_repo, sh

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def main_branch(tmp_path_factory: pytest.TempPathFactory, remote_env: dict[str, str]) -> Path:
    """main after a reviewed merge: dvc.lock committed, its outputs in the remote."""
    root = copy_repo(tmp_path_factory.mktemp("release") / "main")
    sh(root, "dvc", "repro")
    sh(root, "dvc", "push", env=remote_env)
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-q", "-m", "reviewed", check=False)
    # What CI gets: a clean checkout, without the outputs (they come from the remote).
    clone = root.parent / "checkout"
    sh(root.parent, "git", "clone", "-q", str(root), clone.name)
    # act takes github.repository from the origin URL; nothing is fetched from it.
    sh(clone, "git", "remote", "set-url", "origin", "https://github.com/acme/penguins.git")
    return clone


def test_release_refuses_a_model_that_was_not_reviewed(
    main_branch: Path, remote_env: dict[str, str], tmp_path: Path
) -> None:
    """params.yaml changed on main without re-running the pipeline: the lock check fails."""
    sh(tmp_path, "git", "clone", "-q", str(main_branch), "drift")
    clone = tmp_path / "drift"
    params = clone / "params.yaml"
    params.write_text(params.read_text().replace("n_estimators: 100", "n_estimators: 5"))
    sh(clone, "git", "commit", "-q", "-am", "unreviewed change")
    sh(clone, "dvc", "pull", env=remote_env)
    result = sh(clone, ".ci/check-lock", check=False)
    assert result.returncode == 1
    assert "dvc.lock does not match this commit" in result.stderr
    assert "model.n_estimators" in result.stderr or "params.yaml" in result.stderr
