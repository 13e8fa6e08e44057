"""Markdown for people: numbers and tables as the PR report and the model card show them."""

from __future__ import annotations

from typing import Any


def number(value: Any) -> str:
    """A cell: `—` for nothing, four decimals for a fraction, whole numbers as they are."""
    if value is None:
        return "—"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4f}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def table(head: list[str], rows: list[list[Any]], right: int = 1) -> list[str]:
    """A markdown table; columns from index `right` on hold numbers, right-aligned."""
    align = ["---" if i < right else "---:" for i in range(len(head))]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(align) + " |"]
    return lines + ["| " + " | ".join(number(cell) for cell in row) + " |" for row in rows]


def truncate(body: str, limit: int, footer: str = "") -> str:
    """`body` cut to fit `limit` with `footer` (GitHub's comment and PR body limits), saying
    that it was cut and where the whole is."""
    if len(body) + len(footer) <= limit:
        return body + footer
    note = "\n\n_… truncated: the full report is the run's artifact._"
    return body[: limit - len(footer) - len(note)] + note + footer
