"""Writing model values back into params.yaml (`mlops model tune --apply`): the one edit code
makes to params.yaml.

Text, not a YAML round trip: comments, order and spacing are the reviewer's, and the pull
request's diff must show the changed values and nothing else.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from mlops_template import PipelineError

_MODEL_SECTION = re.compile(r"model:[ \t]*(#.*)?\r?\n?")


def _scalar(value: Any) -> str:
    """A value as YAML reads it back (1e-05 is a string to YAML 1.1: it is written 1.0e-05)."""
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


def set_model_values(text: str, values: Mapping[str, Any]) -> str:
    """params.yaml's text with `model.<name>: value` for each value, every other byte kept:
    a value is replaced in place (its comment kept) or, when absent, added to the section."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _MODEL_SECTION.fullmatch(line)), None)
    if start is None:
        raise PipelineError("params.yaml: no block `model:` section to write the values into")
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"[^\s#]", lines[i])), None)
    block = lines[start + 1 : end]
    keys = [i for i, line in enumerate(block) if re.match(r"[ \t]+[A-Za-z_]", line)]
    found_indent = re.match(r"[ \t]+", block[keys[0]]) if keys else None
    indent = found_indent.group() if found_indent else "  "
    for name, value in values.items():
        pattern = re.compile(
            rf"({indent}{re.escape(name)}:[ \t]*)[^#\r\n]*?([ \t]*#[^\r\n]*)?(\r?\n)?"
        )
        matched = next(filter(None, (pattern.fullmatch(line) for line in block)), None)
        if matched is not None:
            head, comment, newline = matched.groups()
            block[block.index(matched.string)] = (
                f"{head}{_scalar(value)}{comment or ''}{newline or ''}"
            )
            continue
        after = keys[-1] + 1 if keys else 0
        if after and not block[after - 1].endswith("\n"):
            block[after - 1] += "\n"
        block.insert(after, f"{indent}{name}: {_scalar(value)}\n")
        keys.append(after)
    return "".join([*lines[: start + 1], *block, *(lines[end:] if end is not None else [])])


def write_model_values(path: Path, values: Mapping[str, Any]) -> str:
    """Set `model.<name>` in the params file to these values, check the result reads back as
    exactly that change and validates, write it; returns the unified diff ("" if unchanged)."""
    from mlops_template.config.params import parse_params
    from mlops_template.io import storage

    before = path.read_text(encoding="utf-8")
    current = parse_params(yaml.safe_load(before), path).model
    # Only what differs, defaults included: the best being the current values is no change.
    values = {name: value for name, value in values.items() if getattr(current, name) != value}
    after = set_model_values(before, values)
    expected = yaml.safe_load(before)
    expected["model"] = {**expected["model"], **values}
    model = parse_params(yaml.safe_load(after), path).model
    if yaml.safe_load(after) != expected or any(
        getattr(model, name) != value for name, value in values.items()
    ):
        raise PipelineError(
            f"{path}: could not write {values} into its model section safely; set them by hand"
        )
    if after != before:
        storage.write_text(path, after)
    diff = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), str(path), str(path)
    )
    return "".join(diff)
