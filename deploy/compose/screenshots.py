"""`make screenshots`: the running stack (`make up`) seen in headless Chromium, saved as PNGs.

    screenshots.py [--out docs/images] [--params params.yaml]

Three pages, each first checked through its own API, then rendered by the browser, whose
DOM must show the expected text before the picture is kept:

    stack-mlflow-champion.png     MLflow's page of the registered model, alias `champion`
                                  (after `make stack-register`)
    stack-prometheus-alerts.png   Prometheus's alerts page, MlopsPredictionDrift firing
                                  (after `make stack-traffic SHIFT=...`, about a minute)
    stack-drift-report.png        the drift report, STACK_STATE/drift/drift.html (after
                                  `make stack-drift`, on this stack)

A page that is not ready is an error naming it and the command that makes it ready; no
picture is written for it and the previous one stays (each PNG is written beside its target,
then renamed over it). Ports come from the environment as for stack.py; the browser is
CHROMIUM, else the first of chromium, chromium-browser, google-chrome on PATH.
"""

from __future__ import annotations

import argparse
import html.parser
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from stack import LOOPBACK, ROOT, healthy, stack_state, urls

WIDTH, HEIGHT = 1280, 900
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIFT_ALERT = "MlopsPredictionDrift"


class NotReadyError(Exception):
    """The stack cannot show this page yet: the message says what to run."""


@dataclass(frozen=True)
class Page:
    file: str  # the PNG's name
    url: str
    shows: tuple[str, ...]  # texts the rendered page must contain (case-insensitive)
    ready: Callable[[], None]  # raises NotReadyError when the stack cannot show the page yet
    height: int = HEIGHT


def get_json(url: str) -> Any:
    with LOOPBACK.open(url, timeout=10) as response:
        return json.load(response)


def mlflow_page(base: str, model: str) -> Page:
    def ready() -> None:
        query = urllib.parse.urlencode({"name": model})
        try:
            found = get_json(f"{base}/api/2.0/mlflow/registered-models/get?{query}")
        except urllib.error.HTTPError as error:  # MLflow answered: not registered
            message = f"MLflow has no model {model!r} ({error}): `make stack-register`"
            raise NotReadyError(message) from None
        aliases = [a["alias"] for a in found["registered_model"].get("aliases", [])]
        if "champion" not in aliases:
            message = f"{model!r} has no `champion` alias in MLflow: `make stack-register`"
            raise NotReadyError(message)

    name = urllib.parse.quote(model, safe="")
    return Page("stack-mlflow-champion.png", f"{base}/#/models/{name}", (model, "champion"), ready)


def prometheus_page(base: str) -> Page:
    def ready() -> None:
        alerts = get_json(f"{base}/api/v1/alerts")["data"]["alerts"]
        states = [a["state"] for a in alerts if a["labels"]["alertname"] == DRIFT_ALERT]
        if "firing" not in states:
            raise NotReadyError(
                f"{DRIFT_ALERT} is not firing ({states or 'inactive'}): "
                '`make stack-traffic SHIFT="island=Biscoe flipper_length_mm=15"`, then a minute'
            )

    # Prometheus 2 (Debian's package) keeps its server-rendered page under /classic, which
    # counts each rule's active alerts; the React page of Prometheus 3 (the public image) is
    # /alerts.
    classic = f"{base}/classic/alerts"
    if healthy(classic, timeout=5):
        shows: tuple[str, ...] = (f"{DRIFT_ALERT} (1 active)",)
        return Page("stack-prometheus-alerts.png", classic, shows, ready)
    return Page("stack-prometheus-alerts.png", f"{base}/alerts", (DRIFT_ALERT,), ready)


def drift_page(report: Path, since: float = 0.0) -> Page:
    """The drift report, if written after `since` (a timestamp: this stack's start)."""

    def ready() -> None:
        if not report.is_file() or report.stat().st_mtime < since:
            state = "older than this stack" if report.is_file() else "none"
            raise NotReadyError(f"no drift report at {report} ({state}): `make stack-drift`")

    return Page("stack-drift-report.png", report.as_uri(), ("drift report",), ready, height=1400)


class VisibleText(html.parser.HTMLParser):
    """The text the picture shows: everything outside <script>, <style>, <noscript> and
    <title> (the title is the tab's, not the page's)."""

    HIDDEN = frozenset({"script", "style", "noscript", "template", "title"})

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self.hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN and self.hidden > 0:
            self.hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def visible_text(dom: str) -> str:
    parser = VisibleText()
    parser.feed(dom)
    return " ".join(" ".join(parser.parts).split())


def browser() -> str:
    chosen = os.environ.get("CHROMIUM") or next(filter(shutil.which, BROWSERS), None)
    if not chosen:
        sys.exit("screenshots: no Chromium: apt-get install chromium (or set CHROMIUM)")
    return chosen


def chromium(profile: Path, page: Page, *action: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on `page`, with its own profile; JavaScript gets up to 15 s of
    virtual time (paused while requests are pending) to render before `action` is taken."""
    command = [
        browser(),
        "--headless",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--no-default-browser-check",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},{page.height}",
        "--virtual-time-budget=15000",
        *(["--no-sandbox"] if os.geteuid() == 0 else []),  # its sandbox refuses to run as root
        *action,
        page.url,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


def capture(page: Page, out: Path, profile: Path) -> Path:
    """Check the page is ready, render it, check what it shows, then save its PNG."""
    try:
        page.ready()
    except OSError as error:  # the service behind the page does not answer
        raise NotReadyError(f"{page.url} does not answer ({error}): is the stack up?") from None
    dom = chromium(profile, page, "--dump-dom")
    text = visible_text(dom.stdout).lower()
    missing = [word for word in page.shows if word.lower() not in text]
    if dom.returncode != 0 or missing:
        raise NotReadyError(
            f"{page.url} rendered without {missing} (chromium exit {dom.returncode}): "
            f"{text[:300]!r} {dom.stderr[-500:]}"
        )
    target = out / page.file
    partial = out / f".{page.file}.partial.png"
    shot = chromium(profile, page, f"--screenshot={partial}")
    if shot.returncode != 0 or not partial.is_file() or partial.stat().st_size == 0:
        partial.unlink(missing_ok=True)
        failure = f"chromium exit {shot.returncode}: {shot.stderr[-500:]}"
        raise NotReadyError(f"{page.url}: no screenshot ({failure})")
    partial.replace(target)
    return target


def pages(params_file: Path) -> list[Page]:
    """The pages of the stack `make up` started: its STACK_STATE holds the Prometheus files
    it wrote (their time is the stack's start) and the report `make stack-drift` writes."""
    params = yaml.safe_load(params_file.read_text())
    found = urls()
    model = str(params["registry"]["model_name"])
    state = stack_state()
    started = state / "prometheus" / "prometheus.yml"
    since = started.stat().st_mtime if started.is_file() else float("inf")
    return [
        mlflow_page(found["MLflow"], model),
        prometheus_page(found["Prometheus"]),
        drift_page(state / "drift" / "drift.html", since),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    arguments = parser.parse_args()
    out: Path = arguments.out
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    with tempfile.TemporaryDirectory(prefix="screenshots-") as profile:
        for page in pages(arguments.params):
            started = time.monotonic()
            try:
                saved = capture(page, out, Path(profile))
            except NotReadyError as error:
                failed.append(f"{page.file}: {error}")
                continue
            shown = ", ".join(repr(word) for word in page.shows)
            print(f"screenshots: {saved} shows {shown} ({time.monotonic() - started:.0f} s)")
    if failed:
        sys.exit("screenshots: not taken:\n  " + "\n  ".join(failed))


if __name__ == "__main__":
    main()
