"""release.yml under act, with a real Docker engine, the S3 remote (moto) and a registry on
127.0.0.1: the lock check, the build, the smoke test, and the push by digest that signing
and attestation then refer to (those two need GitHub's OIDC, so they are recording stubs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.docker.conftest import BASE_REPO, BASE_TAG, CA_BUNDLE, DOCKER, Engine
from tests.slow.conftest import (
    act,
    copy_repo,
    dvc_remote_secrets,
    free_port,
    mlflow_server,  # noqa: F401 (fixture)
    s3_endpoint,  # noqa: F401 (fixture)
    s3_env,
    sh,
    succeeded,
)

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def remote_env(s3_endpoint: str) -> dict[str, str]:  # noqa: F811
    """The committed remote (.dvc/config) itself, served by moto: its bucket is created there
    and botocore is pointed at moto by AWS_ENDPOINT_URL_S3, so no local config is needed
    (act's own checkout would not copy an untracked .dvc/config.local)."""
    import boto3

    config = (REPO_ROOT / ".dvc" / "config").read_text()
    bucket = re.search(r"url = s3://([^/\s]+)", config)
    assert bucket is not None, config
    env = {**s3_env(), "AWS_ENDPOINT_URL_S3": s3_endpoint}
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    ).create_bucket(Bucket=bucket.group(1))
    return env


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


def test_release_workflow_pushes_the_reviewed_model_by_digest(
    main_branch: Path,
    remote_env: dict[str, str],
    engine: Engine,
    registry: str,
    mlflow_server: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    record = tmp_path / "record"
    record.mkdir()
    secret = f" --secret id=ca_bundle,src={CA_BUNDLE}" if CA_BUNDLE.is_file() else ""
    result = act(
        main_branch,
        "push",
        "release.yml",
        {"ref": "refs/heads/main", "repository": {"full_name": "acme/penguins"}},
        secrets={**dvc_remote_secrets(), "MLFLOW_TRACKING_URI": mlflow_server},
        env={
            "AWS_ENDPOINT_URL_S3": remote_env["AWS_ENDPOINT_URL_S3"],
            "ACT_STUB_ARTIFACTS": str(tmp_path / "artifacts"),
            "ACT_STUB_RECORD": str(record),
            "DOCKER": str(DOCKER),
            "DOCKER_HOST": engine.env["DOCKER_HOST"],
            "DOCKER_BUILDKIT": "1",
            "BUILD_ARGS": f"--network host{secret} --build-arg BASE_REPO={BASE_REPO}"
            f" --build-arg BASE_TAG={BASE_TAG}",
            "SMOKE_PORT": str(free_port()),
        },
        variables={"IMAGE_REGISTRY": registry},
    )
    output = succeeded(result)
    assert "check-lock: dvc.lock matches" in output
    assert "smoke-test: mlops-template:" in output
    pushed = re.search(r"push-image: (\S+)@(sha256:[0-9a-f]{64})", output)
    assert pushed is not None, output[-3000:]
    repository, digest = pushed.groups()
    assert repository == f"{registry}/acme/penguins"

    # The pushed image is there by digest, tagged with the commit and the model version.
    engine.run("pull", f"{repository}@{digest}")
    commit = sh(main_branch, "git", "rev-parse", "HEAD").stdout.strip()
    model = (main_branch / "models" / "model.joblib.sha256").read_text()[:12]
    for tag in (commit, f"model-{model}"):
        engine.run("pull", f"{repository}:{tag}")
        assert digest in engine.run(
            "image", "inspect", "--format", "{{.RepoDigests}}", f"{repository}:{tag}"
        )

    # Scan, provenance and signature all refer to that digest.
    assert (record / "login-registry").read_text().strip() == registry
    assert (record / "trivy-refs").read_text().split() == [f"{repository}@{digest}"] * 2
    assert (record / "attested").read_text().strip() == f"{repository}@{digest}"
    assert (record / "cosign-args").read_text().split() == [
        "sign",
        "--yes",
        f"{repository}@{digest}",
    ]


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
