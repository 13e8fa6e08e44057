"""Micro-batching: concurrent requests share one model call, scored on the event loop when the
caller says the call is fast (the ONNX runtime) and in a thread otherwise."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from mlops_template.serve.batcher import MicroBatcher


@pytest.mark.parametrize("in_loop", [True, False])
def test_concurrent_requests_share_a_call_where_the_caller_says(in_loop: bool) -> None:
    calls: list[tuple[int, bool]] = []

    def score(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        calls.append((len(rows), threading.current_thread() is threading.main_thread()))
        return np.array([[row["x"]] for row in rows])

    async def run() -> list[np.ndarray]:
        batcher = MicroBatcher(score, max_rows=256, in_loop=lambda rows: in_loop)
        batcher.start()
        answers = await asyncio.gather(*(batcher.score([{"x": i}]) for i in range(5)))
        await batcher.stop()
        return answers

    answers = asyncio.run(run())
    assert [answer.tolist() for answer in answers] == [[[i]] for i in range(5)]
    assert sum(rows for rows, _ in calls) == 5
    assert len(calls) < 5  # queued while the first was scored: scored together
    assert {on_loop for _, on_loop in calls} == {in_loop}
