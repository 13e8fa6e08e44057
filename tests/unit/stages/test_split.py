import math

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from mlops_template import PipelineError
from mlops_template.contract import Contract
from mlops_template.stages.split import split


def test_split_is_stratified_disjoint_and_complete(
    penguins: pd.DataFrame, contract: Contract
) -> None:
    train, test = split(penguins, contract, test_size=0.25, seed=1)
    assert len(train) + len(test) == len(penguins)
    assert len(test) == 86
    shares = penguins["species"].value_counts(normalize=True)
    test_shares = test["species"].value_counts(normalize=True)
    assert (abs(shares - test_shares) < 0.02).all()
    key = ["species", "island", "bill_length_mm", "body_mass_g", "sex", "year"]
    assert len(pd.concat([train, test]).drop_duplicates(key)) == len(penguins.drop_duplicates(key))


def test_same_seed_same_split_other_seed_other_split(
    penguins: pd.DataFrame, contract: Contract
) -> None:
    first, _ = split(penguins, contract, 0.25, seed=7)
    again, _ = split(penguins, contract, 0.25, seed=7)
    other, _ = split(penguins, contract, 0.25, seed=8)
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)


def test_class_with_a_single_row_is_a_clear_error(
    penguins: pd.DataFrame, contract: Contract
) -> None:
    lonely = pd.concat(
        [
            penguins[penguins.species != "Chinstrap"],
            penguins[penguins.species == "Chinstrap"].head(1),
        ]
    )
    with pytest.raises(PipelineError, match=r"column 'species'.*\['Chinstrap'\]"):
        split(lonely, contract, 0.25, seed=1)


def _shared_feature_rows(train: pd.DataFrame, test: pd.DataFrame, contract: Contract) -> int:
    """Test rows whose feature values (missing equal to missing) also occur in train."""
    names = contract.feature_names()
    seen = train[names].drop_duplicates()
    return len(test[names].merge(seen, how="inner"))


def test_without_repeated_features_the_split_is_the_plain_stratified_split(
    penguins: pd.DataFrame, contract: Contract
) -> None:
    train, test = split(penguins, contract, 0.25, seed=42)
    plain_train, plain_test = train_test_split(
        penguins, test_size=0.25, random_state=42, stratify=penguins["species"]
    )
    pd.testing.assert_frame_equal(train, plain_train.reset_index(drop=True))
    pd.testing.assert_frame_equal(test, plain_test.reset_index(drop=True))


def test_hostile_copies_never_straddle_train_and_test(
    penguins: pd.DataFrame, contract: Contract
) -> None:
    """Most rows are copies, many times over (row 3, every feature missing, among them)."""
    distinct = penguins.groupby("species").head(20)
    copies = np.random.default_rng(0).integers(1, 15, size=len(distinct))
    hostile = distinct.loc[distinct.index.repeat(copies)].sample(frac=1.0, random_state=0)
    assert hostile[contract.feature_names()].duplicated().mean() > 0.8
    train, test = split(hostile, contract, test_size=0.25, seed=42)
    assert len(train) + len(test) == len(hostile)
    assert _shared_feature_rows(train, test, contract) == 0
    # a real test set remains: a quarter of the distinct rows, every class
    assert len(test.drop_duplicates(contract.feature_names())) == 15
    assert set(test["species"]) == {"Adelie", "Chinstrap", "Gentoo"}
    again, _ = split(hostile, contract, test_size=0.25, seed=42)
    pd.testing.assert_frame_equal(train, again)


def test_rows_with_conflicting_labels_stay_on_one_side(
    penguins: pd.DataFrame, contract: Contract
) -> None:
    relabelled = penguins.sample(60, random_state=0).assign(species="Chinstrap")
    frame = pd.concat([penguins, relabelled], ignore_index=True)
    train, test = split(frame, contract, 0.25, seed=1)
    assert len(train) + len(test) == len(frame)
    assert _shared_feature_rows(train, test, contract) == 0


def test_a_regression_target_is_split_across_its_whole_range() -> None:
    from sklearn.datasets import load_diabetes

    from mlops_template.contract.profile import profile

    frame = load_diabetes(as_frame=True, scaled=False).frame
    contract = profile(frame, "target", name="diabetes").contract
    assert contract.task == "regression"
    train, test = split(frame, contract, 0.25, seed=3)
    assert len(train) + len(test) == len(frame)
    assert len(test) == math.ceil(len(frame) * 0.25)
    # stratified by deciles: each tenth of the target's range is in the test set at its share
    deciles = pd.qcut(frame["target"], 10, retbins=True)[1]
    counts = pd.cut(test["target"], deciles, include_lowest=True).value_counts()
    assert counts.min() >= len(test) // 10 - 2
    assert counts.max() <= len(test) // 10 + 3
