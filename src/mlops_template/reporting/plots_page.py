"""`mlops report plots`: the evaluate stage's plots and metrics on one self-contained HTML page.

`dvc plots diff` writes a page that loads Vega from a CDN: blank offline, behind a strict
proxy or in a CI artifact opened later. This page has no external reference at all: the
figures are the PNGs `plots.render_images` draws (the same ones the PR report and MLflow
show), embedded as base64. With a base revision, its plots and metrics (read from git, not
re-computed) stand beside this work tree's.
"""

from __future__ import annotations

import base64
import html
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_template.config import Paths
from mlops_template.evaluation import plots
from mlops_template.io import storage
from mlops_template.io.git import check_revision

WORKSPACE = "workspace"


@dataclass(frozen=True)
class Revision:
    """One column of the page: its name, its plots as PNG bytes, its flattened metrics."""

    name: str
    images: Mapping[str, bytes]
    metrics: Mapping[str, float]


def flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested metrics (`per_class.Adelie.f1`) as one level of numbers, as `dvc metrics` shows."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def read_revision(name: str, paths: Paths) -> Revision:
    """Draw the plots whose data `paths` points at, and read its metrics."""
    with tempfile.TemporaryDirectory(prefix="mlops-plots-") as scratch:
        images = {
            title: path.read_bytes()
            for title, path in plots.render_images(paths, Path(scratch)).items()
        }
    metrics = flatten(storage.read_json(paths.metrics)) if paths.metrics.is_file() else {}
    return Revision(name, images, metrics)


def checkout_outputs(paths: Paths, base: str, root: Path) -> Paths | None:
    """The base revision's plot data and metrics, copied out of git under `root`; None if it
    has none (a first run, or a revision before the pipeline existed)."""
    found = False
    for path in [*paths.plot_files(), paths.metrics]:
        shown = subprocess.run(
            ["git", "show", f"{base}:./{path.as_posix()}"], capture_output=True, check=False
        )
        if shown.returncode == 0:
            storage.write_bytes(root / path, shown.stdout)
            found = True
    if not found:
        return None
    return paths.model_copy(update={"plots": root / paths.plots, "metrics": root / paths.metrics})


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def render(revisions: list[Revision], title: str) -> str:
    """The page: a metrics table (one column per revision), then each plot side by side."""
    names = [revision.name for revision in revisions]
    head = "".join(f"<th>{html.escape(name)}</th>" for name in names)
    metric_names = list(dict.fromkeys(m for r in revisions for m in r.metrics))
    rows = "".join(
        f"<tr><td>{html.escape(metric)}</td>"
        + "".join(f"<td>{_number(r.metrics.get(metric))}</td>" for r in revisions)
        + "</tr>"
        for metric in metric_names
    )
    sections = []
    for plot in dict.fromkeys(t for r in revisions for t in r.images):
        cells = []
        for revision in revisions:
            blob = revision.images.get(plot)
            body = (
                f'<img alt="{html.escape(plot)} ({html.escape(revision.name)})" '
                f'src="data:image/png;base64,{base64.b64encode(blob).decode("ascii")}">'
                if blob
                else "<p>(no such plot)</p>"
            )
            cells.append(
                f"<figure>{body}<figcaption>{html.escape(revision.name)}</figcaption></figure>"
            )
        sections.append(f"<h2>{html.escape(plot)}</h2><div class=row>{''.join(cells)}</div>")
    table = (
        f"<table><tr><th>metric</th>{head}</tr>{rows}</table>"
        if metric_names
        else "<p>No metrics (run <code>make run</code>).</p>"
    )
    plots_html = "".join(sections) or "<p>No plot data (run <code>make run</code>).</p>"
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{table}{plots_html}</body></html>\n"
    )


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em}"
    "td:not(:first-child){text-align:right;font-variant-numeric:tabular-nums}"
    ".row{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}img{max-width:100%}"
    "figcaption{text-align:center;color:#555}"
)


def write_page(paths: Paths, out: Path, base: str | None = None) -> Path:
    """Write the page to `out`: the work tree's plots, and `base`'s beside them if given."""
    if base is not None:
        check_revision(base)
    revisions = []
    with tempfile.TemporaryDirectory(prefix="mlops-plots-base-") as scratch:
        base_paths = checkout_outputs(paths, base, Path(scratch)) if base else None
        if base is not None:
            revisions.append(
                read_revision(base, base_paths) if base_paths else Revision(base, {}, {})
            )
    revisions.append(read_revision(WORKSPACE, paths))
    title = "Evaluation plots" + (f": {WORKSPACE} against {base}" if base else "")
    storage.write_text(out, render(revisions, title))
    return out
