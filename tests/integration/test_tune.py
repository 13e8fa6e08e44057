"""`make tune APPLY=1` in a copy of the repository, as a user runs it: a tiny search (3 trials
of 2 folds) after `dvc repro split`, its trials in `dvc exp show` and as MLflow child runs on
a real MLflow server, and the params.yaml diff APPLY writes. One run, 15 to 25 s (CI's time
budget is tight): the experiments are recorded with the workspace's params.yaml restored,
before APPLY writes, and tests/unit/tuning/test_search.py checks that without APPLY nothing is
written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mlops_template import config
from tests.support.project import copy_repo, sh, use_test_table

pytestmark = pytest.mark.slow

# A forest of stumps (max_depth 1: worse on three species than any deeper one) and a grid
# that can only improve on it, so APPLY has something to write; 10 trees keep it fast.
TINY = """\
tune:
  method: grid
  n_trials: 2
  max_seconds: 120
  cv_folds: 2
  scoring: auto
  n_jobs: 1
  dvc_experiments: 10
  space:
    random_forest:
      max_depth: [2, null]
"""


def tiny_search(repo: Path) -> None:
    params = repo / "params.yaml"
    text = params.read_text()
    start, end = text.index("\ntune:"), text.index("\ntracking:")
    text = text[: start + 1] + TINY + text[end:]
    text = text.replace(
        "  n_estimators: 100\n  max_depth: null\n", "  n_estimators: 10\n  max_depth: 1\n"
    )
    params.write_text(text)
    assert yaml.safe_load(text)["model"]["max_depth"] == 1
    sh(repo, "git", "commit", "-q", "-am", "a tiny search")


def make_tune(repo: Path, server: str, *args: str) -> str:
    """`make tune` with this environment's tools: no uv sync, `mlops` and `dvc` from PATH."""
    done = sh(repo, "make", "--no-print-directory", "tune", "UV=/bin/true", "RUN=", *args,
              env={"MLFLOW_TRACKING_URI": server})  # fmt: skip
    return done.stdout + done.stderr


def test_make_tune_records_every_trial_and_apply_writes_the_best(
    tmp_path: Path, mlflow_server: str
) -> None:
    import mlflow

    repo = copy_repo(tmp_path / "repo")
    use_test_table(repo)
    tiny_search(repo)
    before = (repo / "params.yaml").read_text()
    output = make_tune(repo, mlflow_server, "APPLY=1")
    assert output.count("tune: trial ") == 3, output  # one line per trial as it finishes
    trials = (repo / "reports" / "tune" / "trials.csv").read_text().splitlines()
    assert len(trials) == 4, trials

    shown = json.loads(sh(repo, "dvc", "exp", "show", "--json").stdout)
    experiments = {
        exp["name"]: exp["revs"][0]["data"]
        for baseline in shown
        for exp in baseline.get("experiments") or []
    }
    assert sorted(experiments) == ["tune-0", "tune-1", "tune-2"], shown
    depths = {name: data["params"]["params.yaml"]["data"]["model"]["max_depth"]
              for name, data in experiments.items()}  # fmt: skip
    assert depths == {"tune-0": 1, "tune-1": 2, "tune-2": None}
    for data in experiments.values():
        [metrics] = [m["data"] for path, m in data["metrics"].items() if path.endswith("cv.json")]
        assert 0 < metrics["cv_f1_macro"] <= 1

    client = mlflow.MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("mlops-template")
    [parent] = client.search_runs([experiment.experiment_id], "tags.mlflow.runName = 'tune'")
    children = client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(run.info.run_name for run in children) == ["trial-0", "trial-1", "trial-2"]
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    [train] = [
        out for out in lock["stages"]["split"]["outs"] if out["path"].endswith("train.parquet")
    ]
    assert parent.data.tags["train_md5"] == train["md5"]  # the search is traceable
    assert parent.data.tags["git_commit"] == sh(repo, "git", "rev-parse", "HEAD").stdout.strip()
    assert parent.data.tags["proposed_trial"] == parent.data.tags["best_trial"] != "0"
    assert parent.data.tags["verdict"].endswith(": its values are proposed")
    assert all("cv_f1_macro" in run.data.metrics for run in children)
    assert {run.data.params["model.max_depth"] for run in children} == {"1", "2", "None"}

    best = json.loads((repo / "reports" / "tune" / "best.json").read_text())["best"]["values"]
    assert best["max_depth"] != 1, best
    assert (repo / "params.yaml").read_text() == config.set_model_values(before, best)
    diff = sh(repo, "git", "diff", "--", "params.yaml").stdout
    shown_best = "null" if best["max_depth"] is None else best["max_depth"]
    assert f"-  max_depth: 1\n+  max_depth: {shown_best}\n" in diff, diff
    assert diff.count("\n-") == diff.count("\n+") == 2  # the ---/+++ headers and one line each
