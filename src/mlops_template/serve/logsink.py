"""A bounded, rotating JSONL log of every prediction's inputs and outputs, for monitoring.

Requests never wait for the disk: lines go through a bounded queue to one writer thread. If
the disk falls behind and the queue is full, lines are dropped and counted (the service
stays fast; the drop count is a Prometheus metric). Files rotate at a size limit and only a
fixed number of old files is kept, so the log cannot fill the disk.
"""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path
from typing import Any

_STOP = object()


def rotated_index(name: str, log_name: str) -> int | None:
    """N for a rotated file named `<log_name>.N` (as PredictionLog names them), else None."""
    suffix = name.removeprefix(f"{log_name}.")
    return int(suffix) if suffix != name and suffix.isdigit() else None


class PredictionLog:
    def __init__(self, path: Path, max_bytes: int, backups: int, queue_size: int = 10_000):
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.dropped = 0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._write_forever, daemon=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def write(self, record: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        """Flush what is queued and stop the writer."""
        self._queue.put(_STOP)
        self._thread.join()

    def _rotate(self) -> None:
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))

    def _write_forever(self) -> None:
        handle = self.path.open("a", encoding="utf-8")
        size = self.path.stat().st_size
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            line = json.dumps(item, separators=(",", ":")) + "\n"
            if size and size + len(line) > self.max_bytes:
                handle.close()
                self._rotate()
                handle = self.path.open("a", encoding="utf-8")
                size = 0
            handle.write(line)
            size += len(line)
            if self._queue.empty():
                handle.flush()
        handle.close()
