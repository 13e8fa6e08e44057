"""Hostile clients against the real service (uvicorn, one process, 127.0.0.1 only).

Each attack is bounded in count and time. The results (status, reply size, time; RSS before
and after the floods; /health/live latency during them) are printed as a table (`pytest -s`)
and summarised in docs/serving.md, "Hostile clients".
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import serve_process, wait_service_ready
from tests.unit.serve.conftest import GENTOO, service_params_file

pytestmark = pytest.mark.slow

BODY_TIMEOUT = 2.0
HEADER_TIMEOUT = 2.0
DRAIN = 1.0
REQUEST_TIMEOUT = 5.0
# Large enough that a 1 MB batch is read and validated (the defaults answer it 413 unread).
LIMITS = {
    "max_body_bytes": 2_000_000,
    "max_batch_rows": 5000,
    "body_timeout_seconds": BODY_TIMEOUT,
    "header_timeout_seconds": HEADER_TIMEOUT,
    "drain_seconds": DRAIN,
    "request_timeout_seconds": REQUEST_TIMEOUT,
}
RESULTS: list[tuple[str, str, str, str]] = []


@dataclass
class Reply:
    status: int
    size: int  # bytes of the whole response, head and body
    seconds: float
    closed: bool  # the server closed the connection after answering


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _read_reply(sock: socket.socket, began: float, limit: float) -> Reply:
    sock.settimeout(limit)
    data = bytearray()
    closed = False
    answered: float | None = None
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                closed = True
                break
            data += chunk
            head, sep, body = bytes(data).partition(b"\r\n\r\n")
            if sep:
                lengths = [
                    int(line.split(b":")[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                ]
                if lengths and len(body) >= lengths[0]:
                    # Complete; does the server close the connection now?
                    answered = time.perf_counter() - began
                    sock.settimeout(0.5)
                    try:
                        closed = sock.recv(1) == b""
                    except (TimeoutError, ConnectionResetError):
                        closed = False
                    break
    except TimeoutError:
        pass
    except ConnectionResetError:
        closed = True
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    seconds = answered if answered is not None else time.perf_counter() - began
    return Reply(status, len(data), seconds, closed)


def raw(
    port: int,
    path: str,
    body: bytes,
    *,
    declared: int | None = None,
    send: int | None = None,
    wait: float = 30.0,
    head_only: bytes | None = None,
    headers: tuple[str, ...] = ("content-type: application/json",),
) -> Reply:
    """One request on its own connection, with `headers` (and a content-length): declare
    `declared` bytes, send the first `send` of `body`, then wait for the reply (at most
    `wait` seconds)."""
    began = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        if head_only is not None:
            sock.sendall(head_only)
            return _read_reply(sock, began, wait)
        length = len(body) if declared is None else declared
        lines = [f"POST {path} HTTP/1.1", "host: 127.0.0.1", *headers, f"content-length: {length}"]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        # A 413 may come, and the connection close, before the whole body is sent.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head + body[: len(body) if send is None else send])
        return _read_reply(sock, began, wait)


class Liveness:
    """Polls /health/live every 50 ms in a thread; the slowest answer is the stall."""

    def __init__(self, url: str):
        self.url = url
        self.latencies: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                began = time.perf_counter()
                try:
                    ok = client.get(f"{self.url}/health/live").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.latencies.append(time.perf_counter() - began)
                self.failures += not ok
                self._stop.wait(0.05)

    def __enter__(self) -> Liveness:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(15)

    @property
    def worst(self) -> float:
        return max(self.latencies)


def record(attack: str, replies: list[Reply], note: str = "") -> None:
    statuses = Counter(reply.status for reply in replies)
    sizes = sorted(reply.size for reply in replies)
    seconds = sorted(reply.seconds for reply in replies)
    status = ", ".join(f"{count}x {code}" for code, count in sorted(statuses.items()))
    size = f"{sizes[-1]:,} B" if len(sizes) == 1 else f"{sizes[0]:,}-{sizes[-1]:,} B"
    time_ = f"{seconds[-1]:.2f} s" if len(seconds) == 1 else f"{seconds[0]:.2f}-{seconds[-1]:.2f} s"
    RESULTS.append((attack, status, size, time_ + (f"; {note}" if note else "")))


@dataclass
class Service:
    url: str
    port: int
    process: subprocess.Popen[str]
    log: Path
    notes: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("hostile")
    params, port = service_params_file(tmp, model_path, **LIMITS)
    process = serve_process(params)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_service_ready(url, process)
        yield Service(url, port, process, tmp / "predictions.jsonl")
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
        print("\n\n| attack | status | reply size | time |\n|---|---|---|---|")
        for row in RESULTS:
            print("| " + " | ".join(row) + " |")


def _flood_record(size: int) -> bytes:
    keys = (size - 200) // 14  # `"k123456": 1, ` is ~14 bytes
    return json.dumps({**GENTOO, **{f"k{index}": 1 for index in range(keys)}}).encode()


def _parallel(count: int, task: Callable[[int], Reply]) -> list[Reply]:
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(task, range(count)))


def test_slow_body(service: Service) -> None:
    """Declares 100 bytes, sends 2, goes silent: 408 after the body timeout, closed."""
    reply = raw(service.port, "/predict", b"{}", declared=100)
    record("slow body (declares 100 B, sends 2)", [reply], "connection closed")
    assert reply.status == 408
    assert BODY_TIMEOUT <= reply.seconds < BODY_TIMEOUT + 1.5
    assert reply.closed


def test_half_sent_headers_are_dropped(service: Service) -> None:
    """200 connections send half a request head and stall: all closed after the header
    timeout (uvicorn alone keeps them open for ever)."""
    head = b"POST /predict HTTP/1.1\r\nhost: 127.0.0.1\r\n"
    replies = _parallel(200, lambda _: raw(service.port, "", b"", head_only=head, wait=15))
    record("200 connections with half-sent headers", replies, "all closed, no reply")
    assert all(reply.closed for reply in replies)
    assert all(reply.seconds < HEADER_TIMEOUT + 2 for reply in replies)


def test_slow_upload_flood(service: Service) -> None:
    """300 connections each send 990 KB of a declared 1,000,000-byte batch and go silent."""
    before = rss_mb(service.process.pid)
    body = b" " * 990_000
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak.append(rss_mb(service.process.pid))
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with Liveness(service.url) as live:
        replies = _parallel(
            300,
            lambda _: raw(service.port, "/predict/batch", body, declared=1_000_000, wait=20),
        )
    stop.set()
    sampler.join()
    time.sleep(1)
    after = rss_mb(service.process.pid)
    note = (
        f"all closed; RSS {before:.0f} -> peak {max(peak):.0f} -> {after:.0f} MB;"
        f" /health/live worst {live.worst * 1000:.0f} ms"
    )
    record("300 uploads of 990 KB of 1 MB, then silent", replies, note)
    statuses = Counter(reply.status for reply in replies)
    assert set(statuses) <= {408, 503}, statuses
    assert statuses[408] <= 256  # serve.max_concurrent_requests: the others got 503 at once
    assert all(reply.closed or reply.status == 503 for reply in replies)
    assert all(reply.seconds < BODY_TIMEOUT + 5 for reply in replies)
    assert live.worst < 1.0
    assert live.failures == 0
    # serve.max_body_bytes_in_flight (64 MB) bounds what the bodies can hold.
    assert max(peak) - before < 150, (before, max(peak))


@pytest.mark.parametrize(
    ("route", "size"), [("/predict", 1_000_000), ("/predict/batch", 1_000_000)]
)
def test_extra_key_floods(service: Service, route: str, size: int) -> None:
    """Eight 1 MB records with ~70,000 unknown keys each, at once: small, fast answers, and
    /health/live stays under 1 s."""
    record_bytes = _flood_record(size)
    body = record_bytes if route == "/predict" else b'{"records": [' + record_bytes + b"]}"
    before = rss_mb(service.process.pid)
    with Liveness(service.url) as live:
        time.sleep(0.2)
        replies = _parallel(8, lambda _: raw(service.port, route, body))
        time.sleep(0.2)
    after = rss_mb(service.process.pid)
    keys = len(json.loads(record_bytes)) - len(GENTOO)
    note = (
        f"{keys:,} unknown keys; RSS {before:.0f} -> {after:.0f} MB;"
        f" /health/live worst {live.worst * 1000:.0f} ms"
    )
    record(f"8 x {len(body) / 1e6:.1f} MB extra-key records to {route}", replies, note)
    expected = 413 if route == "/predict" else 422
    assert all(reply.status == expected for reply in replies), replies
    assert all(reply.size < 4_000 for reply in replies)
    assert all(reply.seconds < 3 for reply in replies)
    assert live.worst < 1.0, live.worst


def test_a_second_content_type_gets_400_before_the_body_is_read(service: Service) -> None:
    """Issue 27's case: `application/json`, then `text/plain`, on a 0.8 MB batch with 73,000
    unknown keys, eight at once. The guard read the last Content-Type and FastAPI the first,
    so the cheap pre-check was skipped and FastAPI's own validation held the event loop for
    most of a second per request. A repeated Content-Type is now a 400 naming it, sent before
    the body is read."""
    keys = {f"k{index}": 1 for index in range(73_000)}
    record_bytes = json.dumps({**GENTOO, **keys}, separators=(",", ":"))
    body = ('{"records": [' + record_bytes + "]}").encode()
    twice = ("content-type: application/json", "content-type: text/plain")
    with Liveness(service.url) as live:
        time.sleep(0.2)
        replies = _parallel(8, lambda _: raw(service.port, "/predict/batch", body, headers=twice))
        time.sleep(0.2)
    note = f"not read; /health/live worst {live.worst * 1000:.0f} ms"
    attack = f"8 x {len(body) / 1e3:.0f} KB batches, Content-Type json then text/plain"
    record(attack, replies, note)
    assert all(reply.status == 400 for reply in replies), replies
    assert all(reply.seconds < 0.5 for reply in replies), replies
    assert live.worst < 0.5, live.worst
    answer = httpx.post(
        f"{service.url}/predict/batch",
        content=body,
        headers=[("content-type", "application/json"), ("content-type", "text/plain")],
        timeout=10,
    )
    assert answer.status_code == 400
    assert "Content-Type" in answer.json()["detail"]


@pytest.mark.parametrize(
    "headers",
    [
        ("content-type: application/json", "authorization: Bearer a", "authorization: Bearer b"),
        ("content-type: application/json", "content-length: 100"),
    ],
    ids=["authorization", "content-length"],
)
def test_other_repeated_headers_get_400(service: Service, headers: tuple[str, ...]) -> None:
    """A repeated Authorization reaches the guard (400 from it); a repeated Content-Length is
    refused by uvicorn's HTTP parser before any application sees it (400 too)."""
    reply = raw(service.port, "/predict", json.dumps(GENTOO).encode(), headers=headers)
    record(f"repeated {headers[-1].split(':')[0]}", [reply])
    assert reply.status == 400
    assert reply.seconds < 0.5


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_json_gets_415(service: Service, content_type: str | None) -> None:
    headers = () if content_type is None else (f"content-type: {content_type}",)
    reply = raw(service.port, "/predict", json.dumps(GENTOO).encode(), headers=headers)
    record(f"a record sent as {content_type or 'no Content-Type'}", [reply])
    assert reply.status == 415


def test_empty_records(service: Service) -> None:
    one = raw(service.port, "/predict", b"{}")
    record("{} (every feature missing)", [one])
    assert one.status == 422
    many = raw(service.port, "/predict/batch", json.dumps({"records": [{}] * 5000}).encode())
    record("5000 x {} in one batch", [many], "first 10 errors and the count")
    assert many.status == 422
    assert many.size < 4_000


def _hammer(url: str, stop: threading.Event, body: dict[str, Any]) -> list[tuple[float, int]]:
    """(when, status) of each answer; status 0: no answer (refused: the service is gone)."""
    answers = []
    with httpx.Client(base_url=url, timeout=15) as client:
        while not stop.is_set():
            try:
                status = client.post("/predict/batch", json=body).status_code
            except httpx.HTTPError:
                status = 0
                stop.wait(0.1)
            answers.append((time.perf_counter(), status))
    return answers


@pytest.mark.parametrize("log", ["disk full (/dev/full)", "stuck writer (FIFO), full queue"])
def test_unwritable_log_then_sigterm_under_load(tmp_path: Path, model_path: Path, log: str) -> None:
    """The prediction log cannot be written: readiness says so. Then SIGTERM with requests
    and slow uploads in flight and (FIFO) 10,000 lines queued: the process still exits
    within drain + graceful shutdown + a few seconds."""
    log_path = tmp_path / "logs" / "predictions.jsonl"
    log_path.parent.mkdir()
    if log.startswith("disk full"):
        log_path.symlink_to("/dev/full")  # never touch /dev/full itself
    else:
        os.mkfifo(log_path)  # nobody reads it: the writer blocks opening it
    params, port = service_params_file(
        tmp_path, model_path, **{**LIMITS, "prediction_log": str(log_path)}
    )
    url = f"http://127.0.0.1:{port}"
    process = serve_process(params)
    try:
        wait_service_ready(url, process)
        stop = threading.Event()
        batch = {"records": [GENTOO] * 1000}
        with ThreadPoolExecutor(max_workers=6) as pool:
            hammers = [pool.submit(_hammer, url, stop, batch) for _ in range(4)]
            uploads = [
                pool.submit(raw, port, "/predict/batch", b" " * 1000, declared=100_000, wait=20)
                for _ in range(2)
            ]
            deadline = time.monotonic() + 15
            ready = httpx.get(f"{url}/health/ready", timeout=5)
            while ready.status_code == 200 and time.monotonic() < deadline:
                time.sleep(0.2)
                ready = httpx.get(f"{url}/health/ready", timeout=5)
            metrics = httpx.get(f"{url}/metrics", timeout=5).text
            began = time.perf_counter()
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                code = None
            took = time.perf_counter() - began
            stop.set()
            loads = [future.result() for future in hammers]
            [future.result() for future in uploads]
        dropped = next(
            float(line.split()[1])
            for line in metrics.splitlines()
            if line.startswith("prediction_log_dropped ")
        )
        answers = [answer for answers in loads for answer in answers]
        before = Counter(status for when, status in answers if when < began)
        draining = Counter(status for when, status in answers if began <= when < began + took)
        fake = Reply(ready.status_code, len(ready.content), took, True)
        record(
            f"log {log}: /health/ready, then SIGTERM under load",
            [fake],
            f"time = SIGTERM to exit (exit status {code}); {ready.json()['reason']!r};"
            f" {dropped:,.0f} lines dropped; 1000-row batches answered before SIGTERM"
            f" {dict(before)}, between SIGTERM and exit {dict(draining)}",
        )
        assert ready.status_code == 503
        assert ready.json()["reason"] == "prediction_log_failed"
        assert "prediction_log_healthy 0.0" in metrics
        assert code is not None, "SIGTERM did not stop the service within 30 s"
        graceful = int(REQUEST_TIMEOUT) + 1
        assert took < DRAIN + graceful + 4
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
        if log_path.is_fifo():  # let the writer thread's open() return, if it still waits
            os.close(os.open(log_path, os.O_RDONLY | os.O_NONBLOCK))
