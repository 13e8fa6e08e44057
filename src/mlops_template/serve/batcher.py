"""Adaptive micro-batching: concurrent requests are scored in one model call.

A model call costs about the same for one row as for a hundred (the model's fixed overhead
dominates), so under load scoring rows together multiplies throughput. There is no fixed
waiting window: while one batch is being scored, new requests queue up, and the next batch is
whatever has arrived by then. A lone request is scored at once.

Where the call runs is the caller's choice (`in_loop`): a fast call (the ONNX runtime, a few
rows: tens of microseconds) runs on the event loop, since handing it to a thread costs more
than the call; a slow one (scikit-learn, about 11 ms, or a large batch) runs in a thread so
the loop keeps answering. Measured with wrk on 2 shared cores, /predict, the ONNX model
(issue 13; each figure the range of 3-4 runs, on a machine busy with other work, so
noisy):

    scoring                          c1 req/s      c1 p50        c16 req/s     c16 p99
    no batching, in the loop         1,330-1,770   0.51-0.69 ms  1,140-1,850   15-155 ms
    no batching, in a thread         1,150-1,260   0.74-0.85 ms  1,050-1,270   56-71 ms
    batching, in a thread            860-1,280     0.77-0.88 ms  1,480-2,390   38-69 ms
    batching, in the loop (kept)     1,110-1,720   0.52-0.73 ms  1,730-2,320   48-88 ms
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
