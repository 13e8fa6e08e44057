"""The PR report's "Explanations" section, from the explain stage's shap.json.

Kept beside report.py (which gathers and renders the rest): a pure function of the summary,
so every task's table is testable without the pipeline. The table is compact on purpose: the
features with the largest mean |SHAP| on the test split (per class for multiclass), and the
summary image below it shows the direction and spread.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

HEADING = "### Explanations"
TOP_FEATURES = 10
SPACES = {
    "probability": "the class probability",
    "log_odds": "log-odds",
    "raw": "raw scores (log-odds per class)",
    "prediction": "the prediction",
}


def section(summary: dict[str, Any] | None, image: str | None) -> list[str]:
    """Markdown lines, the heading first; a note when the explain stage wrote nothing."""
    if summary is None:
        return [HEADING, "", "_No explanations: the explain stage wrote no shap.json._"]
    overall: dict[str, float] = summary["mean_abs_shap"]
    ranked = sorted(overall, key=lambda name: (-overall[name], name))[:TOP_FEATURES]
    space = SPACES.get(summary["output_space"], summary["output_space"])
    outputs = summary["outputs"]
    per_class: dict[str, dict[str, float]] = summary.get("per_class") or {}
    shown = f" ({outputs[0]})" if len(outputs) == 1 and per_class else ""
    lines = [
        HEADING,
        "",
        f"{summary['explainer']} on {summary['rows']} test rows: mean \\|SHAP\\| in"
        f" {space}{shown}, the {len(ranked)} largest of {len(overall)} features.",
        "",
    ]
    columns = outputs if len(per_class) > 1 else []
    lines.append("| feature | mean \\|SHAP\\| |" + "".join(f" {name} |" for name in columns))
    lines.append("|---|---:|" + "---:|" * len(columns))
    for name in ranked:
        cells = "".join(f" {per_class[output][name]:.4f} |" for output in columns)
        lines.append(f"| `{name}` | {overall[name]:.4f} |{cells}")
    if image is not None:
        lines += ["", f"![SHAP summary]({image})"]
    return lines


def copy_image(source: Path, image_dir: Path) -> Path | None:
    """The stage's summary image copied beside the report's other images (CML uploads that
    folder), or None when there is none."""
    if not source.is_file():
        return None
    target = image_dir / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def relative(path: Path, report_dir: Path) -> str:
    """An image's path as the report links it: relative to the report's folder when inside."""
    return (path.relative_to(report_dir) if path.is_relative_to(report_dir) else path).as_posix()
