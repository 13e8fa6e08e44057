"""A fork brings a table the project has never seen: a binary one (breast cancer) and a
regression one (diabetes), both embedded in scikit-learn. The docs' steps and nothing
else: `mlops contract init`, one `params.yaml` line, `make run`'s two commands. Then what the
team sees: the task's metrics beside their baseline, the plots, the PR report, the model card
and the service answering the contract's example. No Python is edited."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.processes import VENV_BIN, free_port, stop, wait_healthy
from tests.support.project import copy_repo, sh
from tests.support.tables import write_table

pytestmark = pytest.mark.slow

METRICS = {
    "binary": {"roc_auc", "average_precision", "f1", "precision", "recall", "accuracy"},
    "regression": {"rmse", "mae", "r2"},
}
PLOTS = {
    "binary": {"confusion.csv", "roc.json", "precision_recall.json", "calibration.json"},
    "regression": {"predicted_actual.json", "residuals.json"},
}


@pytest.fixture(scope="module", params=["breast_cancer", "diabetes"])
def fork(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_repo(tmp_path_factory.mktemp(request.param))
    path, target, _ = write_table(request.param, root / "data")
    source = path.relative_to(root).as_posix()
    sh(root, "mlops", "contract", "init", "--data", source, "--target", target, "--force")
    params = root / "params.yaml"
    text = params.read_text()
    assert text.count("source: data/penguins.csv") == 1
    params.write_text(text.replace("source: data/penguins.csv", f"source: {source}"))
    sh(root, "mlops", "stage", "preflight")
    sh(root, "dvc", "repro")
    return root


def task_of(root: Path) -> str:
    return str(yaml.safe_load((root / "data" / "contract.yaml").read_text())["task"])


def test_the_task_is_inferred_and_its_metrics_beat_the_baseline(fork: Path) -> None:
    task = task_of(fork)
    assert task in METRICS
    metrics = json.loads((fork / "reports" / "metrics.json").read_text())
    assert METRICS[task] <= set(metrics)
    assert set(metrics["baseline"]) >= METRICS[task] - {"precision", "recall"}
    assert metrics["beats_baseline"] is True
    if task == "binary":
        assert metrics["roc_auc"] > 0.9
        assert metrics["baseline"]["roc_auc"] == 0.5
        assert metrics["threshold"] == 0.5
    else:
        assert metrics["rmse"] < metrics["baseline"]["rmse"]
        assert metrics["r2"] > 0.2
        assert abs(metrics["baseline"]["r2"]) < 0.05  # the training mean explains nothing


def test_plots_follow_the_task(fork: Path) -> None:
    task = task_of(fork)
    written = {path.name for path in (fork / "reports" / "plots").iterdir()}
    assert written == PLOTS[task] | {"feature_importance.json"}
    shown = json.loads(sh(fork, "dvc", "plots", "show", "--json").stdout)
    drawn = {Path(name).name for name, rendered in shown["data"].items() if rendered}
    assert drawn == written | {"shap_importance.json"}  # the explain stage's plot


def test_report_and_model_card_speak_the_task(fork: Path) -> None:
    task = task_of(fork)
    primary = "roc_auc" if task == "binary" else "rmse"
    sh(fork, "mlops", "report", "pr", "--base", "HEAD", "--out", "pr-report/report.md")
    report = (fork / "pr-report" / "report.md").read_text()
    assert f"| **{primary}** |" in report
    assert "| Δ | baseline |" in report
    assert "Does not beat its baseline" not in report
    card = (fork / "pr-report" / "model_card.md").read_text()
    assert f"({task}" in card
    assert "beats its baseline" in card
    assert "penguin" not in card.lower()


@pytest.fixture(scope="module")
def served(fork: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "MLOPS_SERVE_PORT": str(port),
        "MLOPS_INTERNAL_PORT": str(free_port()),
    }
    log = fork / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(VENV_BIN / "python"), "-m", "mlops_template.serve"],
            cwd=fork,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(f"{url}/health/ready", process, log)
        yield url
    finally:
        stop(process)


def test_the_service_answers_the_contracts_example(fork: Path, served: str) -> None:
    contract = yaml.safe_load((fork / "data" / "contract.yaml").read_text())
    answer = httpx.post(f"{served}/predict", json=contract["example"], timeout=10)
    assert answer.status_code == 200, answer.text
    prediction = answer.json()["prediction"]
    if contract["task"] == "regression":
        assert isinstance(prediction, float)
    else:
        assert prediction in contract["target"]["categories"]
    docs = httpx.get(f"{served}/openapi.json", timeout=10).json()
    assert "penguin" not in json.dumps(docs).lower()
    wrong = {**contract["example"], contract["features"][0]["name"]: "not a value"}
    assert httpx.post(f"{served}/predict", json=wrong, timeout=10).status_code == 422
