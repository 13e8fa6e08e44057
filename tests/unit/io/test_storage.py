from pathlib import Path

import pandas as pd
import pytest

from mlops_template import PipelineError
from mlops_template.io import storage


def test_atomic_write_leaves_target_untouched_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "out" / "model.bin"
    storage.write_bytes(target, b"old")

    def broken_writer(tmp: Path) -> None:
        tmp.write_bytes(b"half-")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        storage.write_with(target, broken_writer)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.bin"]


def test_atomic_write_creates_nothing_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "new.parquet"
    with pytest.raises(ValueError, match="boom"):
        storage.write_with(target, lambda tmp: (_ for _ in ()).throw(ValueError("boom")))
    assert list(tmp_path.iterdir()) == []


def test_written_files_get_the_usual_mode_not_a_private_one(tmp_path: Path) -> None:
    target = tmp_path / "model.joblib.sha256"
    storage.write_text(target, "x")
    reference = tmp_path / "plain"
    reference.write_text("x")
    assert target.stat().st_mode == reference.stat().st_mode


def test_json_is_stable(tmp_path: Path) -> None:
    storage.write_json(tmp_path / "a.json", {"b": 1, "a": [2, 3]})
    storage.write_json(tmp_path / "b.json", {"a": [2, 3], "b": 1})
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_sha256_sidecar_matches_sha256sum_format(tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    path.write_bytes(b"abc")
    digest = storage.sha256_file(path)
    assert digest == storage.sha256_bytes(b"abc")
    storage.write_text(storage.sha256_sidecar(path), f"{digest}  model.joblib\n")
    assert storage.read_recorded_sha256(path) == digest


def test_missing_sidecar_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"model\.joblib\.sha256: missing"):
        storage.read_recorded_sha256(tmp_path / "model.joblib")


def test_read_table_reads_csv_and_parquet(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(storage.read_table(tmp_path / "t.csv"), frame, check_dtype=False)
    pd.testing.assert_frame_equal(
        storage.read_table(tmp_path / "t.parquet"), frame, check_dtype=False
    )


def test_read_table_rejects_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "t.xlsx"
    path.write_text("a")
    with pytest.raises(PipelineError, match=r"unsupported file type '\.xlsx'"):
        storage.read_table(path)


def test_read_parquet_names_the_missing_input(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="did the previous stage run"):
        storage.read_parquet(tmp_path / "train.parquet")
