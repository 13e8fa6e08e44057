"""/docs without a CDN: one self-contained HTML page rendered from the service's OpenAPI.

FastAPI's Swagger UI and ReDoc load their JavaScript and CSS from a CDN, so offline (or behind
a strict egress policy) /docs is a blank page; no package on this project's registries ships
the Swagger UI assets. This page needs nothing else: every route with its summary, request
fields (type, range, categories, whether they may be null), example request and status codes,
rendered on the server from the same OpenAPI document that /openapi.json serves. No scripts.
Every string from the document (the contract's names, descriptions, categories and example)
is HTML-escaped, and the example's curl command is shell-quoted.
"""

from __future__ import annotations

import json
import shlex
from html import escape
from typing import Any, cast

STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h2{border-top:1px solid #ddd;padding-top:1rem}code,pre{background:#f5f5f5;border-radius:3px}
pre{padding:.6rem;overflow-x:auto}table{border-collapse:collapse;width:100%}
td,th{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
.method{font-weight:bold;text-transform:uppercase}
"""


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    return cast(dict[str, Any], spec["components"]["schemas"][ref.rsplit("/", 1)[-1]])


def _describe(spec: dict[str, Any], schema: dict[str, Any]) -> str:
    """A one-line description of a field's schema."""
    options = [_resolve(spec, option) for option in schema.get("anyOf", [schema])]
    parts = []
    for option in options:
        if "enum" in option:
            parts.append("one of " + ", ".join(json.dumps(value) for value in option["enum"]))
        elif option.get("type") == "null":
            parts.append("null")
        elif option.get("type") == "array":
            items = _resolve(spec, option.get("items", {}))
            bounds = [f"{k} {option[k]}" for k in ("minItems", "maxItems") if k in option]
            parts.append(f"array of {items.get('title', 'items')} ({', '.join(bounds)})")
        else:
            bounds = [f"{k} {option[k]}" for k in ("minimum", "maximum") if k in option]
            parts.append(
                option.get("type", option.get("title", "object"))
                + (f" ({', '.join(bounds)})" if bounds else "")
            )
    return " or ".join(parts)


def _fields(spec: dict[str, Any], schema: dict[str, Any]) -> str:
    schema = _resolve(spec, schema)
    required = set(schema.get("required", []))
    rows = "".join(
        f"<tr><td><code>{escape(name)}</code></td><td>{escape(_describe(spec, prop))}</td>"
        f"<td>{'yes' if name in required else 'no'}</td>"
        f"<td>{escape(prop.get('description', ''))}</td></tr>"
        for name, prop in schema.get("properties", {}).items()
    )
    title = escape(schema.get("title", ""))
    return (
        f"<p>Body: <code>{title}</code></p><table><tr><th>field</th><th>value</th>"
        f"<th>required</th><th>meaning</th></tr>{rows}</table>"
    )


def curl(path: str, example: object) -> str:
    """The shell command that sends `example` to `path`. Every word is shell-quoted: the
    example comes from the data contract, and a category holding a `'` must not end the
    quoted payload and run the rest as a command in the shell of whoever copies it."""
    command = ["curl", "-s", path, "-H", "content-type: application/json"]
    return shlex.join([*command, "-d", json.dumps(example)])


def render(spec: dict[str, Any]) -> str:
    """The HTML page for an OpenAPI document."""
    info = spec.get("info", {})
    sections = []
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            parts = [
                f"<h2><span class=method>{escape(method)}</span> <code>{escape(path)}</code></h2>",
                f"<p>{escape(operation.get('summary', ''))}</p>",
            ]
            if operation.get("description"):
                parts.append(f"<p>{escape(operation['description'])}</p>")
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                schema = _resolve(spec, body["schema"])
                parts.append(_fields(spec, schema))
                records = schema.get("properties", {}).get("records")
                if records:
                    parts.append(_fields(spec, records.get("items", {})))
                example = schema.get("example")
                if example is not None:
                    parts.append(f"<p>Example request:</p><pre>{escape(curl(path, example))}</pre>")
            codes = "".join(
                f"<tr><td>{escape(code)}</td><td>{escape(answer.get('description', ''))}</td></tr>"
                for code, answer in operation.get("responses", {}).items()
            )
            parts.append(f"<table><tr><th>status</th><th>meaning</th></tr>{codes}</table>")
            sections.append("\n".join(parts))
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(info.get('title', 'API'))}</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(info.get('title', 'API'))} <small>v{escape(str(info.get('version', '')))}"
        f"</small></h1><p>{escape(info.get('description', ''))}</p>"
        "<p>The machine-readable description: <a href=openapi.json>openapi.json</a>.</p>"
        + "\n".join(sections)
        + "</body></html>"
    )
