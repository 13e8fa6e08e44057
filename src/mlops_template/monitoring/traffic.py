"""`mlops monitor traffic`: bounded, optionally shifted prediction traffic for a running service.

A fresh clone has no production traffic, so `make drift` and the live drift gauges on
/metrics have nothing to look at. This draws records from the project's own table (the
contract's feature columns only, made valid against the contract so the service answers 200,
not 422), shifts numeric features or pins categorical ones if asked, blanks some values, and
POSTs them to /predict (or /predict/batch). It is bounded in count and in time, whatever the
server does, reports progress on stderr and prints a summary (status counts, latency).
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd

from mlops_template import PipelineError
from mlops_template.contract import ColumnSpec, Contract
from mlops_template.io import storage

Record = dict[str, Any]


def parse_assignments(items: Sequence[str], option: str) -> dict[str, str]:
    """`FEATURE=VALUE` options into a mapping; a malformed one is an error naming it."""
    parsed = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise PipelineError(f"{option} {item!r}: expected FEATURE=VALUE")
        parsed[name] = value
    return parsed


def _spec(contract: Contract, name: str, option: str) -> ColumnSpec:
    for spec in contract.features:
        if spec.name == name:
            return spec
    raise PipelineError(f"{option} {name}: not a feature ({', '.join(contract.feature_names())})")


def valid_pool(frame: pd.DataFrame, contract: Contract, seed: int) -> pd.DataFrame:
    """The table's feature columns, valid against the contract: numbers clipped to their range,
    unknown categories blank (or, where a value is required, drawn from the categories), and
    missing required values filled the same way (the column's median for numbers)."""
    rng = np.random.default_rng(seed)
    pool = pd.DataFrame(index=frame.index)
    for spec in contract.features:
        column = frame[spec.name] if spec.name in frame else pd.Series(np.nan, index=frame.index)
        if spec.kind == "numeric":
            values: pd.Series[Any] = pd.to_numeric(column, errors="coerce").astype(float)
            values = values.where(np.isfinite(values))
            values = values.clip(lower=spec.minimum, upper=spec.maximum)
            if not spec.nullable:
                fill = values.median() if values.notna().any() else _middle(spec)
                values = values.fillna(fill)
        else:
            values = column.astype("string").where(column.astype("string").isin(spec.categories))
            if not spec.nullable:
                drawn = pd.Series(rng.choice(spec.categories, len(values)), index=values.index)
                values = values.fillna(drawn)
            values = values.astype(object).where(values.notna(), None)
        pool[spec.name] = values
    return pool.reset_index(drop=True)


def _middle(spec: ColumnSpec) -> float:
    low = spec.minimum if spec.minimum is not None else 0.0
    high = spec.maximum if spec.maximum is not None else low
    return (low + high) / 2


def shift(
    pool: pd.DataFrame, contract: Contract, shifts: Mapping[str, str], option: str = "--shift"
) -> pd.DataFrame:
    """Numeric features move by DELTA (still clipped to their range: the service would refuse
    anything outside); categorical features are all set to the given category."""
    shifted = pool.copy()
    for name, value in shifts.items():
        spec = _spec(contract, name, option)
        if spec.kind == "numeric":
            try:
                delta = float(value)
            except ValueError:
                raise PipelineError(f"{option} {name}={value}: DELTA must be a number") from None
            shifted[name] = (shifted[name] + delta).clip(lower=spec.minimum, upper=spec.maximum)
        else:
            if value not in spec.categories:
                raise PipelineError(
                    f"{option} {name}={value}: not one of its categories {list(spec.categories)}"
                )
            shifted[name] = value
    return shifted


def blank(
    pool: pd.DataFrame, contract: Contract, rates: Mapping[str, str], seed: int
) -> pd.DataFrame:
    """Make a share of a nullable feature's values missing (a broken upstream field)."""
    rng = np.random.default_rng(seed + 1)
    blanked = pool.copy()
    for name, value in rates.items():
        spec = _spec(contract, name, "--missing")
        try:
            rate = float(value)
        except ValueError:
            rate = math.nan
        if not 0 <= rate <= 1:
            raise PipelineError(f"--missing {name}={value}: RATE must be between 0 and 1")
        if not spec.nullable:
            raise PipelineError(f"--missing {name}: a required feature (the service would 422)")
        hit = rng.random(len(blanked)) < rate
        blanked[name] = blanked[name].astype(object).where(~hit, None)
    return blanked


def records(pool: pd.DataFrame, count: int, seed: int) -> list[Record]:
    """`count` rows drawn with replacement, as JSON records; missing values are left out (the
    service takes an absent nullable feature as missing)."""
    rng = np.random.default_rng(seed + 2)
    rows = pool.iloc[rng.integers(0, len(pool), count)]
    drawn = []
    for row in cast(list[Record], rows.to_dict(orient="records")):
        drawn.append({k: _plain(v) for k, v in row.items() if not _missing(v)})
    return drawn


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


@dataclass
class Summary:
    """What was sent and what came back: status counts (or error names), latencies in s."""

    sent: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    stopped_early: bool = False

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if status.startswith("2"))

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else math.nan

    def lines(self) -> list[str]:
        statuses = ", ".join(f"{status}: {n}" for status, n in sorted(self.statuses.items()))
        rate = self.sent / self.elapsed if self.elapsed else 0.0
        return [
            f"sent {self.sent} request(s) in {self.elapsed:.1f} s ({rate:.0f}/s)"
            + (" (stopped at the time limit)" if self.stopped_early else ""),
            f"status: {statuses or 'none'}",
            f"latency: p50 {self.percentile(50) * 1000:.1f} ms, p99"
            f" {self.percentile(99) * 1000:.1f} ms",
        ]


async def send(
    url: str,
    bodies: Sequence[Any],
    concurrency: int,
    max_seconds: float,
    timeout: float,
    headers: Mapping[str, str],
) -> Summary:
    """POST every body, `concurrency` at a time, until done or `max_seconds` have passed."""
    import httpx

    summary = Summary()
    queue = list(reversed(bodies))
    start = time.monotonic()
    deadline = start + max_seconds
    report_every = max(1, len(bodies) // 10)

    async def worker(client: httpx.AsyncClient) -> None:
        while queue and time.monotonic() < deadline:
            body = queue.pop()
            began = time.monotonic()
            try:
                response = await client.post(url, json=body)
                status = str(response.status_code)
            except httpx.HTTPError as error:
                status = type(error).__name__
            summary.latencies.append(time.monotonic() - began)
            summary.statuses[status] += 1
            summary.sent += 1
            if summary.sent % report_every == 0:
                print(f"traffic: {summary.sent}/{len(bodies)} sent", file=sys.stderr)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, headers=dict(headers)) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    summary.elapsed = time.monotonic() - start
    summary.stopped_early = bool(queue)
    return summary


@dataclass(frozen=True)
class TrafficPlan:
    """What to send: from where, how many, how, and how it differs from the training data."""

    url: str
    requests: int
    shifts: Mapping[str, str] = field(default_factory=dict)
    missing: Mapping[str, str] = field(default_factory=dict)
    seed: int = 0
    concurrency: int = 4
    batch_size: int = 0  # 0: one record per /predict; N: N records per /predict/batch
    max_seconds: float = 60.0
    timeout: float = 10.0


def bodies(plan: TrafficPlan, frame: pd.DataFrame, contract: Contract) -> tuple[str, list[Any]]:
    """The route and the request bodies of a plan."""
    if plan.requests < 1:
        raise PipelineError("--requests must be at least 1")
    pool = valid_pool(frame, contract, plan.seed)
    pool = blank(shift(pool, contract, plan.shifts), contract, plan.missing, plan.seed)
    base = plan.url.rstrip("/")
    if plan.batch_size:
        drawn = records(pool, plan.requests * plan.batch_size, plan.seed)
        size = plan.batch_size
        batches = [{"records": drawn[i : i + size]} for i in range(0, len(drawn), size)]
        return f"{base}/predict/batch", batches
    return f"{base}/predict", records(pool, plan.requests, plan.seed)


def run(plan: TrafficPlan, source: Any, contract: Contract) -> Summary:
    """Send the plan's traffic drawn from the table at `source`; print and return the summary."""
    if plan.concurrency < 1 or plan.max_seconds <= 0:
        raise PipelineError("--concurrency must be at least 1 and --max-seconds above 0")
    url, payloads = bodies(plan, storage.read_table(source), contract)
    api_key = os.environ.get("MLOPS_API_KEY")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    print(f"traffic: {len(payloads)} request(s) to {url}", file=sys.stderr)
    summary = asyncio.run(
        send(url, payloads, plan.concurrency, plan.max_seconds, plan.timeout, headers)
    )
    for line in summary.lines():
        print(line)
    return summary
