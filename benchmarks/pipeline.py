"""Wall time and peak memory of every pipeline stage on scaled-up penguins data.

For each size, scaled_data.py resamples the 344 Palmer penguins rows to N rows (with a little
noise, inside the schema's ranges) into a Parquet file under `.bench/`. Each `mlops` stage then
runs as its own process in a scratch directory, with the repository's params.yaml pointed at
that file and MLflow logging to a SQLite store there. Wall time, CPU time and peak RSS come
from `os.wait4` for exactly that process. Beside it runs `baseline_seed_train.py`, the
one-script approach, on the same file. This process imports no numpy/pandas and never holds
the data: a child's ru_maxrss starts at its parent's high-water mark.

    make bench-pipeline                                   # 100k and 1M rows
    python benchmarks/pipeline.py --sizes 2000            # smoke run
    python benchmarks/pipeline.py --set model.max_samples=0.1 --out .bench/results.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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

import yaml

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / ".bench"
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
BASELINE = HERE / "baseline_seed_train.py"
STAGES = ("ingest", "validate", "split", "train", "evaluate")
DEFAULT_SIZES = (100_000, 1_000_000)
STAGE_TIMEOUT = 15 * 60.0  # seconds; a stage running longer is killed and recorded as such
TARGET_ROWS, TARGET_SECONDS, TARGET_RSS_MB = 1_000_000, 60.0, 2048.0


@dataclass(frozen=True)
class Result:
    rows: int
    step: str
    seconds: float
    cpu_seconds: float  # user + system time: above `seconds` means the stage used >1 core
    rss_mb: float
    other_cpu_seconds: float  # CPU the rest of the machine used meanwhile (shared-box noise)
    status: str = "ok"
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# --- data ------------------------------------------------------------------------------------


def dataset(rows: int) -> Path:
    """The Parquet file for `rows`, generated once and reused (seeded, so always the same).
    Made by a separate process: this one must stay small (see scaled_data.py)."""
    path = BENCH / f"penguins_{rows}.parquet"
    if not path.exists():
        started = time.perf_counter()
        BENCH.mkdir(exist_ok=True)
        subprocess.run(
            [sys.executable, str(HERE / "scaled_data.py"), str(rows), str(path)], check=True
        )
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


def machine_cpu_seconds() -> float:
    """CPU time used so far by the whole machine, all processes and cores (/proc/stat)."""
    with open("/proc/stat", encoding="ascii") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, stat.readline().split()[1:9]
        )
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def measure(rows: int, step: str, command: list[str], cwd: Path, env: dict[str, str]) -> Result:
    """Run `command` to completion; wall time and peak RSS (ru_maxrss) of exactly that child."""
    print(f"[{rows:,} rows] {step} ...", end=" ", flush=True)
    log_dir = cwd / "logs"
    log_dir.mkdir(exist_ok=True)
    name = step.split()[0]  # "baseline (seed script)" -> baseline.stdout / baseline.stderr
    stderr_path = log_dir / f"{name}.stderr"
    with (log_dir / f"{name}.stdout").open("wb") as out, stderr_path.open("wb") as err:
        machine_before = machine_cpu_seconds()
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err)
        timed_out = threading.Event()

        def expire() -> None:
            timed_out.set()
            process.kill()

        killer = threading.Timer(STAGE_TIMEOUT, expire)
        killer.start()
        try:
            _, wait_status, usage = os.wait4(process.pid, 0)
        except BaseException:  # Ctrl-C: take the child down with us
            process.kill()
            process.wait()
            raise
        finally:
            killer.cancel()
        seconds = time.perf_counter() - started
        machine_used = machine_cpu_seconds() - machine_before
    process.returncode = os.waitstatus_to_exitcode(wait_status)  # reaped here, not by Popen
    rss_mb = usage.ru_maxrss / 1024  # Linux reports KiB
    cpu_seconds = usage.ru_utime + usage.ru_stime
    other_cpu_seconds = max(0.0, machine_used - cpu_seconds)
    status = "ok"
    if timed_out.is_set():
        status = f"killed after {STAGE_TIMEOUT:.0f} s"
    elif process.returncode != 0:
        status = f"failed (exit {process.returncode})"
    note = "" if status == "ok" else f", {status}"
    print(
        f"{seconds:.1f} s (CPU {cpu_seconds:.1f} s, elsewhere {other_cpu_seconds:.1f} s),"
        f" {rss_mb:,.0f} MB{note}",
        flush=True,
    )
    if status != "ok":
        tail = stderr_path.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
        print("\n".join(f"    | {line}" for line in tail), file=sys.stderr, flush=True)
    return Result(rows, step, seconds, cpu_seconds, rss_mb, other_cpu_seconds, status)


def fit_seconds(scratch: Path, params: Path) -> float | None:
    """The model fit alone, as the train stage records it in `paths.train_timing`."""
    relative = yaml.safe_load(params.read_text(encoding="utf-8"))["paths"].get("train_timing")
    timing = scratch / str(relative)
    if relative is None or not timing.is_file():
        return None
    return float(json.loads(timing.read_text(encoding="utf-8"))["train_seconds"])


def bench_size(rows: int, overrides: Sequence[str], baseline: bool) -> list[Result]:
    source = dataset(rows)
    scratch = BENCH / f"run_{rows}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    params = write_params(scratch, source, overrides)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{scratch / 'mlflow.db'}"}

    results: list[Result] = []
    for stage in STAGES:
        command = [str(BIN / "mlops"), "stage", stage, "--params", str(params)]
        results.append(measure(rows, stage, command, scratch, env))
        if not results[-1].ok:
            break
        if stage == "train" and (fit := fit_seconds(scratch, params)) is not None:
            results[-1] = dataclasses.replace(results[-1], note=f"estimator fit {fit:.1f} s")
    ok = all(result.ok for result in results) and len(results) == len(STAGES)
    results.append(
        Result(
            rows,
            "pipeline total",
            sum(result.seconds for result in results),
            sum(result.cpu_seconds for result in results),
            max(result.rss_mb for result in results),
            sum(result.other_cpu_seconds for result in results),
            "ok" if ok else "incomplete",
        )
    )
    if baseline:
        command = [sys.executable, str(BASELINE), str(source), str(scratch / "baseline.joblib")]
        results.append(measure(rows, "baseline (seed script)", command, scratch, env))
    return results


# --- report ----------------------------------------------------------------------------------


def revision() -> str:
    """The commit measured, flagged when src/ or params.yaml have uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "src", "params.yaml")
    return f"{git('rev-parse', '--short', 'HEAD') or 'unknown'}{' + uncommitted' if dirty else ''}"


def table(results: Sequence[Result]) -> str:
    lines = [
        "| rows | step | seconds | CPU seconds | peak RSS MB | CPU s elsewhere | status |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for result in results:
        cells = [result.step, f"{result.seconds:.1f}", f"{result.cpu_seconds:.1f}"]
        cells += [f"{result.rss_mb:,.0f}", f"{result.other_cpu_seconds:.1f}"]
        if result.step == "pipeline total":
            cells = [f"**{cell}**" for cell in cells]
        status = f"{result.status}; {result.note}" if result.note else result.status
        lines.append(f"| {result.rows:,} | {' | '.join(cells)} | {status} |")
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
    line = (
        f"{goal}: {met} ({total.seconds:.1f} s {'<' if fast else '>='} {TARGET_SECONDS:.0f} s,"
        f" {total.rss_mb:,.0f} MB {'<' if small else '>='} {TARGET_RSS_MB:,.0f} MB"
        f"{'' if total.ok else ', pipeline incomplete'})."
    )
    if total.other_cpu_seconds > 0.1 * total.seconds:
        line += (
            f" Other work used {total.other_cpu_seconds:.0f} CPU-s on this machine meanwhile,"
            " so these wall times are inflated; re-run it idle."
        )
    return line


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
    report = (
        f"Code: {revision()}. Overrides: {settings}.\n\n{table(results)}\n\n{verdict(results)}\n"
    )
    print("\n" + report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report, encoding="utf-8")
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
