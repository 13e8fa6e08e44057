"""`make up`, `make down`, `make stack-traffic`: the local stack of deploy/compose/compose.yaml.

    stack.py images [--local]   build the stack's images (but the service's: `make image`)
    stack.py up [--local]       write Prometheus's files, start, wait until healthy, print URLs
    stack.py traffic [--local]  one more bounded traffic run (TRAFFIC_REQUESTS, TRAFFIC_SHIFT)
    stack.py drift              the drift report on the log shipped to the stack's S3
    stack.py down [--volumes]   remove everything `up` started (--volumes: its data too)

Settings come from the environment, as compose reads them: DOCKER (the client, default
`docker`), COMPOSE (default `docker compose` if present, else `docker-compose`),
COMPOSE_PROJECT_NAME (mlops-stack), the image variables of compose.yaml, the ports
(SERVICE_PORT 8000, PROMETHEUS_PORT 9090, MLFLOW_PORT 5000, S3_PORT 5555, GRAFANA_PORT 3000),
STACK_STATE (the stack's files on the host: Prometheus's, the drift report; .stack/ at the
repository root), ALERT_FOR (30s), STACK_TIMEOUT (seconds to wait for health, 300) and SHADOW
(1: the served model is also scored in shadow as its own challenger; 0: no challenger).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
COMPOSE_FILE = HERE / "compose.yaml"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
# Where no registry is reachable (LOCAL_IMAGES=1): a Debian bookworm with python3, made with
# debootstrap and cached, the base of the local stand-ins for the public images.
LOCAL_BASE = "local/python:3.11-bookworm"
LOCAL_CACHE = Path.home() / ".cache" / "mlops-template" / "bookworm-python3.tar"
LOCAL_IMAGES = {
    "PROMETHEUS_IMAGE": ("local/prometheus:debian", "prometheus.Dockerfile"),
    "POSTGRES_IMAGE": ("local/postgres:debian", "postgres.Dockerfile"),
}
DEFAULT_TOOLS_IMAGE = "mlops-template-tools:local"
DEFAULT_SERVICE_IMAGE = "mlops-template:local"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def setting(name: str, default: str) -> str:
    return os.environ.get(name) or default


def docker() -> list[str]:
    return shlex.split(setting("DOCKER", "docker"))


def compose() -> list[str]:
    """The compose command: COMPOSE, else Compose v2 (`docker compose`), else docker-compose."""
    if "COMPOSE" in os.environ:
        command = shlex.split(os.environ["COMPOSE"])
    elif subprocess.run([*docker(), "compose", "version"], capture_output=True).returncode == 0:
        command = [*docker(), "compose"]
    elif shutil.which("docker-compose"):
        command = ["docker-compose"]
    else:
        sys.exit("stack: neither `docker compose` nor `docker-compose` is installed")
    project = setting("COMPOSE_PROJECT_NAME", "mlops-stack")
    return [*command, "--project-name", project, "--file", str(COMPOSE_FILE)]


def run(command: list[str], *, check: bool = True, **kwargs: Any) -> None:
    print("+", shlex.join(command), file=sys.stderr)
    subprocess.run(command, check=check, **kwargs)


def image_exists(image: str) -> bool:
    probe = [*docker(), "image", "inspect", image]
    return subprocess.run(probe, capture_output=True).returncode == 0


def build(image: str, dockerfile: Path, context: Path, *build_args: str) -> None:
    """docker build with BuildKit; the host's CA bundle as the optional `ca_bundle` secret (for
    networks that intercept TLS; the Dockerfiles mount it for one command, never keep it)."""
    secret = ["--secret", f"id=ca_bundle,src={CA_BUNDLE}"] if CA_BUNDLE.is_file() else []
    arguments = [word for argument in build_args for word in ("--build-arg", argument)]
    command = [*docker(), "build", "--network", "host", *secret, *arguments]
    started = time.monotonic()
    run(
        [*command, "-f", str(dockerfile), "-t", image, str(context)],
        env={**os.environ, "DOCKER_BUILDKIT": "1"},
    )
    print(f"stack: built {image} in {time.monotonic() - started:.0f} s", file=sys.stderr)


def local_base() -> None:
    """The debootstrap base (LOCAL_BASE), imported from its cached tarball, made if missing."""
    if image_exists(LOCAL_BASE):
        return
    if not LOCAL_CACHE.is_file():
        rootfs = LOCAL_CACHE.parent / "rootfs"
        LOCAL_CACHE.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(rootfs, ignore_errors=True)
        mirror = setting("DEBIAN_MIRROR", "http://deb.debian.org/debian")
        run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3,python3-venv,ca-certificates",
                "bookworm",
                str(rootfs),
                mirror,
            ]
        )
        partial = LOCAL_CACHE.with_suffix(".partial")
        run(["tar", "-C", str(rootfs), "-cf", str(partial), "."])
        partial.rename(LOCAL_CACHE)
        shutil.rmtree(rootfs, ignore_errors=True)
    with LOCAL_CACHE.open("rb") as tar:
        run([*docker(), "import", "-c", 'CMD ["/bin/bash"]', "-", LOCAL_BASE], stdin=tar)


def images(local: bool, build_them: bool = True) -> dict[str, str]:
    """The image variables compose.yaml reads, but the service's. The images made here (the
    tools image, and with `local` the stand-ins) are built every time, so that they follow
    their Dockerfiles and uv.lock; BuildKit's cache makes an unchanged one take seconds. An
    image variable set to another image is used as it is."""
    chosen: dict[str, str] = {}
    base_args = [f"BASE_REPO={LOCAL_BASE.split(':')[0]}", f"BASE_TAG={LOCAL_BASE.split(':')[1]}"]
    if local:
        if build_them:
            local_base()
        for variable, (image, dockerfile) in LOCAL_IMAGES.items():
            chosen[variable] = setting(variable, image)
            if build_them and chosen[variable] == image:
                build(image, HERE / "images" / dockerfile, HERE / "images", *base_args)
    chosen["TOOLS_IMAGE"] = setting("TOOLS_IMAGE", DEFAULT_TOOLS_IMAGE)
    if build_them and chosen["TOOLS_IMAGE"] == DEFAULT_TOOLS_IMAGE:
        tools_args = base_args if local else []
        build(DEFAULT_TOOLS_IMAGE, HERE / "images" / "tools.Dockerfile", ROOT, *tools_args)
    return chosen


def service_image() -> dict[str, str]:
    """The service image is `make image`'s (it needs the trained model): `make up` builds it
    first when it is missing; this only checks."""
    service = setting("SERVICE_IMAGE", DEFAULT_SERVICE_IMAGE)
    if not image_exists(service):
        sys.exit(f"stack: no image {service}: build it with `make image` (after `make run`)")
    return {"SERVICE_IMAGE": service}


def write_prometheus_files(state: Path, alert_for: str) -> Path:
    """deploy/prometheus's config and rules for the stack: the same job and expressions,
    scraped and evaluated every 5 s, each `for:` cut to at most `alert_for`."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="5s", evaluation_interval="5s")
    config["rule_files"] = ["alerts.yml"]  # beside it, in the container's /etc/prometheus
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    limit = seconds(alert_for)
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule and seconds(rule["for"]) > limit:
                rule["for"] = alert_for
    folder = state / "prometheus"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)  # read by the container's unprivileged user
    header = "# Written by deploy/compose/stack.py from deploy/prometheus: edit those.\n"
    for name, content in (("prometheus.yml", config), ("alerts.yml", rules)):
        path = folder / name
        path.write_text(header + yaml.safe_dump(content, sort_keys=False))
        path.chmod(0o644)
    return folder


def seconds(duration: str) -> float:
    """A Prometheus duration of one unit (30s, 15m, 2h) in seconds."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)", duration)
    if match is None:
        raise SystemExit(f"stack: {duration!r} is not a duration like 30s or 15m")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return int(match.group(1)) * scale


def urls() -> dict[str, str]:
    """What `up` waits for, by what it prints: each published URL (see HEALTH)."""
    found = {
        "Prediction service": f"http://127.0.0.1:{setting('SERVICE_PORT', '8000')}",
        "Prometheus": f"http://127.0.0.1:{setting('PROMETHEUS_PORT', '9090')}",
        "MLflow": f"http://127.0.0.1:{setting('MLFLOW_PORT', '5000')}",
        "S3 API (moto)": f"http://127.0.0.1:{setting('S3_PORT', '5555')}",
    }
    if "grafana" in os.environ.get("COMPOSE_PROFILES", "").split(","):
        found["Grafana"] = f"http://127.0.0.1:{setting('GRAFANA_PORT', '3000')}"
    return found


HEALTH = {
    "Prediction service": "/health/ready",
    "Prometheus": "/-/ready",
    "MLflow": "/health",
    "S3 API (moto)": "/moto-api/",
    "Grafana": "/api/health",
}


def checkout_user() -> None:
    """The traffic container reads the checkout (mounted read-only) as its owner, so that a
    private home directory works too."""
    os.environ.setdefault("STACK_USER", f"{os.getuid()}:{os.getgid()}")


def profiles(local: bool) -> None:
    """Grafana (profile `grafana`) has no Debian package: no local stand-in, so it starts only
    from the public image. COMPOSE_PROFILES, if set, decides."""
    if "COMPOSE_PROFILES" not in os.environ and not local:
        os.environ["COMPOSE_PROFILES"] = "grafana"


# The stack is on 127.0.0.1: never through an HTTP proxy the environment may name.
LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def healthy(url: str, timeout: float = 2) -> bool:
    """Whether `url` answers 200 (on loopback, no proxy)."""
    try:
        with LOOPBACK.open(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_healthy(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    waiting = dict(urls())
    while waiting:
        waiting = {name: url for name, url in waiting.items() if not healthy(url + HEALTH[name])}
        if waiting and time.monotonic() > deadline:
            run([*compose(), "ps"], check=False)
            run([*compose(), "logs", "--tail", "40"], check=False)
            sys.exit(f"stack: not healthy after {timeout:.0f} s: {', '.join(waiting)}")
        if waiting:
            time.sleep(1)


def stack_state() -> Path:
    return Path(setting("STACK_STATE", str(ROOT / ".stack"))).resolve()


def shadow_challenger(image: str) -> dict[str, str]:
    """With SHADOW=1 (the default), the served model as its own shadow challenger, so that
    shadow scoring runs and its panel moves (agreement 100%): its path and digest as the
    image pinned them at build time (/etc/mlops-template/model.sha256: `digest  path`)."""
    if setting("SHADOW", "1") != "1":
        return {"CHALLENGER_MODEL": "", "CHALLENGER_SHA256": ""}
    pinned = subprocess.run(
        [
            *docker(),
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "cat",
            image,
            "/etc/mlops-template/model.sha256",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    fields = pinned.stdout.split()
    if pinned.returncode != 0 or len(fields) != 2:
        sys.exit(f"stack: {image} has no pinned model digest: {pinned.stderr.strip()}")
    digest, path = fields
    return {"CHALLENGER_MODEL": path, "CHALLENGER_SHA256": digest}


def up(local: bool) -> None:
    started = time.monotonic()
    profiles(local)
    checkout_user()
    os.environ.update({**images(local, build_them=False), **service_image()})
    os.environ.update(shadow_challenger(os.environ["SERVICE_IMAGE"]))
    state = stack_state()
    write_prometheus_files(state, setting("ALERT_FOR", "30s"))
    os.environ["STACK_STATE"] = str(state)
    run([*compose(), "up", "--detach"])
    wait_healthy(float(setting("STACK_TIMEOUT", "300")))
    print(f"stack: healthy in {time.monotonic() - started:.0f} s")
    for name, url in urls().items():
        print(f"  {name + ':':20} {url}")
    print('  make stack-traffic SHIFT="island=Biscoe" shifts the traffic; make down stops it all')


def traffic(local: bool) -> None:
    os.environ.update({**images(local, build_them=False), **service_image()})
    checkout_user()
    run([*compose(), "run", "--rm", "--no-deps", "traffic"])


LOG_BUCKET = "s3://prediction-logs"  # where compose.yaml's log-shipper puts the log


def drift() -> None:
    """What the scheduled drift job does in production, on the stack: fetch the prediction
    log from the object store, then `mlops monitor drift --fetched`. Into STACK_STATE (a params.yaml
    there points monitoring.fetched and paths.drift at it), never the checkout's own logs/
    and reports/. The stack's S3 and its test credentials only: the caller's AWS session or
    profile is not passed on. Exit 0: no drift, 3: drift (a report either way)."""
    state = stack_state()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["monitoring"]["fetched"] = str(state / "logs")
    params["paths"]["drift"] = str(state / "drift")
    overlay = state / "params.yaml"
    state.mkdir(parents=True, exist_ok=True)
    overlay.write_text(
        "# Written by deploy/compose/stack.py drift: params.yaml, with the stack's paths.\n"
        + yaml.safe_dump(params, sort_keys=False)
    )
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AWS_") or name == "AWS_CA_BUNDLE"
    }
    env.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{setting('S3_PORT', '5555')}",
        AWS_ACCESS_KEY_ID="testing",  # moto takes any key
        AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 (not a secret: moto's)
        AWS_DEFAULT_REGION="us-east-1",
        NO_PROXY="127.0.0.1,localhost",
    )
    fetch = ["mlops", "monitor", "fetch", "--params", str(overlay), "--source", LOG_BUCKET]
    run(fetch, env=env, cwd=ROOT)
    report = subprocess.run(
        ["mlops", "monitor", "drift", "--params", str(overlay), "--fetched"], cwd=ROOT
    )
    if report.returncode not in (0, 3):
        sys.exit(report.returncode)
    print(f"stack: the drift report is {state / 'drift' / 'drift.html'}")
    sys.exit(report.returncode)


# What `up` and `drift` write into STACK_STATE; `down --volumes` removes these (only these:
# STACK_STATE may be a folder of the user's choosing).
STATE_ENTRIES = ("prometheus", "logs", "drift", "params.yaml")


def down(volumes: bool) -> None:
    # Every profile, so that whatever `up` started goes; down never pulls or builds.
    os.environ["COMPOSE_PROFILES"] = "grafana"
    run([*compose(), "down", "--remove-orphans", *(["--volumes"] if volumes else [])])
    if volumes:
        state = stack_state()
        for name in STATE_ENTRIES:
            path = state / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        if state.is_dir() and not any(state.iterdir()):
            state.rmdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("images", "up", "traffic"):
        command = commands.add_parser(name)
        command.add_argument("--local", action="store_true", help="build local public stand-ins")
    commands.add_parser("drift")
    commands.add_parser("down").add_argument("--volumes", action="store_true")
    arguments = parser.parse_args()
    local = bool(getattr(arguments, "local", False)) or os.environ.get("LOCAL_IMAGES") == "1"
    if arguments.command == "images":
        images(local)
    elif arguments.command == "up":
        up(local)
    elif arguments.command == "traffic":
        traffic(local)
    elif arguments.command == "drift":
        drift()
    else:
        down(arguments.volumes)


if __name__ == "__main__":
    main()
