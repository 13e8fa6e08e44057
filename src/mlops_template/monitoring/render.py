"""The drift report's outputs: Markdown (for pull requests), an HTML page and the PNG of
each column's distributions, training against production (matplotlib)."""

from __future__ import annotations

import base64
import html
import math
from io import BytesIO
from typing import Any

import numpy as np
import pandas as pd

from mlops_template.contract import ColumnSpec, Contract
from mlops_template.monitoring.checks import (
    DriftReport,
    category_shares,
    logged_features,
    logged_predictions,
    training_target,
)
from mlops_template.monitoring.logs import Traffic, reasons


def _number(value: float | None, digits: str = ".3g") -> str:
    return "" if value is None else format(value, digits)


def _shadow_sentences(shadow: dict[str, Any]) -> list[str]:
    if "agreement" in shadow:
        compared = f"{shadow['agreement']:.1%} agreement"
    else:
        compared = (
            f"mean absolute difference {shadow['mean_abs_difference']:.4g} (mean prediction"
            f" {shadow['champion_mean']:.4g} vs {shadow['challenger_mean']:.4g})"
        )
    sentences = [
        f"Shadow challenger `{shadow['challenger_version']}` against champion"
        f" `{shadow['champion_version']}` on the same {shadow['compared']} requests:"
        f" {compared}."
    ]
    if "champion_accuracy" in shadow:
        sentences.append(
            f"On {shadow['labelled']} labelled requests: champion accuracy"
            f" {shadow['champion_accuracy']:.1%}, challenger {shadow['challenger_accuracy']:.1%}."
        )
    elif "champion_mae" in shadow:
        sentences.append(
            f"On {shadow['labelled']} labelled requests: champion MAE"
            f" {shadow['champion_mae']:.4g}, challenger {shadow['challenger_mae']:.4g}."
        )
    return sentences


def skipped_sentence(report: DriftReport) -> str:
    """The records left out because they do not fit the contract, or "" if none were."""
    if not report.skipped_records:
        return ""
    return (
        f"{report.skipped_records} logged records were skipped: they do not fit the current"
        f" data contract (logged under an earlier one): {reasons(report.skipped_reasons)}."
    )


def markdown(report: DriftReport) -> str:
    icon = {"drift": "🔴", "no drift": "🟢", "not enough traffic": "⚪"}[report.verdict]
    lines = [
        f"## Drift report: {icon} {report.verdict}",
        "",
        f"{report.window_rows} logged predictions compared with {report.reference_rows}"
        " training rows.",
        "",
    ]
    if report.skipped_records:
        lines += [f"⚠️ {skipped_sentence(report)}", ""]
    if report.checks:
        lines += [
            "| column | check | p-value | PSI | what changed | drift |",
            "|---|---|---|---|---|---|",
        ]
        for check in report.checks:
            lines.append(
                f"| `{check.column}` | {check.test} | {_number(check.p_value)} |"
                f" {_number(check.psi)} | {check.detail} | {'**yes**' if check.drifted else 'no'} |"
            )
    if report.shadow:
        lines += ["", *_shadow_sentences(report.shadow)]
    return "\n".join(lines) + "\n"


def figure_png(
    reference: pd.DataFrame, traffic: Traffic, report: DriftReport, contract: Contract
) -> str:
    """One panel per feature and one for the predictions, training against production, each
    titled with its verdict; base64 PNG for the HTML page."""
    import matplotlib.pyplot as plt

    from mlops_template.evaluation import plots  # noqa: F401 (sets matplotlib's Agg backend)

    current = logged_features(traffic, contract)
    verdicts = {(c.column, c.kind): c.drifted for c in report.checks}
    target = contract.target
    panels = [*contract.features, target]
    columns = 3
    rows = math.ceil(len(panels) / columns)
    figure, grid = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), dpi=90)
    for axes, spec in zip(grid.flat, panels, strict=False):
        if spec is target:
            ref_values = training_target(reference, contract)
            cur_values = logged_predictions(traffic, contract)
            title = "predicted class" if contract.is_classification else f"predicted {spec.name}"
            drifted = verdicts.get(("prediction", "prediction"))
        else:
            ref_values, cur_values = reference[spec.name], current[spec.name]
            title = spec.name
            drifted = verdicts.get((spec.name, spec.kind)) or verdicts.get((spec.name, "missing"))
        _panel(axes, spec, ref_values, cur_values)
        axes.set_title(
            f"{title}: {'DRIFT' if drifted else 'ok'}", color="tab:red" if drifted else "black"
        )
        axes.legend(fontsize=7)
    for axes in list(grid.flat)[len(panels) :]:
        axes.axis("off")
    figure.tight_layout()
    buffer = BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _panel(axes: Any, spec: ColumnSpec, reference: pd.Series, current: pd.Series) -> None:
    """Histograms of a numeric column, or bars of a categorical one's shares."""
    if spec.kind == "numeric":
        ref_num, cur_num = reference.dropna().astype(float), current.dropna().astype(float)
        both = pd.concat([ref_num, cur_num])
        bins = np.linspace(both.min(), both.max(), 30) if len(both) else 10
        axes.hist(ref_num, bins=bins, density=True, alpha=0.5, label="training")
        axes.hist(cur_num, bins=bins, density=True, alpha=0.5, label="production")
        return
    positions = np.arange(len(spec.categories))
    before = category_shares(reference.dropna(), spec.categories)
    now = category_shares(current.dropna(), spec.categories)
    axes.bar(positions - 0.2, before, 0.4, label="training")
    axes.bar(positions + 0.2, now, 0.4, label="production")
    axes.set_xticks(positions, labels=spec.categories)
    axes.set_ylabel("share")


def html_page(report: DriftReport, image: str | None) -> str:
    rows = "".join(
        f"<tr class={'drift' if c.drifted else 'ok'}><td>{html.escape(c.column)}</td>"
        f"<td>{html.escape(c.test)}</td><td>{_number(c.p_value)}</td><td>{_number(c.psi)}</td>"
        f"<td>{html.escape(c.detail)}</td><td>{'yes' if c.drifted else 'no'}</td></tr>"
        for c in report.checks
    )
    shadow = " ".join(_shadow_sentences(report.shadow)) if report.shadow else ""
    skipped = f"<p>{html.escape(skipped_sentence(report))}</p>" if report.skipped_records else ""
    picture = f'<img alt="distributions" src="data:image/png;base64,{image}">' if image else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Drift report: {report.verdict}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px}}tr.drift{{background:#fdd}}
img{{max-width:100%}}</style>
</head><body><h1>Drift report: {report.verdict}</h1>
<p>{report.window_rows} logged predictions compared with {report.reference_rows} training rows.
Drift needs p &lt; alpha / tests and PSI &ge; threshold; settings are in drift.json.</p>
{skipped}
{picture}
<table><tr><th>column</th><th>check</th><th>p-value</th><th>PSI</th><th>what changed</th>
<th>drift</th></tr>{rows}</table>
<p>{html.escape(shadow)}</p>
</body></html>
"""
