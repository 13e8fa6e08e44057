"""The model card's sections on the model's quality on the test split: the metrics against
the baseline, per slice, calibration and fairness (model_card.py puts the card together)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops_template import quality
from mlops_template.markdown import number, table
from mlops_template.metric_facts import HEADLINE, LOWER_IS_BETTER, PER_ROW

if TYPE_CHECKING:
    from mlops_template.model_card import CardInputs

FEW_SLICE_ROWS = 20  # a slice with fewer test rows: its metrics are noisy (and no fairness gap)


def metrics_section(card: CardInputs) -> list[str]:
    metrics, task = card.metrics, card.contract.task
    primary = card.params.primary_metric
    verdict = (
        "beats its baseline"
        if metrics.get("beats_baseline", True)
        else ("**does not beat its baseline**")
    )
    baseline = metrics.get("baseline", {})
    names = [*HEADLINE[task], *(["brier"] if "brier" in metrics else [])]
    rows = [
        [
            f"**{name}**" if name == primary else name,
            metrics[name],
            baseline.get(name),
            "lower" if name in LOWER_IS_BETTER or name == "brier" else "higher",
        ]
        for name in names
        if name in metrics
    ]
    lines = [
        f"## Metrics (test split, {metrics['test_rows']} rows)",
        f"On {primary}, the primary metric, the model {verdict} (the class shares, or the"
        " training mean).",
        "",
        *table(["metric", "model", "baseline", "better"], rows, right=1),
    ]
    per_class = metrics.get("per_class", {})
    if per_class:
        head = ["class", "precision", "recall", "F1", "test rows"]
        body = [
            [f"`{name}`", s["precision"], s["recall"], s["f1"], s["support"]]
            for name, s in per_class.items()
        ]
        lines += ["", *table(head, body)]
    return lines


def _slice_table(card: CardInputs, groups: dict[str, Any], extra: list[str]) -> list[str]:
    primary = card.params.primary_metric
    second = PER_ROW[card.contract.task]
    names = [primary, *([second] if second != primary else []), *extra]
    rows = [
        [f"`{value}`", s["rows"], *(s.get(name) for name in names)] for value, s in groups.items()
    ]
    return table(["value", "test rows", *names], rows)


def slices_section(card: CardInputs) -> list[str]:
    lines = ["## Metrics per slice (test split)"]
    if card.slices is None:
        return [*lines, "_Not computed for this model (no slices file)._"]
    if not card.slices:
        return [*lines, "_No categorical features to slice by._"]
    sensitive = card.contract.sensitive_features()
    for feature, groups in card.slices.items():
        if feature not in sensitive:  # those are under Fairness
            lines += ["", f"By `{feature}`:", "", *_slice_table(card, groups, [])]
    if sensitive:
        lines += ["", f"By {', '.join(f'`{name}`' for name in sensitive)}: under Fairness."]
    return lines


def calibration_section(card: CardInputs) -> list[str]:
    if not card.contract.is_classification:
        return []
    metrics = card.metrics
    lines = ["## Calibration (test split)"]
    if "brier" not in metrics:
        return [*lines, "_Not computed for this model._"]
    baseline = metrics.get("baseline", {}).get("brier")
    contract = card.contract
    if contract.task == "binary":
        brier = "the mean squared error of the positive class's probability"
        curve = (
            f"When the model gives `{contract.positive}` a probability, how often is it"
            f" `{contract.positive}` (the positive class's probabilities):"
        )
    else:
        brier = "the mean over rows of the summed squared errors of the class probabilities"
        curve = (
            "When the model gives a class a probability, how often is it that class (every"
            " class's probabilities pooled):"
        )
    lines.append(
        f"Brier score {metrics['brier']:.4f}, {brier} (baseline {number(baseline)}; 0 is"
        f" perfect, lower is better). {curve}"
    )
    head = ["predicted probability", "mean predicted", "observed share", "predictions"]
    return [*lines, "", *table(head, quality.pooled_reliability(card.calibration or []))]


def _gap_text(groups: dict[str, Any], name: str) -> str | None:
    """The largest gap on `name` between groups of at least FEW_SLICE_ROWS test rows."""
    large = {value: s for value, s in groups.items() if s["rows"] >= FEW_SLICE_ROWS}
    found = quality.largest_gap(large, name)
    if found is None:
        return None
    (high, top), (low, bottom) = found
    if top == bottom:
        return f"{name}: no gap, every group scores {top:.4f}"
    return f"{name} {top - bottom:.4f} (`{high}` {top:.4f}, `{low}` {bottom:.4f})"


def fairness_section(card: CardInputs) -> list[str]:
    sensitive = card.contract.sensitive_features()
    if not sensitive:
        return []
    lines = [
        "## Fairness",
        "The data contract marks these columns sensitive: the model's quality"
        " per group, and the largest gap between groups.",
    ]
    extra = ["selection_rate"] if card.contract.task == "binary" else []
    for feature in sensitive:
        groups = (card.slices or {}).get(feature)
        if groups is None:
            lines += ["", f"`{feature}`: _no slice results (numeric, or not computed)._"]
            continue
        names = [card.params.primary_metric, *extra]
        gaps = [gap for gap in (_gap_text(groups, name) for name in names) if gap]
        lines += ["", f"By `{feature}`:", "", *_slice_table(card, groups, extra), ""]
        lines.append(
            f"Largest gap, between groups of at least {FEW_SLICE_ROWS} test rows (smaller ones"
            " are too noisy to compare): "
            + ("; ".join(gaps) if gaps else "fewer than two such groups scored.")
        )
    return lines
