"""Wall time and peak memory of every pipeline stage on scaled-up penguins data.

For each size, the 344 Palmer penguins rows are resampled with replacement to N rows, with a
little Gaussian noise on the numeric columns (missing values stay missing, values stay inside
the schema's ranges), and written as Parquet under `.bench/`. Each `mlops` stage then runs as
its own process in a scratch directory, with the repository's params.yaml pointed at that file
and MLflow logging to a SQLite store in the scratch directory. Wall time and peak RSS are
measured per process (`os.wait4`). Beside it runs `baseline_seed_train.py`, the one-script
approach, on the same file.

    make bench-pipeline                                   # 100k and 1M rows
    python benchmarks/pipeline.py --sizes 2000            # smoke run
    python benchmarks/pipeline.py --set model.max_samples=0.1 --out .bench/results.md
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / ".bench"
BIN = Path(sys.executable).parent
BASELINE = Path(__file__).resolve().parent / "baseline_seed_train.py"
STAGES = ("ingest", "validate", "split", "train", "evaluate")
DEFAULT_SIZES = (100_000, 1_000_000)
DATA_SEED = 20240601
NOISE = 0.02  # Gaussian noise, as a fraction of each numeric column's std
STAGE_TIMEOUT = 15 * 60.0  # seconds; a stage running longer is killed and recorded as such
TARGET_ROWS, TARGET_SECONDS, TARGET_RSS_MB = 1_000_000, 60.0, 2048.0


@dataclass(frozen=True)
class Result:
    rows: int
    step: str
    seconds: float
    rss_mb: float
    status: str = "ok"

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# --- data ------------------------------------------------------------------------------------


def scaled_penguins(rows: int, seed: int = DATA_SEED) -> pd.DataFrame:
    """`rows` rows resampled from the 344 penguins, numeric columns jittered and clipped."""
    from palmerpenguins import load_penguins

    from mlops_template.schema import FEATURES

    base = load_penguins()
    rng = np.random.default_rng(seed)
    frame = base.iloc[rng.integers(0, len(base), size=rows)].reset_index(drop=True)
    for spec in FEATURES:
        if spec.kind != "numeric":
            continue
        values = frame[spec.name].to_numpy(dtype=float)  # NaN + noise stays NaN
        noisy = values + rng.normal(0.0, NOISE * float(base[spec.name].std()), size=rows)
        frame[spec.name] = np.clip(noisy, spec.minimum, spec.maximum)
    return frame


def dataset(rows: int) -> Path:
    """The Parquet file for `rows`, generated once and reused (deterministic seed)."""
    path = BENCH / f"penguins_{rows}.parquet"
    if not path.exists():
        started = time.perf_counter()
        BENCH.mkdir(exist_ok=True)
        scaled_penguins(rows).to_parquet(path, index=False)
        print(f"[{rows:,} rows] wrote {path} in {time.perf_counter() - started:.1f} s", flush=True)
    return path


# --- params ----------------------------------------------------------------------------------


def apply_override(params: dict[str, Any], assignment: str) -> None:
    """`a.b=value` sets params["a"]["b"] (value parsed as YAML). Setting `model.kind` starts a
    fresh model section, since each kind accepts different keys."""
    key, sep, text = assignment.partition("=")
    if not sep:
        raise SystemExit(f"--set {assignment!r}: expected KEY=VALUE")
    value = yaml.safe_load(text)
    if key == "model.kind" and params["model"].get("kind") != value:
        params["model"] = {}
    *parents, leaf = key.split(".")
    node = params
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def write_params(scratch: Path, source: Path, overrides: Sequence[str]) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["data"]["source"] = str(source)
    params["tracking"].update(enabled=True, experiment="benchmark", on_unreachable="fail")
    for assignment in overrides:
        apply_override(params, assignment)
    path = scratch / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


# --- measuring -------------------------------------------------------------------------------


def measure(rows: int, step: str, command: list[str], cwd: Path, env: dict[str, str]) -> Result:
    """Run `command` to completion; wall time and peak RSS (ru_maxrss) of exactly that child."""
    print(f"[{rows:,} rows] {step} ...", end=" ", flush=True)
    log_dir = cwd / "logs"
    log_dir.mkdir(exist_ok=True)
    stderr_path = log_dir / f"{step}.stderr"
    with (log_dir / f"{step}.stdout").open("wb") as out, stderr_path.open("wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err)
        timed_out = threading.Event()

        def expire() -> None:
            timed_out.set()
            process.kill()

        killer = threading.Timer(STAGE_TIMEOUT, expire)
        killer.start()
        _, wait_status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        killer.cancel()
    process.returncode = os.waitstatus_to_exitcode(wait_status)  # reaped here, not by Popen
    rss_mb = usage.ru_maxrss / 1024  # Linux reports KiB
    status = "ok"
    if timed_out.is_set():
        status = f"killed after {STAGE_TIMEOUT:.0f} s"
    elif process.returncode != 0:
        status = f"failed (exit {process.returncode})"
    print(f"{seconds:.1f} s, {rss_mb:,.0f} MB{'' if status == 'ok' else ', ' + status}", flush=True)
    if status != "ok":
        tail = stderr_path.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
        print("\n".join(f"    | {line}" for line in tail), file=sys.stderr, flush=True)
    return Result(rows, step, seconds, rss_mb, status)


def bench_size(rows: int, overrides: Sequence[str], baseline: bool) -> list[Result]:
    source = dataset(rows)
    scratch = BENCH / f"run_{rows}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    params = write_params(scratch, source, overrides)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{scratch / 'mlflow.db'}"}

    results: list[Result] = []
    for stage in STAGES:
        command = [str(BIN / "mlops"), stage, "--params", str(params)]
        results.append(measure(rows, stage, command, scratch, env))
        if not results[-1].ok:
            break
    ok = all(result.ok for result in results) and len(results) == len(STAGES)
    results.append(
        Result(
            rows,
            "pipeline total",
            sum(result.seconds for result in results),
            max(result.rss_mb for result in results),
            "ok" if ok else "incomplete",
        )
    )
    if baseline:
        command = [sys.executable, str(BASELINE), str(source), str(scratch / "baseline.joblib")]
        results.append(measure(rows, "baseline (seed script)", command, scratch, env))
    return results


# --- report ----------------------------------------------------------------------------------


def table(results: Sequence[Result]) -> str:
    lines = ["| rows | step | seconds | peak RSS MB | status |", "|---:|---|---:|---:|---|"]
    for result in results:
        bold = "**" if result.step == "pipeline total" else ""
        lines.append(
            f"| {result.rows:,} | {bold}{result.step}{bold} | {bold}{result.seconds:.1f}{bold}"
            f" | {bold}{result.rss_mb:,.0f}{bold} | {result.status} |"
        )
    return "\n".join(lines)


def verdict(results: Sequence[Result]) -> str:
    totals = [r for r in results if r.rows == TARGET_ROWS and r.step == "pipeline total"]
    goal = (
        f"Target: {TARGET_ROWS:,} rows through the whole pipeline in under {TARGET_SECONDS:.0f} s"
        f" with peak RSS under {TARGET_RSS_MB:,.0f} MB on {os.cpu_count()} cores"
    )
    if not totals:
        return f"{goal}: not measured in this run."
    total = totals[0]
    fast = total.ok and total.seconds < TARGET_SECONDS
    small = total.ok and total.rss_mb < TARGET_RSS_MB
    met = "**met**" if fast and small else "**not met**"
    return (
        f"{goal}: {met} ({total.seconds:.1f} s {'<' if fast else '>='} {TARGET_SECONDS:.0f} s,"
        f" {total.rss_mb:,.0f} MB {'<' if small else '>='} {TARGET_RSS_MB:,.0f} MB"
        f"{'' if total.ok else ', pipeline incomplete'})."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="row counts"
    )
    parser.add_argument("--out", type=Path, help="also write the markdown result to this file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a params.yaml key in the scratch copy, e.g. model.max_samples=0.1",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the seed-script run")
    args = parser.parse_args(argv)

    results: list[Result] = []
    for rows in args.sizes:
        results.extend(bench_size(rows, args.overrides, baseline=not args.no_baseline))

    settings = ", ".join(f"`{item}`" for item in args.overrides) or "none (params.yaml as is)"
    report = f"Overrides: {settings}\n\n{table(results)}\n\n{verdict(results)}\n"
    print("\n" + report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report, encoding="utf-8")
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
