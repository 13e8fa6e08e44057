"""The architecture picture and the folder import table, drawn from the code at build time.

An mkdocs hook (mkdocs.yml: `hooks:`). It reads two things and writes two files:

- the layers, from pyproject.toml's import contract named "Layers: ..." (the one `make lint`
  enforces), so the picture and the check cannot disagree;
- every import between the package's folders, from the source (type-only imports included).

reference/layers.svg is the picture: one row per layer, top to bottom, an arrow per folder
that imports another (grey when it points down, red when it points up: a broken contract,
which `make lint` would already refuse). An import that a path of other arrows already implies
is left out of the picture (cli/ imports nearly everything), not out of the table.
reference/imports.md is the same as a table with the modules imported, for the reader who
wants to know why an arrow is there.
"""

from __future__ import annotations

import ast
import tomllib
from collections import defaultdict
from html import escape
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / "src" / "mlops_template"
PACKAGE = "mlops_template"
BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN = 150, 44, 40, 46, 20
LANE, LANES = 16, 4  # room beside the boxes for the arrows that skip a layer


def layers() -> list[list[str]]:
    """The folders of the layers contract, top layer first, siblings in a row."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    (contract,) = [c for c in contracts if c["type"] == "layers"]
    rows = []
    for layer in contract["layers"]:
        names = [part.strip() for part in layer.replace(":", "|").split("|")]
        rows.append([name.removeprefix(f"{PACKAGE}.") for name in names])
    return rows


def folder_of(module: str) -> str | None:
    """`mlops_template.io.storage` -> "io"; the package root and top-level modules: None."""
    parts = module.split(".")
    if parts[0] != PACKAGE or len(parts) < 2 or not (PACKAGE_DIR / parts[1]).is_dir():
        return None
    return parts[1]


def folder_imports() -> dict[tuple[str, str], set[str]]:
    """(importing folder, imported folder) -> the modules imported, across the package."""
    found: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        source = folder_of(".".join((PACKAGE, *path.relative_to(PACKAGE_DIR).parts[:1])))
        if source is None:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            for module in modules:
                target = folder_of(module)
                if target is not None and target != source:
                    found[(source, target)].add(_shown(module))
    return found


def _shown(module: str) -> str:
    """The imported module, as short as it stays clear: `io/storage`."""
    parts = module.split(".")[1:]
    while len(parts) > 1 and not (PACKAGE_DIR.joinpath(*parts).with_suffix(".py")).exists():
        if (PACKAGE_DIR.joinpath(*parts) / "__init__.py").exists():
            break
        parts = parts[:-1]
    return "/".join(parts)


def essential(edges: dict[tuple[str, str], set[str]]) -> set[tuple[str, str]]:
    """The edges no longer path of other edges implies (the transitive reduction of a DAG)."""
    after: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        after[source].add(target)

    def reachable(start: str, skip: tuple[str, str]) -> set[str]:
        seen, pending = set(), [start]
        while pending:
            node = pending.pop()
            for nxt in after[node]:
                if (node, nxt) != skip and nxt not in seen:
                    seen.add(nxt)
                    pending.append(nxt)
        return seen

    return {edge for edge in edges if edge[1] not in reachable(edge[0], edge)}


def _positions(rows: list[list[str]]) -> dict[str, tuple[float, float]]:
    """Each box's top-left corner: rows centred on the widest."""
    widest = max(len(row) for row in rows)
    width = widest * BOX_W + (widest - 1) * GAP_X
    places: dict[str, tuple[float, float]] = {}
    for index, row in enumerate(rows):
        row_width = len(row) * BOX_W + (len(row) - 1) * GAP_X
        left = MARGIN + LANES * LANE + (width - row_width) / 2
        for column, name in enumerate(row):
            places[name] = (left + column * (BOX_W + GAP_X), MARGIN + index * (BOX_H + GAP_Y))
    return places


def svg(rows: list[list[str]], edges: dict[tuple[str, str], set[str]]) -> str:
    places = _positions(rows)
    level = {name: index for index, row in enumerate(rows) for name in row}
    widest = max(len(row) for row in rows)
    width = 2 * MARGIN + widest * BOX_W + (widest - 1) * GAP_X
    height = 2 * MARGIN + len(rows) * BOX_H + (len(rows) - 1) * GAP_Y
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + 2 * LANES * LANE}"'
        f' height="{height}" viewBox="0 0 {width + 2 * LANES * LANE} {height}"'
        ' font-family="sans-serif" font-size="14">',
        '<defs><marker id="head" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7"'
        ' markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#888"/></marker>'
        '<marker id="up" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7"'
        ' markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#c00"/></marker>'
        "</defs>",
    ]
    kept = sorted(edge for edge in essential(edges) if edge[0] in places and edge[1] in places)
    # An arrow that skips a layer runs down the side nearer its box, in a lane of its own.
    right, left = width - MARGIN + LANES * LANE, MARGIN + LANES * LANE
    for source, target in kept:
        (sx, sy), (tx, ty) = places[source], places[target]
        upward = level[target] <= level[source]
        colour, head = ("#c00", "up") if upward else ("#888", "head")
        title = escape(f"{source} imports {', '.join(sorted(edges[(source, target)]))}")
        if abs(level[target] - level[source]) == 1 or upward:
            x1, y1 = sx + BOX_W / 2, sy + (0 if upward else BOX_H)
            x2, y2 = tx + BOX_W / 2, ty + (BOX_H if upward else 0)
            shape = f"M{x1:.0f},{y1:.0f} L{x2:.0f},{y2:.0f}"
        else:
            if sx + BOX_W / 2 < (width + 2 * LANES * LANE) / 2:
                left -= LANE
                x1, x2, lane = sx, tx, left - LANE
            else:
                right += LANE
                x1, x2, lane = sx + BOX_W, tx + BOX_W, right
            y1, y2 = sy + BOX_H / 2, ty + BOX_H / 2
            shape = f"M{x1:.0f},{y1:.0f} C{lane},{y1:.0f} {lane},{y2:.0f} {x2:.0f},{y2:.0f}"
        parts.append(
            f'<path d="{shape}" fill="none" stroke="{colour}" stroke-width="1.2"'
            f' marker-end="url(#{head})"><title>{title}</title></path>'
        )
    for name, (x, y) in places.items():
        parts.append(
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{BOX_W}" height="{BOX_H}" rx="6"'
            ' fill="#eef3fb" stroke="#4a6fa5"/>'
            f'<text x="{x + BOX_W / 2:.0f}" y="{y + BOX_H / 2 + 5:.0f}"'
            f' text-anchor="middle">{escape(name)}/</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def imports_page(rows: list[list[str]], edges: dict[tuple[str, str], set[str]]) -> str:
    level = {name: index for index, row in enumerate(rows) for name in row}
    lines = [
        "# Imports between folders",
        "",
        "Generated from the source when the site is built (docs/gen_architecture.py): every",
        "folder that imports another, and what it takes. The layers are pyproject.toml's",
        "import contract; an import up a layer would be marked **up** (`make lint` refuses it).",
        "",
        "![The package's folders in layers](layers.svg)",
        "",
        "| folder | imports | modules |",
        "|---|---|---|",
    ]
    for (source, target), modules in sorted(edges.items(), key=lambda e: (level[e[0][0]], e[0])):
        mark = " **up**" if level[target] <= level[source] else ""
        shown = ", ".join(f"`{module}`" for module in sorted(modules))
        lines.append(f"| `{source}/` | `{target}/`{mark} | {shown} |")
    return "\n".join(lines) + "\n"


def pages() -> dict[str, str]:
    rows, edges = layers(), folder_imports()
    return {
        "reference/layers.svg": svg(rows, edges),
        "reference/imports.md": imports_page(rows, edges),
    }


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for path, text in pages().items():
        files.append(File.generated(config, path, content=text))
    return files
