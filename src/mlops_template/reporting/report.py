"""The pull-request report: this branch against a base revision, as GitHub markdown.

`mlops report pr --base main` gathers what DVC knows (metrics and params diffs against the base
revision), what the stages wrote (validation summary or failure, timing, model size), renders
the plot data to PNG, and writes `report.md` beside a folder of images and the branch's
`model_card.md`, which the report also shows, folded, at its end (card_section).
post-report posts that file; this module never talks to GitHub. Gathering (subprocesses,
files: reporting/inputs.py) is kept apart from rendering (a pure function of a `ReportInputs`),
so every case is testable without DVC.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlops_template import PipelineError
from mlops_template.config import Params
from mlops_template.contract.metrics import below_baseline, better
from mlops_template.evaluation import behaviour
from mlops_template.io import storage
from mlops_template.io.git import check_revision
from mlops_template.reporting import explain, model_card, safety
from mlops_template.reporting.inputs import MetricDiff, ReportInputs, gather
from mlops_template.reporting.markdown import number as _number
from mlops_template.reporting.model_card import serving_sentence, write_model_card

NO_CHANGE = 1e-9
# post-report posts at most 60,000 characters (GitHub holds 65,536): the report keeps to this,
# leaving room for the line post-report puts where the plots were. The model card at its end
# is shortened to fit (model_card.within_limit), or left out below MIN_CARD_ROOM.
REPORT_LIMIT = 58_000
MIN_CARD_ROOM = 1_000
CARD_NAME = "model_card.md"  # beside report.md: the whole card, in the report's artifact
# The card's sections the report shows already (its metrics, its behaviour checks), and the
# comparison with the champion, which only `register` looks up.
SHOWN_ABOVE = ("Metrics", "Behaviour checks", "Compared with the previous champion")


def baseline_warning(inputs: ReportInputs) -> str | None:
    """A model no better than always answering the majority class (or the training mean) is
    worth nothing, however it compares with the base branch."""
    if inputs.failed or inputs.beats_baseline is not False:
        return None
    current = {m.name: m.new for m in inputs.metrics if m.new is not None}
    shortfalls = [
        name
        for name in below_baseline(current, inputs.baseline, inputs.primary_metric, inputs.task)
        if name in current
    ]
    shown = ", ".join(
        f"`{name}` {current[name]:.4f} against {inputs.baseline[name]:.4f}" for name in shortfalls
    )
    return (
        f"🚫 **Does not beat its baseline** (always the majority class, or the training mean)"
        f"{': ' + shown if shown else ''}. The promotion gate will refuse this model."
    )


def verdict(inputs: ReportInputs) -> str:
    """One line a reviewer reads first; failed behaviour checks are flagged on it."""
    line = _metric_verdict(inputs)
    failed = [] if inputs.failed else behaviour.failed(inputs.behaviour)
    if failed:
        line += f" ❌ **{len(failed)} behaviour check(s) failed**: the gate will refuse it."
    return line


def _metric_verdict(inputs: ReportInputs) -> str:
    if inputs.validation_failure is not None:
        return "❌ **Data validation failed**: the model was not retrained (see below)."
    if inputs.stage_failure is not None:
        return (
            f"❌ **The pipeline failed at stage `{inputs.stage_failure['stage']}`**:"
            " the model was not retrained (see below)."
        )
    primary = next((m for m in inputs.metrics if m.name == inputs.primary_metric), None)
    if inputs.contract_change is not None and primary is not None and primary.new is not None:
        return (
            f"🔀 **A new data contract** ({inputs.contract_change}): `{primary.name}` ="
            f" {primary.new:.4f}; `{inputs.base}`'s metrics describe another problem and are"
            " not compared."
        )
    if primary is None or primary.new is None:
        return f"❌ **No `{inputs.primary_metric}` on this branch**: did the pipeline run?"
    if primary.old is None:
        return (
            f"🆕 **First metrics**: `{primary.name}` = {primary.new:.4f}"
            f" (`{inputs.base}` has none to compare with)."
        )
    delta = primary.delta or 0.0
    if abs(delta) <= NO_CHANGE:
        return f"🟰 **No change** in `{primary.name}` ({primary.new:.4f}) against `{inputs.base}`."
    word = "✅ **Better**" if better(primary.name, primary.new, primary.old) else "⚠️ **Worse**"
    return (
        f"{word} than `{inputs.base}` on `{primary.name}`:"
        f" {primary.old:.4f} → {primary.new:.4f} ({delta:+.4f})."
    )


def _metrics_rows(
    inputs: ReportInputs, metrics: list[MetricDiff], baseline: bool = False
) -> list[str]:
    head = f"| metric | `{inputs.base}` | this branch | Δ |"
    lines = [head + (" baseline |" if baseline else ""), "|---|---:|---:|---:|"]
    lines[1] += "---:|" if baseline else ""
    for metric in metrics:
        delta = metric.delta
        shown = "—" if delta is None else ("0" if abs(delta) <= NO_CHANGE else f"{delta:+.4f}")
        name = f"**{metric.name}**" if metric.name == inputs.primary_metric else metric.name
        row = f"| {name} | {_number(metric.old)} | {_number(metric.new)} | {shown} |"
        if baseline:
            row += f" {_number(inputs.baseline.get(metric.name))} |"
        lines.append(row)
    return lines


def _metrics_section(inputs: ReportInputs) -> list[str]:
    """Headline metrics in a table; the per-class ones folded away below it."""
    if inputs.failed:
        # The metrics and plots on disk are the base's (git keeps them), not this branch's.
        return ["_Not computed: the pipeline did not get that far on this branch._"]
    if not inputs.metrics:
        return ["_No metrics._"]
    headline = [m for m in inputs.metrics if "." not in m.name]
    per_class = [m for m in inputs.metrics if "." in m.name]
    lines = _metrics_rows(inputs, headline, baseline=bool(inputs.baseline))
    if per_class:
        lines += ["", "<details><summary>Per-class metrics</summary>", ""]
        lines += [*_metrics_rows(inputs, per_class), "", "</details>"]
    return lines


def _params_section(inputs: ReportInputs) -> list[str]:
    if not inputs.params_changed:
        return [f"_No parameter changed against `{inputs.base}`._"]
    lines = [f"| param | `{inputs.base}` | this branch |", "|---|---|---|"]
    for name, (old, new) in sorted(inputs.params_changed.items()):
        lines.append(f"| `{name}` | `{json.dumps(old)}` | `{json.dumps(new)}` |")
    return lines


def _validation_section(inputs: ReportInputs) -> list[str]:
    if inputs.validation_failure is not None:
        failure = inputs.validation_failure
        lines = [
            f"❌ {len(failure['violations'])} problem(s) in {failure['rows']} row(s):",
            "",
            "| column | check | failures | examples |",
            "|---|---|---:|---|",
        ]
        for item in failure["violations"]:
            examples = ", ".join(f"`{value}`" for value in item["failing_values"])
            lines.append(
                f"| `{item['column']}` | `{item['check']}` | {item['count']} | {examples} |"
            )
        return lines
    if inputs.validation is None:
        return ["_No validation summary found._"]
    summary = inputs.validation
    missing = {name: count for name, count in summary["missing"].items() if count}
    lines = [f"✅ {summary['rows']} rows, {summary['columns']} columns, no violations."]
    if missing:
        lines.append("Missing values: " + ", ".join(f"`{k}` {v}" for k, v in missing.items()))
    duplicates = _duplicates_line(summary.get("duplicates") or {})
    if duplicates:
        lines.append(duplicates)
    return lines


def _duplicates_line(duplicates: dict[str, Any]) -> str | None:
    """One line on duplicate rows, or None when there are none (or an older summary)."""
    parts = []
    if rows := duplicates.get("rows", 0):
        dropped = " dropped" if duplicates.get("dropped") else ""
        parts.append(f"{rows} exact duplicate row(s){dropped}")
    if conflicting := duplicates.get("conflicting_labels", 0):
        parts.append(
            f"{conflicting} row(s) with conflicting labels (same features, another label),"
            " kept on one side of the split"
        )
    return "Duplicates: " + "; ".join(parts) + "." if parts else None


def _training_section(inputs: ReportInputs) -> list[str]:
    seconds = "not re-run" if inputs.train_seconds is None else f"{inputs.train_seconds:.2f} s"
    size = "—" if inputs.model_bytes is None else f"{inputs.model_bytes / 1024:,.1f} KiB"
    return [f"Training time: {seconds} · model size: {size}", *_serving_line(inputs.parity)]


def _serving_line(parity: dict[str, Any] | None) -> list[str]:
    """How the service will run this model (none for a run that wrote no parity record)."""
    return ["", serving_sentence(parity)] if parity else []


def _failure_section(failure: dict[str, Any]) -> list[str]:
    """The failed stage's error, verbatim in an indented code block (no markup inside)."""
    return [
        f"Stage `{failure['stage']}` failed:",
        "",
        *(f"    {line}" for line in str(failure["error"]).splitlines()),
    ]


def render(inputs: ReportInputs) -> str:
    """The markdown body; image paths are relative to the report file."""
    lines = ["## Model report", "", verdict(inputs), ""]
    if warning := baseline_warning(inputs):
        lines += [warning, ""]
    # A validation failure is shown as its violations table below; any other, here.
    if inputs.stage_failure is not None and inputs.validation_failure is None:
        lines += ["### Pipeline failure", "", *_failure_section(inputs.stage_failure), ""]
    lines += ["### Metrics", ""]
    lines += _metrics_section(inputs)
    if not inputs.failed:
        lines += ["", "### Behaviour", "", *behaviour.table(inputs.behaviour)]
    lines += ["", "### Params changed", "", *_params_section(inputs)]
    lines += ["", "### Data validation", "", *_validation_section(inputs)]
    lines += ["", "### Training", "", *_training_section(inputs)]
    if inputs.images and not inputs.failed:
        lines += ["", "### Plots", ""]
        lines += [f"![{title}]({path})" for title, path in inputs.images.items()]
    if not inputs.failed:
        lines += ["", *explain.section(inputs.explanation, inputs.shap_image)]
    return "\n".join(lines) + "\n"


# --- gathering ---------------------------------------------------------------------------


def run(params: Params, base: str, out: Path) -> str:
    check_revision(base)
    out = out.resolve()
    image_dir = out.parent / (out.stem + "_images")
    inputs = gather(params, base, image_dir, out.parent)
    text = render(inputs)
    if not inputs.failed:  # a failed run has no model of this branch to describe
        room = REPORT_LIMIT - len(text) - 1
        text += "\n" + "\n".join(model_card_section(params, out.parent, room)) + "\n"
    storage.write_text(out, text)
    return text


def model_card_section(params: Params, folder: Path, room: int) -> list[str]:
    """Write this branch's card to `folder`, and the report's section showing it (or saying
    why there is none: the pipeline has not run here), in at most `room` characters."""
    try:
        card = write_model_card(params, folder / CARD_NAME)
    except PipelineError as error:
        return ["### Model card", "", f"No model card: {error}"]
    return card_section(card.read_text(encoding="utf-8"), room)


def card_section(card: str, room: int) -> list[str]:
    """The model card, folded, in at most `room` characters: without what the report shows
    above (SHOWN_ABOVE), its headings under the report's, its long tables and least needed
    sections cut as the registry's are when it would not fit; or a line saying why not."""
    lines = [
        "### Model card",
        "",
        f"Model card of this branch's model: [{CARD_NAME}]({CARD_NAME}), the whole card, in"
        " the report's artifact; below without the metrics and behaviour checks shown above.",
        "",
    ]
    card = model_card.without(card, SHOWN_ABOVE)
    # What the fold adds around the fitted card: its summary (the card's title) and end, and
    # two characters for each `## ` heading it demotes (counted before any section leaves).
    title = card.split("\n", 1)[0].removeprefix("# ")
    summary = f"<details><summary>{title}</summary>"
    headings = sum(line.startswith("## ") for line in card.split("\n"))
    fixed = len("\n".join([*lines, summary, "", "", "</details>"])) + 2 * headings
    if room - fixed < MIN_CARD_ROOM:
        return [*lines, "_Not shown here: the report leaves no room for it in a PR comment._"]
    why = "what the report leaves of a PR comment (GitHub holds 65,536 characters)"
    body = model_card.within_limit(card, room - fixed, why, f"The whole card is `{CARD_NAME}`.")
    if problems := safety.markup_problems(body):
        # Not echoed: the problem quotes the text the check refuses.
        return [
            *lines,
            f"_Not shown here: it holds {len(problems)} link(s), URL(s) or HTML tag(s) the"
            " comment check refuses._",
        ]
    rest = body.rstrip("\n").partition("\n\n")[2]  # the title is the summary's
    demoted = ["##" + line if line.startswith("## ") else line for line in rest.split("\n")]
    return [*lines, summary, "", *demoted, "", "</details>"]


def write_params_failure(out: Path, error: PipelineError) -> None:
    """The report when params.yaml itself is invalid: nothing ran, and this says why."""
    failure = {"stage": "params.yaml", "error": str(error)}
    lines = [
        "## Model report",
        "",
        "❌ **params.yaml is invalid**: nothing ran (see below).",
        "",
        *_failure_section(failure),
    ]
    storage.write_text(out, "\n".join(lines) + "\n")
