"""Shared fixtures: a scratch project directory with the repository's params.yaml."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from mlops_template.config import Params, parse_params
from mlops_template.contract import Contract, load_contract

REPO_ROOT = Path(__file__).resolve().parents[1]
# The unit tests' own table and contract (copies of the default ones): a fork that brings
# its own data in params.yaml keeps these, so the suite passes unchanged. Tests of the
# project's configured data live in tests/repo/test_project_data.py.
DEFAULT_DATA = REPO_ROOT / "tests" / "data" / "penguins.csv"
DEFAULT_CONTRACT = REPO_ROOT / "tests" / "data" / "penguins.yaml"


def repo_params_dict() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "params.yaml").read_text())


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory, made current: params paths are relative to it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture
def make_params(workdir: Path) -> Callable[..., Params]:
    """Build Params from the repository's params.yaml with overrides; tracking off by default.

    Also writes them to `params.yaml` in the work directory, for CLI tests.
    """

    def build(**overrides: Any) -> Params:
        # The tests' table and contract, by absolute path: tests run in a scratch directory.
        defaults = {
            "tracking": {"enabled": False},
            "data": {"source": str(DEFAULT_DATA), "contract": str(DEFAULT_CONTRACT)},
            "evaluate": {"primary_metric": "f1_macro"},
        }
        raw = _merge(repo_params_dict(), defaults)
        raw = _merge(raw, overrides)
        if "model" in overrides:  # another kind has other keys: replace, don't merge
            raw["model"] = overrides["model"]
        (workdir / "params.yaml").write_text(yaml.safe_dump(raw))
        return parse_params(raw)

    return build


@pytest.fixture
def params(make_params: Callable[..., Params]) -> Params:
    return make_params()


def small_contract(task: str) -> dict[str, Any]:
    """A minimal valid contract of `task` (binary, multiclass or regression) as its YAML
    mapping: target `y`, features `x` (numeric) and `colour` (categorical)."""
    target: dict[str, Any] = {"name": "y", "nullable": False}
    raw: dict[str, Any] = {"name": f"small_{task}", "task": task, "target": target}
    if task == "regression":
        target.update(kind="numeric", minimum=0.0, maximum=1000.0)
    else:
        classes = ["no", "yes"] if task == "binary" else ["low", "mid", "high"]
        target.update(kind="categorical", categories=classes)
    if task == "binary":
        raw["positive"] = "yes"
    raw["features"] = [
        {"name": "x", "kind": "numeric", "minimum": 0.0, "maximum": 10.0},
        {"name": "colour", "kind": "categorical", "categories": ["blue", "red"]},
    ]
    raw["example"] = {"x": 1.0, "colour": "red"}
    return raw


@pytest.fixture
def contract_file(workdir: Path) -> Callable[[str], Path]:
    """Write `small_contract(task)` in the work directory; returns its absolute path (for
    `make_params(data={"contract": ...})`)."""

    def write(task: str) -> Path:
        path = workdir / f"{task}.yaml"
        path.write_text(yaml.safe_dump(small_contract(task), sort_keys=False))
        return path

    return write


# The real services (MLflow on SQLite or PostgreSQL, S3) as session fixtures for every test.
pytest_plugins = ["tests.support.servers"]


@pytest.fixture(scope="session")
def penguins() -> pd.DataFrame:
    """The tests' own table (the Palmer penguins, 344 rows), as `ingest` reads it."""
    return pd.read_csv(DEFAULT_DATA)


@pytest.fixture(scope="session")
def contract() -> Contract:
    """The tests' own contract for `penguins` (multiclass, target `species`)."""
    return load_contract(DEFAULT_CONTRACT)


# Every Docker test, one work unit of the real-service run (pytest_xdist_make_scheduler).
DOCKER_TESTS = "tests/integration/docker/"

# The real-service run's longest work units, in seconds: each one's total in make ci's
# durations (2 cores, both workers busy). The scheduler below starts them first, longest
# first, so that no long unit starts near the end while the other worker has run out of work
# (by test count, xdist's own order, the two single-test nested suites came last, on the same
# worker). Units not listed follow in xdist's order; an estimate only orders, it skips nothing.
LONGEST_FIRST = {
    DOCKER_TESTS: 1240,
    "tests/integration/test_copier.py": 480,
    "tests/integration/test_readme_byod.py": 440,
    "tests/integration/serve/test_fuzz.py": 335,
    "tests/integration/test_workflows.py": 330,
    "tests/integration/test_registry.py": 265,
    "tests/integration/test_pipeline_runs.py": 220,
    "tests/integration/test_retrain_workflow.py": 200,
    "tests/integration/test_pipeline_e2e.py": 175,
    "tests/repo/test_readme.py": 150,
    "tests/integration/test_tasks_e2e.py": 150,
    "tests/integration/test_rollback.py": 125,
}


def longest_first(scopes: list[str]) -> list[str]:
    """The work units in the order workers take them: LONGEST_FIRST's, longest first, then
    the others in the order given (xdist's: most tests first)."""
    return sorted(scopes, key=lambda scope: -LONGEST_FIRST.get(scope, 0))


def _split_scope(nodeid: str) -> str:
    """A test's work unit: its module, or DOCKER_TESTS for every Docker test."""
    return DOCKER_TESTS if nodeid.startswith(DOCKER_TESTS) else nodeid.split("::", 1)[0]


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """`-n N --dist loadfile` (make ci's real-service run) with two changes: every test under
    DOCKER_TESTS goes to the same worker, as if one file, so the session starts one Docker
    engine and builds the image once; and the longest units go first (longest_first). Each
    other module stays whole on one worker: its module fixtures run once and its ordered
    sequences (a second merge after the first) stay in order. (xdist's `loadgroup` marks do
    not group under pytest 9, which renamed the node id field xdist rewrites.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class DockerTestsTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _split_scope(nodeid)

        def _assign_work_unit(self, node: Any) -> None:
            # The first call comes with the whole queue, as xdist ordered it: reorder it once.
            if not getattr(self, "_reordered", False):
                self._reordered = True
                queue = dict(self.workqueue)
                self.workqueue.clear()
                for scope in longest_first(list(queue)):
                    self.workqueue[scope] = queue[scope]
            super()._assign_work_unit(node)

    return DockerTestsTogether(config, log)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With MLOPS_FAIL_ON_SKIP=1 (set by .ci/run, which provisions every service), a skipped
    test fails the run: CI must not pass by skipping what it was meant to test."""
    import os

    if os.environ.get("MLOPS_FAIL_ON_SKIP") != "1" or exitstatus != 0:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        if reporter:
            reporter.write_line(f"MLOPS_FAIL_ON_SKIP=1: {skipped} test(s) skipped", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def penguin_run(make_params: Callable[..., Params], penguins: pd.DataFrame) -> Params:
    """The pipeline's outputs for the penguins (20 trees): split, train, evaluate, behaviour."""
    from mlops_template.io import storage
    from mlops_template.stages import behaviour, evaluate, split, train

    params = make_params(model={"kind": "random_forest", "n_estimators": 20})
    train_frame, test_frame = split.split(penguins, params.contract, 0.25, seed=params.seed)
    storage.write_parquet(params.paths.train, train_frame)
    storage.write_parquet(params.paths.test, test_frame)
    train.run(params)
    evaluate.run(params)
    behaviour.run(params)
    return params
