"""`make bench-serve` compares servers that hold the same fitted model, scored the same way
(benchmarks/fairness.py, benchmarks/serve.py), checked here without wrk or a running server:
every scikit-learn peer loads a single-threaded copy of the model the train stage wrote,
whose fitted state is the source's, and ours serves the ONNX model compiled from that
joblib. Also wrk's summary parsing and the table's ratios."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import joblib
import pandas as pd
import pytest
import yaml

from mlops_template.io import storage
from mlops_template.stages.compile import to_onnx
from tests.conftest import REPO_ROOT
from tests.support import tasks

BENCH = REPO_ROOT / "benchmarks"


def _module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _module("bench_serve", BENCH / "serve.py")  # puts benchmarks/ on sys.path


@pytest.fixture(scope="module")
def fairness(bench: ModuleType) -> ModuleType:
    return sys.modules["fairness"]


def _write_onnx(pipeline: Any, contract: Any, path: Path, source_sha256: str) -> Path:
    blob = to_onnx(pipeline, contract, source_sha256)
    storage.write_bytes(path, blob)
    storage.write_text(storage.sha256_sidecar(path), f"{storage.sha256_bytes(blob)}  {path.name}\n")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, penguins: pd.DataFrame) -> dict[str, Any]:
    """A model as the pipeline leaves it: the joblib trained with n_jobs -1 (params.yaml's
    default), its sha256 record, and its ONNX compilation beside it."""
    directory = tmp_path_factory.mktemp("bench")
    task = tasks.penguin_task(directory / "fit", penguins)
    pipeline = joblib.load(task.model_path)
    pipeline.set_params(model__n_jobs=-1)
    source = tasks.save_model(pipeline, directory / "models" / "model.joblib")
    onnx = _write_onnx(
        pipeline, task.contract, source.with_suffix(".onnx"), storage.sha256_file(source)
    )
    return {"task": task, "source": source, "onnx": onnx, "scratch": directory}


@pytest.fixture(scope="module")
def models(fairness: ModuleType, trained: dict[str, Any]) -> Any:
    return fairness.prepare(trained["source"], trained["scratch"], trained["onnx"])


@pytest.fixture(scope="module")
def wiring(bench: ModuleType, models: Any, trained: dict[str, Any]) -> dict[str, Any]:
    task = trained["task"]
    params = tasks.task_params(task.contract_path)
    record = task.record(0)
    workdir = trained["scratch"] / "run"
    workdir.mkdir()
    chosen = bench.servers(workdir, models, params, record, workdir / "mlflow-model")
    return {server.key: server for server in chosen}


def test_the_copy_is_the_source_single_threaded(fairness: ModuleType, models: Any) -> None:
    assert models.source_n_jobs["model__n_jobs"] == -1  # what params.yaml trains with
    copy = joblib.load(models.sklearn_copy)
    assert set(fairness.n_jobs_settings(copy).values()) == {1}
    assert fairness.fitted_digest(copy) == models.digest
    fairness.check_sklearn(copy, models.digest, "copy")


def test_the_digest_ignores_n_jobs_only(fairness: ModuleType, trained: dict[str, Any]) -> None:
    pipeline = joblib.load(trained["source"])
    digest = fairness.fitted_digest(pipeline)
    assert fairness.fitted_digest(fairness.single_threaded(pipeline)) == digest
    assert fairness.fitted_digest(joblib.load(trained["source"])) == digest  # a second load
    tree = pipeline.named_steps["model"].estimators_[3].tree_
    tree.value[0, 0, 0] += 1e-9
    assert fairness.fitted_digest(pipeline) != digest
    other = joblib.load(trained["source"])
    other.set_params(model__max_depth=3)
    assert fairness.fitted_digest(other) != digest
    with pytest.raises(fairness.UnfairError, match="not 1"):
        fairness.check_sklearn(joblib.load(trained["source"]), digest, "as trained")


@pytest.mark.parametrize("key", ["flask", "gunicorn"])
def test_the_seed_app_loads_the_copy_single_threaded(
    key: str, fairness: ModuleType, models: Any, wiring: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    server = wiring[key]
    assert server.env["SEED_MODEL"] == str(models.sklearn_copy)
    assert server.env["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("SEED_MODEL", server.env["SEED_MODEL"])
    seed = _module(f"seed_flask_app_{key}", BENCH / "seed_flask_app.py")  # as the server does
    fairness.check_sklearn(seed.model, models.digest, f"{key}'s model")


def test_mlflow_serves_the_copy_single_threaded(
    fairness: ModuleType, models: Any, wiring: dict[str, Any], trained: dict[str, Any]
) -> None:
    pytest.importorskip("mlflow")
    mlflow_model = _module("bench_mlflow_model", BENCH / "mlflow_model.py")
    server = wiring["mlflow"]
    assert server.env["OMP_NUM_THREADS"] == "1"
    target = Path(server.command[server.command.index("--model-uri") + 1])
    mlflow_model.save(models.sklearn_copy, target, trained["task"].record(0))
    fairness.check_sklearn(mlflow_model.loaded(target), models.digest, "mlflow's model")


def test_ours_serves_the_onnx_compiled_from_the_same_joblib(
    models: Any, wiring: dict[str, Any], trained: dict[str, Any]
) -> None:
    assert models.onnx == trained["onnx"]
    assert models.onnx_metadata["source_sha256"] == models.source_sha256
    assert models.source_sha256 == storage.sha256_file(trained["source"])
    for key in ("ours", "v2", "shadow"):
        server = wiring[key]
        params = yaml.safe_load(
            Path(server.command[server.command.index("--params") + 1]).read_text()
        )
        assert params["serve"]["runtime"] == "onnx"
        assert params["paths"]["model"] == str(trained["source"].resolve())
        assert params["paths"]["onnx_model"] == str(trained["onnx"].resolve())
    assert wiring["shadow"].env["MLOPS_CHALLENGER_MODEL"] == str(trained["onnx"])
    assert wiring["ceiling"].model.startswith("none")


def test_an_onnx_from_another_joblib_is_refused(
    fairness: ModuleType, trained: dict[str, Any], tmp_path: Path
) -> None:
    task = trained["task"]
    stale = _write_onnx(
        joblib.load(trained["source"]), task.contract, tmp_path / "model.onnx", "0" * 64
    )
    with pytest.raises(fairness.UnfairError, match="not from the served joblib"):
        fairness.prepare(trained["source"], tmp_path, stale)


def test_a_joblib_that_is_not_the_recorded_one_is_refused(
    fairness: ModuleType, trained: dict[str, Any], tmp_path: Path
) -> None:
    source = tmp_path / "model.joblib"
    source.write_bytes(trained["source"].read_bytes() + b"\0")
    storage.sha256_sidecar(source).write_text(storage.sha256_sidecar(trained["source"]).read_text())
    with pytest.raises(fairness.UnfairError, match="differs from the recorded"):
        fairness.prepare(source, tmp_path, None)


WRK_OUTPUT = """Running 3s test @ http://127.0.0.1:8000/predict
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.51ms  300.00us   9.00ms   90.00%
    Req/Sec    10.50k   500.00    11.00k    50.00%
  31500 requests in 3.00s, 6.00MB read
  Non-2xx or 3xx responses: 2
Requests/sec:  10500.00
Transfer/sec:      2.00MB
BENCH {"requests": 31500, "duration_us": 3000000, "connect": 0, "read": 1, "write": 0, \
"status": 2, "timeout": 3, "p50_us": 1450.0, "p90_us": 1800.0, "p99_us": 2500.0, \
"p999_us": 8000.0, "max_us": 9000.0}
"""


def test_wrk_summary_is_read_from_its_done_hook(bench: ModuleType, tmp_path: Path) -> None:
    script = bench.wrk_script({"a": 1}, tmp_path / "post.lua").read_text()
    assert "done = function(summary, latency, requests)" in script
    assert 'wrk.body = "{\\"a\\": 1}"' in script
    server = bench.Server("ours", "ours", [], "/predict", {}, {}, "onnx", None)
    result = bench.case(server, bench.parse_wrk(WRK_OUTPUT), 16)
    assert result.rps == pytest.approx(10_500)
    assert (result.p50_ms, result.p99_ms, result.max_ms) == (1.45, 2.5, 9.0)
    assert result.errors == 6
    assert result.error_detail == {"read": 1, "status": 2, "timeout": 3}


def test_the_table_gives_ours_against_gunicorn_and_the_ceiling(bench: ModuleType) -> None:
    def row(key: str, connections: int, rps: float) -> dict[str, Any]:
        return dict(
            server=key, key=key, connections=connections, duration_s=10.0, requests=int(rps * 10),
            rps=rps, p50_ms=1.0, p90_ms=2.0, p99_ms=3.0, p999_ms=4.0, max_ms=5.0, errors=0,
            server_cpu=1.0, client_cpu=0.25,
        )  # fmt: skip

    info = {"model": "m", "path": "/predict", "cold_start_s": 0.5, "rss_mb": 100.0}
    report = {
        "cases": [
            *(row("ours", 16, 3000), row("gunicorn", 16, 200), row("ceiling", 16, 4000)),
            *(row("ours", 1, 900), row("gunicorn", 1, 100), row("ceiling", 1, 1000)),
        ],
        "servers": {
            "ours": {**info, "answer": "Gentoo"},
            "gunicorn": {**info, "answer": "Gentoo"},
            "ceiling": {**info, "answer": None},
        },
        "duration_s": 10,
        "warmup_s": 2,
        "cold_starts": 3,
        "machine": {"cpus": 2, "cpu": "x", "python": "3.11", "versions": {"wrk": "4.1.0"}},
        "models": {
            "source_sha256": "a" * 64,
            "source_n_jobs": {"model__n_jobs": -1},
            "onnx": "models/model.onnx",
            "onnx_sha256": "b" * 64,
            "onnx_source_sha256": "a" * 64,
        },
    }
    text = bench.markdown(json.loads(json.dumps(report)))
    assert "| ours | m | 16 | 3,000 | 1.00 | 3.00 | 0 | 15.00x | 75% | 1.00 | 0.50 | 100 |" in text
    assert "| c16 vs gunicorn -w 2 | >= 12x | 15.0x | met |" in text
    assert "| c16 req/s | >= 2,500 | 3,000 | met |" in text
    assert "Every server answered the request with 'Gentoo'." in text
