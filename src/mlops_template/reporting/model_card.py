"""The model card: what a reviewer, an auditor or a user reads about one model, as markdown.

The same text is the PR report's card (report.py folds it in) and the registered version's
description (registry.py). It is rendered from what the pipeline wrote: the lineage (where
the model came from: commit, dvc.lock hashes, params), the metrics, the training split, the
slices and calibration of the evaluate stage, the behaviour checks, and what the data
contract declares (intended use, limitations, sensitive columns). Every section is prose or
a table: no raw dictionaries. A file a section needs that is missing (a run before these
existed) is said, not an error.

Read top to bottom: the inputs a card is rendered from, its sections (the quality sections
on the test split: metrics against the baseline, per slice, calibration, fairness), the
whole card, then fitting it into a size limit (`within_limit`: the registry's description
holds 5000 characters, the PR comment 65,536 with the report), and the lineage.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mlops_template import PipelineError
from mlops_template.config import Params
from mlops_template.contract import Contract
from mlops_template.contract.metrics import HEADLINE, LOWER_IS_BETTER, PER_ROW
from mlops_template.evaluation import behaviour
from mlops_template.evaluation.calibration import pooled_reliability
from mlops_template.evaluation.slices import largest_gap
from mlops_template.io import storage, tracking
from mlops_template.reporting.markdown import number, table

FEW_TRAINING_ROWS = 30  # a class with fewer training rows than this is named a limitation
RANGE_COVERED = 0.75  # a training range covering less of the contract's range is a limitation
LISTED_FEATURES = 10  # the intended use names this many features, Training data all


@dataclass(frozen=True)
class CardInputs:
    params: Params
    tags: dict[str, str]
    previous: dict[str, Any] | None  # the champion's metrics, when the registry looked it up
    train: pd.DataFrame | None
    slices: dict[str, Any] | None
    behaviour: dict[str, Any] | None
    calibration: list[dict[str, Any]] | None

    @property
    def contract(self) -> Contract:
        return self.params.contract

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(json.loads(self.tags["metrics"]))


def gather(params: Params, tags: dict[str, str], previous: dict[str, Any] | None) -> CardInputs:
    paths = params.paths
    calibration = storage.read_json_if_present(paths.calibration)
    return CardInputs(
        params=params,
        tags=tags,
        previous=previous,
        train=storage.read_parquet(paths.train) if paths.train.is_file() else None,
        slices=storage.read_json_if_present(paths.slices),
        behaviour=storage.read_json_if_present(paths.behaviour),
        calibration=None if calibration is None else calibration["calibration"],
    )


def _intended_use(card: CardInputs) -> list[str]:
    contract = card.contract
    task = contract.task + (f", positive class `{contract.positive}`" if contract.positive else "")
    names = [f"`{name}`" for name in contract.feature_names()]
    features = ", ".join(names[:LISTED_FEATURES])
    if len(names) > LISTED_FEATURES:  # the training data's table lists every one
        features += f" and {len(names) - LISTED_FEATURES} more ({len(names)} in all)"
    lines = [
        "## What it predicts and intended use",
        f"{contract.description} Target `{contract.target.name}` ({task}); features {features}.",
        "",
    ]
    declared = contract.intended_use or (
        "Not declared in the data contract (`intended_use:`): for data like the training"
        " data only.",
    )
    return [*lines, *(f"- {text}" for text in declared)]


def _bound(value: float | None, missing: str) -> str:
    return missing if value is None else f"{value:g}"


def _range_limits(card: CardInputs) -> list[str]:
    """One point naming the numeric features whose training range covers less than
    RANGE_COVERED of the range the contract accepts (an open end: none): the service accepts
    those inputs, the model extrapolates on them. init-schema widens every range a little by
    design, so a range only that much wider is not named."""
    if card.train is None:
        return []
    wider = []
    for spec in card.contract.features:
        if spec.kind != "numeric":
            continue
        values = card.train[spec.name].dropna().astype(float)
        if values.empty:
            continue
        low, high = float(values.min()), float(values.max())
        if spec.minimum is not None and spec.maximum is not None:
            accepted = spec.maximum - spec.minimum
            if accepted <= 0 or high - low >= RANGE_COVERED * accepted:
                continue
        bounds = f"{_bound(spec.minimum, 'no minimum')} to {_bound(spec.maximum, 'no maximum')}"
        wider.append(f"`{spec.name}` {low:g} to {high:g} (accepted: {bounds})")
    if not wider:
        return []
    return [
        f"Training covered less than {RANGE_COVERED:.0%} of the range the contract accepts, so"
        " predictions outside the training range extrapolate: " + "; ".join(wider) + "."
    ]


def _rows(count: int, what: str) -> str:
    return f"{count} {what} row{'' if count == 1 else 's'}"


def _small_groups(card: CardInputs) -> list[str]:
    out = []
    if card.train is not None and card.contract.is_classification:
        counts = card.train[card.contract.target.name].astype(str).value_counts()
        for name in card.contract.classes:
            if counts.get(name, 0) < FEW_TRAINING_ROWS:
                count = int(counts.get(name, 0))
                out.append(f"Class `{name}` has only {_rows(count, 'training')}.")
    for feature, groups in (card.slices or {}).items():
        for value, scores in groups.items():
            if scores["rows"] < FEW_SLICE_ROWS:
                out.append(
                    f"Slice `{feature} = {value}` has {_rows(scores['rows'], 'test')}: its"
                    " metrics are noisy."
                )
    return out


def _limitations(card: CardInputs) -> list[str]:
    declared = list(card.contract.limitations) or [
        "None declared in the data contract (`limitations:`)."
    ]
    failures = [
        f"Fails the behaviour check {check['kind']} {behaviour.describe(check)}"
        f" ({behaviour.result_text(check)[0]})."
        for check in behaviour.failed(card.behaviour)
    ]
    metrics = card.metrics
    rows = metrics["test_rows"]
    computed = [
        *failures,
        *_range_limits(card),
        *_small_groups(card),
        f"Tested on {rows} rows of one data set; not validated on other populations or"
        " time periods.",
    ]
    return [
        "## Known limitations",
        "Declared:",
        *(f"- {text}" for text in declared),
        "",
        "Found in this model's data and results:",
        *(f"- {text}" for text in computed),
    ]


def _feature_rows(train: pd.DataFrame, contract: Contract) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for spec in contract.features:
        values = train[spec.name]
        missing = int(values.isna().sum())
        if spec.kind == "numeric":
            present = values.dropna().astype(float)
            seen = f"{present.min():g} to {present.max():g}, median {present.median():g}"
        else:
            shares = values.astype("string").value_counts(normalize=True)
            seen = ", ".join(f"{name} {share:.0%}" for name, share in shares.items())
        rows.append([f"`{spec.name}`", spec.kind, seen, missing])
    return rows


def _target_rows(train: pd.DataFrame, contract: Contract) -> list[str]:
    target = train[contract.target.name]
    if contract.is_classification:
        counts = target.astype(str).value_counts()
        rows = [
            [f"`{name}`", int(counts.get(name, 0)), counts.get(name, 0) / len(target)]
            for name in contract.classes
        ]
        return table(["class", "rows", "share"], rows)
    numbers = target.astype(float)
    stats = ["mean", "std", "min", "median", "max"]
    values = [numbers.mean(), numbers.std(), numbers.min(), numbers.median(), numbers.max()]
    return table(stats, [[float(v) for v in values]], right=0)


def _training_data(card: CardInputs) -> list[str]:
    validation = json.loads(card.tags["validation"])
    params = card.params
    missing = [f"`{name}` {count}" for name, count in validation["missing"].items() if count]
    lines = [
        "## Training data",
        f"Source `{params.data.source}`: {validation['rows']} rows after validation"
        f" (missing values: {', '.join(missing) or 'none'}).",
    ]
    if card.train is None:
        return [*lines, "", f"_The training split ({params.paths.train}) was not found._"]
    lines += [f"The training split holds {len(card.train)} rows.", ""]
    lines += _target_rows(card.train, card.contract)
    head = ["feature", "kind", "in training: range or category shares", "missing"]
    return [*lines, "", *table(head, _feature_rows(card.train, card.contract), right=3)]


def _hyperparameters(params: Params) -> str:
    values = params.model.model_dump(exclude={"kind"})
    return ", ".join(f"{name} {'none' if v is None else v}" for name, v in values.items())


def _training(card: CardInputs) -> list[str]:
    params, tags = card.params, card.tags
    return [
        "## Training",
        f"`{params.model.kind}` ({_hyperparameters(params)}), seed {params.seed}.",
        *_serving(params, tags),
    ]


def _serving(params: Params, tags: dict[str, str]) -> list[str]:
    """How the image serves it (as the PR report says it)."""
    if tracking.ONNX_SHA_TAG not in tags:
        return [serving_sentence({"compiled": False})]
    if not params.paths.parity.is_file():
        return ["Served compiled to ONNX."]
    return [serving_sentence(storage.read_json(params.paths.parity))]


def _comparison(card: CardInputs) -> list[str]:
    lines = ["## Compared with the previous champion"]
    if card.previous is None:
        return [*lines, "None registered yet, or not looked up: the promotion gate compares them."]
    names = [name for name in HEADLINE[card.contract.task] if name in card.metrics]
    rows = [[name, card.metrics[name], card.previous.get(name)] for name in names]
    return [*lines, "", *table(["metric", "this model", "champion"], rows)]


def _lineage(card: CardInputs) -> list[str]:
    tags = card.tags
    facts = [
        ("git commit", tags.get("git_commit")),
        ("model sha256", tags.get(tracking.MODEL_SHA_TAG)),
        ("ONNX sha256", tags.get(tracking.ONNX_SHA_TAG)),
        ("DVC model md5", tags.get("dvc_model_md5")),
        ("DVC data md5", tags.get("dvc_data_md5")),
        ("params sha256", tags.get("params_sha256")),
    ]
    rows = [[what, f"`{value}`"] for what, value in facts if value]
    return ["## Lineage", "", *table(["what", "value"], rows, right=2)]


def render(card: CardInputs) -> str:
    sections = [
        [f"# Model card: {card.params.registry.model_name}"],
        _intended_use(card),
        _limitations(card),
        _training_data(card),
        _training(card),
        metrics_section(card),
        slices_section(card),
        calibration_section(card),
        fairness_section(card),
        ["## Behaviour checks", "", *behaviour.table(card.behaviour)],
        _comparison(card),
        _lineage(card),
    ]
    return "\n\n".join("\n".join(section) for section in sections if section) + "\n"


def model_card(params: Params, tags: dict[str, str], previous: dict[str, Any] | None) -> str:
    """Markdown: the PR report's card and the registered version's description."""
    return render(gather(params, tags, previous))


def serving_sentence(parity: dict[str, Any]) -> str:
    """How the service runs the model, from the train stage's parity record: one sentence,
    the same in the pull-request report and the registry's model card."""
    if not parity.get("compiled"):
        return "Served by scikit-learn (`serve.runtime: sklearn`): not compiled."
    return (
        f"Served compiled to ONNX: within {parity['max_abs_diff']:.1e} of scikit-learn on"
        f" {parity['rows']} test rows (tolerance {parity['tolerance']:g}), same decisions."
    )


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
    return [*lines, "", *table(head, pooled_reliability(card.calibration or []))]


def _gap_text(groups: dict[str, Any], name: str) -> str | None:
    """The largest gap on `name` between groups of at least FEW_SLICE_ROWS test rows."""
    large = {value: s for value, s in groups.items() if s["rows"] >= FEW_SLICE_ROWS}
    found = largest_gap(large, name)
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


# Fit the model card into a size limit: the registry's description (MLflow holds 5000
# characters) and the PR comment (GitHub holds 65,536, the report included).
#
# Long tables are cut first (the training data's, the slices' and the fairness tables: to their
# first TABLE_ROWS rows), each saying how many rows it lost. Then whole sections leave, least
# needed first (LEAST_NEEDED): the short, essential ones (Fairness, Metrics and Lineage, which
# ties the version to git and DVC) go last. A last line names what was cut or
# left out and says where the full card is.
# MLflow stores a model version's description in VARCHAR(5000) on PostgreSQL (SQLite has no
# limit): a longer card fails `register`.
DESCRIPTION_LIMIT = 5000
TABLE_ROWS = 10  # a table of more rows is long
CUT_TABLES_IN = ("Training data", "Metrics per slice", "Fairness")
LEAST_NEEDED = (
    "Calibration",
    "Metrics per slice",
    "Training",
    "Behaviour checks",
    "Training data",
    "Compared with the previous champion",
    "Known limitations",
    "What it predicts and intended use",
    "Fairness",
    "Metrics",
    "Lineage",
)
_ROWS_OF = {"feature": "features", "class": "classes", "value": "values"}


def split(card: str) -> tuple[str, list[str]]:
    """The card's title and its `## ` sections, each without its `## `."""
    head, *sections = card.rstrip("\n").split("\n\n## ")
    return head, sections


def join(head: str, sections: list[str]) -> str:
    return "\n\n## ".join([head, *sections]) + "\n"


def name(section: str) -> str:
    """A section's name: its heading without the parenthesis (`Metrics (test split, 86
    rows)` is `Metrics`)."""
    return section.split("\n", 1)[0].split(" (", 1)[0]


def without(card: str, names: tuple[str, ...]) -> str:
    """The card without the sections named."""
    head, sections = split(card)
    return join(head, [s for s in sections if name(s) not in names])


def _cut_table(table: list[str], rows: int) -> list[str]:
    if len(table) < 3:  # not a table with a body (a line of declared text starting with |)
        return table
    head, align, *body = table
    if len(body) <= rows:
        return table
    column = head.strip("| ").split(" |", 1)[0].strip()
    more = f"{len(body) - rows} more {_ROWS_OF.get(column, 'rows')}"
    return [head, align, *body[:rows], "", f"_… and {more}: see the full card._"]


def cut_tables(section: str, rows: int) -> str:
    """The section with each markdown table cut to its first `rows` rows."""
    out: list[str] = []
    table: list[str] = []
    for line in [*section.split("\n"), ""]:  # the empty line ends a last table
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            out += _cut_table(table, rows)
            table = []
        out.append(line)
    return "\n".join(out[:-1])


def _note(cut: list[str], left_out: list[str], why: str, full_card: str) -> str:
    parts = [f"long tables in {', '.join(cut)} cut to {TABLE_ROWS} rows"] if cut else []
    parts += [f"{', '.join(left_out)} left out"] if left_out else []
    return f"_Shortened to fit {why}: {'; '.join(parts)}. {full_card}_"


def _tables_cut(sections: list[str], rows: int) -> tuple[list[str], list[str]]:
    """The sections with long tables cut to `rows` rows, and the names of those cut."""
    shortened = [cut_tables(s, rows) if name(s) in CUT_TABLES_IN else s for s in sections]
    return shortened, [name(s) for s, new in zip(sections, shortened, strict=True) if s != new]


def _shortened(
    head: str, sections: list[str], cut: list[str], left_out: list[int], note: tuple[str, str]
) -> str:
    kept = [s for i, s in enumerate(sections) if i not in left_out]
    gone = [name(sections[i]) for i in sorted(left_out)]
    still_cut = [n for n in cut if n not in gone]
    return join(head, kept) + "\n" + _note(still_cut, gone, *note) + "\n"


def within_limit(card: str, limit: int, why: str, full_card: str) -> str:
    """The card in at most `limit` characters: long tables cut, then whole sections left out
    (LEAST_NEEDED first, then any other from the end), named in a last line saying `why` it
    is shortened and where the `full_card` is. Cut at `limit` only if even that is too long."""
    if len(card) <= limit:
        return card
    head, whole = split(card)
    sections, cut = _tables_cut(whole, TABLE_ROWS)
    order = [i for wanted in LEAST_NEEDED for i, s in enumerate(sections) if name(s) == wanted]
    order += [i for i in reversed(range(len(sections))) if i not in order]
    text = card
    for count in range(len(sections) + 1):
        text = _shortened(head, sections, cut, order[:count], (why, full_card))
        if len(text) <= limit:
            return text
    return text[:limit]


def description(card: str, artifact: str, limit: int = DESCRIPTION_LIMIT) -> str:
    """The card as a registry version's description: at most `limit` characters, pointing to
    the full card, the register run's artifact `artifact`, when shortened."""
    why = f"a registry description ({limit} characters)"
    full = f"The full card is `{artifact}` in the artifacts of this version's run."
    return within_limit(card, limit, why, full)


LOCK = Path("dvc.lock")


def _lock_md5(lock: dict[str, Any], stage: str, path: Path) -> str:
    for out in lock.get("stages", {}).get(stage, {}).get("outs", []):
        if Path(out["path"]) == path:
            return str(out["md5"])
    raise PipelineError(f"{LOCK}: no output {path} in stage '{stage}'; run `make run` first")


def lineage(params: Params) -> dict[str, str]:
    """Where the model came from: commit, dvc.lock hashes, params, metrics, validation."""
    for needed in (LOCK, params.paths.model, params.paths.metrics, params.paths.validation_report):
        if not needed.is_file():
            raise PipelineError(f"{needed} not found: run the pipeline first (`make run`)")
    lock = yaml.safe_load(LOCK.read_text(encoding="utf-8"))
    model_sha = storage.read_recorded_sha256(params.paths.model)
    if storage.sha256_file(params.paths.model) != model_sha:
        raise PipelineError(f"{params.paths.model}: sha256 does not match the recorded one")
    pipeline_params = params.model_dump(
        mode="json", include={"seed", "data", "validation", "split", "model"}
    )
    served = {}
    if params.serve.runtime == "onnx":
        served[tracking.ONNX_SHA_TAG] = storage.read_recorded_sha256(params.paths.onnx_model)
    return {
        "git_commit": tracking.git_commit(),
        tracking.MODEL_SHA_TAG: model_sha,
        **served,
        "dvc_model_md5": _lock_md5(lock, "train", params.paths.model),
        "dvc_data_md5": _lock_md5(lock, "ingest", params.paths.raw),
        "params_sha256": hashlib.sha256(
            json.dumps(pipeline_params, sort_keys=True).encode()
        ).hexdigest(),
        "metrics": json.dumps(storage.read_json(params.paths.metrics), sort_keys=True),
        "validation": json.dumps(storage.read_json(params.paths.validation_report), sort_keys=True),
    }


def write_model_card(params: Params, out: Path) -> Path:
    """The card for the model the pipeline built, without the registry (for the image and
    the PR report); `register` stores the same card, with the comparison, in the registry."""
    storage.write_text(out, model_card(params, lineage(params), None))
    return out
