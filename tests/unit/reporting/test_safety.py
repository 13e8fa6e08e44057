"""The report folder is checked before the privileged comment job reads anything it links:
`mlops ci check-report` and what `mlops ci post-report` renders from it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_template.reporting.safety import (
    PNG_SIGNATURE,
    ReportRefusedError,
    check_report,
    render,
)

ALLOWED = ["https://github.com/acme/penguins/"]
PNG = PNG_SIGNATURE + b"\x00\x00\x00\rIHDR" + b"\x00" * 17


def folder(tmp_path: Path, markdown: str, files: dict[str, bytes] | None = None) -> Path:
    report = tmp_path / "pr-report"
    (report / "report_images").mkdir(parents=True)
    (report / "report_images" / "roc.png").write_bytes(PNG)
    (report / "model_card.md").write_text("# card\n")
    for name, data in (files or {}).items():
        (report / name).parent.mkdir(parents=True, exist_ok=True)
        (report / name).write_bytes(data)
    (report / "report.md").write_text(markdown)
    return report


GOOD = """## Model report

✅ **Better** than `main`.

| metric | `main` | this branch |
|---|---:|---:|
| f1 | 0.9 | 0.95 |

<details><summary>Per-class metrics</summary>

| a | b |
|---|---|
| `<NA>` | `a<b` |

</details>

### Plots

![ROC](report_images/roc.png)
![ROC again](report_images/roc.png "title")

Model card of this branch's model: [model_card.md](model_card.md)
See [the repository](https://github.com/acme/penguins/blob/main/README.md) and [top](#plots).

    Stage `train` failed: see https://example.com/x and <NA> in a log line
"""


def refused(tmp_path: Path, markdown: str, files: dict[str, bytes] | None = None) -> str:
    with pytest.raises(ReportRefusedError) as raised:
        check_report(folder(tmp_path, markdown, files), ALLOWED)
    return str(raised.value)


def test_the_projects_own_report_passes_and_renders_without_images(tmp_path: Path) -> None:
    checked = check_report(folder(tmp_path, GOOD), ALLOWED)
    assert sorted(checked.images) == ["report_images/roc.png"]
    text = render(checked, "_The plots are in the artifact of [the run](https://x/runs/1)._")
    assert "![" not in text
    assert "report_images" not in text
    assert (
        "### Plots\n\n_The plots are in the artifact of [the run](https://x/runs/1)._\n\n" in text
    )
    assert "Model card of this branch's model: model_card.md" in text
    assert "See the repository and top." in text
    assert "| `<NA>` | `a<b` |" in text  # code stays as written


def test_published_plots_are_re_emitted_under_fresh_names_only(tmp_path: Path) -> None:
    checked = check_report(folder(tmp_path, GOOD), ALLOWED)
    text = render(checked, "", {"report_images/roc.png": "plot-1.png"})
    assert text.count("![ROC](plot-1.png)") == 1
    assert "![ROC again](plot-1.png)" in text
    assert "report_images" not in text


@pytest.mark.parametrize(
    ("markdown", "reason"),
    [
        ("![x](../secrets.png)", "not a plain relative path"),
        ("![x](/etc/passwd)", "not a plain relative path"),
        ("[env](/proc/self/environ)", "not a plain relative path"),
        ("[x](~/.ssh/id_rsa)", "not a plain relative path"),
        ("[x](report_images/../../outside.md)", "not a plain relative path"),
        ("![x](report_images/%2e%2e/roc.png)", "not a plain relative path"),
        ("![x](&#x2F;etc/passwd)", "not a plain relative path"),
        ("![x](report_images\\roc.png)", "not a plain relative path"),
        ("![x](<../x.png>)", "not a plain relative path"),
        ("![x](missing.png)", "no such file"),
        ("![x](model_card.md)", "not a .png"),
        ("![x](https://evil.example/pixel.png)", "an image must be a PNG inside"),
        ("[x](https://evil.example/)", "a URL that is not allowed"),
        ("[x](http://github.com/acme/penguins/)", "a URL that is not allowed"),
        ("[x](//evil.example/)", "a URL that is not allowed"),
        ("[x](file:///etc/passwd)", "a URL that is not allowed"),
        ("[x](javascript:alert(1))", "a URL that is not allowed"),
        ("see https://evil.example/x", "a URL that is not allowed"),
        ("see www.evil.example", "a URL that is not allowed"),
        ("<https://evil.example/>", "a URL that is not allowed"),
        ('<img src="/etc/passwd">', "HTML"),
        ('<a href="https://evil.example">x</a>', "HTML"),
        ("<details onclick=x>", "HTML"),
        ("![x][ref]\n\n[ref]: /etc/passwd", "reference-style"),
        ("[x](report.md (unclosed", "cannot be parsed"),
        ("[![x](report_images/roc.png)](https://evil.example/)", "outside a link"),
        # Link syntax is checked in code too (fail closed: CML's parser is not this one).
        ("a value `x](/etc/passwd)` in code", "outside a link"),
    ],
)
def test_links_leaving_the_folder_are_refused(tmp_path: Path, markdown: str, reason: str) -> None:
    assert reason in refused(tmp_path, f"## Model report\n\n{markdown}\n")


def test_html_that_another_parser_could_see_is_refused_when_rendered(tmp_path: Path) -> None:
    """An indented line right after a paragraph is not code for CommonMark: the last guard
    refuses any `src=`/`href=`/`](` left in what would be posted, wherever it is."""
    checked = check_report(folder(tmp_path, "text\n    <img src=/etc/passwd>\n"), ALLOWED)
    with pytest.raises(ReportRefusedError, match="still holds link syntax"):
        render(checked, "")


def test_every_problem_is_listed(tmp_path: Path) -> None:
    message = refused(tmp_path, "![a](/etc/passwd)\n[b](../x)\n[c](https://evil.example)\n")
    assert "nothing is posted" in message
    assert message.count("\n  - ") == 3


def test_a_fake_png_is_refused(tmp_path: Path) -> None:
    assert "not a PNG file" in refused(
        tmp_path, "![x](fake.png)", {"fake.png": b"#!/bin/sh\necho\n"}
    )


def test_symlinks_are_refused_wherever_they_are(tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(PNG)
    report = folder(tmp_path, "![x](link.png)\n![y](dir/roc.png)\n")
    (report / "link.png").symlink_to(secret)
    (report / "dir").symlink_to(report / "report_images")
    with pytest.raises(ReportRefusedError) as raised:
        check_report(report, ALLOWED)
    assert str(raised.value).count("a symlink") == 2


def test_a_symlinked_report_or_hard_link_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "environ.md"
    outside.write_text("TOKEN=secret\n")
    report = folder(tmp_path, "x")
    (report / "report.md").unlink()
    (report / "report.md").symlink_to(outside)
    with pytest.raises(ReportRefusedError, match="not a regular file"):
        check_report(report, ALLOWED)
    (report / "report.md").unlink()
    (report / "report.md").write_text("![x](hard.png)\n")
    os.link(tmp_path / "pr-report" / "report_images" / "roc.png", report / "hard.png")
    with pytest.raises(ReportRefusedError, match="a hard link"):
        check_report(report, ALLOWED)


def test_mlops_check_report_exits_1_and_names_the_link(tmp_path: Path) -> None:
    report = folder(tmp_path, "![x](../../../etc/passwd)\n")
    mlops = Path(sys.executable).with_name("mlops")
    result = subprocess.run(
        [mlops, "ci", "check-report", str(report)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "../../../etc/passwd" in result.stderr
    ok = folder(tmp_path / "ok", GOOD)
    result = subprocess.run(
        [mlops, "ci", "check-report", str(ok), "--allow-url", ALLOWED[0]],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "1 PNG image(s)" in result.stdout


def test_a_report_that_is_not_small_utf8_text_is_refused(tmp_path: Path) -> None:
    report = folder(tmp_path, GOOD)
    (report / "report.md").write_bytes(b"## Model report\n\xff\xfe\n")
    with pytest.raises(ReportRefusedError, match="is not UTF-8 text"):
        check_report(report, ALLOWED)
    (report / "report.md").write_text("## Model report\n\0\n")
    with pytest.raises(ReportRefusedError, match="a NUL character"):
        check_report(report, ALLOWED)
    (report / "report.md").write_text("x" * ((1 << 20) + 1))
    with pytest.raises(ReportRefusedError, match="is over 1048576 bytes"):
        check_report(report, ALLOWED)
    (report / "report.md").unlink()
    with pytest.raises(ReportRefusedError, match=r"the report .* is missing"):
        check_report(report, ALLOWED)
    with pytest.raises(ReportRefusedError, match="is not a directory"):
        check_report(report / "model_card.md", ALLOWED)


def test_a_fence_closes_only_with_a_fence_as_long(tmp_path: Path) -> None:
    """A URL in fenced code is shown as text, not linked: allowed. A shorter fence inside a
    longer one is part of the code, so what follows it is still code."""
    inside = "## Model report\n\n````\n```\nsee https://evil.example/x\n````\n"
    check_report(folder(tmp_path / "inside", inside), ALLOWED)
    closed = "## Model report\n\n```\n```\nsee https://evil.example/x\n"
    assert "a URL that is not allowed" in refused(tmp_path / "closed", closed)


@pytest.mark.parametrize(
    "markdown",
    [
        "[card](model_card.md 'the card')",
        "[card](model_card.md (the card))",
    ],
)
def test_a_link_with_a_title_is_understood(tmp_path: Path, markdown: str) -> None:
    checked = check_report(folder(tmp_path, f"## Model report\n\n{markdown}\n"), ALLOWED)
    assert [link.target for link in checked.links] == ["model_card.md"]


@pytest.mark.parametrize(
    "markdown", ["[card](<model_card.md\n>)", "[card](model_card.md 'unclosed)", "[x](y z)"]
)
def test_a_link_destination_that_cannot_be_parsed_is_refused(tmp_path: Path, markdown: str) -> None:
    assert "cannot be parsed safely" in refused(tmp_path, f"## Model report\n\n{markdown}\n")
