"""A bounded, rotating JSONL log of every prediction's inputs and outputs, for monitoring.

Requests never wait for the disk: lines go through a bounded queue to one writer thread. If
the disk falls behind and the queue is full, lines are dropped and counted (the service
stays fast; the drop count is a Prometheus metric). Files rotate at a size limit and only a
fixed number of old files is kept, so the log cannot fill the disk. The line format is
monitoring/records.py's PredictionRecord, which `mlops monitor drift` reads back.

A writer that cannot write (the file cannot be opened, the disk is full) keeps running: it
drops and counts lines, retries the file every RETRY_SECONDS, and says what is wrong in
`health()`, which the service turns into a 503 on /health/ready and a metric. `close()` waits
at most `timeout` seconds, so shutdown never hangs on the disk.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from pathlib import Path
from typing import IO, cast

from mlops_template.monitoring.records import PredictionRecord, rotated_name

log = logging.getLogger(__name__)

_STOP = object()
RETRY_SECONDS = 1.0
STALL_SECONDS = 5.0  # lines queued and none written for this long: the writer is stuck


class PredictionLog:
    def __init__(self, path: Path, max_bytes: int, backups: int, queue_size: int = 10_000):
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.dropped = 0
        self.error: str | None = None  # the last write failure, until a write succeeds again
        self._progress = time.monotonic()  # when the writer last took a line
        self._closing = threading.Event()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(
            target=self._write_forever, name="prediction-log", daemon=True
        )
        self._thread.start()

    def write(self, record: PredictionRecord) -> None:
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def health(self) -> str | None:
        """None while lines are being written; otherwise what is wrong."""
        if not self._thread.is_alive() and not self._closing.is_set():
            return f"prediction log writer stopped ({self.error or 'unexpected error'})"
        if self.error is not None:
            return f"prediction log cannot be written: {self.error}"
        waiting = self._queue.qsize()
        stalled = time.monotonic() - self._progress
        if waiting and stalled > STALL_SECONDS:
            return f"prediction log writer stuck for {stalled:.0f} s, {waiting} lines queued"
        return None

    def close(self, timeout: float = 2.0) -> bool:
        """Flush what is queued and stop the writer, waiting at most `timeout` seconds.
        False if the writer did not finish in time (its lines are lost; it is a daemon)."""
        deadline = time.monotonic() + timeout
        self._closing.set()
        # A stuck or dead writer leaves the queue full: it checks `_closing` itself.
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            log.error(
                "prediction log writer did not finish in %.1f s; %d lines not written",
                timeout,
                self._queue.qsize(),
            )
            return False
        return True

    def _rotate(self) -> None:
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(rotated_name(self.path.name, index))
            if older.exists():
                older.replace(self.path.with_name(rotated_name(self.path.name, index + 1)))
        self.path.replace(self.path.with_name(rotated_name(self.path.name, 1)))

    def _open(self) -> tuple[IO[str], int]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a", encoding="utf-8")
        return handle, self.path.stat().st_size

    def _failed(self, handle: IO[str] | None, error: Exception, lost: int) -> None:
        if self.error is None:
            log.error("prediction log %s: %s; dropping lines until it works", self.path, error)
        self.error = f"{self.path}: {error}"
        self.dropped += lost
        if handle is not None:
            with contextlib.suppress(OSError):  # the buffered lines are lost with it
                handle.close()

    def _next(self) -> object:
        """The next item; _STOP once closing and nothing is left."""
        while True:
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._closing.is_set():
                    return _STOP
                self._progress = time.monotonic()  # idle is not stuck
                continue
            self._progress = time.monotonic()
            return item

    def _write_forever(self) -> None:
        try:
            self._write_lines()
        except Exception as error:  # health() reports the stopped writer
            self.error = f"{type(error).__name__}: {error}"
            log.exception("prediction log writer stopped")

    def _write_lines(self) -> None:
        handle: IO[str] | None = None
        size = 0
        unflushed = 0  # lines written to the buffer since the last flush
        retry_at = 0.0
        while (item := self._next()) is not _STOP:
            try:
                line = cast(PredictionRecord, item).to_json() + "\n"  # write() puts only these
            except (TypeError, ValueError):
                self.dropped += 1
                continue
            if handle is None:
                if time.monotonic() < retry_at:
                    self.dropped += 1
                    continue
                try:
                    handle, size = self._open()
                except OSError as error:
                    self._failed(None, error, 1)
                    retry_at = time.monotonic() + RETRY_SECONDS
                    continue
            try:
                if size and size + len(line) > self.max_bytes:
                    handle.close()
                    self._rotate()
                    handle, size = self._open()
                handle.write(line)
                size += len(line)
                unflushed += 1
                if self._queue.empty():
                    handle.flush()
                    unflushed = 0
                    self.error = None
            except OSError as error:
                self._failed(handle, error, unflushed or 1)
                handle, unflushed = None, 0
                retry_at = time.monotonic() + RETRY_SECONDS
        if handle is not None:
            try:
                handle.close()
            except OSError as error:
                self._failed(None, error, unflushed)
