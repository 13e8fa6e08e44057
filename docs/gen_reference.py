"""The docs site's Reference section, generated at build time and never written by hand.

An mkdocs hook (mkdocs.yml: `hooks:`), so `make docs` always describes the code it builds from:

- reference/cli.md: every group, command and option of the `mlops` command, walked from the
  click tree of the typer app that pyproject.toml's `[project.scripts]` names;
- reference/params.md: every key of params.yaml with its type, default and meaning, walked
  from the pydantic model `mlops_template.config.Params` (nested sections recursively; the
  meaning is a field's description, else the comment beside or above it in the source);
- reference/api/...: one mkdocstrings page per module, from the files under src/.

Nothing here names a command, a key or a module: each is found by walking, so moving modules
or regrouping commands changes the pages and not this file.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
import sys
import tomllib
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PACKAGE = "mlops_template"
PARAMS_MODEL = "mlops_template.config:Params"
API_INDEX = "reference/api/index.md"


# --- the `mlops` command ------------------------------------------------------------------


def script_target(name: str = "mlops") -> tuple[str, str]:
    """The module and attribute pyproject.toml's `[project.scripts]` runs as `name`."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, attribute = scripts[name].partition(":")
    return module, attribute


def cli_command() -> Any:
    """The click command tree of the typer app (click types are typer's own copy)."""
    import typer.main

    module, attribute = script_target()
    return typer.main.get_command(getattr(importlib.import_module(module), attribute))


def _cell(text: str) -> str:
    """Text fit for one markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _command_sections(command: Any, context: Any, depth: int) -> Iterator[str]:
    import typer

    heading = "#" * min(depth, 6)
    yield f"{heading} `{context.command_path}`\n"
    yield f"```text\n{command.get_usage(context)}\n```\n"
    if command.help:
        yield inspect.cleandoc(command.help) + "\n"
    records = [p.get_help_record(context) for p in command.params if not p.hidden]
    rows = [record for record in records if record]
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    if arguments:
        yield "Arguments: " + ", ".join(f"`{p.name.upper()}`" for p in arguments) + "\n"
    if rows:
        yield "| option | what |\n|---|---|"
        yield "\n".join(f"| `{_cell(opts)}` | {_cell(text)} |" for opts, text in rows) + "\n"
    for name, sub in getattr(command, "commands", {}).items():
        if not sub.hidden:
            child = typer.Context(sub, info_name=name, parent=context)
            yield from _command_sections(sub, child, depth + 1)


def cli_commands(command: Any | None = None, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command's path below the root, groups included: ("stage",), ("stage", "train")."""
    command = cli_command() if command is None else command
    found: list[tuple[str, ...]] = []
    for name, sub in getattr(command, "commands", {}).items():
        if not sub.hidden:
            found.append((*path, name))
            found += cli_commands(sub, (*path, name))
    return found


def cli_page() -> str:
    import typer

    command = cli_command()
    context = typer.Context(command, info_name="mlops")
    intro = (
        "# The `mlops` command\n\n"
        "Generated from the typer app at build time (`docs/gen_reference.py`): every group,"
        " command and option, as `mlops ... --help` prints them. The `make` targets call"
        " these; prefer the targets.\n"
    )
    return intro + "\n" + "\n".join(_command_sections(command, context, depth=2)) + "\n"


# --- params.yaml --------------------------------------------------------------------------


def params_model() -> Any:
    module, _, attribute = PARAMS_MODEL.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _is_model(annotation: object) -> bool:
    from pydantic import BaseModel

    return inspect.isclass(annotation) and issubclass(annotation, BaseModel)


def _constraints(metadata: list[Any]) -> list[str]:
    symbols = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤", "min_length": "min length"}
    found = []
    for item in metadata:
        found += [
            f"{symbol} {getattr(item, key)}"
            for key, symbol in symbols.items()
            if getattr(item, key, None) is not None
        ]
        found += _constraints(list(getattr(item, "metadata", [])))
    return found


def type_name(annotation: object, metadata: list[Any] | None = None) -> str:
    """A type as a reader of params.yaml thinks of it: `int (≥ 1) | null`, `one of: a, b`."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return type_name(args[0], [*args[1:], *(metadata or [])])
    limits = _constraints(metadata or [])
    suffix = f" ({', '.join(limits)})" if limits else ""
    if origin is Literal:
        return "one of: " + ", ".join(json.dumps(arg) for arg in args)
    if origin in (Union, types.UnionType):
        return " \\| ".join(type_name(arg) for arg in args)
    if annotation is type(None):
        return "null"
    if annotation is Ellipsis:
        return "..."
    if origin is not None:
        inner = ", ".join(type_name(arg) for arg in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]{suffix}"
    if _is_model(annotation):
        return "section"
    name = getattr(annotation, "__name__", str(annotation).replace("typing.", ""))
    return {"str": "text", "Path": "path", "float": "number", "int": "integer"}.get(
        name, name
    ) + suffix


def yaml_comments(path: Path) -> dict[str, str]:
    """The comments of params.yaml, by dotted key: the comment lines just above a key and the
    one beside it."""
    comments: dict[str, str] = {}
    keys: list[tuple[int, str]] = []
    above: list[str] = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if stripped.startswith("#  ") and keys and not above:  # the line above, continued
                last = ".".join(key for _, key in keys)
                comments[last] = f"{comments[last]} {stripped.lstrip('#').strip()}".strip()
            else:
                above.append(stripped.lstrip("#").strip())
            continue
        match = re.match(r"^( *)([A-Za-z_]\w*):(.*)$", line)
        if not match:
            above = []
            continue
        indent = len(match.group(1))
        keys = [(level, key) for level, key in keys if level < indent] + [(indent, match[2])]
        beside = match[3].split(" # ", 1)[1].strip() if " # " in match[3] else ""
        comments[".".join(key for _, key in keys)] = " ".join([*above, beside]).strip()
        above = []
    return comments


def _field_comments(model: type) -> dict[str, str]:
    """The comment beside each field of a class, or the comment lines just above it."""
    comments: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        try:
            lines = inspect.getsource(cls).splitlines()
        except (OSError, TypeError):
            continue
        tree = ast.parse("\n".join(lines))
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node in body:
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                continue
            line = lines[node.lineno - 1]
            above: list[str] = []
            index = node.lineno - 2
            while index >= 0 and lines[index].strip().startswith("#"):
                above.insert(0, lines[index].strip().lstrip("#").strip())
                index -= 1
            beside = line.split("  # ", 1)[1].strip() if "  # " in line else ""
            comments[node.target.id] = " ".join([*above, beside]).strip()
    return comments


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if _is_model(type(value)):
        return "(section)"
    return f"`{json.dumps(value, default=str)}`"


def _member_models(annotation: object) -> list[Any]:
    """The models a field holds: itself, or each model of a union (None left out)."""
    if get_origin(annotation) is Annotated:
        return _member_models(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return [arg for arg in get_args(annotation) if _is_model(arg)]
    return [annotation] if _is_model(annotation) else []


def _rows(model: Any, prefix: str, shown: str = "") -> Iterator[str]:
    """One table row per key below `prefix` (the dotted path in params.yaml), shown without
    the part `shown` that the section's heading already names."""
    comments = _field_comments(model)
    in_yaml = yaml_comments(ROOT / "params.yaml")
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        members = _member_models(field.annotation)
        if len(members) == 1:
            yield from _rows(members[0], f"{key}.", shown)
            continue
        meaning = field.description or in_yaml.get(key) or comments.get(name, "")
        kind = type_name(field.annotation, list(field.metadata))
        label = key.removeprefix(shown)
        yield f"| `{label}` | {kind} | {_default(field)} | {_cell(meaning)} |"


TABLE_HEAD = "| key | type | default | meaning |\n|---|---|---|---|"


def _doc(model: Any) -> str:
    own = model.__dict__.get("__doc__")
    return inspect.cleandoc(own) + "\n\n" if own else ""


def params_keys() -> list[str]:
    """params.yaml's top-level keys, as the model spells them (aliases included)."""
    return [field.alias or name for name, field in params_model().model_fields.items()]


def params_page() -> str:
    root = params_model()
    parts = [
        "# `params.yaml`\n",
        "Generated from the pydantic models of `mlops_template.config` at build time"
        " (`docs/gen_reference.py`): every key, its type, its default and what it means."
        " An unknown key or a wrong type stops every command, naming the key.\n",
    ]
    scalars = []
    for name, field in root.model_fields.items():
        key = field.alias or name
        members = _member_models(field.annotation)
        if not members:
            scalars.append(_scalar_row(root, name))
            continue
        parts.append(f"## `{key}`\n")
        if len(members) == 1:
            rows = "\n".join(_rows(members[0], f"{key}.", f"{key}."))
            parts.append(f"{_doc(members[0])}{TABLE_HEAD}\n{rows}\n")
            continue
        parts.append("One of these, chosen by its first key:\n")
        for member in members:
            tag = ", ".join(
                f"{n}: {type_name(f.annotation)}"
                for n, f in member.model_fields.items()
                if get_origin(f.annotation) is Literal
            )
            parts.append(f"### `{key}` ({tag})\n\n{_doc(member)}{TABLE_HEAD}")
            parts.append("\n".join(_rows(member, f"{key}.")) + "\n")
    parts.insert(2, "## Top-level keys\n\n" + TABLE_HEAD + "\n" + "\n".join(scalars) + "\n")
    return "\n".join(parts) + "\n"


def _scalar_row(model: Any, name: str) -> str:
    field = model.model_fields[name]
    key = field.alias or name
    meaning = (
        field.description
        or yaml_comments(ROOT / "params.yaml").get(key)
        or _field_comments(model).get(name, "")
    )
    kind = type_name(field.annotation, list(field.metadata))
    return f"| `{key}` | {kind} | {_default(field)} | {_cell(meaning)} |"


# --- the Python API -----------------------------------------------------------------------


def api_modules() -> list[str]:
    """Every module of the package, from its files: `mlops_template.stages.train`, ..."""
    modules = []
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts[-1] != "__main__":
            modules.append(".".join(parts))
    return modules


def api_path(module: str) -> str:
    return f"reference/api/{module.replace('.', '/')}.md"


def _summary(module: str) -> str:
    parts = module.split(".")
    folder = SRC.joinpath(*parts)
    path = folder / "__init__.py" if folder.is_dir() else folder.with_suffix(".py")
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    return docstring.split("\n\n", 1)[0]


def api_pages() -> dict[str, str]:
    pages = {api_path(module): f"# `{module}`\n\n::: {module}\n" for module in api_modules()}
    index = ["# Python API\n", "One page per module, generated from its docstrings.\n"]
    index += ["| module | what |", "|---|---|"]
    index += [
        f"| [`{module}`]({api_path(module).removeprefix('reference/api/')}) "
        f"| {_cell(_summary(module))} |"
        for module in api_modules()
    ]
    pages[API_INDEX] = "\n".join(index) + "\n"
    return pages


def api_nav() -> list[Any]:
    """The modules as a nav tree: a package is a section holding its modules."""
    tree: dict[str, Any] = {}
    for module in api_modules():
        node = tree
        for part in module.split(".")[:-1]:
            node = node.setdefault(part, {})
        node.setdefault(module.split(".")[-1], {})["__page__"] = api_path(module)

    def entries(node: dict[str, Any], prefix: str) -> list[Any]:
        items: list[Any] = []
        for name, child in node.items():
            if name == "__page__":
                continue
            dotted = f"{prefix}{name}"
            below = entries(child, f"{dotted}.")
            page = child.get("__page__")
            if below:
                items.append({dotted: ([page] if page else []) + below})
            elif page:
                items.append({dotted: page})
        return items

    return [API_INDEX, *entries(tree, "")]


def reference_pages() -> dict[str, str]:
    return {"reference/cli.md": cli_page(), "reference/params.md": params_page(), **api_pages()}


# --- mkdocs hooks -------------------------------------------------------------------------


def _expand(nav: Any) -> Any:
    """The nav with the API index entry replaced by the module tree."""
    if isinstance(nav, list):
        return [_expand(item) for item in nav]
    if isinstance(nav, dict):
        return {
            title: api_nav() if value == API_INDEX else _expand(value)
            for title, value in nav.items()
        }
    return nav


def on_config(config: Any) -> Any:
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))  # a build outside the venv's editable install
    config["nav"] = _expand(config["nav"])
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for path, text in reference_pages().items():
        files.append(File.generated(config, path, content=text))
    return files


if __name__ == "__main__":
    for page, text in reference_pages().items():
        print(f"--- {page}\n{text[:400]}")
