import json
import os
import threading
import time
from pathlib import Path

import pytest

from mlops_template.monitoring.records import PredictionRecord
from mlops_template.serve import logsink
from mlops_template.serve.logsink import PredictionLog


def record(index: int, **features: object) -> PredictionRecord:
    return PredictionRecord(0.0, f"id{index}", "champion", "v1", {"index": index, **features}, 1.0)


def test_rotates_at_the_size_limit_and_keeps_a_bounded_number_of_files(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    sink = PredictionLog(path, max_bytes=2_000, backups=2)
    for index in range(200):
        sink.write(record(index, padding="x" * 40))
    sink.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["predictions.jsonl", "predictions.jsonl.1", "predictions.jsonl.2"]
    assert all(p.stat().st_size <= 2_000 for p in tmp_path.iterdir())
    last = [json.loads(line) for line in path.read_text().splitlines()]
    assert last[-1]["features"]["index"] == 199


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    sink = PredictionLog(tmp_path / "p.jsonl", max_bytes=10_000_000, backups=1, queue_size=1)
    for index in range(5_000):
        sink.write(record(index))
    sink.close()
    written = len((tmp_path / "p.jsonl").read_text().splitlines())
    assert written + sink.dropped == 5_000


def _closes_within(sink: PredictionLog, seconds: float) -> bool:
    """close() in a thread: a hang fails the test instead of hanging it."""
    done = threading.Event()
    threading.Thread(target=lambda: (sink.close(timeout=1.0), done.set()), daemon=True).start()
    return done.wait(seconds)


def test_a_full_disk_shows_in_health_and_drops_lines(tmp_path: Path) -> None:
    full = tmp_path / "predictions.jsonl"
    full.symlink_to("/dev/full")  # writes fail with ENOSPC; /dev/full itself is untouched
    sink = PredictionLog(full, max_bytes=10_000_000, backups=1)
    assert sink.health() is None
    sink.write(record(0))
    deadline = time.monotonic() + 5
    while sink.health() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "No space left on device" in (sink.health() or "")
    assert sink.dropped >= 1
    assert _closes_within(sink, 3)


def test_a_log_that_cannot_be_opened_shows_in_health(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    sink = PredictionLog(tmp_path / "file" / "predictions.jsonl", 10_000_000, 1)  # no error yet
    sink.write(record(0))
    deadline = time.monotonic() + 5
    while sink.health() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "cannot be written" in (sink.health() or "")
    assert _closes_within(sink, 3)


def test_close_is_bounded_with_a_stuck_writer_and_a_full_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logsink, "STALL_SECONDS", 0.2)
    fifo = tmp_path / "predictions.jsonl"
    os.mkfifo(fifo)  # no reader: opening it blocks the writer for good
    sink = PredictionLog(fifo, max_bytes=10_000_000, backups=1, queue_size=100)
    for index in range(1_000):
        sink.write(record(index))
    # The queue holds 100; the writer may already hold one more, blocked opening the file.
    assert sink.dropped in (899, 900)
    time.sleep(0.3)
    assert "stuck" in (sink.health() or "")
    began = time.monotonic()
    assert _closes_within(sink, 3), "close() hangs on a stuck writer with a full queue"
    assert time.monotonic() - began < 2
    # Unblock the writer thread (open a reader) so nothing is left behind.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    os.close(reader)
