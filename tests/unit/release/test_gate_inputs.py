"""The gate's inputs as the privileged job reads them: only data that fits the schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlops_template import PipelineError
from mlops_template.release.gate_inputs import read, read_champion

SHA = "ab" * 32


def payload(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schema_version": 1,
        "commit": "c" * 40,
        "runtime": "onnx",
        "test_sha256": SHA,
        "files": {"models/model.joblib": SHA, "models/model.joblib.sha256": SHA},
        "mlflow_files": {"mlflow-sklearn/MLmodel": SHA},
        "candidate": {"f1_macro": 0.98, "beats_baseline": True, "baseline": {"f1_macro": 0.2}},
        "champion": {
            "version": "3",
            "model_sha256": SHA,
            "served_sha256": SHA,
            "runtime": "onnx",
            "metrics": {"f1_macro": 0.97},
        },
    }
    return {**base, **changes}


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "gate-inputs.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_well_formed_inputs_are_read(tmp_path: Path) -> None:
    inputs = read(write(tmp_path, payload()))
    assert inputs.champion is not None
    assert inputs.champion.version == "3"
    assert inputs.candidate["f1_macro"] == 0.98


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"extra": 1}, "extra"),
        ({"commit": "main"}, "commit"),
        ({"runtime": "pickle"}, "runtime"),
        ({"files": {"../etc/passwd": SHA}}, "not a plain relative path"),
        ({"files": {"models/model.joblib": "zz" * 32}}, "files"),
        ({"candidate": {"f1_macro": "NaN"}}, None),
        (
            {
                "champion": {
                    "version": "3; rm",
                    "model_sha256": SHA,
                    "served_sha256": SHA,
                    "runtime": "onnx",
                }
            },
            "version",
        ),
        ({"schema_version": 2}, "schema_version"),
    ],
)
def test_anything_else_is_refused_naming_it(
    tmp_path: Path, change: dict[str, Any], named: str | None
) -> None:
    data = payload(**change)
    if named is None:  # a NaN is not JSON: written as Python's json writes it
        text = json.dumps(data).replace('"NaN"', "NaN")
        with pytest.raises(PipelineError, match="not the gate's inputs"):
            read(write(tmp_path, text))
        return
    with pytest.raises(PipelineError, match=f"not the gate's inputs(.|\\n)*{named}"):
        read(write(tmp_path, data))


def test_deep_or_huge_scores_are_refused(tmp_path: Path) -> None:
    deep: Any = 1.0
    for _ in range(8):
        deep = {"x": deep}
    with pytest.raises(PipelineError, match="nested deeper"):
        read(write(tmp_path, payload(candidate={"f1_macro": deep})))
    with pytest.raises(PipelineError, match="larger than 1 MB"):
        read(write(tmp_path, payload(candidate={"pad": "x" * 1_100_000})))


def test_the_champion_record(tmp_path: Path) -> None:
    path = tmp_path / "champion.json"
    path.write_text(json.dumps({"champion": None}))
    assert read_champion(path) is None
    path.write_text(json.dumps({"champion": None, "more": 1}))
    with pytest.raises(PipelineError, match="expected"):
        read_champion(path)


def test_float32_probabilities_are_scored_as_probabilities() -> None:
    """An ONNX model's float32 rows can sum past 1 (1.0000009): scikit-learn's log loss
    refuses that, so the gate's scorer clips and rescales each row first."""
    import numpy as np
    import pandas as pd

    from mlops_template.release.gate_inputs import _AsEstimator

    class Served:
        classes = ("a", "b")

        def predict_proba(self, records: list[dict[str, Any]]) -> np.ndarray:
            return np.array([[0.6000005, 0.4000005], [1.0000009, 0.0]], dtype=np.float32)

    proba = _AsEstimator(Served()).predict_proba(pd.DataFrame({"x": [1, 2]}))  # type: ignore[arg-type]
    assert proba.max() <= 1.0
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert proba[1].tolist() == [1.0, 0.0]


def test_lists_in_the_scores_are_checked_too(tmp_path: Path) -> None:
    assert read(write(tmp_path, payload(candidate={"curve": [0.1, 0.2, None]}))).candidate
    with pytest.raises(PipelineError, match=r"candidate.curve: more than 500 items"):
        read(write(tmp_path, payload(candidate={"curve": [0.5] * 501})))
    with pytest.raises(PipelineError, match=r"more than 500 keys"):
        read(write(tmp_path, payload(candidate={str(i): i for i in range(501)})))
