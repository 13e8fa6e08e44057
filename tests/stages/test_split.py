import pandas as pd
import pytest

from mlops_template.errors import PipelineError
from mlops_template.stages.split import split


def test_split_is_stratified_disjoint_and_complete(penguins: pd.DataFrame) -> None:
    train, test = split(penguins, test_size=0.25, seed=1)
    assert len(train) + len(test) == len(penguins)
    assert len(test) == 86
    shares = penguins["species"].value_counts(normalize=True)
    test_shares = test["species"].value_counts(normalize=True)
    assert (abs(shares - test_shares) < 0.02).all()
    key = ["species", "island", "bill_length_mm", "body_mass_g", "sex", "year"]
    assert len(pd.concat([train, test]).drop_duplicates(key)) == len(penguins.drop_duplicates(key))


def test_same_seed_same_split_other_seed_other_split(penguins: pd.DataFrame) -> None:
    first, _ = split(penguins, 0.25, seed=7)
    again, _ = split(penguins, 0.25, seed=7)
    other, _ = split(penguins, 0.25, seed=8)
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)


def test_class_with_a_single_row_is_a_clear_error(penguins: pd.DataFrame) -> None:
    lonely = pd.concat(
        [
            penguins[penguins.species != "Chinstrap"],
            penguins[penguins.species == "Chinstrap"].head(1),
        ]
    )
    with pytest.raises(PipelineError, match=r"column 'species'.*\['Chinstrap'\]"):
        split(lonely, 0.25, seed=1)
