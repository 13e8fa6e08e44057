"""The drift checks of `mlops monitor drift` and their verdict, on logged traffic against the
training split (logs.py reads the traffic), column by column as the data contract declares
them:

- numeric features: two-sample Kolmogorov-Smirnov test and PSI over quantile bins (and one
  above the reference's maximum when its top bin holds only that value);
- categorical features and the predicted classes: chi-square test and PSI over the shares;
- regression predictions: KS and PSI against the model's own predictions on the test split,
  not against the training target: a regressor's predictions are narrower than the target
  it learned, so that comparison flags undrifted traffic as drifted every time;
- every feature: the rise in its missing rate;
- with labelled feedback (`{"id": <prediction_id>, "label": ...}` lines; for regression the
  label is the true number): for classification the champion's accuracy against the test
  split's, with a one-sided binomial test; for regression its mean absolute error against
  the test split's, with a one-sided t-test on the absolute errors: drift when the MAE rose
  by more than `max_error_increase` as a fraction of the test MAE and significantly;
- with a challenger scored in shadow: agreement with the champion (for regression, the mean
  absolute difference of the two) and, with labels, the accuracy (MAE) of both on the same
  requests (reported, never counted as drift).

A distribution test flags drift only when its p-value is below `alpha` divided by the number
of tests (Bonferroni) AND its PSI reaches `psi_threshold`.

scipy rather than Evidently: Evidently adds hundreds of megabytes to the environment and did
not import with the pandas locked here (README, "Monitoring and retraining"); these tests
are a few lines each on top of scipy, which scikit-learn already brings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlops_template.config import MonitoringSettings
from mlops_template.contract import ColumnSpec, Contract
from mlops_template.monitoring.logs import Traffic
from mlops_template.monitoring.psi import psi
from mlops_template.monitoring.records import Label, PredictionRecord


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


def category_shares(values: pd.Series, categories: Sequence[str]) -> list[float]:
    counts = values.value_counts()
    total = max(int(counts.sum()), 1)
    return [float(counts.get(name, 0)) / total for name in categories]


def _numeric(spec: ColumnSpec, reference: pd.Series, current: pd.Series, bins: int) -> Check:
    from scipy import stats

    ref, cur = reference.dropna().to_numpy(float), current.dropna().to_numpy(float)
    if len(ref) == 0 or len(cur) == 0:
        return Check(spec.name, "numeric", "KS + PSI", "no values to compare")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    if edges.size and edges[-1] == ref.max():
        # The top bin holds only the reference's maximum (a constant feature, or one that
        # piles up at its cap): values above it, never seen in training, get a bin of their
        # own. Otherwise a shift upward would stay in that bin, and PSI would not see it.
        edges = np.append(edges, np.nextafter(ref.max(), np.inf))
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


def _labelled(
    champion: list[PredictionRecord], labels: dict[str, Label]
) -> list[tuple[Any, Label]]:
    """(prediction, true label) of the logged predictions whose label arrived as feedback."""
    return [(r.prediction, labels[r.id]) for r in champion if r.id in labels]


def _performance(
    champion: list[PredictionRecord],
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
    champion: list[PredictionRecord],
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
    shares = category_shares(pd.Series(predictions, dtype=object), classes)
    return dict(zip(classes, shares, strict=True))


def shadow_summary(
    traffic: Traffic, labels: dict[str, Label], contract: Contract
) -> dict[str, Any] | None:
    """The challenger beside the champion on the same requests: class agreement and shares,
    or for regression the mean absolute difference and mean predictions; with labels, the
    accuracy (MAE) of both."""
    pairs = [
        (record, traffic.challenger[record.id])
        for record in traffic.champion
        if record.id in traffic.challenger
    ]
    if not pairs:
        return None
    champion = [a.prediction for a, _ in pairs]
    challenger = [b.prediction for _, b in pairs]
    summary: dict[str, Any] = {
        "compared": len(pairs),
        "champion_version": pairs[-1][0].model_version,
        "challenger_version": pairs[-1][1].model_version,
    }
    if contract.is_classification:
        summary["agreement"] = _agreement(champion, challenger)
        summary["champion_shares"] = _class_shares(champion, contract.classes)
        summary["challenger_shares"] = _class_shares(challenger, contract.classes)
        score, name = _agreement, "accuracy"
    else:
        summary["mean_abs_difference"] = _mean_abs(champion, challenger)
        summary["champion_mean"] = float(np.mean(np.asarray(champion, float)))
        summary["challenger_mean"] = float(np.mean(np.asarray(challenger, float)))
        score, name = _mean_abs, "mae"
    labelled = [(a, b, labels[a.id]) for a, b in pairs if a.id in labels]
    if labelled:
        truth = [y for _, _, y in labelled]
        summary["labelled"] = len(labelled)
        summary[f"champion_{name}"] = score([a.prediction for a, _, _ in labelled], truth)
        summary[f"challenger_{name}"] = score([b.prediction for _, b, _ in labelled], truth)
    return summary


def logged_features(traffic: Traffic, contract: Contract) -> pd.DataFrame:
    """The champion's logged features, one column per contract feature."""
    frame = pd.DataFrame([record.features for record in traffic.champion])
    return frame.reindex(columns=contract.feature_names())


def logged_predictions(traffic: Traffic, contract: Contract) -> pd.Series:
    values = [record.prediction for record in traffic.champion]
    return pd.Series(values, dtype=object if contract.is_classification else float)


def training_target(reference: pd.DataFrame, contract: Contract) -> pd.Series:
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
    current = logged_features(traffic, contract)
    with_labels = baseline is not None and any(r.id in labels for r in traffic.champion)
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
    checks = _feature_checks(reference, current, settings, contract, tests)
    prediction = _prediction_check(reference, traffic, settings, contract, reference_predictions)
    checks.append(_judge(prediction, settings, tests))
    if with_labels and baseline is not None:
        judge = _performance if contract.is_classification else _error_rise
        performance = judge(traffic.champion, labels, baseline, settings, tests)
        if performance is not None:
            checks.append(performance)
    report.checks = checks
    report.shadow = shadow_summary(traffic, labels, contract)
    report.verdict = "drift" if any(check.drifted for check in checks) else "no drift"
    return report


def _feature_checks(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    settings: MonitoringSettings,
    contract: Contract,
    tests: int,
) -> list[Check]:
    """Each feature's distribution test, judged, and its missing-rate check."""
    checks: list[Check] = []
    for spec in contract.features:
        before, now = reference[spec.name], current[spec.name]
        if spec.kind == "numeric":
            check = _numeric(spec, before, now, settings.psi_bins)
        else:
            expected = category_shares(before.dropna(), spec.categories)
            check = _categorical(spec.name, "categorical", spec.categories, expected, now.dropna())
        checks.append(_judge(check, settings, tests))
        checks.append(_missing(spec, before, now, settings.max_missing_rate_increase))
    return checks


def _prediction_check(
    reference: pd.DataFrame,
    traffic: Traffic,
    settings: MonitoringSettings,
    contract: Contract,
    reference_predictions: pd.Series | None,
) -> Check:
    """The logged predictions against the training class shares (classification), or
    against `reference_predictions`, else the training target (regression); not judged."""
    predictions = logged_predictions(traffic, contract)
    target = training_target(reference, contract)
    if contract.is_classification:
        expected = category_shares(target, contract.classes)
        return _categorical("prediction", "prediction", contract.classes, expected, predictions)
    expected_values = target if reference_predictions is None else reference_predictions
    numeric = _numeric(contract.target, expected_values, predictions, settings.psi_bins)
    return Check(**{**asdict(numeric), "column": "prediction", "kind": "prediction"})


def _judge(check: Check, settings: MonitoringSettings, tests: int) -> Check:
    significant = check.p_value is not None and check.p_value < settings.alpha / tests
    material = check.psi is not None and check.psi >= settings.psi_threshold
    return Check(**{**asdict(check), "drifted": significant and material})
