"""A small JSON Schema (2020-12) checker for the tests: the keywords pydantic's schemas use,
so a message can be checked against the schema the service serves, not against the Python
models that made it (the `jsonschema` package is not a dependency)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

TYPES: dict[str, Any] = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
    "integer": int, "number": (int, float),
}
KEYWORDS = {"$schema", "$id", "$ref", "$defs", "title", "description", "default", "type",
            "properties", "required", "additionalProperties", "items", "prefixItems", "const",
            "enum", "anyOf", "oneOf", "allOf", "format", "maxLength", "minLength", "minimum",
            "maximum", "discriminator", "examples"}


def problems(schema: dict[str, Any]) -> list[str]:
    """What makes `schema` no JSON Schema (of the subset): unknown keywords, dangling $refs,
    unknown types. [] if none."""
    found: list[str] = []

    def walk(node: Any, where: str, in_properties: bool = False) -> None:
        if not isinstance(node, dict):
            found.append(f"{where}: not an object")
            return
        if in_properties:  # names are the message's keys, values schemas
            for name, sub in node.items():
                walk(sub, f"{where}.{name}")
            return
        for key, value in node.items():
            if key not in KEYWORDS:
                found.append(f"{where}: unknown keyword {key!r}")
            elif key == "$ref" and resolve(schema, value) is None:
                found.append(f"{where}: $ref {value!r} leads nowhere")
            elif key == "type" and value not in TYPES:
                found.append(f"{where}: unknown type {value!r}")
            elif key in ("properties", "$defs"):
                walk(value, f"{where}.{key}", in_properties=True)
            elif key in ("items", "additionalProperties") and isinstance(value, dict):
                walk(value, f"{where}.{key}")
            elif key in ("anyOf", "oneOf", "allOf", "prefixItems"):
                for n, sub in enumerate(value):
                    walk(sub, f"{where}.{key}[{n}]")

    walk(schema, "#")
    return found


def resolve(root: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def errors(root: dict[str, Any], value: Any, schema: dict[str, Any] | None = None,
           where: str = "$") -> list[str]:
    """Why `value` does not match `schema` (default: the root); [] if it does."""
    schema = root if schema is None else schema
    out: list[str] = []
    if "$ref" in schema:
        out += errors(root, value, resolve(root, schema["$ref"]), where)
    if "type" in schema:
        kind = TYPES[schema["type"]]
        bad = not isinstance(value, kind) or (isinstance(value, bool) and schema["type"] in
                                              ("integer", "number"))
        if bad:
            return [*out, f"{where}: {value!r} is not {schema['type']}"]
    if "const" in schema and value != schema["const"]:
        out.append(f"{where}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{where}: {value!r} not in {schema['enum']}")
    if schema.get("format") == "date-time" and isinstance(value, str):
        if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value):
            out.append(f"{where}: {value!r} is no RFC 3339 date-time")
        else:
            datetime.fromisoformat(value)
    if "maxLength" in schema and isinstance(value, str) and len(value) > schema["maxLength"]:
        out.append(f"{where}: longer than {schema['maxLength']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                out.append(f"{where}: {name!r} missing")
        for name, item in value.items():
            if name in props:
                out += errors(root, item, props[name], f"{where}.{name}")
            elif schema.get("additionalProperties") is False:
                out.append(f"{where}: unexpected key {name!r}")
            elif isinstance(schema.get("additionalProperties"), dict):
                out += errors(root, item, schema["additionalProperties"], f"{where}.{name}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for n, item in enumerate(value):
            out += errors(root, item, schema["items"], f"{where}[{n}]")
    for sub in schema.get("allOf", []):
        out += errors(root, value, sub, where)
    if "anyOf" in schema:
        tries = [errors(root, value, sub, where) for sub in schema["anyOf"]]
        if all(tries):
            out.append(f"{where}: matches none of anyOf: {min(tries, key=len)}")
    if "oneOf" in schema:
        tries = [errors(root, value, sub, where) for sub in schema["oneOf"]]
        matched = sum(not t for t in tries)
        if matched != 1:
            out.append(f"{where}: matches {matched} of oneOf: {min(tries, key=len)}")
    return out
