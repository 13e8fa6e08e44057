"""The stack's log shipper: the service's prediction log, copied to the object store.

In production the service writes its log (and its rotated files) to a volume and the platform
ships them to object storage (a sidecar, Fluent Bit, the cloud's agent); `mlops
monitor fetch` reads them back from there for `mlops monitor drift`. Here the same happens in
miniature: every SHIP_SECONDS, each file of LOG_DIR that changed is uploaded to
s3://LOG_BUCKET/<name>, and a file that is gone (rotated out) is deleted there too. A file
caught mid-write is uploaded as it is: `mlops monitor drift` skips a last line cut short.

Settings: LOG_DIR (/logs), LOG_BUCKET (prediction-logs), SHIP_SECONDS (5) and S3's
AWS_ENDPOINT_URL and credentials, from the environment. It runs until stopped.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import boto3
from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError

Stamp = tuple[int, int]  # (modification time in ns, size)


def ship_once(s3: object, folder: Path, bucket: str, shipped: dict[str, Stamp]) -> None:
    """Upload what changed since `shipped`, delete what disappeared; update `shipped`."""
    present: dict[str, Stamp] = {}
    for path in sorted(folder.iterdir()):
        try:
            if path.is_file():
                stat = path.stat()
                present[path.name] = (stat.st_mtime_ns, stat.st_size)
        except OSError:  # rotated away while listing: next round
            continue
    for name, stamp in present.items():
        if shipped.get(name) == stamp:
            continue
        try:
            s3.upload_file(str(folder / name), bucket, name)  # type: ignore[attr-defined]
        except (OSError, Boto3Error, BotoCoreError, ClientError) as error:
            print(f"ship_logs: {name}: not shipped this round: {error}", flush=True)
            continue
        shipped[name] = stamp
        print(f"ship_logs: {name} ({stamp[1]} bytes) -> s3://{bucket}/{name}", flush=True)
    for name in sorted(set(shipped) - set(present)):
        try:
            s3.delete_object(Bucket=bucket, Key=name)  # type: ignore[attr-defined]
        except (BotoCoreError, ClientError) as error:
            print(f"ship_logs: {name}: not deleted this round: {error}", flush=True)
            continue
        del shipped[name]
        print(f"ship_logs: {name} is gone: deleted s3://{bucket}/{name}", flush=True)


def main() -> None:
    folder = Path(os.environ.get("LOG_DIR", "/logs"))
    bucket = os.environ.get("LOG_BUCKET", "prediction-logs")
    interval = float(os.environ.get("SHIP_SECONDS", "5"))
    s3 = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
    try:
        s3.create_bucket(Bucket=bucket)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
            raise
    print(f"ship_logs: {folder} -> s3://{bucket}/ every {interval:g} s", flush=True)
    shipped: dict[str, Stamp] = {}
    while True:
        ship_once(s3, folder, bucket, shipped)
        time.sleep(interval)


if __name__ == "__main__":
    main()
