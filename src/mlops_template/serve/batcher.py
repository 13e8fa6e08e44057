"""Adaptive micro-batching: concurrent requests are scored in one model call.

A model call costs about the same for one row as for a hundred (the model's fixed overhead
dominates), so under load scoring rows together multiplies throughput. There is no fixed
waiting window: while one batch is being scored, new requests queue up, and the next batch is
whatever has arrived by then. A lone request is scored at once.

Where the call runs is the caller's choice (`in_loop`): a fast call (the ONNX runtime, a few
rows: tens of microseconds) runs on the event loop, since handing it to a thread costs more
than the call; a slow one (scikit-learn, whose every call has a fixed overhead far above
ONNX's, or a large batch) runs in a thread so the loop keeps answering. Of the four ways
compared with wrk on /predict with the ONNX model (batching or not, in the loop or in a
thread; issue 13), batching in the loop answered a lone request as fast as no batching and
served the most requests under concurrency, so it is kept; `make bench-serve` measures the
service as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

Records = Sequence[Mapping[str, Any]]


class MicroBatcher:
    def __init__(
        self,
        score: Callable[[Records], np.ndarray],
        max_rows: int,
        on_batch: Callable[[int], None] = lambda rows: None,
        in_loop: Callable[[int], bool] = lambda rows: False,
    ) -> None:
        self._score = score
        self._max_rows = max_rows
        self._on_batch = on_batch
        self._in_loop = in_loop  # score this many rows on the event loop (not in a thread)?
        self._queue: asyncio.Queue[tuple[Records, asyncio.Future[np.ndarray]]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    async def score(self, records: Records) -> np.ndarray:
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put((records, future))
        return await future

    def _take_batch(self, first: tuple[Records, asyncio.Future[np.ndarray]]) -> list[Any]:
        batch = [first]
        rows = len(first[0])
        while rows < self._max_rows and not self._queue.empty():
            item = self._queue.get_nowait()
            batch.append(item)
            rows += len(item[0])
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = self._take_batch(await self._queue.get())
            waiting = [(records, future) for records, future in batch if not future.done()]
            if not waiting:
                continue
            rows = [row for records, _ in waiting for row in records]
            self._on_batch(len(rows))
            try:
                if self._in_loop(len(rows)):
                    proba = self._score(rows)
                else:
                    proba = await loop.run_in_executor(None, self._score, rows)
            except Exception as error:  # handed to every waiting request
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(error)
                continue
            start = 0
            for records, future in waiting:
                if not future.done():
                    future.set_result(proba[start : start + len(records)])
                start += len(records)
