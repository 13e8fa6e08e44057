"""`mlops drift`: has production traffic moved away from what the model was trained on?

Compares the newest logged predictions (the service's JSONL log, rotated files included) with
the training split, column by column as the data contract (params.yaml data.contract) declares
them:

- numeric features: two-sample Kolmogorov-Smirnov test and PSI over quantile bins;
- categorical features and the predicted classes: chi-square test and PSI over the shares;
- regression predictions: KS and PSI against the model's own predictions on the test split
  (`paths.test`; the model verified by its recorded sha256). Not against the training target:
  a regressor's predictions are narrower than the target it learned, and on undrifted
  diabetes traffic that comparison read PSI 1.0 and p < 0.001, a false alarm every time;
- every feature: the rise in its missing rate;
- with labelled feedback (`{"id": <prediction_id>, "label": ...}` lines; for regression the
  label is the true number): for classification the champion's accuracy against the test
  split's (`accuracy` in metrics.json), with a one-sided binomial test; for regression its mean
  absolute error against the test split's (`mae`), with a one-sided t-test on the absolute
  errors: drift when the MAE rose by more than `max_error_increase` as a fraction of the test
  MAE (0.05: 5% worse) and significantly;
- with a challenger scored in shadow: agreement with the champion (for regression, the mean
  absolute difference of the two) and, with labels, the accuracy (MAE) of both on the same
  requests (reported, never counted as drift).

Logged records that do not fit the current contract (logged under an earlier one: a feature
added or dropped, a column of another kind, other classes) are skipped and counted in the
reports; only when none fits is that an error. A line that is not a JSON object is an error.

A distribution test flags drift only when its p-value is below `alpha` divided by the number
of tests (Bonferroni) AND its PSI reaches `psi_threshold`. Writes drift.json, drift.md (for
pull requests) and drift.html (with plots) to `paths.drift`; the exit code is 3 on drift.

scipy rather than Evidently: Evidently 0.7.23 adds about 460 MB to the environment and does
not import with the pandas 3 locked here (README, "Monitoring and retraining"); these tests
are a few lines each on top of scipy, which scikit-learn already brings.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeGuard, cast

import numpy as np
import pandas as pd

from mlops_template import storage
from mlops_template.compile import model_input
from mlops_template.config import MonitoringSettings, Params
from mlops_template.errors import PipelineError
from mlops_template.schema import ColumnSpec, Contract, as_category
from mlops_template.serve.logsink import rotated_index
from mlops_template.stats import psi

log = logging.getLogger(__name__)

DRIFT_EXIT_CODE = 3


@dataclass(frozen=True)
class Check:
    """One test of one column. `drifted` is the verdict; the rest says why."""

    column: str
    kind: str  # numeric | categorical | missing | prediction | performance
    test: str
    detail: str
    statistic: float | None = None
    p_value: float | None = None
    psi: float | None = None
    reference: float | None = None
    current: float | None = None
    drifted: bool = False


@dataclass
class Traffic:
    """Logged predictions: the champion's (newest `window_rows`) and the shadow challenger's."""

    champion: list[dict[str, Any]]
    challenger: dict[str, dict[str, Any]]  # by prediction id
    files: list[str]
    skipped: dict[str, int] = field(default_factory=dict)  # records that do not fit, by reason


@dataclass
class DriftReport:
    verdict: str  # drift | no drift | not enough traffic
    window_rows: int
    reference_rows: int
    checks: list[Check]
    shadow: dict[str, Any] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    # Logged records skipped because they do not fit the contract (read_traffic), by reason.
    skipped_records: int = 0
    skipped_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def drifted(self) -> bool:
        return self.verdict == "drift"


# --- reading the log ------------------------------------------------------------------------


def log_files(path: Path) -> list[Path]:
    """The log and its rotated predecessors, oldest first (`.5` ... `.1`, then the live file)."""
    numbered = [
        (index, file)
        for file in path.parent.glob(f"{path.name}.*")
        if (index := rotated_index(file.name, path.name)) is not None
    ]
    rotated = [file for _, file in sorted(numbered, reverse=True)]
    return [*rotated, path] if path.is_file() else rotated


Label = str | float  # a class, or a regression target's value


def _records(path: Path, last_file: bool) -> Iterator[tuple[int, dict[str, Any]]]:
    """The file's records with their line numbers. A line that is not a JSON object is an
    error (the log is corrupt), except the last file's unfinished last line."""
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if last_file and number == len(lines) and not text.endswith("\n"):
                break  # the line the service is writing right now
            raise PipelineError(
                f"{path}:{number}: not a JSON prediction record ({error})"
            ) from None
        if not isinstance(record, dict):
            raise PipelineError(f"{path}:{number}: a prediction record must be a JSON object")
        yield number, record


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _record_problem(record: dict[str, Any], contract: Contract) -> str | None:
    """Why a logged record does not fit the current contract (None if it fits): it was logged
    under an earlier one (a feature added, dropped or of another kind, another class set).
    The reason names columns, not values, so that records are counted by reason."""
    features = record.get("features")
    if not isinstance(features, dict):
        return "no `features` object"
    missing = [name for name in contract.feature_names() if name not in features]
    if missing:
        return f"features lack {', '.join(missing)}"
    extra = sorted(map(str, set(features) - set(contract.feature_names())))
    if extra:
        return f"features the contract does not name: {', '.join(extra)}"
    for spec in contract.features:
        value = features[spec.name]
        if value is None:
            continue
        if spec.kind == "numeric" and not _is_number(value):
            return f"{spec.name} is not a number (the contract's kind is numeric)"
        if spec.kind == "categorical" and as_category(value, spec.categories) is None:
            return f"{spec.name} is not one of the contract's categories"
    prediction = record.get("prediction")
    if contract.is_classification and as_category(prediction, contract.classes) is None:
        return "the prediction is not one of the contract's classes"
    if not contract.is_classification and not _is_number(prediction):
        return "the prediction is not a number (the task is regression)"
    return None


def read_traffic(path: Path, window_rows: int, contract: Contract) -> Traffic:
    """The newest `window_rows` champion records that fit the contract, and the challenger's.
    Records that do not fit (logged under an earlier contract; rotated logs keep them for
    long) are skipped and counted by reason; if none fits, that is an error saying why."""
    files = log_files(path)
    if not files:
        raise PipelineError(
            f"{path}: no prediction log found (serve.prediction_log); fetch production's"
            " first (`make fetch-monitoring`, then `mlops drift --fetched`)"
        )
    champion: deque[dict[str, Any]] = deque(maxlen=window_rows)
    challenger: dict[str, dict[str, Any]] = {}
    skipped: dict[str, int] = {}
    fitting = 0
    first_misfit = ""
    for index, file in enumerate(files):
        for number, record in _records(file, index == len(files) - 1):
            problem = _record_problem(record, contract)
            if problem:
                skipped[problem] = skipped.get(problem, 0) + 1
                first_misfit = first_misfit or f"{file}:{number}"
                continue
            fitting += 1
            if record.get("role") == "challenger":
                challenger[str(record.get("id"))] = record
            else:
                champion.append(record)
    if skipped and not fitting:
        raise PipelineError(
            f"{path}: none of the {sum(skipped.values())} logged records fits the data contract"
            f" ({contract.name}; first at {first_misfit}): {_reasons(skipped)}. They were logged"
            " under another contract; drift needs traffic served under this one"
        )
    return Traffic(list(champion), challenger, [str(file) for file in files], skipped)


def _reasons(skipped: dict[str, int]) -> str:
    ranked = sorted(skipped.items(), key=lambda item: -item[1])
    return "; ".join(f"{reason} ({count})" for reason, count in ranked)


def _label(value: object, contract: Contract) -> Label | None:
    """A feedback label as the task needs it (a class name, or a finite number); None if it
    is not one. CSV labels arrive as text; a JSON class may be a boolean or a number."""
    if contract.is_classification:
        return as_category(value, contract.classes)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    return float(value) if _is_number(value) else None


def read_feedback(path: Path, contract: Contract) -> dict[str, Label]:
    """Labels that arrived later, by prediction id. JSONL (`{"id", "label"}`) or CSV."""
    if not path.is_file():
        return {}
    if path.suffix == ".csv":
        frame = pd.read_csv(path, dtype=str)
        rows: Iterable[dict[str, Any]] = cast(list[dict[str, Any]], frame.to_dict("records"))
    else:
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise PipelineError(f"{path}:{number}: not JSON ({error})") from None
    wanted = (
        f"one of {', '.join(contract.classes)}"
        if contract.is_classification
        else f"a number ({contract.target.name})"
    )
    labels: dict[str, Label] = {}
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or "id" not in row or "label" not in row:
            raise PipelineError(f"{path}: row {number} needs `id` and `label`")
        label = _label(row["label"], contract)
        if label is None:
            raise PipelineError(f"{path}: row {number}: label {row['label']!r} is not {wanted}")
        labels[str(row["id"])] = label
    return labels


# --- the tests ------------------------------------------------------------------------------


def _shares(values: pd.Series, categories: Sequence[str]) -> list[float]:
    counts = values.value_counts()
    total = max(int(counts.sum()), 1)
    return [float(counts.get(name, 0)) / total for name in categories]


def _numeric(spec: ColumnSpec, reference: pd.Series, current: pd.Series, bins: int) -> Check:
    from scipy import stats

    ref, cur = reference.dropna().to_numpy(float), current.dropna().to_numpy(float)
    if len(ref) == 0 or len(cur) == 0:
        return Check(spec.name, "numeric", "KS + PSI", "no values to compare")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_shares = np.bincount(np.searchsorted(edges, ref, "right"), minlength=len(edges) + 1)
    cur_shares = np.bincount(np.searchsorted(edges, cur, "right"), minlength=len(edges) + 1)
    index = psi(list(ref_shares / len(ref)), list(cur_shares / len(cur)))
    result = stats.ks_2samp(ref, cur)
    before, now = float(np.median(ref)), float(np.median(cur))
    return Check(
        spec.name,
        "numeric",
        "KS + PSI",
        f"median {before:.4g} -> {now:.4g}",
        statistic=float(result.statistic),
        p_value=float(result.pvalue),
        psi=index,
        reference=before,
        current=now,
    )


def _categorical(
    name: str, kind: str, categories: Sequence[str], reference: list[float], current: pd.Series
) -> Check:
    from scipy import stats

    counted = current.value_counts()
    counts = [float(counted.get(c, 0)) for c in categories]
    total = sum(counts)
    if total == 0:
        return Check(name, kind, "chi-square + PSI", "no values to compare")
    keep = [i for i, share in enumerate(reference) if share > 0]
    expected = np.array([reference[i] for i in keep]) / sum(reference[i] for i in keep)
    observed = np.array([counts[i] for i in keep])
    unseen = total - observed.sum()  # values in categories the reference never had
    result = stats.chisquare(observed, expected * observed.sum()) if observed.sum() else None
    p_value = 0.0 if unseen > 0 or result is None else float(result.pvalue)
    shares = [count / total for count in counts]
    largest = max(range(len(categories)), key=lambda i: abs(shares[i] - reference[i]))
    return Check(
        name,
        kind,
        "chi-square + PSI",
        f"share of {categories[largest]} {reference[largest]:.1%} -> {shares[largest]:.1%}",
        statistic=float(result.statistic) if result is not None else None,
        p_value=p_value,
        psi=psi(reference, shares),
        reference=reference[largest],
        current=shares[largest],
    )


def _missing(spec: ColumnSpec, reference: pd.Series, current: pd.Series, limit: float) -> Check:
    before, now = float(reference.isna().mean()), float(current.isna().mean())
    return Check(
        spec.name,
        "missing",
        "missing-rate rise",
        f"missing {before:.1%} -> {now:.1%} (limit +{limit:.0%})",
        statistic=now - before,
        reference=before,
        current=now,
        drifted=now - before > limit,
    )


def _labelled(champion: list[dict[str, Any]], labels: dict[str, Label]) -> list[tuple[Any, Label]]:
    """(prediction, true label) of the logged predictions whose label arrived as feedback."""
    return [
        (r["prediction"], labels[str(r.get("id"))]) for r in champion if str(r.get("id")) in labels
    ]


def _performance(
    champion: list[dict[str, Any]],
    labels: dict[str, Label],
    baseline: float,
    settings: MonitoringSettings,
    tests: int,
) -> Check | None:
    """Classification: accuracy on the labelled requests against the test split's, with a
    one-sided binomial test."""
    from scipy import stats

    pairs = _labelled(champion, labels)
    if len(pairs) < settings.min_labelled_rows:
        return None
    correct = sum(predicted == actual for predicted, actual in pairs)
    accuracy = correct / len(pairs)
    p_value = float(stats.binomtest(correct, len(pairs), baseline, alternative="less").pvalue)
    drop = baseline - accuracy
    return Check(
        "accuracy",
        "performance",
        "binomial (one-sided)",
        f"accuracy {baseline:.1%} (test split) -> {accuracy:.1%} on {len(pairs)} labelled",
        statistic=drop,
        p_value=p_value,
        reference=baseline,
        current=accuracy,
        drifted=drop > settings.max_accuracy_drop and p_value < settings.alpha / tests,
    )


def _error_rise(
    champion: list[dict[str, Any]],
    labels: dict[str, Label],
    baseline: float,
    settings: MonitoringSettings,
    tests: int,
) -> Check | None:
    """Regression: the mean absolute error on the labelled requests against the test split's,
    with a one-sided t-test of the absolute errors. Drift when it rose by more than
    `max_error_increase` of the test MAE (a relative rise: errors have the target's unit) and
    the rise is significant. The RMSE is reported beside it."""
    from scipy import stats

    errors = np.array(
        [float(predicted) - float(actual) for predicted, actual in _labelled(champion, labels)]
    )
    if len(errors) < settings.min_labelled_rows:
        return None
    mae = float(np.abs(errors).mean())
    rmse = float(np.sqrt((errors**2).mean()))
    result = stats.ttest_1samp(np.abs(errors), baseline, alternative="greater")
    p_value = float(result.pvalue) if math.isfinite(result.pvalue) else 1.0
    rise = (mae - baseline) / max(baseline, 1e-12)  # a perfect test split: any error is one
    return Check(
        "mae",
        "performance",
        "t-test of |error| (one-sided)",
        f"MAE {baseline:.4g} (test split) -> {mae:.4g} (RMSE {rmse:.4g}) on {len(errors)} labelled",
        statistic=rise,
        p_value=p_value,
        reference=baseline,
        current=mae,
        drifted=rise > settings.max_error_increase and p_value < settings.alpha / tests,
    )


def _agreement(left: Sequence[Label], right: Sequence[Label]) -> float:
    return sum(a == b for a, b in zip(left, right, strict=True)) / len(left)


def _mean_abs(left: Sequence[Label], right: Sequence[Label]) -> float:
    return float(np.mean(np.abs(np.asarray(left, float) - np.asarray(right, float))))


def _class_shares(predictions: Sequence[Label], classes: Sequence[str]) -> dict[str, float]:
    shares = _shares(pd.Series(predictions, dtype=object), classes)
    return dict(zip(classes, shares, strict=True))


def _shadow(
    traffic: Traffic, labels: dict[str, Label], contract: Contract
) -> dict[str, Any] | None:
    """The challenger beside the champion on the same requests: class agreement and shares,
    or for regression the mean absolute difference and mean predictions; with labels, the
    accuracy (MAE) of both."""
    pairs = [
        (record, traffic.challenger[str(record.get("id"))])
        for record in traffic.champion
        if str(record.get("id")) in traffic.challenger
    ]
    if not pairs:
        return None
    champion = [a["prediction"] for a, _ in pairs]
    challenger = [b["prediction"] for _, b in pairs]
    summary: dict[str, Any] = {
        "compared": len(pairs),
        "champion_version": pairs[-1][0].get("model_version"),
        "challenger_version": pairs[-1][1].get("model_version"),
    }
    if contract.is_classification:
        summary["agreement"] = _agreement(champion, challenger)
        summary["champion_shares"] = _class_shares(champion, contract.classes)
        summary["challenger_shares"] = _class_shares(challenger, contract.classes)
        score, name = _agreement, "accuracy"
    else:
        summary["mean_abs_difference"] = _mean_abs(champion, challenger)
        summary["champion_mean"] = float(np.mean(champion))
        summary["challenger_mean"] = float(np.mean(challenger))
        score, name = _mean_abs, "mae"
    labelled = [(a, b, labels[str(a.get("id"))]) for a, b in pairs if str(a.get("id")) in labels]
    if labelled:
        truth = [y for _, _, y in labelled]
        summary["labelled"] = len(labelled)
        summary[f"champion_{name}"] = score([a["prediction"] for a, _, _ in labelled], truth)
        summary[f"challenger_{name}"] = score([b["prediction"] for _, b, _ in labelled], truth)
    return summary


def _window(traffic: Traffic, contract: Contract) -> pd.DataFrame:
    """The champion's logged features, one column per contract feature."""
    frame = pd.DataFrame([record["features"] for record in traffic.champion])
    return frame.reindex(columns=contract.feature_names())


def _predictions(traffic: Traffic, contract: Contract) -> pd.Series:
    values = [record["prediction"] for record in traffic.champion]
    return pd.Series(values, dtype=object if contract.is_classification else float)


def _target(reference: pd.DataFrame, contract: Contract) -> pd.Series:
    """The training target as the predictions are logged: class names, or numbers."""
    values = reference[contract.target.name].dropna()
    return values.astype(str) if contract.is_classification else values.astype(float)


def compare(
    reference: pd.DataFrame,
    traffic: Traffic,
    labels: dict[str, Label],
    baseline: float | None,
    settings: MonitoringSettings,
    contract: Contract,
    reference_predictions: pd.Series | None = None,
) -> DriftReport:
    """All the checks, and the verdict. `baseline` is the test split's accuracy
    (classification) or MAE (regression), needed to judge labelled feedback.
    `reference_predictions` (regression): what the logged predictions are compared with, the
    model's predictions on held-out rows; without them, the training target."""
    current = _window(traffic, contract)
    predictions = _predictions(traffic, contract)
    with_labels = baseline is not None and any(str(r.get("id")) in labels for r in traffic.champion)
    tests = len(contract.features) + 1 + int(with_labels)  # distribution tests + performance
    report = DriftReport(
        "no drift",
        len(current),
        len(reference),
        [],
        settings=settings.model_dump(mode="json"),
        skipped_records=sum(traffic.skipped.values()),
        skipped_reasons=dict(traffic.skipped),
    )
    if len(current) < settings.min_rows:
        report.verdict = "not enough traffic"
        return report
    checks: list[Check] = []
    for spec in contract.features:
        if spec.kind == "numeric":
            check = _numeric(spec, reference[spec.name], current[spec.name], settings.psi_bins)
        else:
            expected = _shares(reference[spec.name].dropna(), spec.categories)
            check = _categorical(
                spec.name,
                "categorical",
                spec.categories,
                expected,
                current[spec.name].dropna(),
            )
        checks.append(_judge(check, settings, tests))
        checks.append(
            _missing(
                spec, reference[spec.name], current[spec.name], settings.max_missing_rate_increase
            )
        )
    target = _target(reference, contract)
    if contract.is_classification:
        expected = _shares(target, contract.classes)
        prediction = _categorical(
            "prediction", "prediction", contract.classes, expected, predictions
        )
    else:
        expected_values = target if reference_predictions is None else reference_predictions
        numeric = _numeric(contract.target, expected_values, predictions, settings.psi_bins)
        prediction = Check(**{**asdict(numeric), "column": "prediction", "kind": "prediction"})
    checks.append(_judge(prediction, settings, tests))
    if with_labels and baseline is not None:
        judge = _performance if contract.is_classification else _error_rise
        performance = judge(traffic.champion, labels, baseline, settings, tests)
        if performance is not None:
            checks.append(performance)
    report.checks = checks
    report.shadow = _shadow(traffic, labels, contract)
    report.verdict = "drift" if any(check.drifted for check in checks) else "no drift"
    return report


def _judge(check: Check, settings: MonitoringSettings, tests: int) -> Check:
    significant = check.p_value is not None and check.p_value < settings.alpha / tests
    material = check.psi is not None and check.psi >= settings.psi_threshold
    return Check(**{**asdict(check), "drifted": significant and material})


# --- the outputs ----------------------------------------------------------------------------


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
        f" data contract (logged under an earlier one): {_reasons(report.skipped_reasons)}."
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


def _figure_png(
    reference: pd.DataFrame, traffic: Traffic, report: DriftReport, contract: Contract
) -> str:
    import matplotlib.pyplot as plt

    from mlops_template import plots  # noqa: F401 (sets matplotlib's Agg backend)

    current = _window(traffic, contract)
    verdicts = {(c.column, c.kind): c.drifted for c in report.checks}
    target = contract.target
    panels = [*contract.features, target]
    columns = 3
    rows = math.ceil(len(panels) / columns)
    figure, grid = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), dpi=90)
    for axes, spec in zip(grid.flat, panels, strict=False):
        if spec is target:
            ref_values, cur_values = _target(reference, contract), _predictions(traffic, contract)
            title = "predicted class" if contract.is_classification else f"predicted {spec.name}"
            drifted = verdicts.get(("prediction", "prediction"))
        else:
            ref_values, cur_values = reference[spec.name], current[spec.name]
            title = spec.name
            drifted = verdicts.get((spec.name, spec.kind)) or verdicts.get((spec.name, "missing"))
        if spec.kind == "numeric":
            ref_num, cur_num = ref_values.dropna().astype(float), cur_values.dropna().astype(float)
            both = pd.concat([ref_num, cur_num])
            bins = np.linspace(both.min(), both.max(), 30) if len(both) else 10
            axes.hist(ref_num, bins=bins, density=True, alpha=0.5, label="training")
            axes.hist(cur_num, bins=bins, density=True, alpha=0.5, label="production")
        else:
            positions = np.arange(len(spec.categories))
            axes.bar(
                positions - 0.2,
                _shares(ref_values.dropna(), spec.categories),
                0.4,
                label="training",
            )
            axes.bar(
                positions + 0.2,
                _shares(cur_values.dropna(), spec.categories),
                0.4,
                label="production",
            )
            axes.set_xticks(positions, labels=spec.categories)
            axes.set_ylabel("share")
        axes.set_title(
            f"{title}: {'DRIFT' if drifted else 'ok'}", color="tab:red" if drifted else "black"
        )
        axes.legend(fontsize=7)
    for axes in list(grid.flat)[len(panels) :]:
        axes.axis("off")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


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


def run(params: Params, log_path: Path | None = None, feedback: Path | None = None) -> DriftReport:
    """Compare, then write drift.json, drift.md and drift.html to `paths.drift`."""
    settings = params.monitoring
    contract = params.contract
    traffic = read_traffic(log_path or params.serve.prediction_log, settings.window_rows, contract)
    labels = read_feedback(feedback or settings.feedback, contract)
    reference = storage.read_parquet(params.paths.train)
    baseline = _baseline(params, contract) if labels else None
    expected = None if contract.is_classification else _test_predictions(params, contract)
    report = compare(reference, traffic, labels, baseline, settings, contract, expected)
    payload = asdict(report)
    payload["drifted"] = report.drifted
    payload["task"] = contract.task
    payload["log_files"] = traffic.files
    image = _figure_png(reference, traffic, report, contract) if report.checks else None
    # Everything is rendered before anything is written: no half set of reports.
    out = params.paths.drift
    storage.write_json(out / "drift.json", _finite(payload))
    storage.write_text(out / "drift.md", markdown(report))
    storage.write_text(out / "drift.html", html_page(report, image))
    if report.skipped_records:
        log.warning("drift: %s", skipped_sentence(report))
    log.info("drift: %s (%d predictions); wrote %s", report.verdict, report.window_rows, out)
    return report


def _baseline(params: Params, contract: Contract) -> float:
    """The test split's accuracy (classification) or MAE (regression), from metrics.json."""
    key = "accuracy" if contract.is_classification else "mae"
    path = params.paths.metrics
    if not path.is_file():
        raise PipelineError(f"{path}: needed to judge labelled feedback (run the pipeline)")
    value = storage.read_json(path).get(key)
    if not _is_number(value):
        raise PipelineError(
            f"{path}: no `{key}` for the {contract.task} task; re-run evaluate for this contract"
        )
    return float(value)


def _test_predictions(params: Params, contract: Contract) -> pd.Series:
    """The regression model's predictions on the test split: the reference for the logged
    predictions (compare's docstring says why not the target)."""
    model_path, test_path = params.paths.model, params.paths.test
    try:
        model = storage.load_verified_model(model_path, storage.read_recorded_sha256(model_path))
        test = storage.read_parquet(test_path)
    except (OSError, PipelineError) as error:
        raise PipelineError(
            f"the model and the test split are the reference of regression predictions"
            f" (run the pipeline, or `dvc pull`): {error}"
        ) from None
    return pd.Series(model.predict(model_input(test, contract)), dtype=float)


def _finite(value: Any) -> Any:
    """JSON has no infinity: write it as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value
