"""The rebuild's comparison of the merged dvc.lock with the rebuilt one (rebuild.compare)."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import pytest

from mlops_template.release.rebuild import RebuildMismatchError, compare, outputs


def lock() -> dict[str, Any]:
    return {
        "schema": "2.0",
        "stages": {
            "split": {
                "cmd": "mlops stage split",
                "deps": [{"path": "data/validated.parquet", "md5": "a" * 32}],
                "params": {"params.yaml": {"seed": 42}},
                "outs": [{"path": "data/test.parquet", "md5": "b" * 32}],
            },
            "train": {
                "cmd": "mlops stage train",
                "deps": [{"path": "data/train.parquet", "md5": "c" * 32}],
                "outs": [
                    {"path": "models/model.onnx", "md5": "d" * 32},
                    {"path": "models/model.onnx.sha256", "md5": "e" * 32},
                ],
            },
        },
    }


def test_the_same_outputs_pass() -> None:
    compare(lock(), copy.deepcopy(lock()), Path())
    assert [(o.stage, o.path) for o in outputs(lock())] == [
        ("split", "data/test.parquet"),
        ("train", "models/model.onnx"),
        ("train", "models/model.onnx.sha256"),
    ]


def test_a_different_model_is_named_with_both_hashes_and_its_stage(tmp_path: Path) -> None:
    rebuilt = copy.deepcopy(lock())
    rebuilt["stages"]["train"]["outs"][0]["md5"] = "f" * 32
    (tmp_path / "models").mkdir()
    (tmp_path / "models/model.onnx").write_bytes(b"rebuilt")
    with pytest.raises(RebuildMismatchError) as raised:
        compare(lock(), rebuilt, tmp_path)
    (difference,) = raised.value.differences
    assert difference.line().startswith("models/model.onnx (stage train): ")
    assert f"dvc.lock says md5 {'d' * 32}" in difference.line()
    assert f"the rebuild wrote md5 {'f' * 32}" in difference.line()
    assert difference.sha256 == hashlib.sha256(b"rebuilt").hexdigest()
    assert f"rebuilt sha256 {difference.sha256}" in difference.line()
    assert "nothing is registered, pushed or signed" in str(raised.value)


def test_a_missing_or_extra_output_and_a_stale_lock_are_named() -> None:
    rebuilt = copy.deepcopy(lock())
    del rebuilt["stages"]["train"]["outs"][1]
    rebuilt["stages"]["split"]["params"]["params.yaml"]["seed"] = 7
    with pytest.raises(RebuildMismatchError) as raised:
        compare(lock(), rebuilt, Path())
    message = str(raised.value)
    assert "models/model.onnx.sha256 (stage train)" in message
    assert "the rebuild wrote md5 nothing" in message
    assert "stage split: its dependencies or params in dvc.lock are not this commit's" in message
