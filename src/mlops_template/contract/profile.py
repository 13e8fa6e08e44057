"""`mlops contract init`: profile a table and write its data contract (contract/file.py) as YAML.

The profile is a starting point the user reviews and commits, not a guess hidden in code:
- the task is inferred from the target unless given: two values is binary (the rarer one is
  the positive class unless `--positive` names it), a numeric target with many distinct
  values (or non-integer values) is regression, anything else multiclass;
- a numeric feature's range is what the table holds widened by a margin (`margin` times the
  observed span on each side, never below 0 for a column that is never negative), so new
  data a little outside the observed values is not rejected;
- a text or boolean column is categorical with the categories it holds (as text: `True`,
  `1`); left out and listed under `ignored`, with the reason printed, are identifiers (every
  value distinct: text, or nearly consecutive whole numbers), dates, text with too many
  distinct values (free text), constant and empty columns;
- features are nullable (the model imputes, the service accepts partial records) unless
  `strict_nulls` asks that a feature with no missing value be required.
The example record is the first row with every feature present.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mlops_template import PipelineError
from mlops_template.contract.declarations import declarations_example
from mlops_template.contract.file import contract_dict, parse_contract
from mlops_template.contract.spec import (
    ColumnSpec,
    Contract,
    Task,
    category_text,
    reserved_name,
)
from mlops_template.io import storage

MAX_CATEGORIES = 50  # a text column with more distinct values is not a categorical feature
MAX_CLASSES = 50  # a target with more classes is regression or a mistake
REGRESSION_MIN_VALUES = 20  # an integer target with more distinct values is regression
SMALL_TABLE = 100  # fewer labelled rows than this: a note that metrics will be noisy


class ProfileError(PipelineError):
    """The table cannot give a contract (no such target, one class, ...)."""


@dataclass(frozen=True)
class Profile:
    contract: Contract
    notes: list[str]  # what the user should review: ignored columns, inferred choices


def _outward(value: float, up: bool) -> float:
    """Round to 4 significant digits, away from the data (a bound never cuts a value off)."""
    if value == 0 or not math.isfinite(value):
        return float(value)
    scale = 10 ** (math.floor(math.log10(abs(value))) - 3)
    rounded = (math.ceil if up else math.floor)(value / scale) * scale
    return float(round(rounded, 10))


def _numeric_range(values: pd.Series, margin: float) -> tuple[float, float]:
    low, high = float(values.min()), float(values.max())
    pad = (high - low) * margin
    lower = low - pad
    if low >= 0:
        lower = max(lower, 0.0)
    return _outward(lower, up=False), _outward(high + pad, up=True)


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _categories(values: pd.Series) -> tuple[str, ...]:
    return tuple(sorted({category_text(value) for value in values.dropna()}))


def infer_task(target: pd.Series) -> Task:
    values = target.dropna()
    distinct = values.nunique()
    if distinct < 2:
        raise ProfileError(f"target '{target.name}' has {distinct} distinct value(s); need 2+")
    if distinct == 2:
        return "binary"
    if _is_numeric(values):
        whole = bool(np.all(np.mod(values.to_numpy(float), 1) == 0))
        if not whole or distinct > REGRESSION_MIN_VALUES:
            return "regression"
    if distinct > MAX_CLASSES:
        raise ProfileError(
            f"target '{target.name}' has {distinct} classes (more than {MAX_CLASSES});"
            " if it is a number to predict, pass --task regression"
        )
    return "multiclass"


def _describe(values: pd.Series) -> str:
    missing = float(values.isna().mean())
    gaps = f", {missing:.1%} missing" if missing else ""
    if _is_numeric(values):
        return f"Numeric; {values.min():g} to {values.max():g} in the profiled table{gaps}."
    return f"Categorical; {values.nunique()} values in the profiled table{gaps}."


MIN_ID_VALUES = 5  # a column with this many values, every one distinct, may be an identifier
DATE_SHARE = 0.9  # text that parses as dates this often is a date column
# Dates written with digits: 2024-01-31, 31/01/2024, 2024.01.31, with an optional time.
DATE_PATTERN = r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\S*)?"


def _identifier(present: pd.Series) -> str | None:
    """Why a column looks like an identifier (every value distinct: a row key, not a
    property the model can learn from), or None."""
    distinct = present.nunique()
    if distinct < MIN_ID_VALUES or distinct < len(present):
        return None
    if not _is_numeric(present):
        return f"every one of its {distinct} values is distinct (an identifier?)"
    values = present.to_numpy(float)
    whole = bool(np.all(np.mod(values, 1) == 0))
    dense = values.max() - values.min() + 1 <= 2 * distinct  # a counter, not a measurement
    if whole and dense:
        return f"{distinct} distinct whole numbers, nearly consecutive (an identifier?)"
    return None


def _dates(present: pd.Series) -> bool:
    if _is_numeric(present) or pd.api.types.is_bool_dtype(present):
        return False
    sample = present.astype(str).head(200)
    if not sample.str.fullmatch(DATE_PATTERN).mean() >= DATE_SHARE:
        return False  # month names, ordinals and codes are categories, not dates
    parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() >= DATE_SHARE)


def _feature(values: pd.Series, margin: float, strict_nulls: bool) -> ColumnSpec | str:
    """A feature's spec, or why the column is left out."""
    present = values.dropna()
    if reserved_name(str(values.name)):
        return "its name starts with `_` or `model_` (rename it in the table to use it)"
    if present.empty:
        return "no values"
    if present.nunique() < 2:
        return "a single value"
    if _dates(present):
        return "dates (derive features from them, e.g. a weekday or an age, in the table)"
    if reason := _identifier(present):
        return reason
    nullable = bool(values.isna().any()) or not strict_nulls
    if _is_numeric(values):
        low, high = _numeric_range(present, margin)
        return ColumnSpec(str(values.name), "numeric", _describe(values), nullable, low, high)
    if not (
        pd.api.types.is_object_dtype(values)
        or isinstance(values.dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(values)
        or pd.api.types.is_string_dtype(values)
    ):
        return f"type {values.dtype} (only numbers and text are supported)"
    categories = _categories(present)
    if len(categories) > MAX_CATEGORIES:
        return f"{len(categories)} distinct values (an identifier or free text?)"
    return ColumnSpec(
        str(values.name), "categorical", _describe(values), nullable, categories=categories
    )


def _target(values: pd.Series, task: Task, margin: float) -> ColumnSpec:
    description = f"The value to predict ({task})."
    if task == "regression":
        if not _is_numeric(values):
            raise ProfileError(f"target '{values.name}' is not numeric; regression needs numbers")
        low, high = _numeric_range(values.dropna(), margin)
        return ColumnSpec(str(values.name), "numeric", description, False, low, high)
    categories = _categories(values)
    if task == "binary" and len(categories) != 2:
        raise ProfileError(
            f"target '{values.name}' has {len(categories)} values; binary needs exactly 2"
        )
    if task == "multiclass" and len(categories) < 3:
        raise ProfileError(f"target '{values.name}' has 2 values: use --task binary")
    return ColumnSpec(str(values.name), "categorical", description, False, categories=categories)


def _example(frame: pd.DataFrame, features: tuple[ColumnSpec, ...]) -> dict[str, Any]:
    names = [spec.name for spec in features]
    complete = frame[names].notna().all(axis=1)
    row = frame.loc[complete].iloc[0] if complete.any() else frame[names].iloc[0]
    example: dict[str, Any] = {}
    for spec in features:
        value = row[spec.name]
        if pd.isna(value):
            continue
        numeric = spec.kind == "numeric"
        example[spec.name] = float(f"{value:.6g}") if numeric else category_text(value)
    return example


def profile(
    frame: pd.DataFrame,
    target: str,
    *,
    name: str,
    task: Task | None = None,
    positive: str | None = None,
    margin: float = 0.1,
    strict_nulls: bool = False,
    ignore: tuple[str, ...] = (),
) -> Profile:
    unknown = [column for column in (target, *ignore) if column not in frame.columns]
    if unknown:
        columns = ", ".join(map(str, frame.columns))
        raise ProfileError(f"no column {', '.join(map(repr, unknown))}; the table has: {columns}")
    if target in ignore:
        raise ProfileError(f"'{target}' is the target; it cannot be ignored")
    notes: list[str] = []
    labelled = frame[frame[target].notna()]
    unlabelled = len(frame) - len(labelled)
    if unlabelled:
        notes.append(
            f"{unlabelled} row(s) have no {target}: validation drops them (validate.unlabelled)"
        )
    chosen = task or infer_task(labelled[target])
    if task is None:
        notes.append(f"task inferred from '{target}': {chosen} (pass --task to choose)")
    target_spec = _target(labelled[target], chosen, margin)
    notes += _label_notes(labelled[target], chosen)
    positive = _positive(labelled[target], chosen, positive, target_spec, notes)
    features, ignored = _features(frame, target, ignore, margin, strict_nulls, notes)
    raw = contract_dict(
        Contract(
            name=name,
            description=f"Predict {target} ({chosen}) from {len(features)} features.",
            task=chosen,
            target=target_spec,
            features=features,
            example={},
            positive=positive,
            ignored=ignored,
        )
    )
    raw["example"] = _example(labelled, features)
    return Profile(parse_contract(raw, Path(name)), notes)


def _label_notes(labels: pd.Series, task: Task) -> list[str]:
    """What the labelled rows mean for the split: a class too rare to split, a small table."""
    notes: list[str] = []
    if task != "regression":
        counts = labels.map(category_text).value_counts()
        lonely = sorted(counts[counts < 2].index)
        if lonely:
            notes.append(
                f"class(es) {lonely} have a single row: the split needs at least 2 per class"
                " (add rows, or drop them from the table)"
            )
    if len(labels) < SMALL_TABLE:
        notes.append(
            f"only {len(labels)} labelled rows: the test split will be small and its metrics noisy"
        )
    return notes


def _positive(
    labels: pd.Series, task: Task, positive: str | None, target: ColumnSpec, notes: list[str]
) -> str | None:
    """A binary target's positive class: the one given (checked), else the rarer."""
    if task != "binary":
        if positive is not None:
            raise ProfileError("--positive applies to a binary target only")
        return None
    if positive is None:
        counts = labels.map(category_text).value_counts()
        positive = str(counts.sort_values(kind="stable").index[0])
        notes.append(f"positive class: '{positive}', the rarer one (pass --positive)")
    elif str(positive) not in target.categories:
        raise ProfileError(
            f"--positive {positive!r} is not a value of '{labels.name}': {list(target.categories)}"
        )
    return str(positive)


def _features(
    frame: pd.DataFrame,
    target: str,
    ignore: tuple[str, ...],
    margin: float,
    strict_nulls: bool,
    notes: list[str],
) -> tuple[tuple[ColumnSpec, ...], tuple[str, ...]]:
    """The feature columns' specs, and the columns left out (asked to, or unusable: noted)."""
    features: list[ColumnSpec] = []
    ignored: list[str] = []
    for column in frame.columns:
        if column == target:
            continue
        if column in ignore:
            ignored.append(str(column))
            continue
        spec = _feature(frame[column], margin, strict_nulls)
        if isinstance(spec, str):
            ignored.append(str(column))
            notes.append(f"column '{column}' left out: {spec}")
        else:
            features.append(spec)
    if not features:
        raise ProfileError("no usable feature column (see the notes above)")
    return tuple(features), tuple(ignored)


HEADER = """\
# The data contract, written by `mlops contract init` from {source} ({rows} rows).
# Review it and commit it: validation, training, the service's request model, drift and the
# model card all follow it. Ranges are the observed values widened by a margin; descriptions
# are generated (replace them with what the columns mean).
"""


def write(profile_: Profile, out: Path, source: Path, rows: int) -> None:
    text = HEADER.format(source=source, rows=rows) + yaml.safe_dump(
        contract_dict(profile_.contract), sort_keys=False, allow_unicode=True
    )
    storage.write_text(out, text + "\n" + declarations_example(profile_.contract))


def run(
    data: Path,
    target: str,
    out: Path,
    *,
    task: Task | None = None,
    positive: str | None = None,
    margin: float = 0.1,
    strict_nulls: bool = False,
    ignore: tuple[str, ...] = (),
) -> Profile:
    frame = storage.read_table(data)
    result = profile(
        frame,
        target,
        name=data.stem,
        task=task,
        positive=positive,
        margin=margin,
        strict_nulls=strict_nulls,
        ignore=ignore,
    )
    write(result, out, data, len(frame))
    return result
