"""Side-by-side serving benchmark: our service against the seed's Flask app and its peers.

All four servers load the same model file (models/model.joblib, built by `make run`) and
answer the same single-row request, on 127.0.0.1, one after the other:

- ours: `python -m mlops_template.serve` (one uvicorn process, micro-batching);
- ours with a challenger scored in shadow (the same model file again, MLOPS_CHALLENGER_MODEL):
  what shadow scoring costs the answers;
- the seed's Flask app on Flask's development server;
- the same Flask app under gunicorn with 2 workers (the best of the baselines);
- `mlflow models serve` on the same pipeline saved as an MLflow model.

For each, wrk drives concurrency 1 and 16 for DURATION seconds; we record requests/s,
p50/p99 latency, cold start (process start to the first good answer) and resident memory
after the load. The in-process time of one predict is measured too, as the floor for c1.

    make bench-serve                       # 10 s per case
    python benchmarks/serve.py --duration 3 --out docs/serving-bench.md
    python benchmarks/serve.py --only ours       # just ours, with and without shadow
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MODEL = REPO / "models" / "model.joblib"
sys.path.insert(0, str(REPO / "src"))


def project_example() -> dict:
    """The data contract's example record (params.yaml data.contract): a valid request for
    whatever table the model was trained on."""
    from mlops_template.config import load_params
    from mlops_template.schema import load_contract

    return dict(load_contract(REPO / load_params(REPO / "params.yaml").data.contract).example)


RECORD = project_example()
CONCURRENCY = (1, 16)


@dataclass(frozen=True)
class Server:
    name: str
    command: list[str]
    path: str
    body: dict
    env: dict[str, str]


@dataclass(frozen=True)
class Result:
    server: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url: str, body: dict) -> int:
    request = urllib.request.Request(  # noqa: S310 (http on loopback only)
        url, json.dumps(body).encode(), {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
        return response.status


def rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (gunicorn forks workers)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
            pending += [int(child) for child in children]
        except (FileNotFoundError, AttributeError, ProcessLookupError):
            continue
    return total / 1024


def start(server: Server, port: int) -> tuple[subprocess.Popen[bytes], float]:
    """Start a server; return it and its cold start (seconds to the first good answer)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [part.replace("{port}", str(port)) for part in server.command],
        cwd=REPO,
        env={**os.environ, **server.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = started + 120
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {process.returncode}")
        try:
            if post(f"http://127.0.0.1:{port}{server.path}", server.body) == 200:
                return process, time.perf_counter() - started
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{server.name} did not answer within 120 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _ms(text: str) -> float:
    """wrk's durations: 812.00us, 1.23ms, 2.01s, 1.00m."""
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def load(server: Server, port: int, connections: int, duration: int, script: Path) -> Result:
    output = subprocess.run(
        [
            "wrk",
            "--threads",
            "1",
            "--connections",
            str(connections),
            "--duration",
            f"{duration}s",
            "--timeout",
            "5s",
            "--latency",
            "--script",
            str(script),
            f"http://127.0.0.1:{port}{server.path}",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 60,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)$", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)$", output, re.M).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    failed = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    count = int(errors.group(1)) if errors else 0
    count += sum(int(n) for n in failed.groups()) if failed else 0
    return Result(server.name, connections, rps, p50, p99, count)


def in_process_predict_ms(repeats: int = 300) -> float:
    """Median time of one single-row predict in this process: the floor for c1 latency."""
    from mlops_template.serve.model import ServedModel

    model = ServedModel.load(MODEL)
    for _ in range(20):
        model.score([RECORD])
    timings = []
    for _ in range(repeats):
        began = time.perf_counter()
        model.score([RECORD])
        timings.append((time.perf_counter() - began) * 1000)
    return statistics.median(timings)


def mlflow_model(workdir: Path) -> Path:
    """The same pipeline, saved as an MLflow model for `mlflow models serve`."""
    target = workdir / "mlflow-model"
    code = (
        "import sys, joblib, pandas as pd, mlflow.sklearn;"
        "from mlflow.models import infer_signature;"
        f"m = joblib.load({str(MODEL)!r});"
        f"x = pd.DataFrame([{RECORD!r}]);"
        "mlflow.sklearn.save_model(m, sys.argv[1], signature=infer_signature(x, m.predict(x)),"
        " serialization_format='cloudpickle')"
    )
    subprocess.run([sys.executable, "-c", code, str(target)], check=True, capture_output=True)
    return target


def servers(workdir: Path) -> list[Server]:
    params = workdir / "params.yaml"
    text = (REPO / "params.yaml").read_text()
    text = text.replace(
        "prediction_log: logs/predictions.jsonl", f"prediction_log: {workdir / 'predictions.jsonl'}"
    )
    text = text.replace("model: models/model.joblib", f"model: {MODEL}")
    params.write_text(text)
    seed = {"SEED_MODEL": str(MODEL), "PYTHONPATH": str(REPO / "benchmarks")}
    flask_body = {"input": RECORD}
    ours = [str(BIN / "python"), "-m", "mlops_template.serve", "--params", str(params)]
    return [
        Server("ours (uvicorn, 1 process)", [*ours, "--port", "{port}"], "/predict", RECORD, {}),
        Server(
            "ours + shadow challenger",
            [*ours, "--port", "{port}"],
            "/predict",
            RECORD,
            {
                "MLOPS_CHALLENGER_MODEL": str(MODEL),
                "MLOPS_CHALLENGER_SHA256": MODEL.with_name(MODEL.name + ".sha256")
                .read_text()
                .split()[0],
            },
        ),
        Server(
            "seed Flask (dev server)",
            [str(BIN / "python"), str(REPO / "benchmarks" / "seed_flask_app.py"), "{port}"],
            "/predict",
            flask_body,
            seed,
        ),
        Server(
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
            flask_body,
            seed,
        ),
        Server(
            "mlflow models serve",
            [
                str(BIN / "mlflow"),
                "models",
                "serve",
                "--model-uri",
                str(mlflow_model(workdir)),
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
            {"dataframe_records": [RECORD]},
            {},
        ),
    ]


def table(
    results: list[Result], cold: dict[str, float], rss: dict[str, float], floor_ms: float
) -> str:
    label = "gunicorn" if any(r.server.startswith("seed Flask +") for r in results) else "ours"
    first = "seed Flask +" if label == "gunicorn" else "ours ("
    baseline = {r.connections: r.rps for r in results if r.server.startswith(first)}
    lines = [
        f"| server | conns | req/s | p50 ms | p99 ms | errors | vs {label} | cold start s"
        " | RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.server} | {r.connections} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} |"
            f" {r.errors} | {r.rps / baseline[r.connections]:.2f}x | {cold[r.server]:.2f} |"
            f" {rss[r.server]:.0f} |"
        )
    lines.append("")
    lines.append(
        f"In-process predict of one row (our model code, no HTTP): {floor_ms:.2f} ms median."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per case")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument("--only", default="", help="run the servers whose name contains this")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench-serve needs wrk: apt-get install wrk")
    if not MODEL.is_file():
        sys.exit(f"{MODEL} not found: run `make run` first")
    floor = in_process_predict_ms()
    print(f"in-process predict: {floor:.2f} ms", flush=True)
    results: list[Result] = []
    cold: dict[str, float] = {}
    rss: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        script = workdir / "post.lua"
        for server in [s for s in servers(workdir) if args.only in s.name]:
            script.write_text(
                'wrk.method = "POST"\n'
                'wrk.headers["Content-Type"] = "application/json"\n'
                f"wrk.body = {json.dumps(json.dumps(server.body))}\n"
            )
            port = free_port()
            process, cold[server.name] = start(server, port)
            try:
                for connections in CONCURRENCY:
                    result = load(server, port, connections, args.duration, script)
                    results.append(result)
                    print(
                        f"{server.name:28} c{connections:<3} {result.rps:9,.0f} req/s"
                        f"  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:7.2f} ms"
                        f"  errors {result.errors}",
                        flush=True,
                    )
                rss[server.name] = rss_mb(process.pid)
            finally:
                stop(process)
    text = table(results, cold, rss, floor)
    print()
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
