"""What makes the serving benchmark fair: every server holds the same fitted model, and every
scikit-learn server scores it in one thread.

- The pipeline's model (models/model.joblib) is checked against the sha256 recorded beside it.
- The scikit-learn peers (the seed's Flask app, under Flask's server and under gunicorn, and
  `mlflow models serve`) are given one copy of it with every `n_jobs` set to 1, written once
  into the run's scratch directory: the seed app stays as written, and none of them gets the
  thread pool `n_jobs: -1` (params.yaml) would start for each single-row call. Our service
  sets `n_jobs=1` itself when it serves scikit-learn.
- The copy's fitted state is compared with the source's (`fitted_digest`, which ignores only
  `n_jobs`): the same trees, the same imputation values, the same categories.
- Our service serves the same model compiled to ONNX (models/model.onnx, written by the train
  stage); its metadata `source_sha256` must be the joblib's sha256.

Pickled bytes cannot prove sameness (loading and dumping the same pipeline again gives other
bytes), hence the digest of the fitted state.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IGNORED = "n_jobs"  # the one setting allowed to differ between the source and its copy


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def recorded_sha256(path: Path) -> str:
    """The digest in the `sha256sum`-format record beside a file (`<file>.sha256`)."""
    record = path.with_name(path.name + ".sha256")
    return record.read_text(encoding="utf-8").split()[0].lower()


def n_jobs_settings(estimator: Any) -> dict[str, Any]:
    """Every `n_jobs` parameter of a (nested) estimator, by its parameter name."""
    return {
        name: value
        for name, value in estimator.get_params(deep=True).items()
        if name == IGNORED or name.endswith(f"__{IGNORED}")
    }


def single_threaded(estimator: Any) -> Any:
    """The estimator with every `n_jobs` set to 1 (in place; None also becomes 1, so that no
    joblib backend context can change it)."""
    estimator.set_params(**dict.fromkeys(n_jobs_settings(estimator), 1))
    return estimator


def _walk(value: Any, seen: set[int]) -> Iterator[bytes]:
    """A canonical byte stream of an object's state, skipping `n_jobs` attributes."""
    import numpy as np

    if value is None or isinstance(value, bool | int | str | bytes):
        yield f"{type(value).__name__}:{value!r};".encode()
    elif isinstance(value, float):
        yield b"float:nan;" if math.isnan(value) else f"float:{value!r};".encode()
    elif isinstance(value, np.generic):
        yield from _walk(value.item(), seen)
    elif isinstance(value, np.ndarray):
        yield f"ndarray:{value.dtype.str}:{value.shape};".encode()
        if value.dtype.names:  # a record array (a Tree's nodes): field by field, as its
            for name in value.dtype.names:  # padding bytes are whatever memory held
                yield from _walk(name, seen)
                yield from _walk(np.ascontiguousarray(value[name]), seen)
        elif value.dtype.hasobject:
            for item in value.ravel().tolist():
                yield from _walk(item, seen)
        else:
            yield np.ascontiguousarray(value).tobytes()
    elif isinstance(value, dict):
        yield b"dict{"
        for key in sorted(value, key=repr):
            if key == IGNORED:
                continue
            yield from _walk(key, seen)
            yield from _walk(value[key], seen)
        yield b"}"
    elif isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        yield f"{type(value).__name__}[".encode()
        for item in items:
            yield from _walk(item, seen)
        yield b"]"
    elif isinstance(value, type):
        yield f"type:{value.__module__}.{value.__qualname__};".encode()
    else:
        if id(value) in seen:
            yield b"cycle;"
            return
        seen.add(id(value))
        kind = type(value)
        yield f"object:{kind.__module__}.{kind.__qualname__}(".encode()
        reduced = value.__reduce_ex__(4)
        # (callable, args, state, ...): the args rebuild Cython objects such as sklearn's Tree
        if isinstance(reduced, tuple):
            for part in reduced[1:3]:
                yield from _walk(part, seen)
        yield b")"


def fitted_digest(estimator: Any) -> str:
    """sha256 of the fitted state, ignoring `n_jobs`: equal for the same fitted model however
    it was pickled (joblib, cloudpickle) and with whatever `n_jobs`."""
    digest = hashlib.sha256()
    for chunk in _walk(estimator, set()):
        digest.update(chunk)
    return digest.hexdigest()


def load_joblib(path: Path) -> Any:
    import joblib

    return joblib.load(path)


def onnx_metadata(path: Path) -> dict[str, str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {prop.key: prop.value for prop in model.metadata_props}


@dataclass(frozen=True)
class Models:
    """The model every server gets, and where each server reads it."""

    source: Path  # models/model.joblib, as the pipeline wrote it
    source_sha256: str
    source_n_jobs: dict[str, Any]  # as trained (params.yaml model.n_jobs)
    digest: str  # fitted_digest of the source
    sklearn_copy: Path  # the same pipeline with every n_jobs 1: for every scikit-learn server
    copy_sha256: str
    onnx: Path | None  # models/model.onnx (what our service serves), None without one
    onnx_sha256: str | None
    onnx_metadata: dict[str, str]

    def as_json(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "source_sha256": self.source_sha256,
            "source_n_jobs": self.source_n_jobs,
            "fitted_digest": self.digest,
            "sklearn_copy": str(self.sklearn_copy),
            "sklearn_copy_sha256": self.copy_sha256,
            "sklearn_copy_n_jobs": dict.fromkeys(self.source_n_jobs, 1),
            "onnx": str(self.onnx) if self.onnx else None,
            "onnx_sha256": self.onnx_sha256,
            "onnx_source_sha256": self.onnx_metadata.get("source_sha256"),
        }


class UnfairError(RuntimeError):
    """The servers would not hold the same model, or would not score it the same way."""


def prepare(source: Path, scratch: Path, onnx: Path | None) -> Models:
    """Check the source, write its single-threaded copy into `scratch`, check the ONNX model.
    `onnx` None (or a missing or empty file: serve.runtime sklearn) leaves ours on the
    scikit-learn runtime."""
    import joblib

    expected = recorded_sha256(source)
    actual = sha256_file(source)
    if actual != expected:
        raise UnfairError(f"{source}: sha256 {actual} differs from the recorded {expected}")
    pipeline = load_joblib(source)
    original = n_jobs_settings(pipeline)
    digest = fitted_digest(pipeline)
    copy = scratch / "model-n_jobs-1.joblib"
    joblib.dump(single_threaded(pipeline), copy)
    check_sklearn(load_joblib(copy), digest, str(copy))
    metadata: dict[str, str] = {}
    onnx_sha = None
    if onnx is not None and onnx.is_file() and onnx.stat().st_size > 0:
        onnx_sha = sha256_file(onnx)
        metadata = onnx_metadata(onnx)
        check_onnx(onnx, metadata, actual)
    else:
        onnx = None
    return Models(
        source, actual, original, digest, copy, sha256_file(copy), onnx, onnx_sha, metadata
    )


def check_sklearn(pipeline: Any, digest: str, where: str) -> None:
    """A scikit-learn server's loaded pipeline: every n_jobs 1, the source's fitted state."""
    threads = {name: value for name, value in n_jobs_settings(pipeline).items() if value != 1}
    if threads:
        raise UnfairError(f"{where}: n_jobs not 1: {threads}")
    if fitted_digest(pipeline) != digest:
        raise UnfairError(f"{where}: not the same fitted model as the source")


def check_onnx(path: Path, metadata: dict[str, str], source_sha256: str) -> None:
    source = metadata.get("source_sha256")
    if source != source_sha256:
        raise UnfairError(
            f"{path}: compiled from {source or 'an unrecorded model'}, not from the served"
            f" joblib {source_sha256} (re-run the pipeline)"
        )
    recorded = path.with_name(path.name + ".sha256")
    if recorded.is_file() and recorded_sha256(path) != sha256_file(path):
        raise UnfairError(f"{path}: sha256 differs from the record beside it")


def parity(path: Path) -> dict[str, Any] | None:
    """The train stage's parity report (reports/parity.json), if there is one."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
