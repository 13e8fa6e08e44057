"""The PR comment carries this branch's model card (report.py's card section), folded, as
post-report posts it: checked by reporting/safety.py, links reduced to their text."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from mlops_template.config import Params
from mlops_template.io import storage
from mlops_template.reporting.model_card import model_card
from mlops_template.reporting.report import REPORT_LIMIT, card_section, model_card_section, render
from mlops_template.reporting.safety import check_report, markup_problems
from mlops_template.reporting.safety import render as posted
from tests.unit.reporting.test_report import _inputs

NOTE = "_The plots are in the run's artifact._"


@pytest.fixture
def penguin_card(penguin_run: Params, penguins: pd.DataFrame) -> str:
    params = penguin_run
    tags = {
        "metrics": json.dumps(storage.read_json(params.paths.metrics)),
        "validation": json.dumps({"rows": len(penguins), "missing": {"sex": 11}}),
        "git_commit": "a" * 40,
        "model_sha256": "f" * 64,
    }
    return model_card(params, tags, None)


def comment(folder: Path, card: str, room: int | None = None) -> str:
    """The report with the card section, written to `folder`; what post-report posts."""
    text = render(_inputs(images={}))
    room = REPORT_LIMIT - len(text) if room is None else room
    section = "\n".join(card_section(card, room))
    assert len(section) <= room
    folder.mkdir(exist_ok=True)
    (folder / "model_card.md").write_text(card)
    (folder / "report.md").write_text(text + "\n" + section + "\n")
    return posted(check_report(folder), NOTE)


def test_the_posted_comment_carries_the_penguin_card(penguin_card: str, tmp_path: Path) -> None:
    text = comment(tmp_path / "pr-report", penguin_card)
    card = text[text.index("### Model card") :]
    assert "<details><summary>Model card: mlops-template</summary>\n\n" in card
    assert card.rstrip().endswith("</details>")
    for heading in [
        "#### What it predicts and intended use",
        "#### Known limitations",
        "#### Training data",
        "#### Metrics per slice (test split)",
        "#### Calibration (test split)",
        "#### Fairness",
        "#### Lineage",
    ]:
        assert f"\n{heading}\n" in card, heading
    assert "Brier score 0." in card
    assert "By `sex`:" in card
    assert "| git commit | `" + "a" * 40 + "` |" in card
    # The report shows these above; the champion is the registry's to look up.
    for heading in ["#### Metrics (test", "#### Behaviour checks", "#### Compared with"]:
        assert heading not in card, heading
    assert "Model card of this branch's model: model_card.md, the whole card," in card
    assert "Shortened" not in card


def test_a_card_without_room_is_shortened_then_left_out(penguin_card: str, tmp_path: Path) -> None:
    text = comment(tmp_path / "short", penguin_card, room=2500)
    card = text[text.index("### Model card") :]
    assert "#### Lineage" in card
    assert "#### Fairness" in card
    assert "#### Calibration" not in card
    assert "_Shortened to fit what the report leaves of a PR comment (GitHub holds 65,536" in card
    assert "The whole card is `model_card.md`._" in card
    text = comment(tmp_path / "none", penguin_card, room=1200)
    assert "<details><summary>Model card" not in text
    assert "_Not shown here: the report leaves no room for it in a PR comment._" in text


def test_a_card_the_comment_check_would_refuse_is_not_shown(
    penguin_card: str, tmp_path: Path
) -> None:
    """The contract's prose reaches the card: a URL or HTML in it must not cost the report."""
    for bad_number, bad in enumerate(
        [
            "See https://example.com/data.",
            "A <img src=x> tag.",
            "[a](../../etc)",
            "</details> Outside the fold.",
            "A slice `src = x`.",
        ]
    ):
        card = penguin_card.replace("Predicts the species", f"{bad} Predicts the species")
        text = comment(tmp_path / f"bad{bad_number}", card)
        assert "#### Fairness" not in text
        assert "link(s), URL(s) or HTML tag(s) the comment check refuses._" in text
        assert "example.com" not in text
        assert "Outside the fold" not in text


def test_the_demoted_headings_fit_the_room(penguin_card: str, tmp_path: Path) -> None:
    """Each `## ` heading becomes `#### ` in the fold: two characters more per heading, which
    the fitting must count (comment() asserts the section fits its room)."""
    many = "\n\n".join(f"## Note {n}\nshort." for n in range(300))
    card = penguin_card.replace("## Lineage", many + "\n\n## Lineage")
    for room in (3000, 6000, 20000):
        text = comment(tmp_path / f"headings{room}", card, room=room)
        assert text.rstrip().endswith("</details>")


def test_without_a_model_the_report_says_why_there_is_no_card(
    make_params: Callable[..., Params], workdir: Path
) -> None:
    params = make_params()
    lines = model_card_section(params, workdir, REPORT_LIMIT)
    assert lines[0] == "### Model card"
    assert lines[-1].startswith("No model card: dvc.lock not found: run the pipeline first")
    assert not (workdir / "model_card.md").exists()


def test_markup_problems_allow_only_link_and_html_free_markdown() -> None:
    assert markup_problems("**bold**, `code`, a `<NA>` category, 3 < 5") == []
    assert markup_problems("[x](model_card.md)")[0] == "a link to `model_card.md`"
    assert "line 1: HTML `<a href=x>` is not allowed" in markup_problems("<a href=x>")
    # a tag the comment check allows could still close the fold the card sits in
    assert markup_problems("text </details> more") == ["an HTML tag"]
    assert markup_problems("<br>") == ["an HTML tag"]
    # what render() refuses even in code, or the whole comment would be refused
    assert "link syntax (`](`, `src=`, `href=` or a definition)" in markup_problems(
        "Slice `href = a` has 3 rows"
    )
    assert markup_problems("| `a](b` |") != []


def test_the_report_leaves_post_report_room_for_its_note() -> None:
    """post-report cuts what it posts at MAX_COMMENT (under GitHub's 65,536 characters) and
    adds a marker and a line about the plots: a report within REPORT_LIMIT is never cut."""
    from mlops_template.cli.ci import MAX_COMMENT
    from mlops_template.io.github import MAX_BODY

    assert REPORT_LIMIT + 1_000 <= MAX_COMMENT < MAX_BODY
