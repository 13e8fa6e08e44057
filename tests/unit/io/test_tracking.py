"""Tracking settings: an unreachable server is a clear error or a logged skip, never a hang."""

import logging
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlops_template import PipelineError
from mlops_template.config import Params, TrackingSettings
from mlops_template.io import tracking


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A server on loopback that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    sock.close()


def test_default_uri_is_sqlite_in_the_working_directory(workdir: Path) -> None:
    assert tracking.tracking_uri() == f"sqlite:///{workdir / 'mlflow.db'}"


def test_environment_overrides_the_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking.tracking_uri() == "http://127.0.0.1:5999"


def test_local_stores_need_no_probe() -> None:
    assert tracking.probe("sqlite:///x.db", timeout=0.1) is None


def test_closed_port_is_reported() -> None:
    problem = tracking.probe(f"http://127.0.0.1:{_free_port()}", timeout=1)
    assert problem is not None
    assert "unreachable" in problem


@pytest.mark.timeout(30)
def test_silent_server_times_out_instead_of_hanging(silent_server: str) -> None:
    problem = tracking.probe(silent_server, timeout=0.5)
    assert problem is not None
    assert "timed out" in problem


@pytest.mark.timeout(30)
def test_unreachable_server_fails_with_a_clear_error(
    silent_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", silent_server)
    settings = TrackingSettings(on_unreachable="fail", timeout_seconds=0.5)
    with (
        pytest.raises(PipelineError, match=r"tracking.on_unreachable: skip"),
        tracking.tracker(settings, "train"),
    ):
        pytest.fail("the body must not run")


@pytest.mark.timeout(30)
def test_unreachable_server_is_skipped_with_a_warning_when_asked(
    make_params: Callable[..., Params],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")
    settings = TrackingSettings(on_unreachable="skip", timeout_seconds=0.5)
    with caplog.at_level(logging.WARNING), tracking.tracker(settings, "train") as tracker:
        assert isinstance(tracker, tracking.NullTracker)
        assert tracker.run_id is None
    assert "MLflow tracking skipped" in caplog.text


def test_disabled_tracking_never_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracking, "probe", lambda *_: pytest.fail("probed"))
    with tracking.tracker(TrackingSettings(enabled=False), "train") as tracker:
        assert tracker.run_id is None
