"""The model card: what a reviewer, an auditor or a user reads about one model, as markdown.

The same text is the PR report's card (report.py folds it in) and the registered version's
description (registry.py); model_card_fit.py fits it into either's size limit. It is
rendered from what the pipeline wrote: the lineage tags, the metrics, the training split,
the slices and calibration of the evaluate stage, the behaviour checks, and what the data
contract declares (intended use, limitations, sensitive columns). Every section is prose or
a table: no raw dictionaries. A file a section needs that is missing (a run before these
existed) is said, not an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mlops_template import behaviour, storage, tracking
from mlops_template.compile import serving_sentence
from mlops_template.config import Params
from mlops_template.markdown import table
from mlops_template.metric_facts import HEADLINE
from mlops_template.model_card_quality import (
    FEW_SLICE_ROWS,
    calibration_section,
    fairness_section,
    metrics_section,
    slices_section,
)
from mlops_template.schema import Contract

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
