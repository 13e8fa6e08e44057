"""Side-by-side serving benchmark: our service, the framework's ceiling, and the seed's baselines.

Every server holds the same fitted model (fairness.py checks it before anything runs):

- ours: `python -m mlops_template.serve` (one uvicorn process, uvloop, httptools), serving
  models/model.onnx, the train stage's compilation of models/model.joblib (its metadata
  `source_sha256` must be the joblib's sha256), or the joblib itself with serve.runtime sklearn;
- ours on the Open Inference Protocol (`/v2/models/{name}/infer`, tensor per feature), when
  the service has it;
- the ceiling: a FastAPI app under uvicorn set up as ours, answering a fixed body, no model
  (ceiling_app.py): what the framework allows on this machine; and `typical`, the
  same fixed answer from a FastAPI endpoint as its tutorial writes one (`def`, a pydantic
  model of the record), the way issue 13 measured its ceiling;
- the seed's Flask app (seed_flask_app.py, as written) on Flask's development server, and
  under gunicorn with 2 workers;
- `mlflow models serve` (1 worker) on the same pipeline saved as an MLflow model.

The scikit-learn servers all load one copy of models/model.joblib with every `n_jobs` set to
1, and run with OMP_NUM_THREADS=1: one thread, as onnxruntime runs in ours (and as ours sets
n_jobs=1 on its sklearn runtime). A thread pool per single-row call is slower here; the old
baselines paid for one (issue 13). Opt in to `shadow` to measure ours with a challenger
scored in shadow (the served model again).

Each server answers the same record (the data contract's example; each in its own envelope)
on 127.0.0.1. Its cold start is the median of `--cold-starts` starts (process start to the
first good answer); all servers must give the same prediction. Then for 1 and 16
connections wrk (1 thread) warms up for `--warmup` s and measures for `--duration` s; wrk's
own summary (a Lua `done` hook: request count, every error class, latency percentiles in
microseconds) is what is recorded. RSS is the server's process tree after the load; CPU is
what the server's processes, wrk and everything else used while measured. The machine is
shared: before each server and case the script waits until other processes use fewer than
`--quiet-below` cores.

    make bench-serve                                 # 10 s per case, all default servers
    python benchmarks/serve.py --duration 3          # a quick check of the harness
    python benchmarks/serve.py --only ours,ceiling,gunicorn
    python benchmarks/serve.py --only ours,shadow    # what a shadow challenger costs
    python benchmarks/serve.py --table benchmarks/out/serve.json   # the Markdown again

Results: JSON (`--json`) and the Markdown table (`--out`), by default in benchmarks/out/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(HERE))

import fairness  # noqa: E402

OUT = HERE / "out"
CONCURRENCY = (1, 16)
DEFAULT_SERVERS = ("ours", "v2", "ceiling", "typical", "flask", "gunicorn", "mlflow")
ALL_SERVERS = (*DEFAULT_SERVERS, "shadow")
GUNICORN, CEILING, OURS = "gunicorn", "ceiling", "ours"
# issue 13's targets for ours (2 cores, one run, the same model for all)
TARGETS = {
    "c16_rps": 2500.0,
    "c16_vs_gunicorn": 12.0,
    "c16_of_ceiling": 0.75,
    "c16_p99_ms": 20.0,
    "c1_p50_ms": 1.0,
    "cold_start_s": 0.8,
}
PACKAGES = (
    "scikit-learn",
    "onnxruntime",
    "skl2onnx",
    "numpy",
    "fastapi",
    "uvicorn",
    "uvloop",
    "httptools",
    "flask",
    "gunicorn",
    "mlflow",
)


def say(message: str) -> None:
    """Progress, on stderr: which server, which case."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Server:
    key: str  # what --only selects
    name: str
    command: list[str]
    path: str
    body: dict[str, Any]
    env: dict[str, str]
    model: str  # what it loads: "onnx", "sklearn copy (n_jobs=1)", "none (fixed answer)"
    answer: Callable[[Any], Any] | None  # its prediction in its answer (None: the ceiling)
    other_paths: tuple[str, ...] = ()  # tried in turn while `path` answers 404


@dataclass
class Case:
    server: str
    key: str
    connections: int
    duration_s: float
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    errors: int
    error_detail: dict[str, int] = field(default_factory=dict)
    warmup_errors: int = 0
    server_cpu: float = 0.0  # CPU cores the server's process tree used while measured
    client_cpu: float = 0.0  # ... and wrk
    other_cpu: float = 0.0  # ... and everything else on the machine


# ----------------------------------------------------------------------------- the requests


def project(params_path: Path = REPO / "params.yaml") -> tuple[Any, dict[str, Any]]:
    """The params and the data contract's example record: a valid request for whatever table
    the model was trained on."""
    from mlops_template.config import load_params

    params = load_params(params_path)
    return params, dict(params.contract.example)


def v2_body(record: dict[str, Any], numeric: set[str]) -> dict[str, Any]:
    """The record as an Open Inference Protocol request: one tensor per feature, as the
    model's metadata gives them (FP32 or BYTES, shape [rows, 1])."""
    return {
        "inputs": [
            {
                "name": name,
                "shape": [1, 1],
                "datatype": "FP32" if name in numeric else "BYTES",
                "data": [value],
            }
            for name, value in record.items()
        ]
    }


def _v2_answer(answer: dict[str, Any]) -> Any:
    outputs = {output["name"]: output for output in answer.get("outputs", [])}
    chosen = outputs.get("prediction") or outputs.get("label") or next(iter(outputs.values()))
    return chosen["data"][0]


def ceiling_body(params: Any) -> str:
    """A fixed answer shaped and sized like ours (prediction, probabilities, version, id)."""
    contract = params.contract
    classes = list(contract.classes)
    answer: dict[str, Any] = {"prediction": classes[0] if classes else 0.0}
    if classes:
        answer["probabilities"] = {name: round(1 / len(classes), 4) for name in classes}
    answer |= {"model_version": "0" * 12, "prediction_id": "0" * 32}
    return json.dumps(answer)


# ------------------------------------------------------------------------------ the servers


def ours_params(workdir: Path, models: fairness.Models, runtime: str) -> Path:
    """params.yaml for our service: the prediction log in the scratch directory, the model
    files the benchmark checked (absolute paths); the rest as the project has it."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["serve"]["prediction_log"] = str(workdir / "logs" / "predictions.jsonl")
    raw["serve"]["runtime"] = runtime
    raw["paths"]["model"] = str(models.source.resolve())
    if "onnx_model" in raw["paths"] and models.onnx is not None:
        raw["paths"]["onnx_model"] = str(models.onnx.resolve())
    for key in ("reference", "parity", "background"):
        if key in raw["paths"]:
            raw["paths"][key] = str((REPO / raw["paths"][key]).resolve())
    raw["data"]["contract"] = str((REPO / raw["data"]["contract"]).resolve())
    path = workdir / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def servers(
    workdir: Path, models: fairness.Models, params: Any, record: dict[str, Any], mlflow_dir: Path
) -> list[Server]:
    """Every server the benchmark knows, in the order they run. The scikit-learn ones get
    models.sklearn_copy (n_jobs 1); ours gets the checked model files."""
    runtime = "onnx" if models.onnx is not None else "sklearn"
    ours_cmd = [str(BIN / "python"), "-m", "mlops_template.serve"]
    ours_cmd += ["--params", str(ours_params(workdir, models, runtime)), "--port", "{port}"]
    served = models.onnx if models.onnx is not None else models.source
    served_sha = models.onnx_sha256 if models.onnx is not None else models.source_sha256
    ours_model = f"{runtime} ({served.name})"
    numeric = set(params.contract.numeric_features())
    # One thread for the scikit-learn servers' OpenMP too (HistGradientBoosting predicts
    # with it; a forest does not), as onnxruntime runs in ours.
    one_thread = {"OMP_NUM_THREADS": "1"}
    seed_env = {"SEED_MODEL": str(models.sklearn_copy), "PYTHONPATH": str(HERE), **one_thread}
    sklearn_model = "sklearn copy (n_jobs=1)"

    def label(answer: Any) -> Any:
        return answer["prediction"]

    return [
        Server(
            "ours", "ours (uvicorn, 1 process)", ours_cmd, "/predict", record, {}, ours_model, label
        ),
        Server(
            "v2",
            "ours, Open Inference Protocol",
            ours_cmd,
            f"/v2/models/{params.registry.model_name}/infer",
            v2_body(record, numeric),
            {},
            ours_model,
            _v2_answer,
            (f"/v2/models/{params.contract.name}/infer",),
        ),
        Server(
            "shadow",
            "ours + shadow challenger",
            ours_cmd,
            "/predict",
            record,
            {"MLOPS_CHALLENGER_MODEL": str(served), "MLOPS_CHALLENGER_SHA256": str(served_sha)},
            f"{ours_model} x2",
            label,
        ),
        Server(
            "ceiling",
            "ceiling: FastAPI fixed answer",
            [str(BIN / "python"), str(HERE / "ceiling_app.py"), "{port}"],
            "/predict",
            record,
            {"CEILING_BODY": ceiling_body(params)},
            "none (fixed answer)",
            None,
        ),
        Server(
            "typical",
            "typical FastAPI: def + pydantic, fixed answer",
            [str(BIN / "python"), str(HERE / "ceiling_app.py"), "{port}"],
            "/predict",
            record,
            {
                "CEILING_MODE": "typical",
                "CEILING_BODY": ceiling_body(params),
                "CEILING_FEATURES": json.dumps(
                    [[name, "numeric" if name in numeric else "categorical"] for name in record]
                ),
            },
            "none (fixed answer)",
            None,
        ),
        Server(
            "flask",
            "seed Flask (dev server)",
            [str(BIN / "python"), str(HERE / "seed_flask_app.py"), "{port}"],
            "/predict",
            {"input": record},
            seed_env,
            sklearn_model,
            label,
        ),
        Server(
            "gunicorn",
            "seed Flask + gunicorn -w 2",
            [
                str(BIN / "gunicorn"),
                "--workers",
                "2",
                "--bind",
                "127.0.0.1:{port}",
                "--log-level",
                "warning",
                "seed_flask_app:app",
            ],
            "/predict",
            {"input": record},
            seed_env,
            sklearn_model,
            label,
        ),
        Server(
            "mlflow",
            "mlflow models serve",
            [
                str(BIN / "mlflow"),
                "models",
                "serve",
                "--model-uri",
                str(mlflow_dir),
                "--env-manager",
                "local",
                "--host",
                "127.0.0.1",
                "--port",
                "{port}",
                "--workers",
                "1",
            ],
            "/invocations",
            {"dataframe_records": [record]},
            one_thread,
            sklearn_model,
            lambda answer: answer["predictions"][0],
        ),
    ]


def save_mlflow_model(models: fairness.Models, record: dict[str, Any], target: Path) -> dict:
    """The single-threaded copy as an MLflow model; loaded back and checked in a subprocess
    (mlflow's import is slow and large)."""
    command = [
        sys.executable,
        str(HERE / "mlflow_model.py"),
        str(models.sklearn_copy),
        str(target),
        json.dumps(record),
        models.digest,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise fairness.UnfairError(f"mlflow model: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- running them


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310 (http on loopback only)
        url, json.dumps(body).encode(), {"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.read()[:300].decode(errors="replace")


def tree(pid: int) -> list[int]:
    """A process and all its descendants (gunicorn and mlflow fork workers)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        pending += [int(child) for child in children]
    return found


def rss_mb(pid: int) -> float:
    """Resident memory of a server's process tree."""
    total = 0
    for current in tree(pid):
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        except (OSError, AttributeError):
            continue
    return total / 1024


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a server's process tree has used so far."""
    total = 0
    for current in tree(pid):
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def busy_cpu_seconds() -> float:
    """CPU time the whole machine has spent not idle (/proc/stat), all cores together."""
    fields = [int(n) for n in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # guest time is in user


def wait_quiet(below: float, patience: float = 600.0) -> float:
    """Wait until the machine's other work uses less than `below` cores (over 1 s), at most
    `patience` seconds; return the last reading. The servers and wrk share its 2 cores with
    whatever else runs: a test suite in the background halves a result."""
    deadline = time.monotonic() + patience
    while True:
        began = busy_cpu_seconds()
        time.sleep(1.0)
        busy = busy_cpu_seconds() - began
        if below <= 0 or busy < below or time.monotonic() > deadline:
            return busy
        say(f"waiting: other processes use {busy:.2f} cores (--quiet-below {below})")
        time.sleep(4.0)


def client_cpu_seconds() -> float:
    """CPU time of this process's finished children: wrk's, once it has exited."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class NotServedError(RuntimeError):
    """The server does not have this route (the V2 protocol on an older service)."""


def start(server: Server, port: int, log: Path) -> tuple[subprocess.Popen[bytes], float, Any, str]:
    """Start a server; return it, its cold start (seconds to the first good answer), that
    answer and the path that gave it. 503 is a server still loading its model; any other
    error status stops the benchmark of this server."""
    with log.open("ab") as sink:
        started = time.perf_counter()
        process = subprocess.Popen(
            [part.replace("{port}", str(port)) for part in server.command],
            cwd=REPO,
            # the virtualenv first on PATH, as `uv run` has it (mlflow execs `uvicorn`)
            env={
                **os.environ,
                "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                **server.env,
            },
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = started + 120
    paths = [server.path, *server.other_paths]
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"{server.name} exited with {process.returncode}: {tail}")
        try:
            status, answer = post(f"http://127.0.0.1:{port}{paths[0]}", server.body)
        except OSError:
            time.sleep(0.01)
            continue
        if status == 200:
            return process, time.perf_counter() - started, answer, paths[0]
        if status in (404, 405):
            if len(paths) > 1:
                paths.pop(0)
                continue
            stop(process)
            raise NotServedError(f"{' or '.join([server.path, *server.other_paths])}: {status}")
        if status != 503:
            stop(process)
            raise RuntimeError(f"{server.name} {paths[0]}: {status} {answer}")
        time.sleep(0.01)  # 503 while the model loads
    stop(process)
    raise RuntimeError(f"{server.name} did not answer within 120 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# wrk's own summary at the end of a run: latency percentiles in microseconds, every error.
DONE_HOOK = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH {\\"requests\\": %d, \\"duration_us\\": %d, \\"connect\\": %d, \\"read\\": %d,"
    .. " \\"write\\": %d, \\"status\\": %d, \\"timeout\\": %d, \\"p50_us\\": %.1f,"
    .. " \\"p90_us\\": %.1f, \\"p99_us\\": %.1f, \\"p999_us\\": %.1f, \\"max_us\\": %.1f}\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
"""


def wrk_script(body: dict[str, Any], path: Path) -> Path:
    path.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n" + DONE_HOOK
    )
    return path


def parse_wrk(output: str) -> dict[str, float]:
    """The BENCH line the done hook writes (not wrk's rounded, unit-suffixed text)."""
    found = re.search(r"^BENCH (\{.*\})$", output, re.M)
    if found is None:
        raise RuntimeError(f"wrk printed no summary:\n{output}")
    return json.loads(found.group(1))


def run_wrk(url: str, connections: int, seconds: float, script: Path) -> dict[str, float]:
    output = subprocess.run(
        [
            "wrk",
            "--threads",
            "1",
            "--connections",
            str(connections),
            "--duration",
            f"{max(1, round(seconds))}s",
            "--timeout",
            "5s",
            "--script",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    return parse_wrk(output)


def case(server: Server, summary: dict[str, float], connections: int) -> Case:
    errors = {k: int(summary[k]) for k in ("connect", "read", "write", "status", "timeout")}
    seconds = summary["duration_us"] / 1e6
    return Case(
        server=server.name,
        key=server.key,
        connections=connections,
        duration_s=round(seconds, 3),
        requests=int(summary["requests"]),
        rps=summary["requests"] / seconds,
        p50_ms=summary["p50_us"] / 1000,
        p90_ms=summary["p90_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        p999_ms=summary["p999_us"] / 1000,
        max_ms=summary["max_us"] / 1000,
        errors=sum(errors.values()),
        error_detail={k: v for k, v in errors.items() if v},
    )


# ------------------------------------------------------------------- in-process floors


def floors(models: fairness.Models, params: Any, record: dict[str, Any]) -> dict[str, float]:
    """Median time of one single-row call in this process, without HTTP: the scikit-learn
    copy's predict_proba on a one-row DataFrame (what the seed app pays), and the ONNX
    session on a NumPy feed (one thread)."""
    import pandas as pd

    def median_ms(call: Callable[[], Any], repeats: int = 300) -> float:
        for _ in range(20):
            call()
        timings = []
        for _ in range(repeats):
            began = time.perf_counter()
            call()
            timings.append((time.perf_counter() - began) * 1000)
        return statistics.median(timings)

    out = {}
    pipeline = fairness.load_joblib(models.sklearn_copy)
    score = pipeline.predict_proba if hasattr(pipeline, "predict_proba") else pipeline.predict
    out["sklearn_predict_ms"] = median_ms(lambda: score(pd.DataFrame([record])))
    if models.onnx is not None:
        import numpy as np
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            str(models.onnx), options, providers=["CPUExecutionProvider"]
        )
        # one input per feature, in the contract's order (matched by position, as the
        # service does: skl2onnx may rename a feature)
        inputs = [tensor.name for tensor in session.get_inputs()]
        numeric = set(params.contract.numeric_features())
        feed = {
            input_name: (
                np.array([[record[name]]], dtype=np.float32)
                if name in numeric
                else np.array([[str(record[name])]], dtype=object)
            )
            for input_name, name in zip(inputs, params.contract.feature_names(), strict=True)
        }
        out["onnx_run_ms"] = median_ms(lambda: session.run(None, feed), 2000)
    return out


# --------------------------------------------------------------------------- the report


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        found = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = found.group(1).strip() if found else cpu
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    found = re.search(r"wrk (\S+)", wrk.stdout + wrk.stderr)
    versions["wrk"] = found.group(1) if found else "unknown"
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "system": platform.platform(),
        "versions": versions,
    }


def ratio(cases: list[Case], key: str, connections: int, against: str) -> float | None:
    mine = [c for c in cases if c.key == key and c.connections == connections]
    base = [c for c in cases if c.key == against and c.connections == connections]
    return mine[0].rps / base[0].rps if mine and base and base[0].rps else None


def markdown(report: dict[str, Any]) -> str:
    """The Markdown table (and the targets, the fairness facts) from a JSON report."""
    cases = [Case(**c) for c in report["cases"]]
    servers_ = report["servers"]
    lines = [
        "| server | model | conns | req/s | p50 ms | p99 ms | errors | vs gunicorn"
        " | of ceiling | server CPU | cold start s | RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cases:
        info = servers_[c.key]
        vs_gunicorn = ratio(cases, c.key, c.connections, GUNICORN)
        of_ceiling = ratio(cases, c.key, c.connections, CEILING)
        lines.append(
            f"| {c.server} | {info['model']} | {c.connections} | {c.rps:,.0f} |"
            f" {c.p50_ms:.2f} | {c.p99_ms:.2f} | {c.errors} |"
            f" {f'{vs_gunicorn:.2f}x' if vs_gunicorn else '-'} |"
            f" {f'{of_ceiling:.0%}' if of_ceiling else '-'} | {c.server_cpu:.2f} |"
            f" {info['cold_start_s']:.2f} | {info['rss_mb']:.0f} |"
        )
    m = report["machine"]
    v = m["versions"]
    lines += [
        "",
        f"{report['duration_s']} s per case after a {report['warmup_s']} s warm-up, wrk"
        f" {v.get('wrk')} (1 thread) on the same machine: {m['cpus']} CPUs ({m['cpu']}),"
        f" Python {m['python']}; "
        + ", ".join(f"{name} {v[name]}" for name in PACKAGES if name in v)
        + ". Cold start: median of"
        f" {report['cold_starts']} start(s), process start to the first good answer. Server"
        " CPU: cores the server's processes used while measured (wrk, on the same machine:"
        f" {min(c.client_cpu for c in cases):.2f}-{max(c.client_cpu for c in cases):.2f}).",
    ]
    lines[-1] += (
        " Everything else on the machine (this script, other processes) used"
        f" {min(c.other_cpu for c in cases):.2f}-{max(c.other_cpu for c in cases):.2f} cores"
        " while measured."
    )
    lines += ["", *fairness_lines(report)]
    floors_ = report.get("floors", {})
    if floors_:
        parts = [f"scikit-learn predict_proba {floors_['sklearn_predict_ms']:.2f} ms"]
        if "onnx_run_ms" in floors_:
            parts.append(f"onnxruntime {floors_['onnx_run_ms'] * 1000:.0f} µs")
        lines += ["", "One single-row call in process, no HTTP (median): " + "; ".join(parts) + "."]
    targets = target_lines(report, cases)
    if targets:
        lines += ["", *targets]
    for key, why in report.get("skipped", {}).items():
        lines += ["", f"Not measured: {key} ({why})."]
    return "\n".join(lines)


def fairness_lines(report: dict[str, Any]) -> list[str]:
    f = report["models"]
    source_n_jobs = ", ".join(f"{k}={v}" for k, v in f["source_n_jobs"].items())
    sklearn_peers = [s for s in report["servers"].values() if s["model"].startswith("sklearn")]
    lines = [
        f"Same model for all: models/model.joblib (sha256 {f['source_sha256'][:12]}, trained"
        f" with {source_n_jobs})."
        + (
            " The scikit-learn servers load one copy of it with every n_jobs=1 (its fitted"
            " state checked equal to the source's"
            + (", also as mlflow loads it" if report.get("mlflow_check") else "")
            + ")."
            if sklearn_peers
            else ""
        )
    ]
    if f["onnx"]:
        parity = report.get("parity") or {}
        detail = (
            f"; parity on {parity['rows']} test rows: max |Δp| {parity['max_abs_diff']:.1e},"
            f" labels identical: {str(parity.get('labels_identical')).lower()}"
            if parity.get("compiled") and "max_abs_diff" in parity
            else ""
        )
        lines.append(
            f"Ours serves models/model.onnx (sha256 {f['onnx_sha256'][:12]}), compiled from"
            f" sha256 {f['onnx_source_sha256'][:12]} (its metadata){detail}."
        )
    answers = {k: s["answer"] for k, s in report["servers"].items() if s.get("answer") is not None}
    if answers:
        same = len(set(map(str, answers.values()))) == 1
        lines.append(
            f"Every server answered the request with {next(iter(answers.values()))!r}."
            if same
            else f"**The servers disagree on the answer: {answers}.**"
        )
    return lines


def target_lines(report: dict[str, Any], cases: list[Case]) -> list[str]:
    c16 = [c for c in cases if c.key == OURS and c.connections == 16]
    c1 = [c for c in cases if c.key == OURS and c.connections == 1]
    if not c16 or not c1:
        return []
    vs_gunicorn = ratio(cases, OURS, 16, GUNICORN)
    of_ceiling = ratio(cases, OURS, 16, CEILING)
    of_typical = ratio(cases, OURS, 16, "typical")
    cold = report["servers"][OURS]["cold_start_s"]
    rows = [
        ("c16 req/s", f">= {TARGETS['c16_rps']:,.0f}", f"{c16[0].rps:,.0f}",
         c16[0].rps >= TARGETS["c16_rps"]),
        ("c16 vs gunicorn -w 2", f">= {TARGETS['c16_vs_gunicorn']:.0f}x",
         f"{vs_gunicorn:.1f}x" if vs_gunicorn else "-",
         None if vs_gunicorn is None else vs_gunicorn >= TARGETS["c16_vs_gunicorn"]),
        ("c16 share of the ceiling", f">= {TARGETS['c16_of_ceiling']:.0%}",
         (f"{of_ceiling:.0%}" if of_ceiling else "-")
         + (f" ({of_typical:.0%} of the typical FastAPI endpoint)" if of_typical else ""),
         None if of_ceiling is None else of_ceiling >= TARGETS["c16_of_ceiling"]),
        ("c16 p99", f"<= {TARGETS['c16_p99_ms']:.0f} ms", f"{c16[0].p99_ms:.1f} ms",
         c16[0].p99_ms <= TARGETS["c16_p99_ms"]),
        ("c1 p50", f"<= {TARGETS['c1_p50_ms']:.1f} ms", f"{c1[0].p50_ms:.2f} ms",
         c1[0].p50_ms <= TARGETS["c1_p50_ms"]),
        ("cold start", f"<= {TARGETS['cold_start_s']:.1f} s", f"{cold:.2f} s",
         cold <= TARGETS["cold_start_s"]),
    ]  # fmt: skip
    verdict = {True: "met", False: "missed", None: "not measured"}
    out = ["| target (ours) | wanted | measured | |", "|---|---|---:|---|"]
    out += [f"| {name} | {want} | {got} | {verdict[ok]} |" for name, want, got, ok in rows]
    return out


# ------------------------------------------------------------------------------- main


def select(only: str) -> list[str]:
    if not only:
        return list(DEFAULT_SERVERS)
    wanted = [key.strip() for key in only.split(",") if key.strip()]
    unknown = [key for key in wanted if key not in ALL_SERVERS]
    if unknown:
        sys.exit(f"--only: unknown {unknown}; choose from {', '.join(ALL_SERVERS)}")
    return wanted


@dataclass
class Progress:
    total: int
    step: int = 0

    def say(self, server: Server, connections: int, message: str) -> None:
        say(f"[{self.step}/{self.total}] {server.name} c{connections}: {message}")


def bench_server(
    server: Server, args: argparse.Namespace, workdir: Path, progress: Progress, prefix: str
) -> tuple[dict[str, Any], list[Case]]:
    """Cold starts, then each concurrency (warm-up, measure) on the last start, then its RSS."""
    idle = wait_quiet(args.quiet_below)
    say(f"{prefix} {server.name}: {args.cold_starts} cold start(s) (others use {idle:.2f} cores)")
    script = wrk_script(server.body, workdir / f"{server.key}.lua")
    log = workdir / f"{server.key}.log"
    colds: list[float] = []
    for attempt in range(args.cold_starts):
        port = free_port()
        process, cold, answer, path = start(server, port, log)
        server = replace(server, path=path, other_paths=())
        colds.append(cold)
        if attempt < args.cold_starts - 1:
            stop(process)
    prediction = server.answer(answer) if server.answer else None
    cold = statistics.median(colds)
    say(f"{prefix} {server.name}: cold start {cold:.2f} s, answered {prediction!r}")
    url = f"http://127.0.0.1:{port}{server.path}"
    cases: list[Case] = []
    try:
        for connections in CONCURRENCY:
            progress.step += 1
            wait_quiet(args.quiet_below)
            progress.say(server, connections, f"warm-up {args.warmup} s")
            warm = case(server, run_wrk(url, connections, args.warmup, script), connections)
            progress.say(server, connections, f"measuring {args.duration} s")
            before = cpu_seconds(process.pid), client_cpu_seconds(), busy_cpu_seconds()
            result = case(server, run_wrk(url, connections, args.duration, script), connections)
            used = (
                cpu_seconds(process.pid) - before[0],
                client_cpu_seconds() - before[1],
                busy_cpu_seconds() - before[2],
            )
            result.server_cpu = used[0] / result.duration_s
            result.client_cpu = used[1] / result.duration_s
            result.other_cpu = max(0.0, used[2] - used[0] - used[1]) / result.duration_s
            result.warmup_errors = warm.errors
            cases.append(result)
            progress.say(
                server,
                connections,
                f"{result.rps:,.0f} req/s  p50 {result.p50_ms:.2f} ms  p99 {result.p99_ms:.2f} ms"
                f"  errors {result.errors} {result.error_detail or ''}"
                f"  CPU: server {result.server_cpu:.2f}, wrk {result.client_cpu:.2f},"
                f" other {result.other_cpu:.2f} cores",
            )
        rss = rss_mb(process.pid)
    finally:
        stop(process)
    info = {
        "name": server.name,
        "model": server.model,
        "path": server.path,
        "cold_start_s": cold,
        "cold_starts_s": colds,
        "rss_mb": rss,
        "answer": prediction,
    }
    return info, cases


def measure(args: argparse.Namespace) -> dict[str, Any]:
    keys = select(args.only)
    params, record = project()
    source = REPO / params.paths.model
    onnx_path = getattr(params.paths, "onnx_model", source.with_suffix(".onnx"))
    runtime = getattr(getattr(params, "serve", None), "runtime", "sklearn")
    if runtime == "onnx" and not (REPO / onnx_path).is_file():
        sys.exit(f"{onnx_path} not found: run the pipeline (`make run`) first")
    report: dict[str, Any] = {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "cold_starts": args.cold_starts,
        "quiet_below": args.quiet_below,
        "record": record,
        "machine": machine(),
        "servers": {},
        "cases": [],
        "skipped": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as scratch:
        workdir = Path(scratch)
        say("checking the models: one fitted pipeline for every server")
        models = fairness.prepare(
            source, workdir, (REPO / onnx_path) if runtime == "onnx" else None
        )
        report["models"] = models.as_json()
        report["parity"] = fairness.parity(REPO / params.paths.parity) if models.onnx else None
        mlflow_dir = workdir / "mlflow-model"
        if "mlflow" in keys:
            say("saving the single-threaded copy as an MLflow model, and checking it loaded")
            report["mlflow_check"] = save_mlflow_model(models, record, mlflow_dir)
        wait_quiet(args.quiet_below)
        say("in-process floors (one row, no HTTP)")
        report["floors"] = floors(models, params, record)
        for name, value in report["floors"].items():
            say(f"  {name}: {value:.4f}")
        chosen = [s for s in servers(workdir, models, params, record, mlflow_dir) if s.key in keys]
        progress = Progress(len(chosen) * len(CONCURRENCY))
        for index, server in enumerate(chosen, 1):
            try:
                report["servers"][server.key], cases = bench_server(
                    server, args, workdir, progress, f"server {index}/{len(chosen)}"
                )
            except (NotServedError, RuntimeError) as error:
                why = (
                    f"the service does not serve {error}"
                    if isinstance(error, NotServedError)
                    else f"failed: {error}"
                )
                say(f"server {index}/{len(chosen)} {server.name}: skipped, {why}")
                report["skipped"][server.key] = why
                progress.step += len(CONCURRENCY)
                continue
            report["cases"] += [asdict(result) for result in cases]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per case")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of load before each case")
    parser.add_argument("--cold-starts", type=int, default=3, help="starts per server (median)")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated, of: {', '.join(ALL_SERVERS)}"
        f" (default: {', '.join(DEFAULT_SERVERS)})",
    )
    parser.add_argument(
        "--quiet-below",
        type=float,
        default=0.3,
        help="before each server and case, wait (up to 10 min) until other processes use"
        " fewer cores than this (0: do not wait)",
    )
    parser.add_argument("--json", type=Path, default=OUT / "serve.json", help="the results")
    parser.add_argument("--out", type=Path, default=OUT / "serve.md", help="the Markdown table")
    parser.add_argument("--table", type=Path, help="only print the Markdown of a results JSON")
    args = parser.parse_args()
    if args.table:
        print(markdown(json.loads(args.table.read_text())))
        return
    if shutil.which("wrk") is None:
        sys.exit("bench-serve needs wrk: apt-get install wrk")
    try:
        report = measure(args)
    except fairness.UnfairError as error:
        sys.exit(f"unfair comparison, not run: {error}")
    answers = {s["answer"] for s in report["servers"].values() if s["answer"] is not None}
    text = markdown(report)
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    say(f"wrote {args.json} and {args.out}")
    if len(answers) > 1:
        sys.exit("the servers disagree on the answer: not the same model")


if __name__ == "__main__":
    main()
