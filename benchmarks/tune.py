"""Search time against `tune.n_jobs`: `mlops model tune`, what `make tune` runs, on the same data
with the same space and seed, once per n_jobs setting, side by side in one run.

The search is the project's own: params.yaml's data (through the split stage, run once in a
scratch directory), its model kind and its tune section, with two changes that do not depend
on n_jobs and would add the same constant to every row: tracking off and no DVC experiments.
Nothing else differs between the settings. Rounds interleave them (1, 2, -1, 1, 2, -1, ...),
and each starts once the rest of this shared machine is quiet (`--quiet-below` cores); a run
during which other processes used more than `--max-elsewhere` CPU-seconds is run again (3
tries). The table shows each setting's median and the most CPU others used during one.
Every run must find the same trials and scores (the search is seeded, each fit deterministic):
if results depended on n_jobs, comparing their times would mean nothing; the script fails.

    make bench-tune                                      # n_jobs 1, 2 and -1; 3 rounds
    python benchmarks/tune.py --n-jobs 1,2 --rounds 1    # a quick check of the harness

Results: benchmarks/out/search.json, and the table between the bench-tune markers in
docs/tuning.md (`--docs ''` leaves the docs alone).

    python benchmarks/tune.py --threads 5    # one gradient-boosting fold, thread pools side by side

`--threads ROUNDS` measures something else, in-process and without the table: one fold of a
hist_gradient_boosting trial fitted and scored as search.score_fold does, with the OpenMP/BLAS
thread pools at their default (a thread per core, as the search ran before it limited them)
and at one thread (as it runs now), interleaved; it prints the median seconds of each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent
SCRATCH = REPO / ".bench" / "tune"
sys.path.insert(0, str(HERE))

from pipeline import machine_cpu_seconds  # noqa: E402
from serve import wait_quiet  # noqa: E402

START, END = "<!-- bench-tune:start -->", "<!-- bench-tune:end -->"


@dataclass(frozen=True)
class Run:
    n_jobs: int
    round: int
    command_seconds: float  # `mlops model tune` from start to exit: imports, search, reports
    search_seconds: float  # the search alone, as best.json records it
    cpu_seconds: float  # the command's own user + system time, its worker processes included
    elsewhere_seconds: float  # CPU the rest of the machine used meanwhile
    trials: int
    metric: str
    best_trial: int
    best_score: float
    scores: list[list[float]]  # every trial's fold scores: must not depend on n_jobs


def scratch_params(n_jobs: int, scratch: Path = SCRATCH) -> Path:
    """params.yaml as the project has it, with the data by absolute path, tracking off, no
    DVC experiments, this n_jobs and its own reports folder: nothing else differs."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    for key in ("source", "contract"):
        raw["data"][key] = str((REPO / raw["data"][key]).resolve())
    raw["tracking"]["enabled"] = False
    raw["tune"].update(n_jobs=n_jobs, dvc_experiments=0)
    raw["paths"]["tune"] = f"reports/tune-n{n_jobs}"
    path = scratch / f"params-n{n_jobs}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def mlops(*args: str) -> None:
    subprocess.run([str(BIN / "mlops"), *args], cwd=SCRATCH, check=True, capture_output=True)


def measure(n_jobs: int, round_: int, quiet: tuple[float, float]) -> Run:
    """One `mlops model tune` run, timed from outside (os.wait4: this child and its workers), once
    the rest of the machine uses less than quiet[0] cores (or after quiet[1] seconds)."""
    params = SCRATCH / f"params-n{n_jobs}.yaml"
    wait_quiet(*quiet)
    before, started = machine_cpu_seconds(), time.perf_counter()
    with (SCRATCH / f"tune-n{n_jobs}.log").open("wb") as log:
        command = [str(BIN / "mlops"), "model", "tune", "--params", str(params)]
        process = subprocess.Popen(command, cwd=SCRATCH, stdout=log, stderr=log)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(
            f"mlops model tune (n_jobs {n_jobs}) failed: see {SCRATCH}/tune-n{n_jobs}.log"
        )
    cpu = usage.ru_utime + usage.ru_stime
    out = SCRATCH / "reports" / f"tune-n{n_jobs}"
    best = json.loads((out / "best.json").read_text(encoding="utf-8"))
    table = (out / "trials.csv").read_text(encoding="utf-8").splitlines()
    folds = [i for i, name in enumerate(table[0].split(",")) if name.startswith("fold_")]
    scores = [[float(row.split(",")[i]) for i in folds] for row in table[1:]]
    return Run(
        n_jobs, round_, round(seconds, 2), best["seconds"], round(cpu, 2),
        round(max(0.0, machine_cpu_seconds() - before - cpu), 2), best["trials"],
        best["metric"], best["best"]["trial"], best["best"]["cv_mean"], scores,
    )  # fmt: skip


def measure_undisturbed(n_jobs: int, round_: int, args: argparse.Namespace) -> Run:
    """measure(), again (3 tries at most) while other processes used more than
    --max-elsewhere CPU-seconds during the run: a neighbour's burst is not our cost."""
    for _ in range(3):
        run = measure(n_jobs, round_, (args.quiet_below, args.patience))
        if run.elsewhere_seconds <= args.max_elsewhere:
            break
        print(f"n_jobs {n_jobs}: {run.elsewhere_seconds:.1f} CPU-s elsewhere, again", flush=True)
    return run


def machine() -> dict[str, Any]:
    found = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    return {
        "cpus": os.cpu_count(),
        "cpu": found.group(1).strip() if found else "unknown",
        "python": platform.python_version(),
        "versions": {name: version(name) for name in ("scikit-learn", "joblib", "pandas")},
    }


def processes(n_jobs: int) -> int:
    """How many processes joblib runs for n_jobs (-1: one per core, -2: all but one)."""
    cpus = os.cpu_count() or 1
    return n_jobs if n_jobs > 0 else max(1, cpus + 1 + n_jobs)


def summarise(runs: list[Run], n_jobs: list[int]) -> list[dict[str, Any]]:
    rows = []
    for setting in n_jobs:
        mine = [run for run in runs if run.n_jobs == setting]
        searches = [run.search_seconds for run in mine]
        rows.append({
            "n_jobs": setting,
            "processes": processes(setting),
            "search_median": statistics.median(searches),
            "search_range": [min(searches), max(searches)],
            "command_median": statistics.median(run.command_seconds for run in mine),
            "cpu_median": statistics.median(run.cpu_seconds for run in mine),
            "elsewhere_max": max(run.elsewhere_seconds for run in mine),
            "trials": mine[0].trials,
            "best_trial": mine[0].best_trial,
            "best_score": mine[0].best_score,
        })  # fmt: skip
    return rows


def markdown(report: dict[str, Any]) -> str:
    rows, metric, host = report["rows"], report["metric"], report["machine"]
    baseline = rows[0]["search_median"]
    lines = [
        f"| `tune.n_jobs` | processes | search, s (median; range) | `mlops model tune`, s"
        f" | CPU, s | CPU elsewhere, s (max) | trials | best {metric} (CV), trial | speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        low, high = row["search_range"]
        lines.append(
            f"| {row['n_jobs']} | {row['processes']} | {row['search_median']:.1f}"
            f" ({low:.1f} to {high:.1f}) | {row['command_median']:.1f} | {row['cpu_median']:.1f}"
            f" | {row['elsewhere_max']:.1f} | {row['trials']} | {row['best_score']:.4f},"
            f" trial {row['best_trial']} | {baseline / row['search_median']:.2f}x |"
        )
    versions = ", ".join(f"{name} {value}" for name, value in host["versions"].items())
    lines += [
        "",
        f"{report['rounds']} rounds, settings interleaved; {report['train_rows']} training rows;"
        f" {host['cpus']} cores ({host['cpu']}); Python {host['python']}, {versions}."
        f" Same trials and fold scores for every setting: {report['identical']}.",
    ]
    return "\n".join(lines)


def write_docs(path: Path, table: str) -> None:
    text = path.read_text(encoding="utf-8")
    start, end = text.index(START) + len(START), text.index(END)
    path.write_text(f"{text[:start]}\n{table}\n{text[end:]}", encoding="utf-8")


def threads_side_by_side(rounds: int) -> None:
    """--threads: one hist_gradient_boosting fold, thread pools unlimited against one thread."""
    from threadpoolctl import threadpool_limits

    from mlops_template import config
    from mlops_template.evaluation.scoring import metric_value
    from mlops_template.io import storage
    from mlops_template.tuning import search

    os.chdir(SCRATCH)  # the scratch params' relative paths (the split) are from here
    params = config.load_params(scratch_params(1))
    params = search.trial_params(
        params.model_copy(
            update={
                "model": config.MODEL_KINDS["hist_gradient_boosting"].model_validate(
                    {"kind": "hist_gradient_boosting"}
                )
            }
        ),
        {},
    )
    train, metric = storage.read_parquet(params.paths.train), search.scoring_metric(params)
    fold = search.folds(train, params.contract, params.tune.cv_folds, params.seed)[0]
    seconds: dict[str, list[float]] = {"default": [], "one thread": []}
    for _ in range(rounds):
        for setting, limit in (("default", None), ("one thread", 1)):
            started = time.perf_counter()
            with threadpool_limits(limits=limit):
                model = search.train_stage.fit(train.iloc[fold[0]], params)
                metric_value(metric, model, train.iloc[fold[1]], params.contract, 0.5)
            seconds[setting].append(time.perf_counter() - started)
    for setting, values in seconds.items():
        print(f"{setting}: {statistics.median(values):.2f} s (median of {rounds};"
              f" {min(values):.2f} to {max(values):.2f})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-jobs", default="1,2,-1", help="settings, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quiet-below", type=float, default=0.3, help="cores others may use")
    parser.add_argument("--patience", type=float, default=600.0, help="seconds to wait for it")
    parser.add_argument("--max-elsewhere", type=float, default=2.0, help="CPU-s others may use")
    parser.add_argument("--json", type=Path, default=HERE / "out" / "search.json")
    parser.add_argument("--docs", default=str(REPO / "docs" / "tuning.md"))
    parser.add_argument("--threads", type=int, default=0, help="rounds: the thread pools instead")
    args = parser.parse_args()
    settings = [int(value) for value in args.n_jobs.split(",")]
    shutil.rmtree(SCRATCH, ignore_errors=True)
    SCRATCH.mkdir(parents=True)
    params = [scratch_params(n_jobs) for n_jobs in settings]
    for stage in ("ingest", "validate", "split"):  # the training split the search reads
        mlops("stage", stage, "--params", str(params[0]))
    if args.threads:
        threads_side_by_side(args.threads)
        return
    runs = []
    for round_ in range(1, args.rounds + 1):
        for n_jobs in settings:
            runs.append(measure_undisturbed(n_jobs, round_, args))
            print(f"round {round_}, n_jobs {n_jobs}: {runs[-1].search_seconds:.1f} s", flush=True)
    identical = all(run.scores == runs[0].scores for run in runs)
    best = json.loads((SCRATCH / "reports" / f"tune-n{settings[0]}" / "best.json").read_text())
    report = {
        "machine": machine(),
        "rounds": args.rounds,
        "metric": runs[0].metric,
        "train_rows": best["rows"],
        "identical": "yes" if identical else "NO",
        "rows": summarise(runs, settings),
        "runs": [asdict(run) for run in runs],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown(report)
    print(table)
    if args.docs:
        write_docs(Path(args.docs), table)
    if not identical:
        raise SystemExit("the trials' scores depend on n_jobs: the timings are not comparable")


if __name__ == "__main__":
    main()
