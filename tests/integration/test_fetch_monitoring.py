"""`mlops monitor fetch` from a real S3 API (moto server on 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from tests.support.project import sh
from tests.support.servers import S3_BUCKET, S3_KEY, s3_env

pytestmark = pytest.mark.slow


def test_fetch_from_s3_mirrors_logs_and_feedback(
    s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_KEY,
        region_name="us-east-1",
    )
    objects = {
        "predictions.jsonl": "new\n",
        "predictions.jsonl.1": "old\n",
        "feedback.jsonl": "{}\n",
    }
    for name, body in objects.items():
        client.put_object(Bucket=S3_BUCKET, Key=f"monitoring/{name}", Body=body.encode())
    client.put_object(Bucket=S3_BUCKET, Key="monitoring/unrelated.txt", Body=b"x")
    repo_params = Path(__file__).resolve().parents[2] / "params.yaml"
    (tmp_path / "params.yaml").write_text(repo_params.read_text())
    env = {**s3_env(), "AWS_ENDPOINT_URL": s3_endpoint}
    sh(tmp_path, "mlops", "monitor", "fetch", "--source", f"s3://{S3_BUCKET}/monitoring", env=env)
    fetched = tmp_path / "logs" / "production"
    assert {path.name: path.read_text() for path in fetched.iterdir()} == objects
