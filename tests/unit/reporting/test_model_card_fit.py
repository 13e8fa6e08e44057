"""A model card fits the registry's 5000 characters (reporting/model_card.py): long tables are cut
first, then whole sections leave, least needed first; Lineage, Metrics and Fairness last,
and the description names what it lost and where the full card is."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_template.config import Params
from mlops_template.io import storage
from mlops_template.reporting.model_card import (
    DESCRIPTION_LIMIT,
    description,
    model_card,
    within_limit,
)

REGIONS = [f"region_{i:02d}" for i in range(14)]
NUMERIC = [f"measurement_{i:02d}_mm" for i in range(38)]


def wide_contract() -> dict[str, Any]:
    """A binary contract of 40 features: 38 numeric, `region` (14 values), `colour`
    (sensitive)."""
    features: list[dict[str, Any]] = [
        {"name": name, "kind": "numeric", "minimum": 0.0, "maximum": 10.0} for name in NUMERIC
    ]
    features.append({"name": "region", "kind": "categorical", "categories": REGIONS})
    colour = {"name": "colour", "kind": "categorical", "categories": ["blue", "red"]}
    features.append({**colour, "sensitive": True})
    return {
        "name": "wide",
        "task": "binary",
        "positive": "yes",
        "target": {
            "name": "y",
            "nullable": False,
            "kind": "categorical",
            "categories": ["no", "yes"],
        },
        "features": features,
        "example": {**dict.fromkeys(NUMERIC, 1.0), "region": REGIONS[0], "colour": "red"},
    }


def wide_run(params: Params) -> dict[str, str]:
    """What the pipeline writes for the wide table; returns the lineage tags."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({name: rng.uniform(0, 10, 300) for name in NUMERIC})
    frame["region"] = rng.choice(REGIONS, 300)
    frame["colour"] = rng.choice(["blue", "red"], 300)
    frame["y"] = np.where(frame[NUMERIC[0]] > 5, "yes", "no")
    storage.write_parquet(params.paths.train, frame)
    names = ["roc_auc", "average_precision", "f1", "log_loss", "brier", "accuracy"]
    metrics: dict[str, Any] = {name: 0.8 for name in names} | {"test_rows": 100}
    metrics |= {"baseline": {name: 0.5 for name in names}, "beats_baseline": True}
    storage.write_json(params.paths.metrics, metrics)
    scores = {"rows": 25, "roc_auc": 0.8, "accuracy": 0.8, "selection_rate": 0.5}
    slices = {
        "region": dict.fromkeys(REGIONS, scores),
        "colour": dict.fromkeys(["blue", "red"], scores),
    }
    storage.write_json(params.paths.slices, slices)
    bins = [
        {"class": "yes", "predicted": p / 10 + 0.05, "observed": p / 10, "rows": 10}
        for p in range(10)
    ]
    storage.write_json(params.paths.calibration, {"calibration": bins})
    storage.write_json(params.paths.behaviour, {"checks": [], "summary": {"checks": 0}})
    return {
        "metrics": json.dumps(metrics),
        "validation": json.dumps({"rows": 400, "missing": dict.fromkeys(NUMERIC, 1)}),
        "git_commit": "a" * 40,
        "model_sha256": "f" * 64,
        "dvc_model_md5": "d" * 32,
        "dvc_data_md5": "e" * 32,
        "params_sha256": "c" * 64,
    }


def test_a_40_feature_card_keeps_metrics_fairness_and_lineage_and_says_what_it_cut(
    make_params: Callable[..., Params], workdir: Path
) -> None:
    (workdir / "contract.yaml").write_text(json.dumps(wide_contract()))
    data = {"contract": str(workdir / "contract.yaml"), "source": str(workdir / "wide.csv")}
    params = make_params(data=data, evaluate={"primary_metric": "auto"})
    card = model_card(params, wide_run(params), {"roc_auc": 0.7})
    assert len(card) > DESCRIPTION_LIMIT
    short = description(card, "model_card.md")
    assert len(short) <= DESCRIPTION_LIMIT
    for heading in [
        "## Metrics (test split, 100 rows)",
        "## Fairness",
        "## Lineage",
        "## Training data",
    ]:
        assert heading in short, heading
    assert "| `region_13` |" in card
    assert "| `region_13` |" not in short
    assert "| `measurement_09_mm` |" in short
    assert "| `measurement_10_mm` |" not in short
    assert "_… and 30 more features: see the full card._" in short
    assert "| git commit | `" + "a" * 40 + "` |" in short
    assert short.endswith(
        " The full card is `model_card.md` in the artifacts of this version's run._\n"
    )
    note = short.rsplit("\n\n", 1)[1]
    assert note.startswith("_Shortened to fit a registry description (5000 characters): ")
    assert (
        "long tables in Training data cut to 10 rows; Metrics per slice, Calibration left out"
        in note
    )


def test_long_tables_are_cut_before_a_section_is_left_out() -> None:
    rows = "\n".join(f"| `f{i}` | numeric | 0 to 1 | 0 |" for i in range(25))
    table = "| feature | kind | seen | missing |\n| --- | --- | --- | ---: |\n" + rows
    card = f"# Model card: m\n\n## Training data\n{table}\n\n## Lineage\n\n| what | value |"
    short = within_limit(card, 900, "a test (900 characters)", "Full card: elsewhere.")
    assert "| `f9` |" in short
    assert "| `f10` |" not in short
    assert "_… and 15 more features: see the full card._" in short
    assert "## Lineage" in short
    assert short.endswith(
        "_Shortened to fit a test (900 characters): long tables in Training data cut to 10"
        " rows. Full card: elsewhere._\n"
    )


def test_sections_leave_least_needed_first_and_lineage_last() -> None:
    names = ["Known limitations", "Calibration", "Metrics (test split)", "Lineage", "Fairness"]
    card = "# Model card: m\n\n" + "\n\n".join(f"## {name}\n" + "x" * 300 for name in names)
    assert description(card, "model_card.md", limit=len(card)) == card
    short = description(card, "model_card.md", limit=1400)
    assert len(short) <= 1400
    for kept in ["## Lineage", "## Metrics (test split)", "## Fairness"]:
        assert kept in short, kept
    assert "## Calibration" not in short
    assert "## Known limitations" not in short
    assert short.endswith(
        "_Shortened to fit a registry description (1400 characters): Known limitations,"
        " Calibration left out. The full card is `model_card.md` in the artifacts of this"
        " version's run._\n"
    )


def test_a_declared_text_line_starting_with_a_bar_is_not_a_table() -> None:
    """A limitation the contract declares may hold a line starting with `|`: left as it is."""
    card = "# Model card: m\n\n## Known limitations\n| a lone bar\n\n## Lineage\n\n" + "x" * 900
    short = within_limit(card, 600, "a test (600 characters)", "Full card: elsewhere.")
    assert len(short) <= 600
    assert short.startswith("# Model card: m")
