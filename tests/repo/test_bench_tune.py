"""`make bench-tune` (benchmarks/tune.py) is fair and says what it measured, checked here
without running a search: the settings it compares differ in tune.n_jobs alone (and where
each writes its reports), and the table it writes into docs/tuning.md."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from mlops_template import config
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    path = REPO_ROOT / "benchmarks" / "tune.py"
    spec = importlib.util.spec_from_file_location("bench_tune", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_tune"] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def test_the_settings_differ_in_n_jobs_alone(bench: ModuleType, tmp_path: Path) -> None:
    one, two = (yaml.safe_load(bench.scratch_params(n, tmp_path).read_text()) for n in (1, 2))
    assert (one["tune"].pop("n_jobs"), two["tune"].pop("n_jobs")) == (1, 2)
    assert (one["paths"].pop("tune"), two["paths"].pop("tune")) == (
        "reports/tune-n1",
        "reports/tune-n2",
    )
    assert one == two
    project = config.load_params(REPO_ROOT / "params.yaml")
    parsed = config.parse_params(yaml.safe_load(bench.scratch_params(1, tmp_path).read_text()))
    assert parsed.tune.space == project.tune.space  # the project's own search
    assert parsed.model == project.model
    assert parsed.tune.dvc_experiments == 0
    assert not parsed.tracking.enabled
    assert parsed.data.source == (REPO_ROOT / project.data.source).resolve()


def test_the_table_and_the_docs_markers(bench: ModuleType, tmp_path: Path) -> None:
    row = {"search_range": [9.0, 11.0], "search_median": 10.0, "command_median": 14.0,
           "cpu_median": 9.5, "elsewhere_max": 0.1, "trials": 21, "best_trial": 0,
           "best_score": 0.9872}  # fmt: skip
    report = {
        "rows": [{**row, "n_jobs": 1, "processes": 1}, {**row, "n_jobs": 2, "processes": 2,
                 "search_median": 6.0}],
        "metric": "f1_macro", "rounds": 3, "train_rows": 258, "identical": "yes",
        "machine": {"cpus": 2, "cpu": "test", "python": "3.11", "versions": {"joblib": "1"}},
    }  # fmt: skip
    table = bench.markdown(report)
    assert (
        "| 2 | 2 | 6.0 (9.0 to 11.0) | 14.0 | 9.5 | 0.1 | 21 | 0.9872, trial 0 | 1.67x |" in table
    )
    assert "Same trials and fold scores for every setting: yes." in table
    docs = tmp_path / "tuning.md"
    docs.write_text(f"before\n{bench.START}\nold\n{bench.END}\nafter\n")
    bench.write_docs(docs, table)
    assert docs.read_text() == f"before\n{bench.START}\n{table}\n{bench.END}\nafter\n"
    assert bench.START in (REPO_ROOT / "docs" / "tuning.md").read_text()
    assert bench.processes(-1) == (bench.os.cpu_count() or 1)
