"""Atomic writes, hashing and table I/O shared by every stage.

A stage that fails must leave nothing half-written for DVC to cache, so every file is written
to a temporary sibling and moved into place with `os.replace` (atomic on POSIX).

The prediction service uses the hashing and JSON helpers here; pandas (and joblib, pyarrow)
are imported inside the functions that need them, so importing this module does not load
them (the service's image has none of them).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_template import PipelineError

if TYPE_CHECKING:
    import pandas as pd

_CHUNK = 1 << 20

# A plain relative path: segments of letters, digits and . _ - (none starting with a dot). The
# hand-over between CI jobs and the PR report's links accept no other.
SAFE_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; move it onto `target` only if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp makes the file private (0600); give it the mode a plain open() would.
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield tmp
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: Path, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def write_json(target: Path, payload: Any) -> None:
    """Stable JSON (sorted keys, fixed indent) so identical content gives identical hashes."""
    write_text(target, json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def read_json_if_present(path: Path) -> Any:
    """The file's JSON, or None when there is no file (a stage that did not run)."""
    return read_json(path) if path.is_file() else None


def write_with(target: Path, writer: Callable[[Path], None]) -> None:
    """Run `writer(tmp_path)` and publish its file atomically at `target`."""
    with atomic_path(target) as tmp:
        writer(tmp)


def write_parquet(target: Path, frame: pd.DataFrame) -> None:
    write_with(target, lambda tmp: frame.to_parquet(tmp, index=False, engine="pyarrow"))


def read_parquet(path: Path) -> pd.DataFrame:
    import pandas as pd

    if not path.exists():
        raise PipelineError(f"{path}: not found (did the previous stage run?)")
    return pd.read_parquet(path, engine="pyarrow")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def md5_file(path: Path) -> str:
    """The md5 DVC records for a file (dvc.lock): which data a run read, not a security check."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_sidecar(path: Path) -> Path:
    """The file recording `path`'s sha256, in `sha256sum` format so `sha256sum -c` checks it."""
    return path.with_name(path.name + ".sha256")


def read_recorded_sha256(path: Path) -> str:
    sidecar = sha256_sidecar(path)
    try:
        return sidecar.read_text(encoding="utf-8").split()[0]
    except (FileNotFoundError, IndexError):
        raise PipelineError(f"{sidecar}: missing or empty; cannot verify {path}") from None


def read_verified_bytes(path: Path, expected: str | None = None) -> bytes:
    """The bytes of a model file, only if they match `expected` (by default the sha256
    recorded beside it). The file is read once: the bytes hashed are the bytes returned, so
    whoever deserializes them has no window in which the file could be swapped."""
    expected = expected if expected is not None else read_recorded_sha256(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PipelineError(f"{path}: model file not found") from None
    actual = sha256_bytes(data)
    if actual != expected:
        raise PipelineError(
            f"{path}: sha256 {actual} does not match the recorded {expected}; refusing to load"
        )
    return data


def load_verified_model(path: Path, expected: str | None = None) -> Any:
    """Load a joblib model only if its bytes match `expected` (by default the sha256 recorded
    beside it).

    A pickle runs code when loaded, so the hash is checked first: a tampered or truncated
    file is refused before it is deserialized (read_verified_bytes).
    """
    import io

    import joblib

    return joblib.load(io.BytesIO(read_verified_bytes(path, expected)))


def read_table(path: Path) -> pd.DataFrame:
    """Read a user-supplied CSV or Parquet file, turning every failure into a clear error."""
    import pandas as pd
    import pyarrow as pa  # here, not at the top: the serving image does without it

    if not path.is_file():
        raise PipelineError(f"{path}: data file not found")
    if path.stat().st_size == 0:
        raise PipelineError(f"{path}: file is empty (no header, no rows)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path)
        elif suffix in {".parquet", ".pq"}:
            frame = pd.read_parquet(path, engine="pyarrow")
        else:
            raise PipelineError(f"{path}: unsupported file type {suffix!r}; use .csv or .parquet")
    except PipelineError:
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise PipelineError(f"{path}: not a readable CSV table: {error}") from None
    except (pa.ArrowException, OSError) as error:
        raise PipelineError(f"{path}: not a readable Parquet table: {error}") from None
    if frame.empty:
        raise PipelineError(f"{path}: has a header but no data rows")
    return frame


def table_columns(path: Path) -> list[str]:
    """The column names of a CSV or Parquet file, read from its header alone."""
    import pandas as pd

    if path.suffix.lower() == ".csv":
        try:
            return [str(name) for name in pd.read_csv(path, nrows=0).columns]
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
            raise PipelineError(f"{path}: not a readable CSV table: {error}") from None
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return [str(name) for name in pq.read_schema(path).names]
    except (pa.ArrowException, OSError) as error:
        raise PipelineError(f"{path}: not a readable Parquet table: {error}") from None
