"""`make bench-explain` (benchmarks/explain.py): its three phases against a real service on
a small penguins model, and the statistics and table it reports."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from mlops_template.io import storage
from mlops_template.stages.explain import background_rows
from tests.conftest import REPO_ROOT
from tests.support import tasks
from tests.unit.serve.conftest import service_params_file


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_explain", REPO_ROOT / "benchmarks" / "explain.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_explain"] = module
    spec.loader.exec_module(module)
    return module


def test_percentiles_and_statuses(bench: ModuleType) -> None:
    result = bench.summary([float(n) for n in range(1, 101)], [200] * 99 + [503])
    assert result["requests"] == 100
    assert result["p50_ms"] == 50.5
    assert result["p95_ms"] == 96.0
    assert result["p99_ms"] == 100.0
    assert result["statuses"] == {"200": 99, "503": 1}


def test_three_phases_against_a_real_service(
    bench: ModuleType, tmp_path: Path, penguins: pd.DataFrame
) -> None:
    task = tasks.penguin_task(tmp_path / "model", penguins)
    (tmp_path / "service").mkdir()
    params, _ = service_params_file(tmp_path / "service", task.onnx_path, task.contract_path)
    background = tmp_path / "service" / "models" / "background.json"
    rows = background_rows(task.frame, task.contract, 20, seed=0)
    storage.write_json(background, {"features": task.contract.feature_names(), "rows": rows})
    raw = params.read_text().replace("models/background.json", str(background))
    params.write_text(raw)
    out = tmp_path / "out"
    assert bench.main(["--params", str(params), "--requests", "30",
                       "--explain-requests", "5", "--out", str(out)]) == 0  # fmt: skip
    result = json.loads((out / "explain.json").read_text())
    assert result["explainers"] == 2
    assert result["predict_alone"]["statuses"] == {"200": 30}
    assert result["predict"]["statuses"] == {"200": 30}
    assert result["explain_alone"]["statuses"] == {"200": 5}
    assert result["explain_load"]["requests"] >= 1
    assert "| /explain alone | 5 |" in (out / "explain.md").read_text()
