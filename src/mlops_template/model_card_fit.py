"""Fit the model card into a size limit: the registry's description (MLflow holds 5000
characters) and the PR comment (GitHub holds 65,536, the report included).

Long tables are cut first (the training data's, the slices' and the fairness tables: to their
first TABLE_ROWS rows), each saying how many rows it lost. Then whole sections leave, least
needed first (LEAST_NEEDED): the short, essential ones (Fairness, Metrics and Lineage, which
ties the version to git and DVC) go last. A last line names what was cut or
left out and says where the full card is.
"""

from __future__ import annotations

# MLflow stores a model version's description in VARCHAR(5000) on PostgreSQL (SQLite has no
# limit): a longer card fails `register`.
DESCRIPTION_LIMIT = 5000
TABLE_ROWS = 10  # a table of more rows is long
CUT_TABLES_IN = ("Training data", "Metrics per slice", "Fairness")
LEAST_NEEDED = (
    "Calibration",
    "Metrics per slice",
    "Training",
    "Behaviour checks",
    "Training data",
    "Compared with the previous champion",
    "Known limitations",
    "What it predicts and intended use",
    "Fairness",
    "Metrics",
    "Lineage",
)
_ROWS_OF = {"feature": "features", "class": "classes", "value": "values"}


def split(card: str) -> tuple[str, list[str]]:
    """The card's title and its `## ` sections, each without its `## `."""
    head, *sections = card.rstrip("\n").split("\n\n## ")
    return head, sections


def join(head: str, sections: list[str]) -> str:
    return "\n\n## ".join([head, *sections]) + "\n"


def name(section: str) -> str:
    """A section's name: its heading without the parenthesis (`Metrics (test split, 86
    rows)` is `Metrics`)."""
    return section.split("\n", 1)[0].split(" (", 1)[0]


def without(card: str, names: tuple[str, ...]) -> str:
    """The card without the sections named."""
    head, sections = split(card)
    return join(head, [s for s in sections if name(s) not in names])


def _cut_table(table: list[str], rows: int) -> list[str]:
    if len(table) < 3:  # not a table with a body (a line of declared text starting with |)
        return table
    head, align, *body = table
    if len(body) <= rows:
        return table
    column = head.strip("| ").split(" |", 1)[0].strip()
    more = f"{len(body) - rows} more {_ROWS_OF.get(column, 'rows')}"
    return [head, align, *body[:rows], "", f"_… and {more}: see the full card._"]


def cut_tables(section: str, rows: int) -> str:
    """The section with each markdown table cut to its first `rows` rows."""
    out: list[str] = []
    table: list[str] = []
    for line in [*section.split("\n"), ""]:  # the empty line ends a last table
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            out += _cut_table(table, rows)
            table = []
        out.append(line)
    return "\n".join(out[:-1])


def _note(cut: list[str], left_out: list[str], why: str, full_card: str) -> str:
    parts = [f"long tables in {', '.join(cut)} cut to {TABLE_ROWS} rows"] if cut else []
    parts += [f"{', '.join(left_out)} left out"] if left_out else []
    return f"_Shortened to fit {why}: {'; '.join(parts)}. {full_card}_"


def _tables_cut(sections: list[str], rows: int) -> tuple[list[str], list[str]]:
    """The sections with long tables cut to `rows` rows, and the names of those cut."""
    shortened = [cut_tables(s, rows) if name(s) in CUT_TABLES_IN else s for s in sections]
    return shortened, [name(s) for s, new in zip(sections, shortened, strict=True) if s != new]


def _shortened(
    head: str, sections: list[str], cut: list[str], left_out: list[int], note: tuple[str, str]
) -> str:
    kept = [s for i, s in enumerate(sections) if i not in left_out]
    gone = [name(sections[i]) for i in sorted(left_out)]
    still_cut = [n for n in cut if n not in gone]
    return join(head, kept) + "\n" + _note(still_cut, gone, *note) + "\n"


def within_limit(card: str, limit: int, why: str, full_card: str) -> str:
    """The card in at most `limit` characters: long tables cut, then whole sections left out
    (LEAST_NEEDED first, then any other from the end), named in a last line saying `why` it
    is shortened and where the `full_card` is. Cut at `limit` only if even that is too long."""
    if len(card) <= limit:
        return card
    head, whole = split(card)
    sections, cut = _tables_cut(whole, TABLE_ROWS)
    order = [i for wanted in LEAST_NEEDED for i, s in enumerate(sections) if name(s) == wanted]
    order += [i for i in reversed(range(len(sections))) if i not in order]
    text = card
    for count in range(len(sections) + 1):
        text = _shortened(head, sections, cut, order[:count], (why, full_card))
        if len(text) <= limit:
            return text
    return text[:limit]


def description(card: str, artifact: str, limit: int = DESCRIPTION_LIMIT) -> str:
    """The card as a registry version's description: at most `limit` characters, pointing to
    the full card, the register run's artifact `artifact`, when shortened."""
    why = f"a registry description ({limit} characters)"
    full = f"The full card is `{artifact}` in the artifacts of this version's run."
    return within_limit(card, limit, why, full)
