"""One repository over several runs, as a team meets it, with real DVC: the data file edited
in place, params typos, a failing stage and its fix, on the tests' own penguins table. Each run
is what `make run` does (`mlops stage preflight`, then `dvc repro`), and each ends with the PR
report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.project import (
    STAGES,
    TEST_CONTRACT,
    TEST_DATA,
    copy_repo,
    ran_stages,
    sh,
    use_test_table,
)

pytestmark = pytest.mark.slow

DATA = TEST_DATA


def make_run(root: Path) -> tuple[bool, str]:
    """`make run`'s two steps; returns (succeeded, output)."""
    preflight = sh(root, "mlops", "stage", "preflight", check=False)
    if preflight.returncode != 0:
        return False, preflight.stdout + preflight.stderr
    repro = sh(root, "dvc", "repro", check=False)
    return repro.returncode == 0, repro.stdout + repro.stderr


def report(root: Path) -> str:
    sh(root, "mlops", "report", "pr", "--base", "HEAD", "--out", "pr-report/report.md")
    return (root / "pr-report" / "report.md").read_text()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_repo(tmp_path_factory.mktemp("runs"))
    use_test_table(root)
    ok, output = make_run(root)
    assert ok, output
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-q", "-m", "main's run", check=False)
    return root


def test_editing_the_data_file_in_place_reruns_the_pipeline(root: Path) -> None:
    data = root / DATA
    original = data.read_text()
    data.write_text("".join(original.splitlines(keepends=True)[:-20]))
    try:
        assert "changed deps" in sh(root, "dvc", "status").stdout
        ok, output = make_run(root)
        assert ok, output
        assert ran_stages(output)[:3] == list(STAGES[:3])
        assert "325 rows" in report(root) or "324 rows" in report(root)
    finally:
        data.write_text(original)
    ok, output = make_run(root)
    assert ok, output


def test_editing_a_behaviour_check_reruns_no_training_but_a_range_does(root: Path) -> None:
    """A data scientist tightens a check: only validate and behaviour run, the model stays,
    and the report judges the new threshold. Editing what the table must hold (a range)
    makes every stage after validate out of date."""
    contract = root / TEST_CONTRACT
    original = contract.read_text()
    model = (root / "models" / "model.joblib").read_bytes()
    old_check = "metric: accuracy, threshold: 0.9, min_rows: 10"
    assert old_check in original
    contract.write_text(
        original.replace(old_check, "metric: accuracy, threshold: 0.85, min_rows: 10")
    )
    try:
        ok, output = make_run(root)
        assert ok, output
        assert ran_stages(output) == ["validate", "behaviour"]
        assert (root / "models" / "model.joblib").read_bytes() == model
        assert "≥ 0.85" in report(root)
        # A range: validate writes another data part, which every later stage depends on.
        contract.write_text(original.replace("maximum: 7000.0", "maximum: 7500.0"))
        sh(root, "dvc", "repro", "--single-item", "validate")
        status = sh(root, "dvc", "status", "--json").stdout
        assert set(json.loads(status)) == {"split", "train", "evaluate", "behaviour", "explain"}
    finally:
        contract.write_text(original)
    ok, output = make_run(root)
    assert ok, output


def test_a_dvc_added_data_file_edited_in_place_reruns_the_pipeline(root: Path) -> None:
    """Bring your own data's way for large files (docs): `dvc add` it, point data.source at it."""
    mine = root / "data" / "mine.csv"
    mine.write_text((root / DATA).read_text())
    sh(root, "dvc", "add", "data/mine.csv")
    params = root / "params.yaml"
    original = params.read_text()
    params.write_text(original.replace(f"source: {DATA}", "source: data/mine.csv"))
    try:
        ok, output = make_run(root)
        assert ok, output
        mine.write_text("".join(mine.read_text().splitlines(keepends=True)[:-30]))
        ok, output = make_run(root)
        assert ok, output
        assert "Running stage 'ingest'" in output
        assert '"rows": 314' in (root / "reports" / "validation.json").read_text()
    finally:
        params.write_text(original)
    ok, output = make_run(root)
    assert ok, output


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("  enabled: true", "  enabeld: true", "tracking.enabeld"),
        ("seed: 42", "seed: 42\nsede: 1", "sede"),
        ("  n_estimators: 100", "  n_estimator: 100", "n_estimator"),
    ],
    ids=["section no stage tracks", "unknown top-level key", "section a stage reads"],
)
def test_a_params_typo_anywhere_fails_before_dvc_deletes_anything(
    root: Path, old: str, new: str, named: str
) -> None:
    params = root / "params.yaml"
    original = params.read_text()
    model = (root / "models" / "model.joblib").read_bytes()
    params.write_text(original.replace(old, new, 1))
    try:
        ok, output = make_run(root)
    finally:
        params.write_text(original)
    assert not ok
    assert named in output
    assert "Extra inputs are not permitted" in output
    assert "Running stage" not in output
    assert (root / "models" / "model.joblib").read_bytes() == model


def test_a_validation_failure_is_reported_and_forgotten_once_fixed(root: Path) -> None:
    data = root / DATA
    original = data.read_text()
    data.write_text(original.replace(",Torgersen,", ",Atlantis,", 3))
    try:
        ok, output = make_run(root)
        assert not ok
        assert ran_stages(output) == ["ingest", "validate"]
        text = report(root)
        assert "❌ **Data validation failed**" in text
        assert "| `island` | `isin(['Biscoe', 'Dream', 'Torgersen'])` | 3 | `Atlantis` |" in text
        assert "Model card" not in text
    finally:
        data.write_text(original)
    # DVC may restore the fixed stage's outputs from its run cache without running it; the
    # failure must not outlive the fix either way.
    ok, output = make_run(root)
    assert ok, output
    text = report(root)
    assert "failed" not in text
    assert "✅" in text
    assert "Model card of this branch's model" in text


def test_any_failing_stage_is_named_in_the_report(root: Path) -> None:
    data = root / DATA
    original = data.read_text()
    lines = original.splitlines(keepends=True)
    one_chinstrap = [lines[0], *(line for line in lines[1:] if not line.startswith("Chinstrap"))]
    one_chinstrap.append(next(line for line in lines if line.startswith("Chinstrap")))
    data.write_text("".join(one_chinstrap))
    try:
        ok, output = make_run(root)
        assert not ok
        assert ran_stages(output) == ["ingest", "validate", "split"]
        text = report(root)
        assert "❌ **The pipeline failed at stage `split`**" in text
        assert "classes ['Chinstrap'] have fewer than 2 rows" in text
        assert "_Not computed" in text
    finally:
        data.write_text(original)
    ok, output = make_run(root)
    assert ok, output
    assert "failed" not in report(root)


def test_an_invalid_params_file_still_gets_a_report(root: Path) -> None:
    params = root / "params.yaml"
    original = params.read_text()
    params.write_text(original.replace("seed: 42", "seed: [42"))
    try:
        assert not make_run(root)[0]
        assert "❌ **params.yaml is invalid**" in report(root)
    finally:
        params.write_text(original)
