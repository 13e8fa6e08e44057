"""The model card (model_card.py) reads as prose and tables, for every task: no raw
dictionaries, the sections a reviewer looks for, and what the contract declares."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_template.config import Params
from mlops_template.io import storage
from mlops_template.reporting.model_card import DESCRIPTION_LIMIT, description, model_card
from tests.conftest import small_contract

SECTIONS = [
    "## What it predicts and intended use",
    "## Known limitations",
    "## Training data",
    "## Training",
    "## Metrics (test split,",
    "## Metrics per slice (test split)",
    "## Behaviour checks",
    "## Lineage",
]


def tags_of(params: Params, rows: int) -> dict[str, str]:
    return {
        "metrics": json.dumps(storage.read_json(params.paths.metrics)),
        "validation": json.dumps({"rows": rows, "missing": {"x": 3, "colour": 0}}),
        "git_commit": "abc123",
        "model_sha256": "f" * 64,
    }


def no_raw_dictionaries(card: str) -> None:
    assert not re.search(r"\{['\"]", card), card
    assert "': " not in card


@pytest.fixture
def penguin_card(penguin_run: Params, penguins: pd.DataFrame) -> str:
    return model_card(penguin_run, tags_of(penguin_run, len(penguins)), None)


def test_the_penguin_card_as_registered_keeps_its_lineage(
    penguin_run: Params, penguins: pd.DataFrame
) -> None:
    """As `mlops model register` stores it: every lineage tag, the ONNX model, a champion."""
    tags = tags_of(penguin_run, len(penguins)) | {
        "git_commit": "a" * 40,
        "onnx_sha256": "b" * 64,
        "onnx_model_uri": "models:/m/1",
        "dvc_model_md5": "d" * 32,
        "dvc_data_md5": "e" * 32,
        "params_sha256": "c" * 64,
    }
    champion = {"f1_macro": 0.97, "accuracy": 0.98, "log_loss": 0.1, "roc_auc_ovr": 0.99}
    card = model_card(penguin_run, tags, champion)
    stored = description(card, "model_card.md")
    assert len(stored) <= DESCRIPTION_LIMIT
    for heading in ["## Lineage", "## Metrics (test split,", "## Fairness", "## Training data"]:
        assert heading in stored, heading
    assert "| params sha256 | `" + "c" * 64 + "` |" in stored
    if stored != card:
        assert stored.endswith("in the artifacts of this version's run._\n")


def test_the_penguin_card_has_every_section(penguin_card: str) -> None:
    for heading in [*SECTIONS, "## Calibration (test split)", "## Fairness"]:
        assert heading in penguin_card, heading
    no_raw_dictionaries(penguin_card)
    assert "- Not for decisions about individual animals" in penguin_card  # declared use
    assert "- Chinstrap penguins were seen on Dream only" in penguin_card  # declared limit
    assert re.search(r"`flipper_length_mm` \d+ to \d+ \(accepted: 150 to 250\)", penguin_card)
    assert "every class's probabilities pooled" in penguin_card
    assert "By `sex`: under Fairness." in penguin_card
    assert "| `Adelie` | 1" in penguin_card  # class counts of the training split
    assert "| **f1_macro** |" in penguin_card
    assert re.search(r"\| brier \| 0\.\d{4} \| 0\.\d{4} \| lower \|", penguin_card)
    assert "By `island`:" in penguin_card
    assert "too noisy to compare): f1_macro" in penguin_card
    assert "| invariance | changing `sex`" in penguin_card
    assert "n_estimators 20" in penguin_card
    assert "| model sha256 | `" + "f" * 64 + "` |" in penguin_card


def test_a_failed_check_is_a_known_limitation(penguin_run: Params, penguins: pd.DataFrame) -> None:
    params = penguin_run
    results = storage.read_json(params.paths.behaviour)
    results["checks"][0] |= {"passed": False, "pass_rate": 0.5}
    storage.write_json(params.paths.behaviour, results)
    card = model_card(params, tags_of(params, len(penguins)), None)
    limits = card[card.index("## Known limitations") : card.index("## Training data")]
    assert "- Fails the behaviour check invariance changing `sex`" in limits
    assert "(50.0% of " in limits
    assert "❌ **fail**" in card


def synthetic_run(params: Params, task: str) -> None:
    """What the pipeline writes, for a small table of `task` (tests/conftest small_contract)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 10, 120)
    colour = rng.choice(["blue", "red"], 120)
    target = x * 10 if task == "regression" else np.where(x > 5, "yes", "no")
    storage.write_parquet(params.paths.train, pd.DataFrame({"x": x, "colour": colour, "y": target}))
    if task == "regression":
        metrics: dict[str, Any] = {"rmse": 5.0, "mae": 4.0, "r2": 0.8, "test_rows": 40}
        metrics["baseline"] = {"rmse": 29.0, "mae": 25.0, "r2": 0.0}
        groups = {
            "blue": {"rows": 22, "rmse": 5.5, "mae": 4.4},
            "red": {"rows": 20, "rmse": 4.4, "mae": 3.5},
            "(missing)": {"rows": 1, "rmse": 50.0, "mae": 50.0},  # too few rows for the gap
        }
    else:
        metrics = {
            "roc_auc": 0.9,
            "average_precision": 0.85,
            "f1": 0.8,
            "log_loss": 0.3,
            "brier": 0.1,
            "accuracy": 0.85,
            "precision": 0.8,
            "recall": 0.8,
            "test_rows": 40,
        }
        metrics["baseline"] = {
            "roc_auc": 0.5,
            "average_precision": 0.5,
            "f1": 0.0,
            "log_loss": 0.69,
            "brier": 0.5,
        }
        groups = {
            "blue": {"rows": 22, "roc_auc": 0.92, "accuracy": 0.9, "selection_rate": 0.5},
            "red": {"rows": 20, "roc_auc": 0.85, "accuracy": 0.8, "selection_rate": 0.3},
            "(missing)": {"rows": 1, "roc_auc": None, "accuracy": 0.0, "selection_rate": 1.0},
        }
        storage.write_json(
            params.paths.calibration,
            {
                "calibration": [
                    {"class": "yes", "predicted": 0.1, "observed": 0.05, "rows": 20},
                    {"class": "yes", "predicted": 0.9, "observed": 0.95, "rows": 20},
                ]
            },
        )
    metrics["beats_baseline"] = True
    storage.write_json(params.paths.metrics, metrics)
    storage.write_json(params.paths.slices, {"colour": groups})
    storage.write_json(
        params.paths.behaviour, {"checks": [], "summary": {"checks": 0, "passed": 0, "failed": 0}}
    )


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_binary_and_regression_cards_make_sense(
    task: str, make_params: Callable[..., Params], workdir: Path
) -> None:
    raw = small_contract(task)
    raw["features"][1]["sensitive"] = True
    (workdir / "contract.yaml").write_text(json.dumps(raw))
    data = {"contract": str(workdir / "contract.yaml"), "source": str(workdir / "small.csv")}
    params = make_params(data=data, evaluate={"primary_metric": "auto"})
    synthetic_run(params, task)
    card = model_card(params, tags_of(params, 160), None)
    for heading in SECTIONS:
        assert heading in card, heading
    no_raw_dictionaries(card)
    assert "penguin" not in card.lower()
    assert "Not declared in the data contract (`intended_use:`)" in card
    assert "_No behaviour checks declared in the data contract (`behaviour:`)._" in card
    if task == "binary":
        assert "(binary, positive class `yes`)" in card
        assert "| `red` | 20 | 0.8500 | 0.8000 | 0.3000 |" in card
        assert (
            "Largest gap, between groups of at least 20 test rows (smaller ones are too noisy"
            " to compare): roc_auc 0.0700 (`blue` 0.9200, `red` 0.8500); selection_rate 0.2000"
            " (`blue` 0.5000, `red` 0.3000)" in card
        )
        assert "| 0.8 to 1.0 | 0.9000 | 0.9500 | 20 |" in card
        assert "mean squared error of the positive class's probability" in card
        assert "(the positive class's probabilities)" in card
        assert "pooled" not in card
    else:
        assert "## Calibration" not in card
        assert "| mean | std | min | median | max |" in card
        assert "| `red` | 20 | 4.4000 | 3.5000 |" in card
        assert "rows (smaller ones are too noisy to compare): rmse 1.1000" in card
    assert "Slice `colour = (missing)` has 1 test row: its metrics are noisy." in card
    # x is 0 to 10 in training and in the contract: no range limitation
    assert "Training covered less than" not in card


def test_only_ranges_training_covers_little_of_are_limitations(
    make_params: Callable[..., Params], workdir: Path
) -> None:
    """init-schema widens every range a little: only a range training covers less than 75%
    of is named, with its numbers as `:g` and an open end said."""
    raw = small_contract("binary")
    raw["features"][0] |= {"minimum": 0.5, "maximum": 40.25}  # training: 0 to 10 of 39.75
    (workdir / "contract.yaml").write_text(json.dumps(raw))
    data = {"contract": str(workdir / "contract.yaml"), "source": str(workdir / "small.csv")}
    params = make_params(data=data, evaluate={"primary_metric": "auto"})
    synthetic_run(params, "binary")
    card = model_card(params, tags_of(params, 160), None)
    assert re.search(r"`x` 0\.\d+ to 9\.\d+ \(accepted: 0\.5 to 40\.25\)\.", card)
    assert "Training covered less than 75% of the range the contract accepts" in card
    raw["features"][0] |= {"minimum": None, "maximum": 11.0}
    (workdir / "contract.yaml").write_text(json.dumps(raw))
    params = make_params(data=data, evaluate={"primary_metric": "auto"})
    card = model_card(params, tags_of(params, 160), None)
    assert re.search(r"`x` 0\.\d+ to 9\.\d+ \(accepted: no minimum to 11\)", card)
