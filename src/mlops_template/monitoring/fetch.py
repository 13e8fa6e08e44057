"""`mlops monitor fetch`: mirror production's prediction logs and labelled feedback.

The service writes its prediction log (and its rotated files) somewhere the team ships to object
storage; labels that arrive later go beside them. This copies those files from a directory or an
`s3://bucket/prefix` into `monitoring.fetched`, which `mlops monitor drift --fetched` then
reads. The copy is made in a temporary directory and swapped in whole, so a failed fetch leaves
the previous mirror as it was. For S3, credentials come from the usual AWS variables and a
non-AWS endpoint (MinIO, ...) from AWS_ENDPOINT_URL."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, cast

from mlops_template import PipelineError
from mlops_template.config import Params
from mlops_template.monitoring.records import rotated_index

log = logging.getLogger(__name__)


def _filesystem(source: str) -> tuple[Any, str]:  # fsspec is untyped
    import fsspec

    options: dict[str, object] = {}
    if source.startswith("s3://") and os.environ.get("AWS_ENDPOINT_URL"):
        options["endpoint_url"] = os.environ["AWS_ENDPOINT_URL"]
    return cast(tuple[Any, str], fsspec.core.url_to_fs(source, **options))


def run(params: Params, source: str) -> list[Path]:
    log_name = params.serve.prediction_log.name
    feedback_name = params.monitoring.feedback.name
    target = params.monitoring.fetched
    fs, root = _filesystem(source)
    root = root.rstrip("/")
    try:
        found = fs.glob(f"{root}/{log_name}*") + fs.glob(f"{root}/{feedback_name}")
    except (OSError, ValueError) as error:
        raise PipelineError(f"{source}: cannot list it: {error}") from None
    names = [Path(str(path)).name for path in found]
    logs = [name for name in names if name == log_name or rotated_index(name, log_name) is not None]
    if not logs:
        raise PipelineError(f"{source}: no {log_name} (nor rotated {log_name}.N) there")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=target.parent))
    try:
        for path, name in zip(found, names, strict=True):
            if name in logs or name == feedback_name:
                fs.get(str(path), str(staging / name))
        previous = target.with_name(target.name + ".previous")
        if target.exists():
            target.replace(previous)
        staging.replace(target)
        shutil.rmtree(previous, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fetched = sorted(target.iterdir())
    log.info("fetched %s from %s into %s", ", ".join(p.name for p in fetched), source, target)
    return fetched
