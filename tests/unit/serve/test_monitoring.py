"""Live drift gauges on /metrics, prediction ids, and shadow scoring of a challenger."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from mlops_template.config import ServeSettings
from mlops_template.monitoring import checks, logs
from mlops_template.monitoring.psi import psi
from mlops_template.serve.app import ServiceState
from tests.support.tasks import TaskModel
from tests.unit.serve.conftest import GENTOO, FakeModel, wait_ready

Client = Callable[..., TestClient]
ADELIE = {
    **GENTOO,
    "island": "Torgersen",
    "bill_length_mm": 39.1,
    "bill_depth_mm": 18.7,
    "flipper_length_mm": 181.0,
    "body_mass_g": 3750.0,
}
CHINSTRAP = {
    **GENTOO,
    "island": "Dream",
    "bill_length_mm": 50.0,
    "bill_depth_mm": 18.0,
    "flipper_length_mm": 195.0,
    "body_mass_g": 3700.0,
}
REFERENCE = {
    "rows": 258,
    "task": "multiclass",
    "class_shares": {"Adelie": 0.44, "Chinstrap": 0.2, "Gentoo": 0.36},
    "missing_rate": {name: 0.01 for name in GENTOO},
}


def gauge(text: str, name: str, label: str | None = None) -> float:
    pattern = rf"^{name}{{[^}}]*\"{label}\"}} (\S+)$" if label else rf"^{name} (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"{name} {label or ''} not in /metrics"
    return float(match.group(1))


class ConstantModel(FakeModel):
    """A challenger that always says Adelie (or fails, to test that the champion is safe)."""

    version = "challenger01"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.scored = threading.Event()
        self.rows = 0  # scored so far (by the one shadow thread)

    def predict_proba(self, records: list[dict[str, Any]]) -> np.ndarray:
        self.scored.set()
        if self.fail:
            raise RuntimeError("challenger is broken")
        self.rows += len(records)
        return np.tile([0.9, 0.05, 0.05], (len(records), 1))

    def wait_for(self, rows: int, seconds: float = 30) -> bool:
        """Until `rows` are scored: shutdown waits only a second for the shadow queue, and a
        busy machine (the unit tests share the cores) may take longer to score it."""
        deadline = time.monotonic() + seconds
        while self.rows < rows and time.monotonic() < deadline:
            threading.Event().wait(0.02)
        return self.rows >= rows


def wait_shadowing(client: TestClient) -> None:
    """Until the challenger is loaded: readiness means the champion is, and the challenger
    loads after it (a request before then is answered but not shadow-scored)."""
    wait_ready(client)
    for _ in range(1500):  # up to 30 s on a busy machine; milliseconds otherwise
        if "shadow_model_info{" in client.get("/metrics").text:
            return
        threading.Event().wait(0.02)
    raise AssertionError("the challenger was not loaded within 30 s")


def test_missing_rates_and_class_shares_cover_a_sliding_window(make_client: Client) -> None:
    client = make_client(reference=REFERENCE, monitor_window=10)
    wait_ready(client)
    no_mass = {**GENTOO, "body_mass_g": None}
    client.post("/predict/batch", json={"records": [no_mass] * 6})  # these leave the window
    client.post("/predict/batch", json={"records": [GENTOO] * 7 + [no_mass] * 3})
    text = client.get("/metrics").text
    assert gauge(text, "monitor_window_rows") == 10
    assert gauge(text, "input_missing_ratio", "body_mass_g") == pytest.approx(0.3)
    assert gauge(text, "input_missing_ratio", "island") == 0
    assert gauge(text, "input_missing_ratio_reference", "body_mass_g") == 0.01
    assert gauge(text, "prediction_class_share", "Gentoo") == 1.0
    assert gauge(text, "prediction_class_share_reference", "Adelie") == 0.44
    # Only Gentoo against a 44/20/36 mix: far past the 0.2 alert threshold.
    expected = psi([0.44, 0.2, 0.36], [0.0, 0.0, 1.0])
    assert gauge(text, "prediction_drift_psi") == pytest.approx(expected)
    assert expected > 0.2


def test_traffic_like_training_keeps_the_drift_psi_low(make_client: Client) -> None:
    client = make_client(reference=REFERENCE)
    wait_ready(client)
    mix = [ADELIE] * 44 + [GENTOO] * 36 + [CHINSTRAP] * 20
    client.post("/predict/batch", json={"records": mix})
    assert gauge(client.get("/metrics").text, "prediction_drift_psi") < 0.2


def test_without_a_reference_the_raw_gauges_are_still_there(make_client: Client) -> None:
    client = make_client()
    wait_ready(client)
    client.post("/predict", json=GENTOO)
    text = client.get("/metrics").text
    assert gauge(text, "prediction_class_share", "Gentoo") == 1.0
    assert np.isnan(gauge(text, "prediction_drift_psi"))
    assert "prediction_class_share_reference{" not in text


def test_each_prediction_has_an_id_that_is_in_the_log(
    make_client: Client, settings: ServeSettings
) -> None:
    client = make_client()
    wait_ready(client)
    batch = client.post("/predict/batch", json={"records": [GENTOO, ADELIE]}).json()
    ids = [item["prediction_id"] for item in batch["predictions"]]
    single = client.post("/predict", json=GENTOO).json()["prediction_id"]
    client.__exit__(None, None, None)
    logged = [json.loads(line) for line in settings.prediction_log.read_text().splitlines()]
    assert [record["id"] for record in logged] == [*ids, single]
    assert len({*ids, single}) == 3
    assert {record["role"] for record in logged} == {"champion"}


def test_a_challenger_is_scored_in_shadow_and_never_answers(
    make_client: Client, settings: ServeSettings
) -> None:
    challenger = ConstantModel()
    client = make_client(challenger=lambda: challenger)
    wait_shadowing(client)
    answers = [client.post("/predict", json=GENTOO).json() for _ in range(5)]
    assert {answer["prediction"] for answer in answers} == {"Gentoo"}
    assert challenger.wait_for(len(answers))
    client.__exit__(None, None, None)  # drains the shadow queue and flushes the log
    logged = [json.loads(line) for line in settings.prediction_log.read_text().splitlines()]
    shadow = {r["id"]: r for r in logged if r["role"] == "challenger"}
    assert set(shadow) == {answer["prediction_id"] for answer in answers}
    assert {r["prediction"] for r in shadow.values()} == {"Adelie"}
    assert {r["model_version"] for r in shadow.values()} == {"challenger01"}


def test_shadow_agreement_is_on_metrics(make_client: Client) -> None:
    challenger = ConstantModel()
    client = make_client(challenger=lambda: challenger)
    wait_shadowing(client)
    client.post("/predict/batch", json={"records": [GENTOO] * 3 + [ADELIE]})
    text = ""
    for _ in range(1500):  # up to 30 s on a busy machine; milliseconds otherwise
        text = client.get("/metrics").text
        if gauge(text, "shadow_window_rows") == 4:
            break
        threading.Event().wait(0.02)
    assert gauge(text, "shadow_agreement_ratio") == pytest.approx(0.25)
    assert 'shadow_model_info{version="challenger01"} 1.0' in text


def test_the_drift_report_compares_champion_and_challenger_on_the_served_traffic(
    make_client: Client, settings: ServeSettings, penguin_task: TaskModel
) -> None:
    challenger = ConstantModel()
    client = make_client(challenger=lambda: challenger)
    wait_shadowing(client)
    client.post("/predict/batch", json={"records": [GENTOO] * 30 + [ADELIE] * 10})
    assert challenger.wait_for(40)
    client.__exit__(None, None, None)
    traffic = logs.read_traffic(settings.prediction_log, 1000, penguin_task.contract)
    labels = {record.id: record.prediction for record in traffic.champion}
    shadow = checks.shadow_summary(traffic, labels, penguin_task.contract)
    assert shadow is not None
    assert shadow["compared"] == 40
    assert shadow["agreement"] == pytest.approx(10 / 40)
    assert shadow["challenger_accuracy"] == pytest.approx(10 / 40)


def test_a_failing_challenger_does_not_touch_the_champion(make_client: Client) -> None:
    challenger = ConstantModel(fail=True)
    client = make_client(challenger=lambda: challenger)
    wait_shadowing(client)
    assert client.post("/predict", json=GENTOO).status_code == 200
    # Generous bounds (it takes milliseconds): the shadow thread may wait for a busy core.
    assert challenger.scored.wait(30)
    for _ in range(500):
        if gauge(client.get("/metrics").text, "shadow_dropped") == 1:
            break
        threading.Event().wait(0.02)
    assert gauge(client.get("/metrics").text, "shadow_dropped") == 1
    assert client.post("/predict", json=GENTOO).status_code == 200


def test_a_challenger_that_cannot_load_leaves_the_service_ready(make_client: Client) -> None:
    def broken() -> Any:
        raise ValueError("sha256 mismatch")

    state = ServiceState()
    client = make_client(state=state, challenger=broken)
    wait_ready(client)
    assert client.post("/predict", json=GENTOO).status_code == 200
    assert state.shadow is None
    assert "shadow_model_info{" not in client.get("/metrics").text
