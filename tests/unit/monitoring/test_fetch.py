"""`mlops monitor fetch` from a directory (from S3: tests/integration/test_fetch_monitoring.py)."""

from pathlib import Path

from typer.testing import CliRunner

from mlops_template.cli.app import app
from mlops_template.config import Params


def test_fetch_monitoring_mirrors_logs_and_feedback_from_a_directory(
    params: Params, tmp_path: Path
) -> None:
    source = tmp_path / "bucket"
    source.mkdir()
    for name in ("predictions.jsonl", "predictions.jsonl.1", "feedback.jsonl", "other.txt"):
        (source / name).write_text(name)
    result = CliRunner().invoke(app, ["monitor", "fetch", "--source", str(source)])
    assert result.exit_code == 0, result.output
    fetched = sorted(p.name for p in params.monitoring.fetched.iterdir())
    assert fetched == ["feedback.jsonl", "predictions.jsonl", "predictions.jsonl.1"]


def test_fetch_monitoring_without_logs_fails_and_keeps_the_previous_mirror(
    params: Params, tmp_path: Path
) -> None:
    params.monitoring.fetched.mkdir(parents=True)
    (params.monitoring.fetched / "predictions.jsonl").write_text("yesterday")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(app, ["monitor", "fetch", "--source", str(empty)])
    assert result.exit_code == 1
    assert "no predictions.jsonl" in result.output
    assert (params.monitoring.fetched / "predictions.jsonl").read_text() == "yesterday"
