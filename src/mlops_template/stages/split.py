"""Stage `split`: a stratified, seeded train/test split of the validated table.

Stratified by the class, or for a regression target by its deciles.

Rows with identical feature values (missing equal to missing) are one group, and a group goes
to one side whole: a test row whose features the model saw in training would measure memory,
not generalisation. The split draws groups, stratified by each group's first label, so
`split.test_size` is the share of distinct feature rows in the test set. A table without such
rows is split exactly as a plain row-level stratified split would split it.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from mlops_template import PipelineError
from mlops_template.config import Params
from mlops_template.contract import Contract
from mlops_template.io import storage

log = logging.getLogger(__name__)


def feature_groups(frame: pd.DataFrame, features: list[str]) -> np.ndarray:
    """One id per row, shared by the rows whose features are identical (missing values equal);
    ids number the groups in order of first appearance."""
    grouped = frame.groupby(features, dropna=False, sort=False, observed=True)
    return grouped.ngroup().to_numpy()


def _rows_of(groups: np.ndarray, drawn: np.ndarray) -> np.ndarray:
    """Positions of the rows of the `drawn` groups, in the order they were drawn (a group's
    rows in table order), as a row-level split would order them."""
    rank = np.full(groups.max() + 1, -1)
    rank[drawn] = np.arange(len(drawn))
    rows = np.flatnonzero(rank[groups] >= 0)
    return rows[np.argsort(rank[groups[rows]], kind="stable")]


REGRESSION_BINS = 10  # a numeric target is stratified by its deciles
MIN_SIDE_ROWS = 2  # fewer, and metrics such as R² are undefined


def _strata(labels: pd.Series, contract: Contract, test_size: float) -> pd.Series:
    """What the split stratifies by: the class, or for regression the target's quantile bin
    (so both sides cover the whole range of the target)."""
    if contract.is_classification:
        counts = labels.value_counts()
        too_small = counts[counts < 2]
        if not too_small.empty:
            raise PipelineError(
                f"column '{contract.target.name}': classes {sorted(too_small.index)} have fewer"
                " than 2 rows with distinct features; a stratified split needs at least 2 per"
                " class"
            )
        return labels
    # Each bin needs a row on each side: no more bins than the smaller side has rows.
    smaller = int(len(labels) * min(test_size, 1 - test_size))
    bins = max(1, min(REGRESSION_BINS, smaller, len(labels) // 2))
    return pd.qcut(labels.rank(method="first"), q=bins, labels=False)


def split(
    frame: pd.DataFrame, contract: Contract, test_size: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    groups = feature_groups(frame, contract.feature_names())
    _, first = np.unique(groups, return_index=True)  # each group's first row
    labels = _strata(frame[contract.target.name].iloc[first], contract, test_size)
    try:
        train_groups, test_groups = train_test_split(
            np.arange(len(first)), test_size=test_size, random_state=seed, stratify=labels
        )
    except ValueError as error:
        raise PipelineError(
            f"split.test_size={test_size}: cannot split {len(frame)} rows"
            f" ({len(first)} distinct feature rows): {error}"
        ) from None
    sizes = np.bincount(groups)
    if (sizes > 1).any():
        log.info(
            "kept %d row(s) sharing feature values with another row on one side of the split"
            " (%d group(s))",
            int(sizes[sizes > 1].sum()),
            int(np.count_nonzero(sizes > 1)),
        )
    if min(len(train_groups), len(test_groups)) < MIN_SIDE_ROWS:
        raise PipelineError(
            f"split.test_size={test_size}: {len(train_groups)} train and {len(test_groups)}"
            f" test rows (distinct features); each side needs at least {MIN_SIDE_ROWS}"
        )
    train = frame.iloc[_rows_of(groups, train_groups)]
    test = frame.iloc[_rows_of(groups, test_groups)]
    return train.reset_index(drop=True), test.reset_index(drop=True)


def run(params: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = storage.read_parquet(params.paths.validated)
    train, test = split(frame, params.contract, params.split.test_size, params.seed)
    storage.write_parquet(params.paths.train, train)
    storage.write_parquet(params.paths.test, test)
    return train, test
