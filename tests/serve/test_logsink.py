import json
from pathlib import Path

from mlops_template.serve.logsink import PredictionLog


def test_rotates_at_the_size_limit_and_keeps_a_bounded_number_of_files(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    sink = PredictionLog(path, max_bytes=2_000, backups=2)
    for index in range(200):
        sink.write({"index": index, "padding": "x" * 40})
    sink.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["predictions.jsonl", "predictions.jsonl.1", "predictions.jsonl.2"]
    assert all(p.stat().st_size <= 2_000 for p in tmp_path.iterdir())
    last = [json.loads(line) for line in path.read_text().splitlines()]
    assert last[-1]["index"] == 199


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    sink = PredictionLog(tmp_path / "p.jsonl", max_bytes=10_000_000, backups=1, queue_size=1)
    for index in range(5_000):
        sink.write({"index": index})
    sink.close()
    written = len((tmp_path / "p.jsonl").read_text().splitlines())
    assert written + sink.dropped == 5_000
