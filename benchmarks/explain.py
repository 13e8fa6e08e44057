"""What POST /explain costs, and whether /predict pays for it: side by side in one run.

One service (`python -m mlops_template.serve`, the project's params.yaml with the model files
and the explain stage's background rows by absolute path) answers three phases, one after
the other, from one client process on keep-alive connections:

1. `predict`: `--requests` sequential /predict calls (the data contract's example);
2. `predict + explain load`: the same, while `--explainers` threads (serve's
   max_concurrent_explanations by default: the cap) call /explain back to back;
3. `explain`: `--explain-requests` sequential /explain calls.

Latency is per request at the client (milliseconds: p50, p95, p99, max). The machine is
shared (2 cores, other work on them): compare the phases of one run, not runs.

    make bench-explain                          # 2,000 predictions per phase
    python benchmarks/explain.py --requests 300 # a quick look

Results: benchmarks/out/explain.json and explain.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
PATH_KEYS = ("model", "onnx_model", "reference", "background")


def service_params(workdir: Path, source: Path) -> tuple[Path, dict[str, Any]]:
    """`source` with absolute model, contract and background paths and the prediction log
    in `workdir`; returns the written file and the contract's example record."""
    raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    base = source.parent
    for key in PATH_KEYS:
        if key in raw["paths"]:
            raw["paths"][key] = str((base / raw["paths"][key]).resolve())
    raw["data"]["contract"] = str((base / raw["data"]["contract"]).resolve())
    raw["serve"]["prediction_log"] = str(workdir / "predictions.jsonl")
    path = workdir / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    contract = yaml.safe_load(Path(raw["data"]["contract"]).read_text(encoding="utf-8"))
    return path, dict(contract["example"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Client:
    """One keep-alive connection; `post` returns (status, milliseconds)."""

    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, path: str, body: bytes) -> tuple[int, float]:
        started = time.perf_counter()
        self.connection.request("POST", path, body, {"content-type": "application/json"})
        response = self.connection.getresponse()
        response.read()
        return response.status, (time.perf_counter() - started) * 1000

    def get(self, path: str) -> int:
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        response.read()
        return response.status


def wait_ready(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the service exited ({process.returncode}) before it was ready")
        try:
            if Client(port).get("/health/ready") == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the service was not ready within {seconds:g} s")


def summary(latencies: list[float], statuses: list[int]) -> dict[str, Any]:
    """Percentiles of the latencies (ms) and the count of each status."""
    ordered = sorted(latencies)

    def at(share: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 3)

    return {
        "requests": len(ordered),
        "p50_ms": round(statistics.median(ordered), 3),
        "p95_ms": at(0.95),
        "p99_ms": at(0.99),
        "max_ms": round(ordered[-1], 3),
        "statuses": {str(code): statuses.count(code) for code in sorted(set(statuses))},
    }


def measure(port: int, path: str, body: bytes, requests: int) -> dict[str, Any]:
    client = Client(port)
    results = [client.post(path, body) for _ in range(requests)]
    return summary([ms for _, ms in results], [status for status, _ in results])


def under_explain_load(port: int, body: bytes, requests: int, explainers: int) -> dict[str, Any]:
    """/predict while `explainers` threads call /explain back to back."""
    stop = threading.Event()
    explained: list[tuple[int, float]] = []

    def load() -> None:
        client = Client(port)
        while not stop.is_set():
            explained.append(client.post("/explain", body))

    threads = [threading.Thread(target=load, daemon=True) for _ in range(explainers)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # the load is running before the first prediction is timed
    predicted = measure(port, "/predict", body, requests)
    stop.set()
    for thread in threads:
        thread.join(30)
    background = summary([ms for _, ms in explained], [status for status, _ in explained])
    return {"predict": predicted, "explain_load": background}


def run(params_path: Path, requests: int, explain_requests: int, explainers: int) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        params, record = service_params(Path(scratch), params_path)
        settings = yaml.safe_load(params.read_text(encoding="utf-8"))["serve"]
        explainers = explainers or int(settings.get("max_concurrent_explanations", 2))
        port = free_port()
        command = [sys.executable, "-m", "mlops_template.serve", "--params", str(params)]
        process = subprocess.Popen([*command, "--port", str(port)], stderr=subprocess.DEVNULL)
        try:
            wait_ready(port, process)
            body = json.dumps(record).encode()
            measure(port, "/predict", body, min(200, requests))  # warm up
            measure(port, "/explain", body, 3)
            return {
                "explainers": explainers,
                "predict_alone": measure(port, "/predict", body, requests),
                **under_explain_load(port, body, requests, explainers),
                "explain_alone": measure(port, "/explain", body, explain_requests),
            }
        finally:
            process.terminate()
            process.wait(30)


def table(result: dict[str, Any]) -> str:
    rows = [
        ("/predict alone", result["predict_alone"]),
        (f"/predict, {result['explainers']} clients on /explain", result["predict"]),
        ("/explain alone", result["explain_alone"]),
        ("/explain, under that load", result["explain_load"]),
    ]
    lines = ["| phase | requests | p50 ms | p95 ms | p99 ms | max ms | statuses |"]
    lines.append("|---|---:|---:|---:|---:|---:|---|")
    for name, row in rows:
        statuses = ", ".join(f"{code}: {n}" for code, n in row["statuses"].items())
        lines.append(
            f"| {name} | {row['requests']} | {row['p50_ms']} | {row['p95_ms']} |"
            f" {row['p99_ms']} | {row['max_ms']} | {statuses} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--explain-requests", type=int, default=200)
    parser.add_argument("--explainers", type=int, default=0, help="0: the cap")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    result = run(args.params.resolve(), args.requests, args.explain_requests, args.explainers)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "explain.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (args.out / "explain.md").write_text(table(result), encoding="utf-8")
    print(table(result), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
